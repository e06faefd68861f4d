"""What encproxy forwards to an S3 backend, and what it relays back (pure).

Everything here is decided by allowlist, never by denylist:

* **Operations.**  An operation is forwarded when encproxy implements it
  (the file store's set, :data:`IMPLEMENTED`) or when it is a bucket or object
  configuration subresource that never touches object bodies
  (:data:`PASS_THROUGH`: tagging, ACLs, policy, CORS, versioning, lifecycle,
  object lock, ...).  Everything else is refused with NotImplemented:
  operations that read or write bodies which encproxy does not implement
  (SelectObjectContent, RestoreObject, torrents, POST Object,
  GetObjectAttributes), ``?encryption`` (answered by encproxy itself, never by
  the backend), and anything unknown.  Which query parameters each operation
  takes is the one table of ``encproxy.s3.operations`` (``PARAMETERS``), which
  every backend uses: a request with any other parameter is refused before it
  gets here.
* **Request headers.**  Only :data:`FORWARDED_HEADERS` (and ``x-amz-meta-*``)
  reach the backend.  The client's signature and framing
  (``Authorization``, ``x-amz-date``, ``x-amz-content-sha256``,
  ``aws-chunked``, ``x-amz-decoded-content-length``, ``x-amz-trailer``) and the
  client's digests of the body (``Content-MD5``, ``x-amz-checksum-*``,
  ``x-amz-sdk-checksum-algorithm``) are never forwarded, nor are the same
  headers hoisted into a presigned URL's query: the authentication layer has
  verified them, and a body encproxy sends may not be the body they
  describe (the encryption layer replaces it).  This is the one place that
  decision is made; the client's checksums are echoed from what was verified
  (``encproxy.body_checksums``).  Small bodies encproxy buffers get a
  ``Content-MD5`` computed from the exact bytes sent.  Requests for the
  backend's own server-side encryption are refused: encryption is encproxy's
  job.
* **Response headers.**  Only :data:`RELAYED_HEADERS` (and ``x-amz-meta-*``)
  come back: never hop-by-hop headers, the backend's request ids, its
  server-side-encryption or checksum claims.
* **Paths.**  The backend path is built from the decoded bucket and key with
  S3's canonical encoding (:func:`quote_key`), whatever equivalent spelling
  the client used; the SigV4 canonical URI of that path is the path itself.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from encproxy import errors
from encproxy.s3.copy_source import CopySource
from encproxy.s3.operations import (
    BUCKET_CONFIG_SUBRESOURCES,
    OBJECT_BODY_SUBRESOURCES,
    OBJECT_CONFIG_SUBRESOURCES,
    POST_REDIRECT,
    SIGV2_QUERY_AUTH,
    SIGV4_QUERY_AUTH,
)
from encproxy.s3.operations import check_parameters as check_parameters
from encproxy.sigv4 import parse_query, uri_encode

# -- operations ----------------------------------------------------------------------

#: What encproxy implements on every backend (the file store's operations).
IMPLEMENTED = frozenset({
    "ListBuckets", "CreateBucket", "HeadBucket", "DeleteBucket", "GetBucketLocation",
    "ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads",
    "PutObject", "GetObject", "HeadObject", "DeleteObject", "DeleteObjects", "CopyObject",
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload",
    "AbortMultipartUpload", "ListParts",
})
#: Subresources answered by encproxy itself, never by the backend.
NATIVE_SUBRESOURCES = frozenset({"encryption"})
#: Configuration subresources that never touch object bodies: forwarded verbatim.
PASS_THROUGH = frozenset(
    {verb + name for sub, name in BUCKET_CONFIG_SUBRESOURCES.items()
     if sub not in NATIVE_SUBRESOURCES for verb in ("Get", "Put", "Delete")}
    | {verb + name for name in OBJECT_CONFIG_SUBRESOURCES.values()
       for verb in ("Get", "Put", "Delete")})
#: Operations whose request body streams to the backend; other bodies are small XML.
STREAMED_BODIES = frozenset({"PutObject", "UploadPart"})
#: Operations whose small request body is forwarded as the client sent it.
VERBATIM_BODIES = frozenset({"DeleteObjects"} | {op for op in PASS_THROUGH
                                                  if op.startswith("Put")})

FORWARD = "forward"
PASS = "pass-through"
REFUSE = "refuse"

# Query parameters: the one table of what each operation takes is
# ``encproxy.s3.operations.PARAMETERS``; a request with any other parameter never
# gets this far (it classifies as None and is refused), so that a subresource encproxy
# does not know (``?renameObject``, ``?session``, ``?mdsearch``...) never reaches the
# backend disguised as a known operation.  ``check_parameters`` is that same check.


def disposition(operation: str | None) -> str:
    """FORWARD (implemented), PASS (configuration pass-through) or REFUSE."""
    if operation in IMPLEMENTED:
        return FORWARD
    if operation in PASS_THROUGH:
        return PASS
    return REFUSE


def refusal(operation: str | None) -> errors.S3Error:
    """The NotImplemented error for an operation that is not forwarded."""
    if operation is None:
        what = "this request"
    elif operation in OBJECT_BODY_SUBRESOURCES.values() or operation in (
            "PostObject", "GetObjectAttributes"):
        what = f"{operation}, which would read or write object bodies,"
    else:
        what = operation
    return errors.NotImplementedError_(f"encproxy does not implement {what} on this backend.")


# -- request headers -----------------------------------------------------------------

#: Request headers forwarded to the backend (besides ``x-amz-meta-*``).
FORWARDED_HEADERS = frozenset({
    "cache-control", "content-disposition", "content-encoding", "content-language",
    "content-type", "expires",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "range",
    "x-amz-acl", "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-grant-read-acp",
    "x-amz-grant-write", "x-amz-grant-write-acp",
    "x-amz-storage-class", "x-amz-tagging", "x-amz-tagging-directive",
    "x-amz-website-redirect-location", "x-amz-metadata-directive",
    "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since",
    "x-amz-copy-source-range",
    "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold", "x-amz-bypass-governance-retention",
    "x-amz-bucket-object-lock-enabled", "x-amz-object-ownership",
    "x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner",
    "x-amz-request-payer", "x-amz-mfa", "x-amz-confirm-remove-self-bucket-access",
    "x-amz-skip-destination-validation",
})
USER_METADATA_PREFIX = "x-amz-meta-"
#: Asking the backend to encrypt: refused, encryption is encproxy's job.
REFUSED_HEADER_PREFIXES = ("x-amz-server-side-encryption",
                           "x-amz-copy-source-server-side-encryption")
#: Hop-by-hop headers (RFC 9110 7.6.1 and the usual extras): never forwarded either way.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})


def forward_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The client's request headers (lower-case names) that go to the backend.

    ``x-amz-copy-source`` is not among them: it is re-encoded separately
    (:func:`encode_copy_source`).  Raises NotImplemented for server-side
    encryption headers.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(REFUSED_HEADER_PREFIXES):
            raise errors.NotImplementedError_(
                f"The {name} header asks the backend to encrypt; encproxy does not forward it.",
                Header=name)
        if name in FORWARDED_HEADERS or name.startswith(USER_METADATA_PREFIX):
            out[name] = value
    coding = out.get("content-encoding")
    if coding is not None:
        kept = [c.strip() for c in coding.split(",")
                if c.strip() and c.strip().lower() != "aws-chunked"]
        if kept:
            out["content-encoding"] = ", ".join(kept)
        else:
            del out["content-encoding"]
    return out


# -- query strings -------------------------------------------------------------------

#: Query parameters of a presigned URL (SigV4 or SigV2): the client's signature,
#: never forwarded (encproxy signs its own requests).
PRESIGN_PARAMETERS = frozenset(name.encode("ascii")
                               for name in SIGV4_QUERY_AUTH | SIGV2_QUERY_AUTH)
#: What S3 appends to a POST Object's redirect target: meant for the browser's page,
#: no operation's parameter, so the backend never sees them.
_REDIRECT_PARAMETERS = frozenset(name.encode("ascii") for name in POST_REDIRECT)
#: Headers a presigner hoists into the query (the Node SDK v3 signs its checksum
#: behaviour there: ``x-amz-checksum-mode`` on reads, ``x-amz-sdk-checksum-algorithm``
#: and ``x-amz-checksum-crc32`` on writes) stay the client's, as the headers do
#: (:func:`forward_headers`): the body the backend gets is not the one a digest
#: describes, and a digest of plaintext must never reach the backend.  Matched
#: without regard to case, so that no spelling of one slips through.
_HOISTED_CHECKSUM_PREFIX = b"x-amz-checksum-"
_HOISTED_CHECKSUM_ALGORITHM = b"x-amz-sdk-checksum-algorithm"


def _client_only(name: bytes) -> bool:
    """True for a query parameter that is never forwarded to the backend."""
    if name in PRESIGN_PARAMETERS or name in _REDIRECT_PARAMETERS:
        return True
    lname = name.lower()
    return lname.startswith(_HOISTED_CHECKSUM_PREFIX) or lname == _HOISTED_CHECKSUM_ALGORITHM


def forward_query(raw_query: str | bytes, replace: Mapping[str, str] | None = None,
                  omit: Iterable[str] = ()) -> str:
    """The query to send: the client's parameters in their order, canonically encoded.

    Its authentication and hoisted checksum headers are left out.  A parameter sent
    without a value (``?uploads``) stays without one.
    ``replace`` gives parameters new values (``continuation-token``); ``omit`` names
    parameters left out.
    """
    swap = {name.encode("utf-8"): value.encode("utf-8") for name, value in (replace or {}).items()}
    dropped = {name.encode("utf-8") for name in omit}
    parts: list[str] = []
    for name, value in parse_query(raw_query):
        if _client_only(name) or name in dropped:
            continue
        value = swap.get(name, value)
        parts.append(uri_encode(name) + ("=" + uri_encode(value) if value else ""))
    return "&".join(parts)


# -- continuation tokens -------------------------------------------------------------
# ListObjectsV2 tokens are opaque to clients; encproxy wraps the backend's, so that a
# token it did not issue is refused (Ceph RGW and moto accept anything as a token).
_TOKEN_TAG = b"\x01"


def wrap_token(backend_token: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_TAG + backend_token.encode("utf-8")).decode("ascii")


def unwrap_token(token: str) -> str:
    """The backend's token inside a client's; InvalidArgument for anything else."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(_TOKEN_TAG):
            raise ValueError(token)
        return raw[len(_TOKEN_TAG):].decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


