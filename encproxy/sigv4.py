"""AWS Signature Version 4 verification and signing, S3 flavour: pure, no I/O, no clock.

The steps mirror the AWS specification (and botocore's ``auth.py``), one
function per step, so that each can be tested against the published vectors:

1. :func:`canonical_request`  (method, canonical URI, canonical query,
   canonical headers, signed headers, payload hash);
2. :func:`string_to_sign`     (algorithm, timestamp, scope, hash of step 1);
3. :func:`signing_key`        (HMAC chain over date, region, service);
4. :func:`signature`          (HMAC of step 2 under step 3, hex).

On top of those, :func:`parse_authorization_header` and
:func:`parse_presigned_query` turn the two ways a client can sign a request
into one :class:`AuthParams`, and :func:`verify` runs the whole check and
returns a :class:`VerifiedRequest` that carries what the streaming
(``aws-chunked``) decoder needs to verify chunk signatures.

S3 specifics that differ from the generic SigV4 test suite, and why:

* the canonical URI is the path as sent, decoded and re-encoded *per
  segment* (so ``%2F`` inside a key stays ``%2F``), keeping only the
  unreserved characters ``A-Za-z0-9-_.~`` and ``/``; S3 neither normalises
  dot segments nor collapses slashes (``a/../b`` and ``a//b`` are distinct
  keys) and does not double-encode;
* the payload hash line is the value of ``x-amz-content-sha256`` (or
  ``UNSIGNED-PAYLOAD`` for a presigned URL), never computed here: the body
  is checked while it streams (``encproxy.wsgi.auth.body``);
* header values are hashed as the bytes the client sent when those are UTF-8
  (every SDK that sends non-ASCII metadata sends UTF-8, and AWS hashes the
  bytes), else as the latin-1 text they spell, which is what botocore hashes
  for a value it sends as latin-1 (:func:`header_text`).

Outgoing requests (to an S3 backend) are signed by :func:`sign`, the mirror
image of :func:`verify`, from the same four steps.

Time is always passed in (``now``), which keeps this module deterministic
and lets the tests freeze the clock.  The caller supplies secrets through a
lookup callable so that credentials can be reloaded without touching this
module.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from encproxy import errors

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
DEFAULT_REGION = "us-east-1"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER,
                                STREAMING_UNSIGNED_TRAILER})

CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"

MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604800  # seconds: one week, the S3 limit for presigned URLs

AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

SecretLookup = Callable[[str], str | None]

_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z\Z", re.ASCII)
_SCOPE_DATE_RE = re.compile(r"\d{8}\Z", re.ASCII)
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}\Z", re.ASCII)
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z", re.ASCII)
# Header value canonicalisation collapses runs of spaces and tabs only: WSGI
# hands us header bytes decoded as latin-1, and str.split() would also split
# on \x85 and \xa0, which are continuation bytes of UTF-8 characters.
_SPACE_RUN_RE = re.compile(r"[ \t]+")

_PRESIGN_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
                   "X-Amz-SignedHeaders", "X-Amz-Expires")


# -- step 1: canonical request --------------------------------------------------------

def _as_bytes(raw: str | bytes) -> bytes:
    """Raw request-target text to bytes: ``bytes`` are taken as sent, ``str`` as UTF-8 text."""
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


def uri_encode(data: bytes) -> str:
    """Percent-encode everything but the unreserved characters ``A-Za-z0-9-_.~``."""
    return quote(data, safe="")


def canonical_uri(raw_path: str | bytes) -> str:
    """The S3 canonical URI: each ``/``-separated segment decoded once and re-encoded.

    Splitting before decoding keeps an encoded slash (``%2F``) inside a
    segment; decoding then re-encoding turns any valid spelling a client sent
    (``%7e`` or ``~``, lower- or upper-case hex) into the one the signer used.
    """
    path = _as_bytes(raw_path) or b"/"
    return "/".join(uri_encode(unquote_to_bytes(segment)) for segment in path.split(b"/"))


def parse_query(raw_query: str | bytes) -> list[tuple[bytes, bytes]]:
    """Split a raw query string into decoded ``(name, value)`` byte pairs, in order.

    ``+`` is kept as a literal plus (SigV4 signers encode a space as ``%20``);
    a parameter without ``=`` has an empty value; empty segments are skipped.
    """
    pairs: list[tuple[bytes, bytes]] = []
    for part in _as_bytes(raw_query).split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def canonical_query(pairs: Iterable[tuple[bytes, bytes]], exclude: Iterable[bytes] = ()) -> str:
    """Encoded ``name=value`` pairs sorted by encoded name, then encoded value."""
    skip = set(exclude)
    encoded = sorted((uri_encode(name), uri_encode(value))
                     for name, value in pairs if name not in skip)
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_header_value(value: str) -> str:
    """Trim the value and collapse each run of spaces (and tabs) into one space."""
    return _SPACE_RUN_RE.sub(" ", value.strip(" \t"))


def _wire(value: str) -> bytes:
    """The bytes of a header value: WSGI carries them as latin-1 text (PEP 3333); text
    that is not latin-1 did not come from the wire that way and is taken as UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def header_text(value: str) -> str:
    """A received header value as the text its signer hashed (as UTF-8).

    Bytes that are UTF-8 are that text: SDKs that send non-ASCII metadata (Go,
    Java, JavaScript, curl) send and sign UTF-8, and AWS hashes the bytes.  Bytes
    that are not UTF-8 are their latin-1 text: botocore signs a value as UTF-8 but
    sends it as latin-1 (http.client's encoding), so ``é`` arrives as ``0xE9``.
    """
    try:
        return _wire(value).decode("utf-8")
    except UnicodeDecodeError:
        return value


