"""Multipart uploads under encryption (FORMAT.md §7): Create, UploadPart, Complete,
Abort and ListParts, with no state outside the backend.

* **Create** draws the upload's data key and envelope, writes the envelope into
  the object's metadata (fixed at Create, as S3 fixes it) and, once the backend
  has answered with the upload id, the upload's record (``upload_store``).
* **UploadPart**, on any replica, in any order, any number of times: the
  record gives the envelope; the part is encrypted as it streams into one
  segment with a fresh salt (so a part uploaded twice never reuses a nonce).
  A terminal part (under 5 MiB, or part 10000) is written first to a *held
  copy* in the internal bucket, then copied into the upload by the backend
  (UploadPartCopy), so that Complete can re-upload it with an indexed trailer
  if the completion needs one (§7.4).  Memory stays at one batch (~1 MiB).
  SSE-S3 and SSE-KMS parts answer the MD5 of their plaintext, hashed as it
  streams, once a part record maps it to the backend part (FORMAT.md §7.8);
  SSE-C parts answer the backend's ETag (opaque, as at AWS).
* **Complete** maps the client's part ETags to backend ETags through the part
  records, checks them against the backend's parts (ETags, then plaintext
  sizes: EntityTooSmall on plaintext), plans the trailer, uploads it (its own
  part, or the held tail) and completes the backend upload with the backend
  part numbers.  An SSE-S3 or SSE-KMS object's ETag is S3's
  ``"<MD5 of the part MD5s>-N"``, sealed in its described index; an SSE-C
  object's is the backend's.  A Complete retried after it succeeded gets the
  same answer, from the object's index (§7.8).  An SSE-C Complete needs no
  customer key: the trailer is sealed under the upload's completion key (§7.9).
* **ListParts** reports plaintext sizes and the part ETags the client got.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from werkzeug.wrappers import Response

from encproxy import checksums, errors
from encproxy.checksums import ChecksumClaim
from encproxy.crypto.customer_keys import CustomerKeyWrapper
from encproxy.crypto.held import verified_held_segment
from encproxy.crypto.keys import ObjectKeys, open_object
from encproxy.crypto.multipart import (
    CompletionKeys,
    PartEncryptor,
    build_trailer,
    completion_key,
    describe,
    open_part_checksum,
    open_part_md5,
    part_etag_name,
    seal_part_checksum,
    seal_part_md5,
    upload_digest,
)
from encproxy.crypto.stream import copied
from encproxy.format.checksum import COMPOSITE, FULL_OBJECT, StoredChecksum
from encproxy.format.constants import Kind
from encproxy.format.envelope import Envelope
from encproxy.format.errors import CiphertextSizeInvalid
from encproxy.format.layout import (
    CompletionPlan,
    Trailer,
    check_part,
    check_part_numbers,
    plan_completion,
    segment_plaintext_size,
    segment_size,
)
from encproxy.s3 import checksum_headers, sse, xml
from encproxy.s3 import metadata as s3meta
from encproxy.s3.multipart_xml import parse_complete, parse_part_checksums
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.records import report
from encproxy.wsgi.encryption import checksummed, integrity
from encproxy.wsgi.encryption.conditions import backend_conditions, passed_through
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import (
    CONTEXT_HEADER,
    ENVELOPE_HEADER,
    check_metadata_budget,
    client_only_removed,
    mode_of,
    refuse_reserved_metadata,
    stored_metadata,
)
from encproxy.wsgi.encryption.layouts import KnownLayout, client_multipart_etag
from encproxy.wsgi.encryption.part_copy import complete_upload, upload_query
from encproxy.wsgi.encryption.streaming import Fetcher, read_exactly
from encproxy.wsgi.encryption.upload_store import PartRecord, UploadRecord, UploadStore
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import relayed, xml_response

log = logging.getLogger("encproxy.multipart")


def _not_retried(upload_id: str, why: str) -> None:
    """A Complete without records that is not a retry of one encproxy finished: why
    (the caller then answers NoSuchUpload, or passes it to the backend)."""
    log.info("upload %s: Complete without records, not a retried one: %s", upload_id, why)

_PART_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')
RECORD_THREADS = 4


def completion_context(bucket: str, key: str, envelope: Envelope) -> dict[str, str]:
    """The context an SSE-C upload's completion key is wrapped under (FORMAT.md §7.9)."""
    return {"encproxy-format": "1", "purpose": "sse-c-completion", "bucket": bucket,
            "key": key, "object-id": envelope.object_id.hex()}


def _part_md5(upload_id: str, number: int, etag: str) -> bytes:
    """The plaintext MD5 a client's part ETag names; InvalidPart if it names none."""
    m = _PART_ETAG.match(etag.strip())
    if m is None:
        raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=etag)
    return bytes.fromhex(m.group(1))


def _append(parent: ElementTree.Element, tag: str, text: str) -> None:
    ElementTree.SubElement(parent, tag).text = text


def check_part_checksum(record: UploadRecord, sent: str | None) -> None:
    """UploadPart of an upload that declared a checksum algorithm must carry that
    algorithm's checksum (S3's InvalidRequest otherwise)."""
    declared = record.checksum_algorithm
    if declared is None or sent == declared:
        return
    if sent is None:
        raise errors.InvalidRequest(
            f"The upload was created using the {checksum_headers.XML_NAMES[declared]} "
            f"checksum algorithm: each part must carry x-amz-checksum-{declared}.")
    raise errors.InvalidRequest(f"Checksum Type mismatch occurred, expected checksum Type: "
                                f"{declared}, actual checksum Type: {sent}")