# -- paths and hosts -----------------------------------------------------------------

def quote_key(key: str) -> str:
    """S3's canonical encoding of a key: all but ``A-Za-z0-9-_.~`` and ``/`` escaped."""
    return quote(key.encode("utf-8"), safe="/")


@dataclass(frozen=True)
class Endpoint:
    """Where the backend is, and how buckets are addressed on it.

    Connections always go to ``scheme://netloc``.  With virtual addressing the
    bucket is named in the Host header (``bucket.netloc``), so that one
    connection pool serves every bucket and no wildcard DNS is needed.
    """

    scheme: str
    netloc: str
    virtual: bool = False

    @classmethod
    def from_url(cls, url: str, addressing: str = "path") -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or \
                parts.path.strip("/") or parts.query:
            raise ValueError(f"{url!r} is not http(s)://HOST[:PORT]")
        netloc = parts.netloc.lower()
        default_port = ":443" if parts.scheme == "https" else ":80"
        if netloc.endswith(default_port):
            netloc = netloc[: -len(default_port)]  # the Host header clients would send
        return cls(parts.scheme, netloc, addressing == "virtual")

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def target(self, bucket: str | None, key: str | None) -> tuple[str, str]:
        """The path (canonically encoded) and the Host header for a bucket and key."""
        if bucket is None:
            return "/", self.netloc
        tail = "/" + quote_key(key) if key is not None else "/"
        if self.virtual:
            return tail, f"{bucket}.{self.netloc}"
        return "/" + bucket + (tail if key is not None else ""), self.netloc


