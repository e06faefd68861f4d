"""AWS Signature Version 2, S3 flavour: verification only; pure, no I/O, no clock.

boto3 presigns URLs (and POST policies) with SigV2 unless a client asks for
``s3v4``, and older tools sign headers with it: ``Authorization: AWS
AKID:signature``, or the query parameters ``AWSAccessKeyId``, ``Signature`` and
``Expires``.  The steps mirror AWS's "Signing and authenticating REST requests"
(and botocore's ``HmacV1Auth``), one function per step, so that each can be
tested against the documented examples:

1. :func:`canonicalized_amz_headers` (``x-amz-*`` headers, lower-case, sorted,
   values trimmed, repeats joined with ``,``);
2. :func:`canonicalized_resource` (``/bucket`` for a virtual-hosted request,
   then the path as sent, then the signed subresources, sorted, values decoded);
3. :func:`string_to_sign` (verb, Content-MD5, Content-Type, Date or Expires,
   step 1, step 2);
4. :func:`signature` (base64 HMAC-SHA1 under the secret).

:func:`verify` runs the whole check and returns a :class:`VerifiedV2`.  What
SigV2 does not protect, and how encproxy closes the gap:

* **No payload hash.**  The body is as sent; the authentication layer still
  verifies ``Content-MD5`` (and ``x-amz-content-sha256`` or
  ``x-amz-checksum-*``) when present.
* **Unsigned query parameters.**  Only the subresources in
  :data:`SIGNED_SUBRESOURCES` are signed, so anyone on the path could add one
  that no signer signs (``?attributes``, ``?retention``, ...) and change what
  a signed request does.  A parameter that is neither signed nor a listing or
  paging parameter (:data:`UNSIGNED_PARAMETERS`) is refused.
* **Headers in the query.**  botocore's presigner moves ``x-amz-*``,
  ``Content-Type`` and ``Content-MD5`` headers into the query string (they are
  signed as headers).  They are returned as :attr:`VerifiedV2.query_headers`,
  for the request to carry as the headers they stand for.

The date of a header-signed request is ``x-amz-date`` when present (``Date`` is
then ignored for the clock), else ``Date``.  With ``x-amz-date``, three strings
to sign are in use and all are accepted (each covers the ``x-amz-date`` value):
the ``Date`` header in the date position and ``x-amz-date`` among the
``x-amz-*`` headers (botocore, MinIO); an empty date position instead (AWS's
stated rule, Ceph RGW); and the ``x-amz-date`` value in the date position, not
among the headers (AWS's worked DELETE example).  A path-style request for a bucket
(``/bucket``) may be signed with the resource ``/bucket/``, as botocore signs it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

from encproxy import errors
from encproxy.sigv4 import MAX_SKEW, SecretLookup, header_text

SCHEME = "AWS"
QUERY_AUTH = ("AWSAccessKeyId", "Signature", "Expires")

#: Subresources that are part of the canonicalized resource: AWS's documented list,
#: botocore's (``HmacV1Auth.QSAOfInterest``) and Ceph RGW's, which sign the same
#: ones for every operation they share.
SIGNED_SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "cors", "defaultObjectAcl", "delete", "encryption",
    "inventory", "lifecycle", "location", "logging", "metrics", "notification",
    "object-lock", "partNumber", "policy", "policyStatus", "publicAccessBlock",
    "replication", "requestPayment", "restore", "select", "select-type", "storageClass",
    "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
})
#: Parameters that no SigV2 signer signs but that only page, filter or route a
#: request of the operation its signed part names: they may come unsigned.
UNSIGNED_PARAMETERS = frozenset({
    "prefix", "delimiter", "marker", "max-keys", "encoding-type", "list-type",
    "continuation-token", "start-after", "fetch-owner", "key-marker", "version-id-marker",
    "upload-id-marker", "max-uploads", "max-parts", "part-number-marker", "max-buckets",
    "bucket-region", "allow-unordered", "id", "x-id",
})
#: Headers a presigned query may carry (botocore moves them there), besides ``x-amz-*``.
QUERY_HEADERS = ("content-type", "content-md5")

_EXPIRES_RE = re.compile(r"-?[0-9]{1,12}\Z", re.ASCII)
_AMZ_BASIC_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z\Z", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- steps 1-4 ------------------------------------------------------------------------

def canonicalized_amz_headers(items: Iterable[tuple[str, str]]) -> str:
    """``name:value\\n`` for each ``x-amz-*`` header, names lower-cased and sorted.

    ``items`` are (name, value) pairs as received (WSGI text); a name given more
    than once has its values joined with ``,`` in the order given, each trimmed.
    """
    joined: dict[str, list[str]] = {}
    for name, value in items:
        lower = name.lower()
        if lower.startswith("x-amz-"):
            joined.setdefault(lower, []).append(header_text(value).strip())
    return "".join(f"{name}:{','.join(joined[name])}\n" for name in sorted(joined))


def parse_query(raw_query: str | bytes) -> list[tuple[str, str | None]]:
    """The query's ``(name, value)`` pairs, decoded, in order; value None without ``=``.

    ``+`` is a literal plus, as in SigV4: signers percent-encode spaces.
    """
    raw = raw_query if isinstance(raw_query, bytes) else raw_query.encode("utf-8")
    pairs: list[tuple[str, str | None]] = []
    for part in raw.split(b"&"):
        if not part:
            continue
        name, eq, value = part.partition(b"=")
        pairs.append((_decode(name), _decode(value) if eq else None))
    return pairs


def _decode(raw: bytes) -> str:
    # As botocore's unquote: bytes that are not UTF-8 become U+FFFD.
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def canonicalized_resource(raw_path: str | bytes, params: Sequence[tuple[str, str | None]],
                           bucket: str | None = None) -> str:
    """``/bucket`` (virtual-hosted requests only), the path as sent, the signed subresources.

    The path is not decoded (it is signed as it is sent); subresource values are
    (they are signed decoded), sorted by name, each as sent with or without ``=``.
    """
    path = raw_path if isinstance(raw_path, bytes) else raw_path.encode("latin-1")
    resource = ("/" + bucket if bucket else "") + (path.decode("utf-8", "surrogateescape")
                                                   or "/")
    signed = sorted(((name, value) for name, value in params if name in SIGNED_SUBRESOURCES),
                    key=lambda pair: pair[0])
    if signed:
        resource += "?" + "&".join(name if value is None else f"{name}={value}"
                                   for name, value in signed)
    return resource


def string_to_sign(method: str, content_md5: str, content_type: str, date: str,
                   amz_headers: str, resource: str) -> str:
    """Step 3; ``date`` is the Date header (header scheme) or Expires (query scheme)."""
    return f"{method.upper()}\n{content_md5}\n{content_type}\n{date}\n{amz_headers}{resource}"


def signature(secret: str, string_to_sign_text: str) -> str:
    """Step 4: base64 HMAC-SHA1 of the string to sign under the secret."""
    mac = hmac.new(secret.encode("utf-8"),
                   string_to_sign_text.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def post_policy_signature(secret: str, policy: str) -> str:
    """A SigV2 POST policy's signature: base64 HMAC-SHA1 of the base64 policy as sent."""
    return signature(secret, policy)