def object_checksum_claim(headers: Mapping[str, str], record: UploadRecord
                          ) -> ChecksumClaim | None:
    """CompleteMultipartUpload's ``x-amz-checksum-<algorithm>``: the client's checksum
    of the whole object, as AWS defines it (the FULL_OBJECT checksum, or the COMPOSITE
    one with or without its ``-N``), never of the request body.  One that is not a
    digest of its algorithm, or names another algorithm than the upload declared, is
    BadDigest (it cannot match)."""
    names = checksums.checksum_header_names(headers)
    if not names:
        return None
    if len(names) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    algorithm = checksums.checksum_algorithm(names[0])
    value = headers[names[0]].strip()
    head, dash, count = value.rpartition("-")
    if dash and count.isdigit():
        value = head
    bad = errors.BadDigest(f"The {checksums.display_name(algorithm)} you specified did not "
                           "match the calculated checksum.")
    declared = record.checksum_algorithm
    if algorithm not in checksum_headers.XML_NAMES \
            or declared is not None and algorithm != declared:
        raise bad
    try:
        return checksums.parse_checksum_value(algorithm, value)
    except errors.S3Error:
        raise bad from None


def part_number(req: S3Request) -> int:
    text = req.query.get("partNumber", "")
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise errors.InvalidArgument("Part number must be an integer between 1 and 10000, "
                                     "inclusive", ArgumentName="partNumber", ArgumentValue=text)
    return int(text)


def upload_id_of(req: S3Request) -> str:
    upload_id = req.query.get("uploadId", "")
    if not upload_id:
        raise errors.NoSuchUpload(UploadId=upload_id)
    return upload_id