def sent_text(value: str) -> str:
    """A header value to be sent, as text whose UTF-8 (``surrogateescape``) is its bytes:
    the receiver (AWS, Ceph RGW) hashes the bytes it gets."""
    return _wire(value).decode("utf-8", "surrogateescape")


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str],
                      text: Callable[[str], str] = header_text) -> str:
    """``name:value\\n`` for each signed header, in the order the client listed them.

    ``headers`` must have lower-case names; repeated headers are expected to be
    joined with ``,`` already (as HTTP servers and WSGI do).  A signed header
    that is absent contributes an empty value, which cannot match a signature
    made over a real value.  ``text`` maps a value as WSGI carries it to the text
    that is hashed (:func:`header_text` for received requests, :func:`sent_text`
    for outgoing ones).
    """
    return "".join(f"{name}:{canonical_header_value(text(headers.get(name, '')))}\n"
                   for name in signed_headers)


def canonical_request(method: str, raw_path: str | bytes, query: str,
                      headers: Mapping[str, str], signed_headers: Sequence[str],
                      payload_hash: str, text: Callable[[str], str] = header_text) -> str:
    """Step 1.  ``query`` is already canonical (see :func:`canonical_query`)."""
    return "\n".join([
        method.upper(),
        canonical_uri(raw_path),
        query,
        canonical_headers(headers, signed_headers, text),
        ";".join(signed_headers),
        payload_hash,
    ])


# -- step 2: string to sign -----------------------------------------------------------

def _sha256_hex(text: str) -> str:
    # surrogateescape: an outgoing request's header bytes that are not UTF-8 (sent_text)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def string_to_sign(timestamp: str, scope: str, canonical_request_text: str) -> str:
    """Step 2: algorithm, request timestamp, credential scope, hash of the canonical request."""
    return "\n".join([ALGORITHM, timestamp, scope, _sha256_hex(canonical_request_text)])


def chunk_string_to_sign(timestamp: str, scope: str, previous_signature: str,
                         chunk_sha256_hex: str) -> str:
    """String to sign of one ``aws-chunked`` chunk (chained on the previous signature)."""
    return "\n".join([CHUNK_ALGORITHM, timestamp, scope, previous_signature, EMPTY_SHA256,
                      chunk_sha256_hex])


def trailer_string_to_sign(timestamp: str, scope: str, previous_signature: str,
                           trailer_sha256_hex: str) -> str:
    """String to sign of the trailing headers (chained on the final chunk's signature)."""
    return "\n".join([TRAILER_ALGORITHM, timestamp, scope, previous_signature,
                      trailer_sha256_hex])