def signatures_equal(expected: str, provided: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(expected.encode("ascii"),
                               provided.encode("utf-8", "surrogateescape"))


# -- which scheme ---------------------------------------------------------------------

def requested(headers: Mapping[str, str], names: Iterable[str]) -> bool:
    """Whether a request claims SigV2: ``Authorization: AWS ...``, or ``AWSAccessKeyId`` or
    ``Signature`` in its query without SigV4's ``X-Amz-Algorithm``.

    ``headers`` has lower-case names; ``names`` are the decoded query parameter names.
    """
    names = set(names)
    if "X-Amz-Algorithm" in names:
        return False
    authorization = headers.get("authorization")
    if authorization is not None:
        return authorization.strip().partition(" ")[0] == SCHEME
    return "AWSAccessKeyId" in names or "Signature" in names


def parse_authorization_header(value: str) -> tuple[str, str]:
    """``AWS AKID:signature`` as (access key, signature); InvalidArgument otherwise."""
    scheme, _, rest = value.strip().partition(" ")
    access_key, colon, provided = rest.strip().rpartition(":")
    if scheme != SCHEME or not colon or not access_key or not provided \
            or ":" in access_key or " " in access_key:
        raise errors.InvalidArgument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            ArgumentName="Authorization", ArgumentValue=value[:256])
    return access_key, provided


# -- verification ---------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedV2:
    """A request whose SigV2 signature checked out."""

    access_key: str
    presigned: bool
    #: Headers a presigned query carried (lower-case names): the request's own headers.
    query_headers: Mapping[str, str]
    request_time: datetime | None = None   # header scheme: the signed date
    expires: datetime | None = None        # query scheme: when the URL stops working


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_date(value: str) -> datetime | None:
    """A ``Date``/``x-amz-date`` value: RFC 1123 (as S3 documents) or ISO 8601 basic."""
    value = value.strip()
    if _AMZ_BASIC_RE.match(value):
        try:
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _header_time(headers: Mapping[str, str], now: datetime) -> datetime:
    """The signed date of a header-signed request, checked against the clock."""
    raw = headers["x-amz-date"] if "x-amz-date" in headers else headers.get("date")
    moment = parse_date(raw) if raw is not None else None
    if moment is None or moment < _EPOCH:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date "
                                  "header")
    if abs(now - moment) > MAX_SKEW:
        assert raw is not None
        raise errors.RequestTimeTooSkewed(
            RequestTime=raw.strip()[:64], ServerTime=_fmt_time(now),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)))
    return moment


