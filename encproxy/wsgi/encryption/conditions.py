"""Conditional writes under encryption: the client's ETags translated to the backend's.

A client's ``If-Match`` names the ETag it sees: the plaintext MD5 of an encrypted
single-part object, sealed inside the object (FORMAT.md §2, §6).  The app below
(file store or S3 backend) knows only its own ETag of the stored body, so the
client's value cannot go down as sent: the backend would compare it with the
ciphertext's ETag and refuse the right one.  Instead:

1. the current object is looked up (HEAD) and its client-visible ETag worked out
   the way reads work it out, authenticated (the sealed MD5 opens only with the
   object's data key, bound to its bucket and key);
2. if it is one the client named, the write goes down with ``If-Match: <the
   backend's ETag of that object>``, so that the app below enforces the condition
   atomically with its write: if the object changes between the HEAD and the
   write, the write fails (412) rather than replace the newer object.

``If-None-Match: *`` needs no translation and goes down as is.  Nothing read back is
trusted to *allow* a write: a backend that lies about its ETag at most makes the
conditional write fail.  A backend that cannot enforce a condition refuses it
(``apps/s3backend``): a condition is never dropped.
"""
from __future__ import annotations

from encproxy import errors
from encproxy.crypto.single import ObjectDecryptor
from encproxy.format.constants import Kind
from encproxy.s3 import conditional_writes, sse
from encproxy.wsgi import subrequest
from encproxy.wsgi.encryption import integrity
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.headers import CONTEXT_HEADER, ENVELOPE_HEADER, mode_of
from encproxy.wsgi.encryption.layouts import client_multipart_etag
from encproxy.wsgi.encryption.reads import client_etag
from encproxy.wsgi.encryption.streaming import Fetcher
from encproxy.wsgi.request import S3Request

CONDITION_HEADERS = ("If-Match", "If-None-Match")


def backend_conditions(ctx: EncryptionContext, req: S3Request) -> dict[str, str]:
    """The ``If-Match`` / ``If-None-Match`` headers the write of ``req.bucket/req.key``
    goes down with (empty if it is unconditional).

    Raises what S3 answers when the condition fails on the current object already
    (412 PreconditionFailed, 404 NoSuchKey), and NotImplemented for an
    ``If-None-Match`` other than ``*``.
    """
    assert req.bucket is not None and req.key is not None
    conditions = conditional_writes.parse(req.headers)
    out: dict[str, str] = {}
    if conditions.if_none_match:
        out["If-None-Match"] = "*"
    if conditions.if_match is not None:
        current = _current_etags(ctx, req)
        conditions.check(None if current is None else current[0], req.key)
        assert current is not None
        # Unquoted: Ceph RGW compares the header's bytes with its stored (unquoted) ETag;
        # AWS, moto and the file store take either form.
        out["If-Match"] = current[1].strip('"')
    return out


def passed_through(req: S3Request, conditions: dict[str, str]) -> dict[str, object]:
    """``req``'s environ for the app below with the client's conditions replaced by
    ``conditions`` (a plaintext write still replaces an object the client names by
    its client-visible ETag)."""
    return subrequest.derived_environ(req.environ, drop=CONDITION_HEADERS, headers=conditions)


def _current_etags(ctx: EncryptionContext, req: S3Request) -> tuple[str, str] | None:
    """The current object's (client-visible, backend) ETags, None if there is none."""
    assert req.bucket is not None and req.key is not None
    bucket, key = req.bucket, req.key
    head = subrequest.request(ctx.app, req.environ, "HEAD", bucket, key)
    if head.status == 404:
        # A HEAD answer has no error code: NoSuchBucket and NoSuchKey look alike.
        got = subrequest.request(ctx.app, req.environ, "GET", bucket, key,
                                 headers={"Range": "bytes=0-0"})
        if got.ok:
            raise errors.ServiceUnavailable()
        error = subrequest.failure(got.status, got.body)
        if error.code == "NoSuchKey":
            return None
        raise error
    if not head.ok:
        raise subrequest.failure(head.status, head.body)
    backend_etag = head.headers.get("etag", "")
    value = head.headers.get(ENVELOPE_HEADER)
    if value is None:
        if ctx.policy.require:   # an object without envelope decides nothing (reads.py)
            raise integrity.envelope_missing(bucket, key)
        return backend_etag, backend_etag          # stored as sent: the same ETag
    envelope = ctx.decode_envelope(value, bucket, key)
    mode = mode_of(envelope.protection)
    if mode == sse.MODE_SSE_C:
        # It shows the client the backend's ETag (reads.py, sources.py).
        return backend_etag, backend_etag
    stored_size = int(head.headers.get("content-length", "0"))
    keys = ctx.open_keys(envelope, bucket, key, None, head.headers.get(CONTEXT_HEADER),
                         head.headers.get("x-amz-version-id"))
    if envelope.kind is Kind.MULTIPART:   # the ETag of its described index, if any (§7.8)
        fetcher = Fetcher(ctx.app, req.environ, bucket, key, None, backend_etag)
        with integrity.reported(bucket, key):
            layout = ctx.layouts.layout(keys, stored_size, backend_etag, fetcher).layout
        return client_multipart_etag(layout, mode, backend_etag), backend_etag
    with integrity.reported(bucket, key):
        decryptor = ObjectDecryptor(keys, stored_size)
    fetcher = Fetcher(ctx.app, req.environ, bucket, key, None, backend_etag)
    return client_etag(ctx, decryptor, mode, fetcher, stored_size), backend_etag