# -- step 3: signing key --------------------------------------------------------------

def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """Step 3: ``HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")``.

    A pure function of its arguments, valid for a whole day, so it is cached:
    a rotated or revoked secret simply stops being looked up.
    """
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


# -- step 4: signature ----------------------------------------------------------------

def signature(key: bytes, string_to_sign_text: str) -> str:
    """Step 4: hex HMAC-SHA256 of the string to sign under the signing key."""
    return hmac.new(key, string_to_sign_text.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_equal(expected: str, provided: str) -> bool:
    """Constant-time comparison, so timing does not reveal how much of a guess was right."""
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("ascii", "replace"))


# -- parsing the client's claims ------------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """``AK/DATE/REGION/SERVICE/aws4_request`` from a header or a presigned URL."""

    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True)
class AuthParams:
    """What a client claims, from either the Authorization header or the query string."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    timestamp: str | None = None  # presigned only: X-Amz-Date
    expires: int | None = None    # presigned only: X-Amz-Expires


def _parse_amz_date(value: str) -> datetime | None:
    # The fixed-width digits are read by slicing: datetime() refuses what strptime would
    # (month 13, day 31 of a 30-day month, second 60) and costs a tenth of it, on every
    # request.
    if not _AMZ_DATE_RE.match(value):
        return None
    try:
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
                        int(value[11:13]), int(value[13:15]), tzinfo=UTC)
    except ValueError:
        return None


def _scope_date_valid(value: str) -> bool:
    if not _SCOPE_DATE_RE.match(value):
        return False
    try:
        datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return False
    return True


def parse_credential(value: str, fail: Callable[[str], errors.S3Error]) -> Credential:
    """``AK/YYYYMMDD/REGION/s3/aws4_request``, checked as S3 checks it; ``fail`` makes
    the error for a problem (its kind depends on where the credential came from)."""
    parts = value.split("/")
    if len(parts) != 5 or not parts[0] or not all(parts):
        raise fail('the Credential is mal-formed; expecting '
                   '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    access_key, date, region, service, terminator = parts
    if not _scope_date_valid(date):
        raise fail(f'incorrect date format "{date}". This date in the credential must be '
                   f'in the format "yyyyMMdd".')
    if terminator != TERMINATOR:
        raise fail(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
    if service != SERVICE:
        raise fail(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
    return Credential(access_key, date, region, service)


def _parse_signed_headers(value: str, fail: Callable[[str], errors.S3Error]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or not all(_HEADER_NAME_RE.match(name) for name in names):
        raise fail("the SignedHeaders component is malformed.")
    if len(set(names)) != len(names):
        raise fail("the SignedHeaders component lists a header twice.")
    return names


def _header_malformed(detail: str) -> errors.S3Error:
    return errors.AuthorizationHeaderMalformed(f"The authorization header is malformed; {detail}")


def _credential_param_error(detail: str) -> errors.S3Error:
    return errors.AuthorizationQueryParametersError(
        f"Error parsing the X-Amz-Credential parameter; {detail}")


def _query_param_error(detail: str) -> errors.S3Error:
    return errors.AuthorizationQueryParametersError(detail)


def parse_authorization_header(value: str) -> AuthParams:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    Components may be separated by ``,`` with or without spaces, in any
    order, each exactly once.  Other schemes are refused: SigV2 (``AWS
    AK:sig``) and SigV4a with the message S3 sends for an unsupported
    mechanism, anything else as an unsupported authorization type.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        raise unsupported_authorization(scheme)
    components: dict[str, str] = {}
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, component = item.partition("=")
        name = name.strip()
        if not eq or name not in ("Credential", "SignedHeaders", "Signature") \
                or name in components:
            raise _header_malformed(f'the authorization component "{item}" is malformed.')
        components[name] = component.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if name not in components:
            raise _header_malformed(f"missing {name}.")
    return AuthParams(
        credential=parse_credential(components["Credential"], _header_malformed),
        signed_headers=_parse_signed_headers(components["SignedHeaders"], _header_malformed),
        signature=components["Signature"],
        presigned=False,
    )


def unsupported_authorization(scheme: str) -> errors.S3Error:
    """The error S3 answers for a scheme other than SigV4 with HMAC."""
    if scheme in ("AWS", "AWS4-ECDSA-P256-SHA256"):
        return errors.InvalidRequest(
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.")
    return errors.InvalidArgument("Unsupported Authorization Type",
                                  ArgumentName="Authorization")


def presign_params(pairs: Sequence[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The ``X-Amz-*`` authentication parameters of a query, or None if it is not presigned.

    A repeated authentication parameter is refused: which copy counts would
    otherwise depend on the parser.
    """
    found: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name.decode("utf-8", "replace")
        if name in _PRESIGN_PARAMS or name == "X-Amz-Security-Token":
            if name in found:
                raise _query_param_error(f"The {name} parameter is specified more than once.")
            found[name] = raw_value.decode("utf-8", "replace")
    return found if "X-Amz-Algorithm" in found else None


