"""Transparent encryption of object bodies: ``EncryptionMiddleware``.

It wraps any WSGI app that speaks plain S3 (the file store, the S3 backend).
Writes that are to be encrypted reach the app below as ciphertext with the
object's envelope in ``x-amz-meta-encproxy`` (docs/FORMAT.md); reads are
decrypted as they stream, and sizes and ETags are translated wherever S3
reports them, so that clients see plain S3.

Single-part objects are written and read here; multipart uploads and reads of
multipart objects are in ``encrypted_multipart`` and ``multipart_reads``,
copies in ``encrypted_copy``, GetObjectAttributes in ``object_attributes``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus

from werkzeug.wrappers import Response

from encproxy import digests, errors, metrics
from encproxy.crypto.customer_keys import KEY_ID as SSE_C_KEY_ID
from encproxy.crypto.customer_keys import CustomerKeyWrapper
from encproxy.crypto.keys import KeyWrapper, new_object, open_object
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.crypto.stream import copied
from encproxy.format.constants import METADATA_KEY, Kind, Protection
from encproxy.format.envelope import Envelope, metadata_size
from encproxy.format.errors import FormatError
from encproxy.format.layout import check_single_size, plan_range
from encproxy.keys.provider import KeyProvider
from encproxy.readahead import read_ahead
from encproxy.s3 import metadata as s3meta
from encproxy.s3 import preconditions, sse, xml
from encproxy.s3.dates import parse_http_date
from encproxy.s3.ranges import parse_range
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import multipart_reads
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.encryption.copies import Copies
from encproxy.wsgi.encryption.uploads import MultipartUploads
from encproxy.wsgi.encryption.attributes import get_object_attributes
from encproxy.wsgi.encryption.facts import FactsCache, ObjectFacts
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary

log = logging.getLogger("encproxy.encryption")

PIECE = 1 << 20
ENVELOPE_HEADER = "x-amz-meta-" + METADATA_KEY
CONTEXT_HEADER = "x-amz-meta-" + METADATA_KEY + "-context"
PROTECTION_MODE = {Protection.SSE_S3: sse.MODE_SSE_S3, Protection.SSE_KMS: sse.MODE_SSE_KMS,
                   Protection.SSE_C: sse.MODE_SSE_C}
MODE_PROTECTION = {mode: protection for protection, mode in PROTECTION_MODE.items()}
# Request headers that describe the client's plaintext body: meaningless (and
# harmful: backends check them) once encproxy sends ciphertext instead.
PLAINTEXT_BODY_HEADERS = ("content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                          "x-amz-decoded-content-length")
CONDITIONAL_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
# Headers of a backend response that describe the stored ciphertext, not what the client sees.
CIPHERTEXT_RESPONSE_HEADERS = {"content-length", "etag", "content-range", "accept-ranges",
                               "x-amz-mp-parts-count", "transfer-encoding", "content-md5"}
LISTING_LOOKUP_THREADS = 8
# Bodies from this size up are decrypted one batch ahead in a helper thread; below it,
# starting the thread costs more than it saves.
READ_AHEAD_FROM = 2 * 1024 * 1024
# Stored bodies up to this size are read whole by a GET that has not yet learnt the
# object's ETag: the sealed MD5 comes with them, instead of by a second backend request.
WHOLE_BODY_UP_TO = 1024 * 1024


@dataclass(frozen=True)
class EncryptionPolicy:
    """The server-wide part of the decision (``[encryption]`` and ``[keys] default_key``)."""

    default: str = sse.MODE_NONE          # none | AES256 | aws:kms
    require: bool = False
    allow_insecure_sse_c: bool = False
    default_key: str = "default"


def _sse_request_headers(environ: dict[str, Any]) -> list[str]:
    return [name for name in environ if name.startswith(("HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION",
                                                         "HTTP_X_AMZ_CHECKSUM_"))]


class EncryptionMiddleware:
    def __init__(self, app: WSGIApp, configs: BucketConfigStore, keys: KeyProvider,
                 policy: EncryptionPolicy, facts: FactsCache | None = None) -> None:
        self.app = app
        self.configs = configs
        self.keys = keys
        self.policy = policy
        self.facts = facts or FactsCache()
        self._handle = s3_error_boundary(self.handle)
        self._lookups = ThreadPoolExecutor(LISTING_LOOKUP_THREADS,
                                           thread_name_prefix="encproxy-lookup")
        self.multipart = MultipartUploads(self)
        self.multipart_reads = multipart_reads.MultipartReads()
        self.copies = Copies(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = S3Request.from_environ(environ)
        if req.bucket == self.configs.internal_bucket or \
                getattr(self, "op_" + (req.operation or "-"), None) is None:
            return self.app(environ, start_response)
        return self._handle(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.from_environ(environ)
        assert req.operation is not None
        return getattr(self, "op_" + req.operation)(req)

    def _pass(self, req: S3Request) -> Response:
        """Hand the request to the app below unchanged."""
        return Response.from_app(self.app, req.environ)

    # -- deciding -----------------------------------------------------------------------
    def _plan(self, req: S3Request) -> sse.WritePlan | None:
        assert req.bucket is not None
        requested = sse.parse_request(req.headers)
        if requested.customer is not None and not self.policy.allow_insecure_sse_c \
                and req.environ.get("wsgi.url_scheme") != "https":
            raise errors.InvalidRequest("Requests specifying Server Side Encryption with "
                                        "Customer provided keys must be made over a secure "
                                        "connection.")
        config = self.configs.get(req.bucket, parent=req.environ)
        plan = sse.decide_write(requested, config.algorithm if config else None,
                                config.kms_key_id if config else None, self.policy.default,
                                self.policy.default_key)
        if plan is None and self.policy.require:
            raise errors.AccessDenied("encproxy is configured to refuse writes that would be "
                                      "stored unencrypted ([encryption] require = true).")
        return plan

    def _wrapper(self, mode: str, customer: sse.CustomerKey | None) -> KeyWrapper:
        if mode == sse.MODE_SSE_C:
            assert customer is not None
            return CustomerKeyWrapper(customer.key)
        return self.keys

    # -- writes -------------------------------------------------------------------------
    def op_PutObject(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        if ENVELOPE_HEADER in req.headers or CONTEXT_HEADER in req.headers:
            raise errors.InvalidArgument(f"The metadata name {ENVELOPE_HEADER} is reserved "
                                         "by encproxy.", ArgumentName=ENVELOPE_HEADER)
        plan = self._plan(req)
        if plan is None:
            return self._pass(req)
        length = req.content_length()
        try:
            check_single_size(length)
        except errors.S3Error:
            raise errors.EntityTooLarge(ProposedSize=str(length)) from None
        key_id = SSE_C_KEY_ID if plan.mode == sse.MODE_SSE_C else \
            self.keys.normalize(plan.key_id or self.policy.default_key)
        try:
            keys, envelope = new_object(
                self._wrapper(plan.mode, plan.customer), key_id, req.bucket, req.key,
                kind=Kind.SINGLE, protection=MODE_PROTECTION[plan.mode],
                extra_context=plan.context)
        except ValueError:
            raise errors.InvalidArgument("The encryption context may not redefine encproxy's "
                                         "own fields.", ArgumentName=sse.SSE_CONTEXT) from None
        extra_meta = {ENVELOPE_HEADER: envelope.encode()}
        if plan.context is not None:
            extra_meta[CONTEXT_HEADER] = req.headers[sse.SSE_CONTEXT]
        user_meta = s3meta.user_metadata(req.headers)
        used = sum(len(k) + len(v) for k, v in user_meta.items()) + metadata_size(envelope) + \
            sum(len(k) - len("x-amz-meta-") + len(v) for k, v in extra_meta.items()
                if k != ENVELOPE_HEADER)
        if used > s3meta.MAX_USER_METADATA_BYTES:
            raise errors.MetadataTooLarge(Size=str(used),
                                          MaxSizeAllowed=str(s3meta.MAX_USER_METADATA_BYTES))

        md5 = digests.md5_for(length)  # the plaintext ETag, hashed on the other core
        body = req.body

        def plaintext() -> Iterator[bytes]:
            left = length
            while left > 0:
                piece = body.read(min(PIECE, left))
                if not piece:
                    raise errors.IncompleteBody()
                md5.update(piece)
                left -= len(piece)
                yield piece

        encryptor = ObjectEncryptor(keys, length)
        ciphertext = subrequest.IterReader(copied(encryptor.encrypt(plaintext(), md5=md5.digest)))
        inner = subrequest.derived_environ(
            req.environ, drop=(*PLAINTEXT_BODY_HEADERS, *_header_names(_sse_request_headers(
                req.environ))), headers=extra_meta, body=ciphertext,
            content_length=encryptor.ciphertext_size)
        inner[env.STORED_DIGEST] = encryptor.fingerprint  # the file store needs no MD5 of it
        try:
            resp = subrequest.open_stream(self.app, inner)
            resp_body = resp.read_all()
        finally:
            digests.close(md5)
        if not 200 <= resp.status < 300:
            return _relay(resp, resp_body)
        metrics.encrypted(length)
        etag = '"' + md5.hexdigest() + '"'
        if plan.mode == sse.MODE_SSE_C:
            etag = resp.header("etag") or etag
        backend_etag = resp.header("etag")
        if backend_etag:
            self.facts.put(backend_etag, encryptor.ciphertext_size, ObjectFacts(
                True, length, etag, plan.mode, key_id))
        headers = {"ETag": etag, **sse.response_headers(
            plan.mode, key_id, plan.customer.key_md5 if plan.customer else None,
            req.headers.get(sse.SSE_CONTEXT))}
        for alg, value in (req.environ.get(env.BODY_CHECKSUMS) or {}).items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Response(b"", status=200, headers=headers)

    def op_PostObject(self, req: S3Request) -> Response:
        assert req.bucket is not None
        config = self.configs.get(req.bucket, parent=req.environ)
        if config is not None or self.policy.default != sse.MODE_NONE or self.policy.require:
            raise errors.NotImplementedError_(
                "POST Object uploads into a bucket that encrypts are not supported by "
                "encproxy; use PUT.")
        return self._pass(req)

    # -- multipart uploads (encrypted_multipart) and copies (encrypted_copy) -------------
    def op_CreateMultipartUpload(self, req: S3Request) -> Response:
        return self.multipart.create(req)

    def op_UploadPart(self, req: S3Request) -> Response:
        return metrics.encrypted_if_sse(self.multipart.upload_part(req), req.content_length(False))

    def op_CompleteMultipartUpload(self, req: S3Request) -> Response:
        return self.multipart.complete(req)

    def op_AbortMultipartUpload(self, req: S3Request) -> Response:
        return self.multipart.abort(req)

    def op_ListParts(self, req: S3Request) -> Response:
        return self.multipart.list_parts(req)

    def op_CopyObject(self, req: S3Request) -> Response:
        return self.copies.copy_object(req)

    def op_UploadPartCopy(self, req: S3Request) -> Response:
        return self.copies.upload_part_copy(req)

    def op_GetObjectAttributes(self, req: S3Request) -> Response:
        return get_object_attributes(self, req)

    # -- reads --------------------------------------------------------------------------
    def op_GetObject(self, req: S3Request) -> Response:
        return self._read(req, head=False)

    def op_HeadObject(self, req: S3Request) -> Response:
        return self._read(req, head=True)

    def _read(self, req: S3Request, head: bool) -> Response:
        assert req.bucket is not None and req.key is not None
        customer = sse.parse_customer_key(req.headers)
        ranged = "range" in req.headers or "partNumber" in req.query
        drop = (*CONDITIONAL_HEADERS, "range", sse.SSE_C_ALGORITHM, sse.SSE_C_KEY,
                sse.SSE_C_KEY_MD5)
        query = "&".join(p for p in req.environ.get(env.RAW_QUERY, "").split("&")
                         if p and not p.startswith("partNumber="))
        first = subrequest.open_stream(self.app, subrequest.derived_environ(
            req.environ, method="HEAD" if head or ranged else "GET", drop=drop, query=query))
        if first.status >= 300 or first.header(ENVELOPE_HEADER) is None:
            if customer is not None and first.status < 300:
                first.close()
                raise errors.InvalidRequest(
                    "The encryption parameters are not applicable to this object.")
            if not ranged and customer is None and \
                    not any(name in req.headers for name in CONDITIONAL_HEADERS):
                # The first request was the client's own, unchanged: its answer is the
                # answer (an object stored as sent, or an error), with no second request.
                return Response(first.body, status=first.status, headers=first.headers)
            first.close()
            return self._pass(req)
        try:
            return self._read_encrypted(req, head, ranged, customer, first, query)
        except BaseException:
            first.close()
            raise

    def _read_encrypted(self, req: S3Request, head: bool, ranged: bool,
                        customer: sse.CustomerKey | None, first: subrequest.StreamingResponse,
                        query: str) -> Response:
        assert req.bucket is not None and req.key is not None
        bucket, key = req.bucket, req.key
        envelope = self._envelope(first.header(ENVELOPE_HEADER), bucket, key)
        mode = PROTECTION_MODE[envelope.protection]
        if mode == sse.MODE_SSE_C and customer is None:
            raise errors.InvalidRequest(
                "The object was stored using a form of Server Side Encryption. The correct "
                "parameters must be provided to retrieve the object.")
        if mode != sse.MODE_SSE_C and customer is not None:
            raise errors.InvalidRequest(
                "The encryption parameters are not applicable to this object.")
        if envelope.kind is not Kind.SINGLE:
            return multipart_reads.respond(self, req, head, ranged, customer, first, envelope,
                                           mode)
        stored_size = int(first.header("content-length") or "0")
        backend_etag = first.header("etag") or ""
        context_header = first.header(CONTEXT_HEADER)
        extra = sse.parse_context(context_header) if context_header else None
        keys = self._open(envelope, bucket, key, customer, extra)
        try:
            decryptor = ObjectDecryptor(keys, stored_size)
        except errors.IntegrityError as exc:
            self._integrity(bucket, key, exc)
            raise
        whole = None
        if not head and not ranged and stored_size <= WHOLE_BODY_UP_TO and \
                mode != sse.MODE_SSE_C and self.facts.get(backend_etag, stored_size) is None:
            whole = first.read_all(limit=stored_size)
        etag = self._etag(req, decryptor, mode, backend_etag, stored_size, whole)
        last_modified = parse_http_date(first.header("last-modified") or "") or 0.0
        try:
            preconditions.check(req.headers, etag, last_modified)
        except errors.NotModified as exc:
            exc.headers.update({"ETag": etag, "Last-Modified": first.header("last-modified") or ""})
            raise

        size = decryptor.plaintext_size
        byte_range = None
        if "partNumber" in req.query:
            number = req.int_param("partNumber", 1, 1, 10000)
            if "range" in req.headers:
                raise errors.InvalidRequest("Cannot specify both Range header and partNumber "
                                            "query parameter.")
            if number != 1:
                raise errors.InvalidPartNumber()
            if size:
                byte_range = parse_range(f"bytes=0-{size - 1}", size)
        else:
            byte_range = parse_range(req.headers.get("range"), size)

        headers = [(k, v) for k, v in first.headers
                   if k.lower() not in CIPHERTEXT_RESPONSE_HEADERS
                   and not k.lower().startswith(("x-amz-meta-" + METADATA_KEY,
                                                 "x-amz-server-side-encryption",
                                                 "x-amz-checksum-"))]
        headers += [("ETag", etag), ("Accept-Ranges", "bytes")]
        headers += list(sse.response_headers(mode, envelope.key_id,
                                             customer.key_md5 if customer else None,
                                             context_header).items())
        status = 200
        if byte_range is not None:
            status = 206
            headers.append(("Content-Range", byte_range.content_range()))
        headers.append(("Content-Length", str(size if byte_range is None else byte_range.length)))
        if head:
            first.close()
            return Response(None, status=status, headers=headers)

        if ranged:
            first.close()
            if byte_range is None:
                plan = None
                stream = self._fetch(req, query, None, backend_etag)
            else:
                plan = plan_range(size, byte_range.first, byte_range.last)
                stream = self._fetch(req, query, (plan.ciphertext_start, plan.ciphertext_stop - 1),
                                     backend_etag)
            batches = decryptor.decrypt(stream.body) if plan is None else \
                decryptor.decrypt_range(plan, stream.body)
        else:
            stream = first
            batches = decryptor.decrypt(stream.body if whole is None else [whole])
        return self._stream_response(batches, stream, status, headers, bucket, key,
                                     size if byte_range is None else byte_range.length)

    def _stream_response(self, batches: Iterator[memoryview], stream: subrequest.StreamingResponse,
                         status: int, headers: list[tuple[str, str]], bucket: str,
                         key: str, length: int) -> Response:
        pieces: Iterator[bytes] = copied(metrics.count_decrypted(batches))
        if length >= READ_AHEAD_FROM:
            pieces = read_ahead(pieces)  # decrypt the next batch while this one is sent
        try:
            head_piece = next(pieces, None)  # faults found this early are S3 errors, not aborts
        except errors.IntegrityError as exc:
            close_iterator(pieces)
            stream.close()
            self._integrity(bucket, key, exc)
            raise

        def body() -> Iterator[bytes]:
            try:
                if head_piece is not None:
                    yield head_piece
                yield from pieces
            except errors.IntegrityError as exc:
                # Headers are gone: the server aborts the connection on this exception.
                self._integrity(bucket, key, exc)
                raise
            finally:
                close_iterator(pieces)
                stream.close()

        return Response(body(), status=status, headers=headers, direct_passthrough=True)

    def _fetch(self, req: S3Request, query: str, byte_range: tuple[int, int] | None,
               backend_etag: str) -> subrequest.StreamingResponse:
        headers = {"If-Match": backend_etag} if backend_etag else {}
        if byte_range is not None:
            headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        stream = subrequest.open_stream(self.app, subrequest.derived_environ(
            req.environ, method="GET", query=query,
            drop=(*CONDITIONAL_HEADERS, "range", sse.SSE_C_ALGORITHM, sse.SSE_C_KEY,
                  sse.SSE_C_KEY_MD5), headers=headers))
        if stream.status == 412:
            stream.close()
            # The object was replaced between our two requests: ask the client to retry.
            raise errors.ServiceUnavailable("The object changed while it was being read; "
                                            "please retry.")
        if stream.status >= 300:
            stream.close()
            raise errors.ServiceUnavailable() if stream.status == 503 else errors.InternalError()
        return stream

    def _envelope(self, value: str | None, bucket: str, key: str) -> Envelope:
        try:
            return Envelope.decode(value)
        except errors.IntegrityError as exc:
            self._integrity(bucket, key, exc)
            raise

    def _open(self, envelope: Envelope, bucket: str, key: str,
              customer: sse.CustomerKey | None, extra: dict[str, str] | None) -> Any:
        wrapper = self._wrapper(PROTECTION_MODE[envelope.protection], customer)
        try:
            return open_object(wrapper, envelope, bucket, key, extra)
        except errors.IntegrityError as exc:
            self._integrity(bucket, key, exc)
            raise

    def _etag(self, req: S3Request, decryptor: ObjectDecryptor, mode: str, backend_etag: str,
              stored_size: int, whole: bytes | None = None) -> str:
        """The client-visible ETag: the sealed plaintext MD5 (SSE-C: the backend's).

        ``whole``: the stored body, if it was read already; else the seal is fetched.
        """
        if mode == sse.MODE_SSE_C:
            return backend_etag
        facts = self.facts.get(backend_etag, stored_size)
        if facts is not None:
            return facts.etag
        start, stop = decryptor.etag_seal_range
        if whole is not None:
            seal = whole[start:stop]
        else:
            seal = self._fetch(req, "", (start, stop - 1), backend_etag).read_all(limit=64)
        try:
            etag = '"' + decryptor.open_etag_seal(seal).hex() + '"'
        except errors.IntegrityError as exc:
            assert req.bucket is not None and req.key is not None
            self._integrity(req.bucket, req.key, exc)
            raise
        self.facts.put(backend_etag, stored_size, ObjectFacts(
            True, decryptor.plaintext_size, etag, mode))
        return etag

    @staticmethod
    def _integrity(bucket: str, key: str, exc: errors.IntegrityError) -> None:
        metrics.integrity_failure(type(exc).__name__)
        log.error("integrity failure on %s/%s: %s (%s)", bucket, key, type(exc).__name__,
                  exc.default_message)

    # -- listings -----------------------------------------------------------------------
    def op_ListObjects(self, req: S3Request) -> Response:
        return self._listing(req, "Contents")

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        return self._listing(req, "Contents")

    def op_ListObjectVersions(self, req: S3Request) -> Response:
        return self._listing(req, "Version")

    def _listing(self, req: S3Request, entry_tag: str) -> Response:
        assert req.bucket is not None
        resp = subrequest.open_stream(self.app, req.environ)
        body = resp.read_all()
        if resp.status != 200:
            return _relay(resp, body)
        root = xml.parse(body)
        url_encoded = (xml.child_text(root, "EncodingType") or "") == "url"
        entries = [e for e in root.findall(entry_tag)
                   if e.find("ETag") is not None and e.find("Size") is not None]
        missing = [e for e in entries if self.facts.get(
            xml.child_text(e, "ETag") or "", int(xml.child_text(e, "Size") or "0")) is None]
        if missing:
            list(self._lookups.map(lambda e: self._learn(req, e, url_encoded), missing))
        for e in entries:
            facts = self.facts.get(xml.child_text(e, "ETag") or "",
                                   int(xml.child_text(e, "Size") or "0"))
            if facts is not None and facts.encrypted:
                e.find("ETag").text = facts.etag  # type: ignore[union-attr]
                e.find("Size").text = str(facts.plaintext_size)  # type: ignore[union-attr]
        headers = [(k, v) for k, v in resp.headers if k.lower() not in ("content-length",)]
        return Response(xml.render_element(root), status=200, headers=headers)

    def _learn(self, req: S3Request, entry: Any, url_encoded: bool) -> None:
        """Look one listed object up (HEAD, then its sealed ETag) and cache the facts."""
        assert req.bucket is not None
        name = xml.child_text(entry, "Key") or ""
        key = unquote_plus(name) if url_encoded else name
        listed_etag = xml.child_text(entry, "ETag") or ""
        listed_size = int(xml.child_text(entry, "Size") or "0")
        resp = subrequest.call(self.app, "HEAD", req.bucket, key, parent=req.environ)
        if not resp.ok or resp.headers.get("etag", "").strip('"') != listed_etag.strip('"'):
            return  # gone or replaced since the listing: report it as listed
        value = resp.headers.get(ENVELOPE_HEADER)
        if value is None:
            self.facts.put(listed_etag, listed_size,
                           ObjectFacts(False, listed_size, listed_etag))
            return
        try:
            envelope = Envelope.decode(value)
            mode = PROTECTION_MODE[envelope.protection]
            if envelope.kind is not Kind.SINGLE:
                multipart_reads.learn(self, req.environ, req.bucket, key, envelope, mode,
                                      resp.headers, listed_size, listed_etag)
                return
            from encproxy.format.layout import plaintext_size
            size = plaintext_size(listed_size)
            if mode == sse.MODE_SSE_C:
                self.facts.put(listed_etag, listed_size,
                               ObjectFacts(True, size, listed_etag, mode))
                return
            context_header = resp.headers.get(CONTEXT_HEADER)
            keys = open_object(self.keys, envelope, req.bucket, key,
                               sse.parse_context(context_header) if context_header else None)
            decryptor = ObjectDecryptor(keys, listed_size)
            sub = S3Request.from_environ(subrequest.derived_environ(
                req.environ, method="HEAD"))
            sub.bucket, sub.key = req.bucket, key
            sub.environ = dict(sub.environ, **{env.BUCKET: req.bucket, env.KEY: key,
                                               env.RAW_PATH: "/" + req.bucket + "/" +
                                               quote(key, safe="/~"), env.RAW_QUERY: ""})
            self._etag(sub, decryptor, mode, listed_etag, listed_size)
        except (FormatError, errors.S3Error) as exc:
            log.warning("listing %s: cannot read the envelope of %s: %s", req.bucket, key,
                        type(exc).__name__)


def close_iterator(pieces: Iterator[bytes]) -> None:
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


def _header_names(environ_keys: Iterable[str]) -> list[str]:
    return [k[5:].replace("_", "-").lower() for k in environ_keys]


def _relay(resp: subrequest.StreamingResponse, body: bytes) -> Response:
    return Response(body, status=resp.status,
                    headers=[(k, v) for k, v in resp.headers if k.lower() != "content-length"])