def _query_auth(params: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in params:
        if name in QUERY_AUTH:
            if name in found:
                raise errors.InvalidArgument(f"The {name} parameter is specified more than "
                                             "once.", ArgumentName=name)
            found[name] = value or ""
    return found


def _expiry(text: str, now: datetime) -> datetime:
    if not _EXPIRES_RE.match(text):
        raise errors.AccessDenied(f"Invalid date (should be seconds since epoch): {text[:64]}")
    expires = _EPOCH + timedelta(seconds=int(text))
    if now > expires:
        raise errors.AccessDenied("Request has expired", Expires=_fmt_time(expires),
                                  ServerTime=_fmt_time(now))
    return expires


def _query_headers(params: Sequence[tuple[str, str | None]], headers: Mapping[str, str]
                   ) -> dict[str, str]:
    """The headers a presigned query carries; a header sent too must say the same.

    Values are returned as WSGI carries header values (their bytes as latin-1 text),
    so that they are canonicalized, and can stand in the environ, like headers.
    """
    carried: dict[str, str] = {}
    for name, value in params:
        lower = name.lower()
        if not (lower.startswith("x-amz-") or lower in QUERY_HEADERS):
            continue
        if lower in carried:
            raise errors.InvalidArgument(f"The {name} parameter is specified more than once.",
                                         ArgumentName=name)
        carried[lower] = (value or "").encode("utf-8").decode("latin-1")
        sent = headers.get(lower)
        if sent is not None and header_text(sent).strip() != header_text(carried[lower]).strip():
            raise errors.InvalidArgument(
                f"{name} is given both as a query parameter and as a header, with "
                "different values.", ArgumentName=name)
    return carried


def _check_parameters(params: Sequence[tuple[str, str | None]], carried: Mapping[str, str]
                      ) -> None:
    for name, _ in params:
        if name in SIGNED_SUBRESOURCES or name in UNSIGNED_PARAMETERS or name in QUERY_AUTH \
                or name.lower() in carried:
            continue
        raise errors.AccessDenied(
            f"The query parameter {name[:64]!r} is not covered by a Signature Version 2 "
            "signature; sign this request with AWS4-HMAC-SHA256.")


def verify(method: str, raw_path: str | bytes, raw_query: str | bytes,
           headers: Mapping[str, str], secret_lookup: SecretLookup, now: datetime, *,
           bucket: str | None = None) -> VerifiedV2:
    """Verify a SigV2-signed S3 request (header or query) and describe it.

    ``raw_path`` and ``raw_query`` are the request target as sent; ``headers``
    maps lower-case names to values as received (repeated headers joined with
    ``,``).  ``bucket`` names the bucket of a virtual-hosted request (whose path
    does not), None for a path-style one.  Checks run cheapest first: shape,
    time, parameters, access key, signature; each fails with the error S3 gives.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    params = parse_query(raw_query)
    auth = _query_auth(params)
    authorization = headers.get("authorization")
    presigned = authorization is None
    if not presigned and ("AWSAccessKeyId" in auth or "Signature" in auth):
        raise errors.InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            ArgumentName="Authorization")
    request_time: datetime | None = None
    expires: datetime | None = None
    carried: dict[str, str] = {}
    # (the date position's value, an x-amz-* header left out of the headers' lines)
    variants: list[tuple[str, str | None]]
    if presigned:
        if any(name not in auth for name in QUERY_AUTH):
            raise errors.AccessDenied("Query-string authentication requires the Signature, "
                                      "Expires and AWSAccessKeyId parameters")
        access_key, provided = auth["AWSAccessKeyId"], auth["Signature"]
        expires = _expiry(auth["Expires"], now)
        carried = _query_headers(params, headers)
        variants = [(auth["Expires"], None)]
    else:
        assert authorization is not None
        access_key, provided = parse_authorization_header(authorization)
        request_time = _header_time(headers, now)
        variants = [(headers.get("date", "").strip(), None)]
        if "x-amz-date" in headers:
            variants += [("", None), (headers["x-amz-date"].strip(), "x-amz-date")]
    _check_parameters(params, carried)

    secret = secret_lookup(access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=access_key)

    merged = {**headers, **carried}
    resources = [canonicalized_resource(raw_path, params, bucket)]
    path = raw_path if isinstance(raw_path, bytes) else raw_path.encode("latin-1")
    if bucket is None and path.count(b"/") == 1 and len(path) > 1:
        # A path-style bucket request: botocore signs /bucket/ for the /bucket it sends.
        resources.append(canonicalized_resource(path + b"/", params))
    content_md5 = header_text(merged.get("content-md5", "")).strip()
    content_type = header_text(merged.get("content-type", "")).strip()
    candidates: list[str] = []
    for date, left_out in variants:
        amz = canonicalized_amz_headers((k, v) for k, v in merged.items() if k != left_out)
        for resource in resources:
            sts = string_to_sign(method, content_md5, content_type, date, amz, resource)
            if sts not in candidates:
                candidates.append(sts)
    if not any(signatures_equal(signature(secret, sts), provided) for sts in candidates):
        shown = candidates[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise errors.SignatureDoesNotMatch(
            AWSAccessKeyId=access_key, StringToSign=shown, SignatureProvided=provided[:64])
    return VerifiedV2(access_key=access_key, presigned=presigned, query_headers=carried,
                      request_time=request_time, expires=expires)