def parse_presigned_query(params: Mapping[str, str]) -> AuthParams:
    """Validate the presigned-URL parameters the way S3 does, with its messages.

    ``X-Amz-Security-Token`` is ignored: encproxy has no temporary
    credentials, and the signature alone proves possession of the secret.
    """
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise _query_param_error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    if any(name not in params for name in _PRESIGN_PARAMS):
        raise _query_param_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters.")
    timestamp = params["X-Amz-Date"]
    if _parse_amz_date(timestamp) is None:
        raise _query_param_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = params["X-Amz-Expires"]
    if not re.fullmatch(r"-?\d{1,12}", expires_text, re.ASCII):
        raise _query_param_error("X-Amz-Expires should be a number")
    expires = int(expires_text)
    # Out of range is refused with 403, as AWS does (ceph/s3-tests checks the status).
    if expires < 0:
        raise errors.ExpiresOutOfRange("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES:
        raise errors.ExpiresOutOfRange(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            "X-Amz-Expires must be less than 604800 seconds")
    credential = parse_credential(params["X-Amz-Credential"], _credential_param_error)
    if credential.date != timestamp[:8]:
        raise _query_param_error(
            f'Invalid credential date "{credential.date}". This date is not the same as '
            f'X-Amz-Date: "{timestamp[:8]}".')
    return AuthParams(
        credential=credential,
        signed_headers=_parse_signed_headers(params["X-Amz-SignedHeaders"], _query_param_error),
        signature=params["X-Amz-Signature"],
        presigned=True,
        timestamp=timestamp,
        expires=expires,
    )


def classify_payload_hash(value: str) -> str:
    """Validate ``x-amz-content-sha256``: a known literal, or 64 hex digits (lower-cased)."""
    if value in (UNSIGNED_PAYLOAD, *STREAMING_PAYLOADS):
        return value
    if _SHA256_RE.match(value):
        return value.lower()
    raise errors.InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        ArgumentName="x-amz-content-sha256", ArgumentValue=value[:128])