# -- copy sources --------------------------------------------------------------------

def encode_copy_source(source: CopySource) -> str:
    """The ``x-amz-copy-source`` header value for the backend, canonically encoded."""
    value = source.bucket + "/" + quote_key(source.key)
    if source.version_id is not None:
        value += "?versionId=" + uri_encode(source.version_id.encode("utf-8"))
    return value


# -- responses -----------------------------------------------------------------------

#: Response headers relayed to the client (besides ``x-amz-meta-*``).
RELAYED_HEADERS = frozenset({
    "accept-ranges", "cache-control", "content-disposition", "content-encoding",
    "content-language", "content-length", "content-range", "content-type", "etag", "expires",
    "last-modified",
    "x-amz-version-id", "x-amz-delete-marker", "x-amz-storage-class", "x-amz-tagging-count",
    "x-amz-website-redirect-location", "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold",
    "x-amz-mp-parts-count", "x-amz-restore", "x-amz-replication-status",
    "x-amz-copy-source-version-id", "x-amz-expiration", "x-amz-missing-meta",
    "x-amz-request-charged", "x-amz-abort-date", "x-amz-abort-rule-id",
    "x-amz-bucket-region", "x-amz-transition-default-minimum-object-size",
})
#: The S3 names of relayed headers, in the case S3 sends them.
_CANONICAL_CASE = {"etag": "ETag", "x-amz-mp-parts-count": "x-amz-mp-parts-count"}


def relay_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's response headers that the client sees."""
    out = []
    for name, value in headers:
        lname = name.lower()
        if lname in RELAYED_HEADERS or lname.startswith(USER_METADATA_PREFIX):
            out.append((_CANONICAL_CASE.get(lname, name), value))
    return out


_ETAG_RE = re.compile(r'"?([0-9a-fA-F]{32})(?:-([0-9]+))?"?\Z')


def parts_in_etag(etag: str) -> int | None:
    """The part count of a multipart ETag (``"…-N"``), 0 for a single-part MD5 ETag.

    None when the ETag has neither form (an SSE-C or otherwise opaque ETag).
    """
    match = _ETAG_RE.match(etag.strip())
    if match is None:
        return None
    return int(match.group(2)) if match.group(2) else 0
