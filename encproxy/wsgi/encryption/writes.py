"""PutObject (and POST Object) under encryption: single-part writes.

A write that is to be encrypted (request headers, else the bucket's default,
else the server's) reaches the app below as ciphertext of computable length,
with the object's envelope in its metadata; the client gets the plaintext MD5
as its ETag, sealed in the object so that no plaintext digest is stored in the
clear (docs/FORMAT.md §2, §6).
"""
from __future__ import annotations

from collections.abc import Iterator

from werkzeug.wrappers import Response

from encproxy import digests, errors, metrics
from encproxy.crypto.fact_names import Facts
from encproxy.crypto.single import ObjectEncryptor
from encproxy.crypto.stream import copied
from encproxy.format.constants import Kind
from encproxy.format.layout import check_single_size
from encproxy.s3 import checksum_headers, sse
from encproxy.s3 import metadata as s3meta
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import checksummed
from encproxy.wsgi.encryption.conditions import (
    CONDITION_HEADERS,
    backend_conditions,
    passed_through,
)
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import (
    check_metadata_budget,
    client_only_removed,
    refuse_reserved_metadata,
    stored_metadata,
)
from encproxy.wsgi.encryption.streaming import read_exactly
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import relayed


def put_object(ctx: EncryptionContext, req: S3Request) -> Response:
    assert req.bucket is not None and req.key is not None
    refuse_reserved_metadata(req.headers)
    plan = ctx.plan(req)
    conditions = backend_conditions(ctx, req)   # before the body is read
    if plan is None:
        return _put_plain(ctx, req, conditions)
    length = req.content_length()
    try:
        check_single_size(length, checksummed=True)
    except errors.S3Error:
        raise errors.EntityTooLarge(ProposedSize=str(length)) from None
    key = req.key
    keys, envelope = ctx.new_keys(plan, req.bucket, key, Kind.SINGLE)
    context = req.headers[sse.SSE_CONTEXT] if plan.context is not None else None
    check_metadata_budget(s3meta.user_metadata(req.headers), envelope, context)

    md5 = digests.md5_for(length)  # the plaintext ETag, hashed on the other core
    checksum = checksummed.for_write(req.environ, req.headers)   # sealed with it (§15)

    def plaintext() -> Iterator[bytes]:
        for piece in checksum.observed(read_exactly(req.body, length)):
            md5.update(piece)
            yield piece

    encryptor = ObjectEncryptor(keys, length)
    ciphertext = subrequest.IterReader(copied(encryptor.encrypt(
        plaintext(), md5=md5.digest, checksum=checksum.result)))
    inner = subrequest.derived_environ(
        client_only_removed(req.environ), drop=CONDITION_HEADERS,
        headers={**stored_metadata(envelope, context), **conditions},
        body=ciphertext, content_length=encryptor.ciphertext_size)
    inner[env.STORED_DIGEST] = encryptor.fingerprint  # the file store needs no MD5 of it
    # An SSE-C write needs no key provider: its facts do not make it wait on one either.
    sse_c = plan.mode == sse.MODE_SSE_C
    embedded = ctx.fact_records.embedded(req.bucket, lambda etag, size: Facts(
        key, plan.mode, size, etag, length, etag if sse_c else md5.hexdigest()), req.environ,
        load=not sse_c)
    if embedded is not None:
        inner[env.LISTING_FACTS] = embedded
    try:
        resp = subrequest.open_stream(ctx.app, inner)
        resp_body = resp.read_all()
    finally:
        digests.close(md5)
    if not 200 <= resp.status < 300:
        return relayed(resp.status, resp.headers, resp_body)
    metrics.encrypted(length)
    backend_etag = resp.header("etag")
    etag = '"' + md5.hexdigest() + '"'
    if plan.mode == sse.MODE_SSE_C:
        etag = backend_etag or etag
    key_id = ctx.key_id(plan)
    stored = checksum.result()
    if backend_etag:
        facts = ObjectFacts(True, length, etag, plan.mode, key_id, stored, keys.object_id)
        if (embedded is not None and embedded.kept(backend_etag, encryptor.ciphertext_size)) \
                or sse_c:   # an SSE-C object without them is recorded by a listing
            ctx.facts.put(req.bucket, key, backend_etag, encryptor.ciphertext_size, facts)
        else:
            ctx.remember(req.bucket, key, backend_etag, encryptor.ciphertext_size, facts,
                         req.environ)
    headers = {"ETag": etag, **sse.response_headers(
        plan.mode, key_id, plan.customer.key_md5 if plan.customer else None,
        req.headers.get(sse.SSE_CONTEXT), envelope.bucket_key is not None)}
    version = resp.header("x-amz-version-id")
    if version is not None:
        headers["x-amz-version-id"] = version
    headers.update(checksum_headers.response_headers(stored))   # S3 echoes it, with its type
    return Response(b"", status=200, headers=headers)


def _put_plain(ctx: EncryptionContext, req: S3Request, conditions: dict[str, str]) -> Response:
    """An unencrypted PutObject, passed through.  The embedded store keeps its facts in
    its index for nothing (once this process has its records root), so that a listing
    need not look it up to learn that it is not encrypted; through an S3 backend no record
    is written (it would double the backend requests of every unencrypted write): the
    first listing that meets the object records them."""
    assert req.bucket is not None and req.key is not None
    key = req.key
    inner = passed_through(req, conditions)
    # Never a key-provider call for it: an unencrypted write does not wait on the KMS.
    embedded = ctx.fact_records.embedded(req.bucket, lambda etag, size: Facts(
        key, sse.MODE_NONE, size, etag, size, etag), req.environ, load=False)
    if embedded is not None:
        inner[env.LISTING_FACTS] = embedded
    resp = Response.from_app(ctx.app, inner)
    backend_etag = resp.headers.get("etag")
    length = req.headers.get("x-amz-decoded-content-length") or req.environ.get(
        "CONTENT_LENGTH")
    if 200 <= resp.status_code < 300 and backend_etag and length and length.isdigit():
        size = int(length)
        facts = ObjectFacts(False, size, backend_etag)
        ctx.facts.put(req.bucket, key, backend_etag, size, facts)
    return resp