class MultipartUploads:
    """The multipart operations.  ``always_index`` (the default) seals every
    completion it can with an indexed trailer (FORMAT.md §7.3); False writes the
    minimal trailer, as encproxy did before, which tests use to make such objects."""

    def __init__(self, ctx: EncryptionContext, store: UploadStore, *,
                 always_index: bool = True) -> None:
        self.ctx = ctx
        self.app = ctx.app
        self.store = store
        self.always_index = always_index
        self._record_pool = ThreadPoolExecutor(RECORD_THREADS,
                                               thread_name_prefix="encproxy-part-records")

    # -- CreateMultipartUpload -----------------------------------------------------------
    def create(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        refuse_reserved_metadata(req.headers)
        plan = self.ctx.plan(req)
        if plan is None:
            resp = subrequest.open_stream(self.app, req.environ)
            body = resp.read_all()
            if 200 <= resp.status < 300:
                self._record(req, body, UploadRecord(req.bucket, req.key, sse.MODE_NONE))
            return relayed(resp.status, resp.headers, body)
        settings = checksum_headers.upload_settings(req.headers)   # S3's errors, first
        key_id = self.ctx.key_id(plan)
        keys, envelope = self.ctx.new_keys(plan, req.bucket, req.key, Kind.MULTIPART)
        context = req.headers.get(sse.SSE_CONTEXT) if plan.context is not None else None
        check_metadata_budget(s3meta.user_metadata(req.headers), envelope, context)
        inner = subrequest.derived_environ(client_only_removed(req.environ),
                                           headers=stored_metadata(envelope, context))
        resp = subrequest.open_stream(self.app, inner)
        body = resp.read_all()
        if not 200 <= resp.status < 300:
            return relayed(resp.status, resp.headers, body)
        completion = None
        if plan.mode == sse.MODE_SSE_C:
            completion = self.store.records.keys.wrap(
                self.store.records.key_id, completion_key(keys),
                completion_context(req.bucket, req.key, envelope)).hex()
        upload_id = self._record(req, body, UploadRecord(
            req.bucket, req.key, plan.mode, envelope.encode(), key_id, context, completion,
            *(settings or (None, None))))
        if plan.mode != sse.MODE_SSE_C:
            self.store.cache_keys(req.bucket, req.key, upload_id, keys)
        extra = sse.response_headers(plan.mode, key_id,
                                     plan.customer.key_md5 if plan.customer else None, context,
                                     envelope.bucket_key is not None)
        if settings is not None:
            extra.update(checksum_headers.upload_headers(*settings))
        return relayed(resp.status, resp.headers, body, extra)

    def _record(self, req: S3Request, body: bytes, record: UploadRecord) -> str:
        """Write the record of the upload the backend just created; abort it if that fails."""
        upload_id = xml.child_text(xml.parse(body, max_size=subrequest.MAX_SUBRESPONSE),
                                   "UploadId") or ""
        if not upload_id:
            raise errors.InternalError()
        try:
            self.store.put(upload_id, record, req.environ)
        except BaseException:
            subrequest.request(self.app, req.environ, "DELETE", record.bucket, record.key,
                               upload_query(upload_id))
            raise
        return upload_id

    # -- which upload, which keys ----------------------------------------------------------
    def record_for(self, req: S3Request, bucket: str, key: str,
                   upload_id: str) -> UploadRecord:
        self.ctx.refuse_blocked_sse_c(req)   # UploadPart, UploadPartCopy: SSE-C may be blocked
        record = self.store.get(bucket, key, upload_id, req.environ)
        if record is None:
            # Not an upload encproxy made (or one it could not record): never write into it.
            raise errors.NoSuchUpload(UploadId=upload_id)
        return record

    def keys_for(self, req: S3Request, bucket: str, key: str, upload_id: str,
                 record: UploadRecord, customer: sse.CustomerKey | None) -> ObjectKeys:
        """The upload's keys; SSE-C uploads need the same customer key on every request."""
        assert record.envelope is not None
        if customer is not None:
            self.ctx.refuse_insecure_sse_c(req)
        envelope = Envelope.decode(record.envelope)
        if record.mode == sse.MODE_SSE_C:
            if customer is None:
                raise errors.InvalidRequest(
                    "The multipart upload initiate requested encryption. Subsequent part "
                    "requests must include the appropriate encryption parameters.")
            extra = sse.parse_context(record.context) if record.context else None
            try:
                return open_object(CustomerKeyWrapper(customer.key), envelope, bucket, key,
                                   extra)
            except errors.AccessDenied:  # AWS: 400, not a read's 403, for another key
                raise errors.InvalidRequest("The provided encryption parameters did not "
                                            "match the ones used originally.") from None
        if customer is not None:
            raise errors.InvalidRequest(
                "The multipart upload initiate did not request encryption with customer "
                "provided keys; the encryption parameters are not applicable.")
        keys = self.store.cached_keys(bucket, key, upload_id)
        if keys is None:
            keys = self.ctx.open_keys(envelope, bucket, key, None, record.context)
            self.store.cache_keys(bucket, key, upload_id, keys)
        return keys

    # -- UploadPart --------------------------------------------------------------------
    def upload_part(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        number = part_number(req)
        upload_id = upload_id_of(req)
        record = self.record_for(req, req.bucket, req.key, upload_id)
        customer = sse.parse_customer_key(req.headers)
        if not record.encrypted:
            self.ctx.refuse_unencrypted()   # [encryption] require, never through a record
            if customer is not None or sse.SSE in req.headers:
                raise errors.InvalidRequest("The encryption parameters are not applicable to "
                                            "this multipart upload.")
            return self.ctx.pass_through(req)
        keys = self.keys_for(req, req.bucket, req.key, upload_id, record, customer)
        length = req.content_length()
        try:
            check_part(number, length)
        except errors.EntityTooLarge:
            raise errors.EntityTooLarge(ProposedSize=str(length)) from None
        sent = checksum_headers.sent_algorithm(req.headers)
        check_part_checksum(record, sent)   # before the body is read
        if not checksummed.verified_upstream(req.environ):
            sent = None   # nothing upstream verifies it (this layer on its own): hash
        etag, _ = self.write_part(req.environ, req.bucket, req.key, upload_id, keys, number,
                                  length, read_exactly(req.body, length), sent=sent)
        headers = {"ETag": etag, **self.sse_headers(record, customer)}
        for alg, value in (req.environ.get(env.BODY_CHECKSUMS) or {}).items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Response(b"", status=200, headers=headers)

    @staticmethod
    def sse_headers(record: UploadRecord, customer: sse.CustomerKey | None) -> dict[str, str]:
        # S3 answers the bucket-key header as the upload's envelope has it (FORMAT.md §16).
        bucket_key = record.envelope is not None \
            and Envelope.decode(record.envelope).bucket_key is not None
        return sse.response_headers(record.mode, record.key_id,
                                    customer.key_md5 if customer else None,
                                    bucket_key=bucket_key)

    def write_part(self, parent: dict[str, Any], bucket: str, key: str, upload_id: str,
                   keys: ObjectKeys, number: int, length: int,
                   plaintext: Iterable[bytes], *, sent: str | None = None
                   ) -> tuple[str, dict[str, bytes]]:
        """Encrypt ``length`` bytes of plaintext as part ``number``; the part ETag the
        client gets (FORMAT.md §7.8): the plaintext MD5, once the part record that maps it
        to the backend part is written; for SSE-C, the backend's ETag (opaque).

        The part record also keeps the part's checksums (FORMAT.md §15), sealed: the
        one the client sent (``sent``: its algorithm; the value, verified upstream, is
        in ``parent``'s ``BODY_CHECKSUMS`` once the body ended), the upload's declared
        algorithm's and CRC64NVME (S3's default), computed as the plaintext streams
        when the client did not send them.  Returns the ETag and those checksums
        (algorithm -> digest; none for SSE-C)."""
        record = self.store.get(bucket, key, upload_id, parent)
        if record is None:
            raise errors.NoSuchUpload(UploadId=upload_id)
        if record.mode == sse.MODE_SSE_C:
            return self._write_segment(parent, bucket, key, upload_id, keys, number, length,
                                       plaintext), {}
        md5 = hashlib.md5(usedforsecurity=False)
        wanted = {record.checksum_algorithm or checksum_headers.DEFAULT_ALGORITHM,
                  checksum_headers.DEFAULT_ALGORITHM}
        computed = checksums.DigestSet(sorted(wanted - {sent}))
        updates = [md5.update, computed.update]

        def hashed() -> Iterator[bytes]:
            for piece in plaintext:
                for update in updates:
                    update(piece)
                yield piece
        backend_etag = self._write_segment(parent, bucket, key, upload_id, keys, number,
                                           length, hashed())
        digest = md5.digest()
        name, sealed = seal_part_md5(keys, number, digest)
        sums = computed.digests()
        if sent in checksum_headers.XML_NAMES:
            value = (parent.get(env.BODY_CHECKSUMS) or {}).get(sent)
            if value is None:
                raise errors.InternalError()   # verified upstream, so it must be there
            sums[sent] = base64.b64decode(value)
        sealed_sums = tuple((algorithm, seal_part_checksum(keys, number, name, algorithm, d))
                            for algorithm, d in sorted(sums.items()))
        self.store.remember_part(bucket, key, upload_id, number, name, sealed, backend_etag,
                                 length, parent, sealed_sums)
        return f'"{digest.hex()}"', sums

    def _write_segment(self, parent: dict[str, Any], bucket: str, key: str, upload_id: str,
                       keys: ObjectKeys, number: int, length: int,
                       plaintext: Iterable[bytes]) -> str:
        """Encrypt ``length`` bytes of plaintext as part ``number``; its backend ETag."""
        encryptor = PartEncryptor(keys, number, length)
        ciphertext = subrequest.IterReader(copied(encryptor.encrypt(plaintext)))
        if not encryptor.terminal:
            return self.put_part(parent, bucket, key, upload_id, number, ciphertext,
                                 encryptor.ciphertext_size)
        # A terminal part may have to be re-uploaded with the trailer at Complete (held
        # tail): keep a copy, then have the backend copy it into the upload.
        held = self.store.held_key(bucket, key, upload_id, number, encryptor.header.salt)
        resp = subrequest.request(self.app, parent, "PUT", self.store.internal_bucket, held,
                                  headers={"content-type": "application/octet-stream"},
                                  body=ciphertext, length=encryptor.ciphertext_size)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        copy_etag = resp.headers.get("etag")   # the copy's own, for If-Match at Complete
        source = "/" + quote(self.store.internal_bucket + "/" + held, safe="/~")
        resp = subrequest.request(self.app, parent, "PUT", bucket, key,
                                  upload_query(upload_id, number),
                                  headers={"x-amz-copy-source": source})
        if not resp.ok:
            # The upload may be gone (aborted, its bucket deleted): a held copy no upload
            # names would stay for good (the orphans command would find it).
            gone = subrequest.request(self.app, parent, "DELETE", self.store.internal_bucket,
                                      held)
            if not gone.ok and gone.status != 404:
                log.warning("upload %s of %s/%s: could not remove the held copy %s (%d)",
                            upload_id, bucket, key, held, gone.status)
            raise subrequest.failure(resp.status, resp.body)
        etag = xml.child_text(xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE), "ETag")
        if not etag:
            raise errors.InternalError()
        self.store.remember_held(bucket, key, upload_id, number, encryptor.header.salt, etag,
                                 encryptor.ciphertext_size, parent, copy_etag)
        return etag

    def put_part(self, parent: dict[str, Any], bucket: str, key: str, upload_id: str,
                 number: int, body: Any, length: int) -> str:
        if isinstance(body, bytes):
            body = io.BytesIO(body)
        resp = subrequest.request(self.app, parent, "PUT", bucket, key,
                                  upload_query(upload_id, number), body=body, length=length)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        etag = resp.headers.get("etag")
        if not etag:
            raise errors.InternalError()
        return etag

    # -- CompleteMultipartUpload -------------------------------------------------------
    def complete(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        bucket, key = req.bucket, req.key
        upload_id = upload_id_of(req)
        # Read fresh, not from this worker's cache: a retried Complete may reach this
        # worker after another one completed the upload and deleted its record.
        record = self.store.get(bucket, key, upload_id, req.environ, fresh=True)
        if record is None:
            raw = req.read_small_body(xml.MAX_REQUEST_XML)
            done_before = self._completed_before(req, upload_id, raw)
            if done_before is not None:
                return done_before
            req.environ["wsgi.input"] = io.BytesIO(raw)
            req.environ["CONTENT_LENGTH"] = str(len(raw))
        if record is None or not record.encrypted:
            if record is None and self.ctx.policy.require:
                raise errors.NoSuchUpload(UploadId=upload_id)   # not one encproxy made
            self.ctx.refuse_unencrypted()   # [encryption] require, never through a record
            # A whole-object checksum (not the XML body's: authentication left it to the
            # layer that completes) goes down with the request: the file store checks it
            # against the parts' checksums; the S3 backend app refuses it (501).
            conditions = backend_conditions(self.ctx, req)
            resp = subrequest.open_stream(self.app, passed_through(req, conditions))
            body = resp.read_all()
            if record is not None and 200 <= resp.status < 300 and b"<Error>" not in body:
                self.store.forget(bucket, key, upload_id, req.environ)
            return relayed(resp.status, resp.headers, body)
        raw = req.read_small_body(xml.MAX_REQUEST_XML)
        chosen = parse_complete(raw)
        numbers = [n for n, _ in chosen]
        check_part_numbers(numbers)
        customer = sse.parse_customer_key(req.headers)
        claim = object_checksum_claim(req.headers, record)   # a malformed one: BadDigest
        conditions = backend_conditions(self.ctx, req)   # enforced by the backend Complete
        description = None
        if record.mode != sse.MODE_SSE_C:
            # The client names its parts by plaintext MD5: the part records say which
            # backend part each is (FORMAT.md §7.8).
            keys = self.keys_for(req, bucket, key, upload_id, record, customer)
            md5s = [_part_md5(upload_id, n, etag) for n, etag in chosen]
            stored = self.backend_parts(req.environ, bucket, key, upload_id)
            found = self._backend_etags(req.environ, bucket, key, upload_id, keys, chosen,
                                        md5s, stored)
            backend = [(n, etag) for n, etag, _ in found]
            etags, sizes, retried_tail = self._chosen_parts(req, upload_id, chosen, backend,
                                                            stored)
            summed = self._object_checksum(upload_id, record, keys, chosen, md5s,
                                           [r for _, _, r in found], sizes,
                                           parse_part_checksums(raw), claim)
            description = describe(md5s, upload_id, *(summed or (None, ())))
        else:
            if claim is not None:
                # SSE-C part records keep no checksums (their names would need the key).
                raise errors.NotImplementedError_(
                    "Checksums of SSE-C multipart uploads are not supported.")
            stored = self.backend_parts(req.environ, bucket, key, upload_id)
            backend = list(chosen)
            etags, sizes, retried_tail = self._chosen_parts(req, upload_id, chosen, backend,
                                                            stored)
        # An SSE-C object's index opens only with the customer's key, which listings do
        # not have: they size it by §7.5's arithmetic, which an index signal would stop.
        plan = plan_completion(numbers, sizes, can_rewrite_last_part=True,
                               always_index=self.always_index and record.mode != sse.MODE_SSE_C,
                               description=description)
        if retried_tail and not plan.held_tail:
            last, etag = chosen[-1]
            raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(last), ETag=etag)
        if plan.trailer is not Trailer.NONE:
            self._seal(req, upload_id, record, customer, plan, etags, numbers[-1], sizes[-1])
        done = complete_upload(self.app, req.environ, bucket, key, upload_id,
                               [(n, etags[n]) for n in plan.backend_part_numbers], conditions)
        backend_etag = xml.child_text(xml.parse(done.body, max_size=subrequest.MAX_SUBRESPONSE),
                                      "ETag") or ""
        self.store.forget(bucket, key, upload_id, req.environ)
        etag = client_multipart_etag(plan.layout, record.mode, backend_etag)
        self.ctx.remember(bucket, key, backend_etag, plan.layout.ciphertext_size, ObjectFacts(
            True, plan.layout.plaintext_size, etag, record.mode, record.key_id), req.environ)
        # The layout written is the verified layout (§7.7): this worker's first read
        # of the object needs no layout check.
        self.ctx.layouts.remember(bucket, key, plan.layout.ciphertext_size, backend_etag,
                                  KnownLayout(plan.layout, object_id=Envelope.decode(
                                      record.envelope).object_id if record.envelope else None))
        headers = {k: v for k, v in done.headers.items() if k in ("x-amz-version-id",)}
        headers.update(self.sse_headers(record, customer))
        return self._completed(req, etag, headers,
                               description.checksum if description is not None else None,
                               len(numbers))

    @staticmethod
    def _completed(req: S3Request, etag: str, headers: dict[str, str],
                   checksum: StoredChecksum | None = None, parts: int = 0) -> Response:
        assert req.bucket is not None and req.key is not None
        root = xml.Node("CompleteMultipartUploadResult")
        host = req.headers.get("host", "localhost")
        root.add("Location", f"http://{host}/{req.bucket}/{quote(req.key)}")
        root.add("Bucket", req.bucket)
        root.add("Key", req.key)
        root.add("ETag", etag)
        if checksum is not None:
            checksum_headers.add_elements(root, checksum, parts)
        return xml_response(root, environ=req.environ, headers=headers)

    def _object_checksum(self, upload_id: str, record: UploadRecord, keys: ObjectKeys,
                         chosen: list[tuple[int, str]], md5s: list[bytes],
                         records: list[PartRecord], sizes: list[int],
                         sent: dict[int, dict[str, str]], claim: ChecksumClaim | None
                         ) -> tuple[StoredChecksum, list[bytes]] | None:
        """The object's checksum (FORMAT.md §15), from its parts' sealed checksums,
        without reading a part again: the upload's declared algorithm and type, else
        S3's default (FULL_OBJECT CRC64NVME); None when a part has none (uploaded before
        checksums were kept), unless the upload declared one (InvalidPart).  The part
        checksums the client's list names must be the parts' (InvalidPart; a list may
        name none, as at S3).  ``claim``: the client's checksum of
        the whole object (``x-amz-checksum-<algorithm>``), which must be this one
        (BadDigest)."""
        declared = record.checksum_algorithm
        algorithm = declared or (claim.algorithm if claim is not None
                                 else checksum_headers.DEFAULT_ALGORITHM)
        checksum_type = record.checksum_type or (
            FULL_OBJECT if algorithm in checksums.CRC_ALGORITHMS else COMPOSITE)
        digests = []
        for (number, etag), md5, part, size in zip(chosen, md5s, records, sizes, strict=True):
            invalid = errors.InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=etag)
            if part.size != size:
                # The sizes come from the backend's ListParts; a FULL_OBJECT CRC is
                # combined from the authenticated ones, which they must match.
                raise invalid
            sealed = dict(part.sealed_checksums).get(algorithm)
            if sealed is None:
                if declared is not None or claim is not None:
                    raise invalid
                return None   # a part uploaded before encproxy kept checksums
            name = part_etag_name(keys, number, md5)
            digest = open_part_checksum(keys, number, name, algorithm, sealed)
            named = sent.get(number, {})
            if declared is not None:
                value = named.get(declared)
                if any(a != declared for a in named) or value is not None \
                        and value != base64.b64encode(digest).decode("ascii"):
                    raise invalid
            digests.append((digest, size))
        if checksum_type == FULL_OBJECT:
            whole = checksums.combine_crc(algorithm, digests)
        else:
            whole = checksums.composite(algorithm, [d for d, _ in digests])
        checksum = StoredChecksum(algorithm, checksum_type, whole)
        if claim is not None and claim.digest != whole:
            raise errors.BadDigest(f"The {checksums.display_name(algorithm)} you specified "
                                   "did not match the calculated checksum.")
        return checksum, [d for d, _ in digests]

    def _completed_before(self, req: S3Request, upload_id: str, raw: bytes) -> Response | None:
        """A retried Complete of an upload encproxy already completed (its records are
        gone): the same answer again if the object at the key is still the one that
        upload made with this part list (its described index names the upload and the
        ETag of these parts, FORMAT.md §7.8); NoSuchUpload if that upload made it with
        another list; else None (not known to have been completed: the caller answers
        NoSuchUpload, or passes an upload encproxy did not record through)."""
        assert req.bucket is not None and req.key is not None
        bucket, key = req.bucket, req.key
        try:
            chosen = parse_complete(raw)
            check_part_numbers([n for n, _ in chosen])
            md5s = [_part_md5(upload_id, n, etag) for n, etag in chosen]
        except errors.S3Error:
            _not_retried(upload_id, "its part list does not parse")
            return None
        head = subrequest.request(self.app, req.environ, "HEAD", bucket, key)
        value = head.headers.get(ENVELOPE_HEADER) if head.ok else None
        if value is None:
            _not_retried(upload_id, f"no encrypted object at the key (HEAD {head.status})")
            return None
        envelope = self.ctx.decode_envelope(value, bucket, key)
        mode = mode_of(envelope.protection)
        if envelope.kind is not Kind.MULTIPART or mode == sse.MODE_SSE_C:
            # An SSE-C object's index opens only with the customer's key.
            _not_retried(upload_id, "the object at the key is single-part or SSE-C")
            return None
        backend_etag = head.headers.get("etag", "")
        stored_size = int(head.headers.get("content-length", "0"))
        keys = self.ctx.open_keys(envelope, bucket, key, None, head.headers.get(CONTEXT_HEADER),
                                  head.headers.get("x-amz-version-id"))
        fetcher = Fetcher(self.app, req.environ, bucket, key, None, backend_etag)
        with integrity.reported(bucket, key):
            key_id = integrity.authenticated_key_id(envelope)
            layout = self.ctx.layouts.layout(keys, stored_size, backend_etag, fetcher).layout
        if layout.description is None or layout.etag is None:
            _not_retried(upload_id, "the object at the key has no described index")
            return None
        if layout.description.upload_digest != upload_digest(upload_id):
            _not_retried(upload_id, "another upload made the object at the key")
            return None
        if layout.description[:2] != describe(md5s, upload_id)[:2] \
                or layout.part_numbers != tuple(n for n, _ in chosen):
            # This upload made the object, with other parts: it is complete, and gone
            # (never handed to the backend, which may still know it: moto does).
            raise errors.NoSuchUpload(UploadId=upload_id)
        headers = {k: v for k, v in head.headers.items() if k in ("x-amz-version-id",)}
        headers.update(sse.response_headers(mode, key_id, None,
                                            head.headers.get(CONTEXT_HEADER),
                                            envelope.bucket_key is not None))
        log.info("upload %s of %s/%s: Complete retried after it succeeded; same answer",
                 upload_id, bucket, key)
        return self._completed(req, layout.etag, headers, layout.description.checksum,
                               layout.parts)

    def _backend_etags(self, parent: dict[str, Any], bucket: str, key: str, upload_id: str,
                       keys: ObjectKeys, chosen: list[tuple[int, str]], md5s: list[bytes],
                       stored: dict[int, tuple[str, int]]
                       ) -> list[tuple[int, str, PartRecord]]:
        """The backend ETag of each part the client names by its plaintext MD5: the
        backend's part, if an authenticated part record says an upload of that part with
        those bytes made it; read a few at a time.  InvalidPart otherwise (no upload of that
        part had those bytes, or one did but was replaced since).  The last part of a
        retried Complete whose held tail was written has another backend ETag now: it is
        named by the record whose backend ETag has a held copy (``_chosen_parts``)."""
        def find(position: int) -> tuple[int, str, PartRecord]:
            number, etag = chosen[position]
            name = part_etag_name(keys, number, md5s[position])
            current = stored.get(number)
            if current is not None:
                found = self.store.find_part(bucket, key, upload_id, number, name, current[0],
                                             parent)
                if found is not None:
                    return number, current[0], found
            if position == len(chosen) - 1:
                for record in self.store.part_attempts(bucket, key, upload_id, number, name,
                                                       parent):
                    if self.store.find_held(bucket, key, upload_id, number,
                                            record.backend_etag, parent) is not None:
                        return number, record.backend_etag, record
            raise errors.InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=etag)
        if len(chosen) == 1:
            return [find(0)]
        return list(self._record_pool.map(find, range(len(chosen))))

    def _chosen_parts(self, req: S3Request, upload_id: str, chosen: list[tuple[int, str]],
                      backend: list[tuple[int, str]], stored: dict[int, tuple[str, int]]
                      ) -> tuple[dict[int, str], list[int], bool]:
        """The client's list (``chosen``; ``backend``: the backend ETag each names) checked
        against the backend's parts: the backend ETag and plaintext size of each, and
        whether the last is the held copy of a retried tail."""
        assert req.bucket is not None and req.key is not None
        sizes = []
        retried_tail = False
        for position, ((number, etag), (_, wanted)) in enumerate(
                zip(chosen, backend, strict=True)):
            invalid = errors.InvalidPart(UploadId=upload_id, PartNumber=str(number), ETag=etag)
            part = stored.get(number)
            if part is None or part[0].strip('"') != wanted.strip('"'):
                # The last part of a Complete that failed after its held tail was uploaded
                # has another ETag now; the one the client's names is its held copy's.
                held = None if position < len(chosen) - 1 else self.store.find_held(
                    req.bucket, req.key, upload_id, number, wanted, req.environ)
                if held is None:
                    raise invalid
                part, retried_tail = (wanted, held[1]), True
            try:
                sizes.append(segment_plaintext_size(part[1]))
            except CiphertextSizeInvalid:   # not a segment (a trailer a failed Complete left)
                raise invalid from None
        etags = {number: stored[number][0] for number, _ in backend[:-1]}
        last, last_etag = backend[-1]
        etags[last] = last_etag if retried_tail else stored[last][0]
        return etags, sizes, retried_tail

    def _seal(self, req: S3Request, upload_id: str, record: UploadRecord,
              customer: sse.CustomerKey | None, plan: CompletionPlan, etags: dict[int, str],
              last: int, last_size: int) -> None:
        """Upload the completion's trailer (its own part, or the held tail): ``etags``
        gets the backend ETag of the part it went into."""
        assert req.bucket is not None and req.key is not None
        if record.mode == sse.MODE_SSE_C and customer is None:
            if record.completion is None or plan.held_tail:
                # A held tail re-uploads the last part, whose held copy only the data key
                # verifies; an upload created before issue 15 has no completion key.
                raise errors.InvalidRequest(
                    "This multipart upload uses SSE-C and its completion must seal the end of "
                    "the object with the upload's key: send the "
                    "x-amz-server-side-encryption-customer-* headers with "
                    "CompleteMultipartUpload.")
            # The completion key seals the trailer and nothing else (FORMAT.md §7.9).
            number = plan.trailer_number
            assert number is not None and plan.trailer_in_own_part
            trailer = build_trailer(self._completion_keys(record), plan)
            etags[number] = self.put_part(req.environ, req.bucket, req.key, upload_id, number,
                                          trailer, len(trailer))
            return
        keys = self.keys_for(req, req.bucket, req.key, upload_id, record, customer)
        trailer = build_trailer(keys, plan)
        if plan.trailer_in_own_part:
            number = plan.trailer_number
            assert number is not None
            etags[number] = self.put_part(req.environ, req.bucket, req.key, upload_id, number,
                                          trailer, len(trailer))
        else:
            etags[last] = self.held_tail(req.environ, req.bucket, req.key, upload_id, keys,
                                         last, etags[last], last_size, trailer)

    def _completion_keys(self, record: UploadRecord) -> CompletionKeys:
        """The completion key of an SSE-C upload, unwrapped from its (authenticated)
        record: KeyUnwrapFailed if it is not what encproxy wrapped for this object."""
        assert record.completion is not None and record.envelope is not None
        envelope = Envelope.decode(record.envelope)
        try:
            blob = bytes.fromhex(record.completion)
        except ValueError:
            raise errors.KeyUnwrapFailed("completion-key") from None
        key = self.store.records.keys.unwrap(
            blob, completion_context(record.bucket, record.key, envelope))
        return CompletionKeys(envelope.suite, envelope.object_id, key)

    def backend_parts(self, parent: dict[str, Any], bucket: str, key: str,
                      upload_id: str) -> dict[int, tuple[str, int]]:
        """Every uploaded part of the backend upload: number -> (ETag, stored size)."""
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            resp = subrequest.request(self.app, parent, "GET", bucket, key,
                                      upload_query(upload_id) + f"&part-number-marker={marker}")
            if not resp.ok:
                raise subrequest.failure(resp.status, resp.body)
            root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
            for p in root.findall("Part"):
                number = int(xml.child_text(p, "PartNumber") or "0")
                parts[number] = (xml.child_text(p, "ETag") or "",
                                 int(xml.child_text(p, "Size") or "0"))
            next_marker = xml.child_text(root, "NextPartNumberMarker")
            if (xml.child_text(root, "IsTruncated") or "") != "true" or not next_marker \
                    or int(next_marker) <= marker:
                return parts
            marker = int(next_marker)

    def held_tail(self, parent: dict[str, Any], bucket: str, key: str, upload_id: str,
                  keys: ObjectKeys, number: int, etag: str, plaintext_size: int,
                  trailer: bytes) -> str:
        """Re-upload terminal part ``number`` as its held segment followed by the
        trailer (FORMAT.md §7.4); the new backend ETag.

        The held copy is verified as it streams (``verified_held_segment``): a copy that
        does not authenticate as this part of this upload fails the re-upload before its
        last byte is sent, and Complete fails with it (never an unreadable object).
        """
        found = self.store.find_held(bucket, key, upload_id, number, etag, parent)
        if found is None:
            log.error("upload %s of %s/%s: no held copy of part %d with ETag %s", upload_id,
                      bucket, key, number, etag)
            raise errors.InternalError()
        # If-Match on the ETag the backend gave the copy when it was written: a rewritten
        # copy fails here already (its bytes are verified as they stream regardless).
        resp = subrequest.stream(self.app, parent, "GET", self.store.internal_bucket,
                                 found.name, headers={"If-Match": found.copy_etag or etag})
        size = segment_size(plaintext_size)
        if resp.status != 200 or int(resp.header("content-length") or "-1") != size \
                or found.size != size:
            resp.close()
            log.error("upload %s of %s/%s: the held copy %s of part %d is missing, changed "
                      "(If-Match) or of another size (backend status %d)", upload_id, bucket,
                      key, found.name, number, resp.status)
            raise subrequest.internal_failure(resp.status)
        failed: list[errors.IntegrityError] = []

        def held() -> Iterator[bytes]:
            try:
                yield from verified_held_segment(keys, number, plaintext_size, found.salt,
                                                 (bytes(p) for p in resp.body))
            except errors.IntegrityError as exc:
                failed.append(exc)
                raise
        try:
            with integrity.reported(self.store.internal_bucket, found.name):
                try:
                    new_etag = self.put_part(parent, bucket, key, upload_id, number,
                                             subrequest.IterReader(chain(held(), [trailer])),
                                             size + len(trailer))
                except Exception:
                    if failed:   # the backend may have turned it into an error of its own
                        raise failed[0] from None
                    raise
                if failed:
                    raise failed[0]
                return new_etag
        finally:
            resp.close()

    # -- AbortMultipartUpload, ListParts ---------------------------------------------------
    def abort(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        resp = subrequest.open_stream(self.app, req.environ)
        body = resp.read_all()
        if 200 <= resp.status < 300 or resp.status == 404:
            self.store.forget(req.bucket, req.key, req.query.get("uploadId", ""), req.environ)
        return relayed(resp.status, resp.headers, body)

    def _client_part_etags(self, req: S3Request, upload_id: str, record: UploadRecord,
                           listed: dict[int, str]
                           ) -> dict[tuple[int, str], tuple[str, StoredChecksum | None]] | None:
        """(part number, backend ETag) -> the part ETag the client got (its plaintext
        MD5) and the part's checksum in the upload's declared algorithm, from the
        authenticated records of the ``listed`` parts (number -> backend ETag); None for
        SSE-C (opaque ETags)."""
        assert req.bucket is not None and req.key is not None
        if record.mode == sse.MODE_SSE_C:
            return None
        keys = self.keys_for(req, req.bucket, req.key, upload_id, record, None)
        out = {}
        declared = record.checksum_algorithm
        for number, name, part in self.store.part_records(req.bucket, req.key, upload_id,
                                                          listed, req.environ):
            try:
                md5 = open_part_md5(keys, number, name, part.sealed_md5)
                sealed = dict(part.sealed_checksums).get(declared or "")
                checksum = None if declared is None or sealed is None else StoredChecksum(
                    declared, FULL_OBJECT if declared in checksums.CRC_ALGORITHMS
                    else COMPOSITE,
                    open_part_checksum(keys, number, name, declared, sealed))
            except errors.IntegrityError as exc:
                report(f"part record {name} of part {number} (upload {upload_id})", exc)
                raise
            out[(number, part.backend_etag.strip('"'))] = (f'"{md5.hex()}"', checksum)
        return out

    def list_parts(self, req: S3Request) -> Response:
        assert req.bucket is not None and req.key is not None
        upload_id = upload_id_of(req)
        record = self.store.get(req.bucket, req.key, upload_id, req.environ)
        if record is None or not record.encrypted:
            return self.ctx.pass_through(req)
        resp = subrequest.open_stream(self.app, client_only_removed(req.environ))
        body = resp.read_all()
        if resp.status != 200:
            return relayed(resp.status, resp.headers, body)
        root = xml.parse(body, max_size=subrequest.MAX_SUBRESPONSE)
        client_etags = self._client_part_etags(req, upload_id, record, {
            int(p.findtext("PartNumber") or "0"): p.findtext("ETag") or ""
            for p in root.findall("Part")})
        for child in list(root):
            if child.tag in ("ChecksumAlgorithm", "ChecksumType"):
                root.remove(child)   # the backend's word about an upload it sees in parts
        if record.checksum_algorithm is not None and record.checksum_type is not None:
            _append(root, "ChecksumAlgorithm",
                    checksum_headers.XML_NAMES[record.checksum_algorithm])
            _append(root, "ChecksumType", record.checksum_type)
        for part in root.findall("Part"):
            etag = part.find("ETag")
            checksum = None
            if client_etags is not None and etag is not None:
                number = int(part.findtext("PartNumber") or "0")
                # A part without a record never got its ETag to the client (the upload
                # failed before it answered): it is shown with the backend's.
                found = client_etags.get((number, (etag.text or "").strip('"')))
                if found is not None:
                    etag.text, checksum = found
            size = part.find("Size")
            try:
                size.text = str(segment_plaintext_size(int(size.text or "0")))  # type: ignore
            except (CiphertextSizeInvalid, ValueError, AttributeError):
                root.remove(part)   # a trailer left by a failed Complete: not the client's
                continue
            for child in list(part):
                if child.tag.startswith("Checksum"):
                    part.remove(child)
            if checksum is not None:
                _append(part, "Checksum" + checksum_headers.XML_NAMES[checksum.algorithm],
                        checksum.value())
        return Response(xml.render_element(root), status=200,
                        headers=[(k, v) for k, v in resp.headers
                                 if k.lower() not in ("content-length",)])