# -- the verified result --------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose SigV4 signature checked out.

    ``signing_key``, ``timestamp``, ``scope`` and ``seed_signature`` are what
    the ``aws-chunked`` decoder chains chunk signatures on.  ``payload_hash``
    is the signed claim about the body (a hex SHA-256 or one of the
    ``UNSIGNED-PAYLOAD`` / ``STREAMING-*`` literals); the body itself has not
    been read yet.
    """

    access_key: str
    signing_key: bytes = field(repr=False)  # keep it out of logs and tracebacks
    scope: str
    seed_signature: str
    timestamp: str
    request_time: datetime
    payload_hash: str
    presigned: bool
    region: str
    signed_headers: tuple[str, ...]


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_timestamp(headers: Mapping[str, str]) -> tuple[str, datetime]:
    """The request time from ``x-amz-date``, or else ``Date`` (as botocore signs it)."""
    moment: datetime | None = None
    if "x-amz-date" in headers:
        stamp = headers["x-amz-date"].strip()
        moment = _parse_amz_date(stamp)
        if moment is not None:
            # Already in UTC and AMZ_DATE_FORMAT: what formatting the moment would give.
            return stamp, moment
    elif "date" in headers:
        try:
            moment = parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError, IndexError):
            moment = None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    if moment is None:
        raise errors.AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
    moment = moment.astimezone(UTC)
    return moment.strftime(AMZ_DATE_FORMAT), moment


def _check_region(credential: Credential, region: str | None, presigned: bool) -> None:
    if region is None or credential.region == region:
        return
    detail = f"the region '{credential.region}' is wrong; expecting '{region}'"
    err = (_credential_param_error(detail) if presigned else _header_malformed(detail))
    err.fields["Region"] = region
    raise err


def _check_time(params: AuthParams, request_time: datetime, now: datetime) -> None:
    if params.presigned:
        assert params.expires is not None
        if request_time - now > MAX_SKEW:
            raise errors.AccessDenied("Request is not yet valid", **{
                "X-Amz-Date": params.timestamp or "", "ServerTime": _fmt_time(now)})
        expiry = request_time + timedelta(seconds=params.expires)
        if now > expiry:
            raise errors.AccessDenied("Request has expired", **{
                "X-Amz-Expires": str(params.expires), "Expires": _fmt_time(expiry),
                "ServerTime": _fmt_time(now)})
    elif abs(now - request_time) > MAX_SKEW:
        raise errors.RequestTimeTooSkewed(
            RequestTime=_fmt_time(request_time), ServerTime=_fmt_time(now),
            MaxAllowedSkewMilliseconds=str(int(MAX_SKEW.total_seconds() * 1000)))


def _check_headers_signed(headers: Mapping[str, str], signed: Sequence[str]) -> None:
    """S3 refuses a request carrying ``x-amz-*`` headers (or Host) that were not signed.

    Without this, anyone on the path could add, say,
    ``x-amz-server-side-encryption`` to a signed request.
    """
    signed_set = set(signed)
    unsigned = sorted(name for name in headers
                      if (name.startswith("x-amz-") or name == "host")
                      and name not in signed_set)
    if unsigned:
        raise errors.AccessDenied("There were headers present in the request which were not signed",
                                  HeadersNotSigned=", ".join(unsigned))


def authenticate(raw_query: str | bytes, headers: Mapping[str, str]
                 ) -> tuple[AuthParams, list[tuple[bytes, bytes]]]:
    """Find and parse the client's signature claims, without checking them.

    ``headers`` has lower-case names.  Returns the claims and the decoded
    query pairs.  Raises AccessDenied for an anonymous request.
    """
    pairs = parse_query(raw_query)
    presigned = presign_params(pairs)
    authorization = headers.get("authorization")
    if authorization is not None and presigned is not None:
        raise errors.InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            ArgumentName="Authorization")
    if presigned is not None:
        return parse_presigned_query(presigned), pairs
    if authorization is not None:
        return parse_authorization_header(authorization), pairs
    names = {name for name, _ in pairs}
    if b"AWSAccessKeyId" in names or b"Signature" in names:
        raise unsupported_authorization("AWS")
    raise errors.AccessDenied()


def verify(method: str, raw_path: str | bytes, raw_query: str | bytes,
           headers: Mapping[str, str], secret_lookup: SecretLookup, now: datetime, *,
           region: str | None = DEFAULT_REGION, payload_hash: str | None = None
           ) -> VerifiedRequest:
    """Verify a SigV4-signed S3 request (header or presigned) and describe it.

    ``raw_path`` and ``raw_query`` are the request target as sent
    (percent-encoded; ``bytes`` as on the wire or ``str`` as UTF-8 text).
    ``headers`` maps header names (any case) to values as received, repeated
    headers joined with ``,``.  ``payload_hash`` overrides the claim otherwise
    read from ``x-amz-content-sha256`` (required with the header scheme; a
    presigned URL defaults to ``UNSIGNED-PAYLOAD``).  ``region=None`` accepts
    whichever region the client signed for.

    The checks run cheapest first: shape, scope, time, access key, then the
    signature, each failing with the error S3 gives.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    params, pairs = authenticate(raw_query, lower)
    credential = params.credential
    _check_region(credential, region, params.presigned)

    if params.presigned:
        assert params.timestamp is not None
        timestamp = params.timestamp
        request_time = _parse_amz_date(timestamp)
        assert request_time is not None
        claimed = payload_hash or lower.get("x-amz-content-sha256", UNSIGNED_PAYLOAD)
    else:
        timestamp, request_time = _header_timestamp(lower)
        if credential.date != timestamp[:8]:
            raise _header_malformed(
                f'Invalid credential date "{credential.date}". This date is not the same as '
                f'X-Amz-Date: "{timestamp[:8]}".')
        claimed = payload_hash or lower.get("x-amz-content-sha256", "")
        if not claimed:
            raise errors.InvalidRequest(
                "Missing required header for this request: x-amz-content-sha256")
    claimed = classify_payload_hash(claimed.strip())

    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    _check_time(params, request_time, now)
    _check_headers_signed(lower, params.signed_headers)

    secret = secret_lookup(credential.access_key)
    if secret is None:
        raise errors.InvalidAccessKeyId(AWSAccessKeyId=credential.access_key)

    exclude = (b"X-Amz-Signature",) if params.presigned else ()
    creq = canonical_request(method, raw_path, canonical_query(pairs, exclude), lower,
                             params.signed_headers, claimed)
    sts = string_to_sign(timestamp, credential.scope, creq)
    key = signing_key(secret, credential.date, credential.region, credential.service)
    expected = signature(key, sts)
    if not (_SIGNATURE_RE.match(params.signature)
            and signatures_equal(expected, params.signature)):
        raise errors.SignatureDoesNotMatch(
            AWSAccessKeyId=credential.access_key, StringToSign=sts, CanonicalRequest=creq)
    return VerifiedRequest(
        access_key=credential.access_key, signing_key=key, scope=credential.scope,
        seed_signature=expected, timestamp=timestamp, request_time=request_time,
        payload_hash=claimed, presigned=params.presigned, region=credential.region,
        signed_headers=params.signed_headers)


