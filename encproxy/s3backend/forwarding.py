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
  (``encproxy.body_checksums``).  The exception is a request the encryption
  layer passed through as the client sent it (a plain object: the backend gets
  the client's own bytes): :func:`plain_checksum_headers` forwards its
  ``x-amz-checksum-*`` settings and digest.  The encryption layer removes them
  from every request that carries ciphertext (``CLIENT_ONLY_HEADERS``), so their
  presence is what marks a plain request; a digest of plaintext never reaches
  the backend with an encrypted body.  A plain body's checksum sent in its
  client's trailer goes, where the backend takes it, in a trailer of encproxy's
  own framing (:class:`TrailerFraming`), never the client's framing.  Small
  bodies encproxy buffers get a ``Content-MD5`` computed from the exact bytes
  sent.  Requests for the
  backend's own server-side encryption are refused: encryption is encproxy's
  job.
* **Response headers.**  Only :data:`RELAYED_HEADERS` (and ``x-amz-meta-*``)
  come back: never hop-by-hop headers, the backend's request ids, its
  server-side-encryption or checksum claims.  The operations that answer a
  checksum (reads, writes of a body, Complete) add the backend's
  (:func:`checksum_answers`): it describes the bytes the backend holds, which for
  a plain object are the client's; for an encrypted one, the encryption layer
  drops it (``encryption.headers.client_view``) or answers its own.
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

from encproxy import checksums, errors
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


#: What each operation forwards of the client's checksum headers, when it carries them
#: (the digest of a streamed body; an upload's checksum settings; the read's mode).
_CHECKSUM_SETTINGS = {
    "CreateMultipartUpload": ("x-amz-checksum-algorithm", "x-amz-checksum-type"),
    # A plain copy's checksum computed again, of that algorithm (an encrypted copy
    # is the encryption layer's own PutObject of ciphertext, which carries none).
    "CopyObject": ("x-amz-checksum-algorithm",),
    "GetObject": ("x-amz-checksum-mode",),
    "HeadObject": ("x-amz-checksum-mode",),
}
_CHECKSUM_DIGESTS = frozenset({"PutObject", "UploadPart"})


def plain_checksum_headers(operation: str | None,
                           headers: Mapping[str, str]) -> dict[str, str]:
    """The client's checksum headers a request passed through unencrypted forwards.

    Only headers the request itself carries: the encryption layer strips every
    ``x-amz-checksum-*`` header from requests that carry ciphertext, so none is
    found on those.  The digest of PutObject and UploadPart has been validated by the
    authentication layer, which verifies it against the body as the body streams (the
    whole-object checksum of CompleteMultipartUpload is not sent: the S3 backend app
    refuses it, since not every backend checks it).  A checksum sent in an
    ``aws-chunked`` trailer is known only at the body's end: it is never a header here,
    but the end of a re-framed body (:func:`trailing_algorithm`), or not forwarded.
    """
    out: dict[str, str] = {}
    for name in _CHECKSUM_SETTINGS.get(operation or "", ()):
        if name in headers:
            out[name] = headers[name]
    if operation in _CHECKSUM_DIGESTS:
        claim = checksums.parse_checksum_headers(headers)
        if claim is not None:
            out[claim.header] = claim.value
            # What SDKs send with it (moto keeps a checksum only with this header).
            out[checksums.SDK_ALGORITHM_HEADER] = claim.algorithm.upper()
    return out


# -- a plain body's trailing checksum --------------------------------------------------

def trailing_algorithm(operation: str | None, headers: Mapping[str, str]) -> str | None:
    """The algorithm of the checksum a plain PutObject or UploadPart sent in its
    ``aws-chunked`` trailer (``x-amz-trailer``), None when it sent none there.

    Like :func:`plain_checksum_headers`, only a request the encryption layer passed
    through as sent still carries ``x-amz-trailer`` (``CLIENT_ONLY_HEADERS``).  The value
    is known once the whole body has been read and verified, after the body has begun
    to stream: it can only reach the backend in a trailer of its own
    (:class:`TrailerFraming`, with ``[backend] trailing_checksums``)."""
    if operation not in _CHECKSUM_DIGESTS or "x-amz-trailer" not in headers \
            or checksums.checksum_header_names(headers):
        return None
    return checksums.parse_trailer_declaration(headers["x-amz-trailer"])


@dataclass(frozen=True)
class TrailerFraming:
    """An ``aws-chunked`` body (``STREAMING-UNSIGNED-PAYLOAD-TRAILER``) of ``length``
    decoded bytes in chunks of ``piece`` bytes (the last one shorter), ended by the
    zero-length chunk and the one trailer ``x-amz-checksum-<algorithm>:<base64>``.

    Every size is known before the first byte (the base64 of a digest has a fixed
    length per algorithm), so the body goes with an exact ``Content-Length``, never
    ``Transfer-Encoding: chunked``."""

    algorithm: str
    length: int
    piece: int

    @property
    def trailer_name(self) -> str:
        return checksums.CHECKSUM_HEADER_PREFIX + self.algorithm

    def headers(self) -> dict[str, str]:
        """The request headers that announce the framing (besides the payload hash,
        ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``, which the signer adds)."""
        return {"content-encoding": "aws-chunked",
                "x-amz-decoded-content-length": str(self.length),
                "x-amz-trailer": self.trailer_name,
                checksums.SDK_ALGORITHM_HEADER: self.algorithm.upper()}

    def chunk_sizes(self) -> Iterable[int]:
        full, last = divmod(self.length, self.piece)
        yield from (self.piece for _ in range(full))
        if last:
            yield last

    @staticmethod
    def chunk_header(size: int) -> bytes:
        return f"{size:x}\r\n".encode("ascii")

    def trailer(self, value: str) -> bytes:
        """The end of the body: the last chunk and the trailer.  ValueError for a value
        that is not a checksum of the algorithm (it would not fill the counted bytes)."""
        size = checksums.DIGEST_SIZES[self.algorithm]
        if len(base64.b64decode(value.encode("ascii"), validate=True)) != size:
            raise ValueError("not a checksum of " + self.algorithm)
        return f"0\r\n{self.trailer_name}:{value}\r\n\r\n".encode("ascii")

    def encoded_length(self) -> int:
        """The ``Content-Length`` of the framed body."""
        value_length = 4 * -(-checksums.DIGEST_SIZES[self.algorithm] // 3)
        chunks = sum(len(self.chunk_header(size)) + size + 2 for size in self.chunk_sizes())
        return chunks + len(f"0\r\n{self.trailer_name}:\r\n\r\n") + value_length


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


#: The backend's checksum answers: ``x-amz-checksum-<algorithm>`` and
#: ``x-amz-checksum-type`` (of the bytes it holds), and an upload's algorithm.
CHECKSUM_RESPONSE_PREFIX = "x-amz-checksum-"


def relay_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's response headers that the client sees."""
    out = []
    for name, value in headers:
        lname = name.lower()
        if lname in RELAYED_HEADERS or lname.startswith(USER_METADATA_PREFIX):
            out.append((_CANONICAL_CASE.get(lname, name), value))
    return out


def checksum_answers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's ``x-amz-checksum-*`` answers: the checksum of the bytes it holds,
    its type, an upload's algorithm.

    A checksum answered without its type (moto's single-part objects) gets the one S3
    gives it: COMPOSITE for a value with a part count (``…-N``), else FULL_OBJECT.
    """
    out = [(name.lower(), value) for name, value in headers
           if name.lower().startswith(CHECKSUM_RESPONSE_PREFIX)]
    names = dict(out)
    digests = checksums.checksum_header_names(names)
    if len(digests) == 1 and "x-amz-checksum-type" not in names:
        out.append(("x-amz-checksum-type",
                    "COMPOSITE" if "-" in names[digests[0]] else "FULL_OBJECT"))
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