# -- signing outgoing requests --------------------------------------------------------

@dataclass(frozen=True)
class SigningIdentity:
    """Whom an outgoing request is signed as: the credentials and scope of one backend."""

    access_key: str
    secret: str = field(repr=False)  # keep it out of logs and tracebacks
    region: str = DEFAULT_REGION
    service: str = SERVICE


def sign(method: str, raw_path: str | bytes, raw_query: str | bytes,
         headers: Mapping[str, str], identity: SigningIdentity, now: datetime,
         payload_hash: str = UNSIGNED_PAYLOAD) -> dict[str, str]:
    """Sign an outgoing request with the header scheme; return the headers to add.

    The mirror image of :func:`verify`, built from the same steps.  Every
    header in ``headers`` is signed (it must include ``host``); the result
    holds ``x-amz-date``, ``x-amz-content-sha256`` and ``authorization``,
    which the caller adds to what it sends.  ``raw_path`` and ``raw_query``
    must be exactly what goes on the wire (S3 canonical encoding keeps the
    signature and the wire in step), and ``payload_hash`` is the hex SHA-256
    of the body or ``UNSIGNED-PAYLOAD``.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    timestamp = now.astimezone(UTC).strftime(AMZ_DATE_FORMAT)
    added = {"x-amz-date": timestamp, "x-amz-content-sha256": payload_hash}
    lower = {name.lower(): value for name, value in headers.items()}
    lower.update(added)
    if "host" not in lower:
        raise ValueError("an outgoing request must sign its Host header")
    signed_headers = tuple(sorted(lower))
    credential = Credential(identity.access_key, timestamp[:8], identity.region,
                            identity.service)
    creq = canonical_request(method, raw_path, canonical_query(parse_query(raw_query)), lower,
                             signed_headers, payload_hash, sent_text)
    sts = string_to_sign(timestamp, credential.scope, creq)
    key = signing_key(identity.secret, credential.date, credential.region, credential.service)
    added["authorization"] = (
        f"{ALGORITHM} Credential={identity.access_key}/{credential.scope}, "
        f"SignedHeaders={';'.join(signed_headers)}, Signature={signature(key, sts)}")
    return added
