"""UpdateObjectEncryption (``PUT /b/k?encryption[&versionId=]``): a new master key for an
object, without rewriting its body.

AWS's operation (2025) turns an SSE-S3 object into an SSE-KMS one, or moves an SSE-KMS
object to another KMS key, by re-encrypting only the data key; the object's body, ETag,
checksums and size stay as they are.  encproxy does the same with its own envelope
(docs/FORMAT.md §2, §3.4): the data key is unwrapped, wrapped under the named key, and a
new envelope with the SSE-KMS protection byte (a new tag, same data key and object id)
replaces the old one.  Nothing is encrypted under the shared data key that was not
already: the stored ciphertext is the same bytes, so rebinding is sound (§3.4).

The new envelope is written the way ``encproxy rotate`` writes one (docs/KEYS.md):

* **in place** where the backend can (the file store): ``rewrite_in_place`` sends a
  REPLACE self-copy of the version opened, flagged with ``environ.IN_PLACE`` (an
  environ key: no client can send it), and the store rewrites that version's user
  metadata only: the same version id, body, ETag and Last-Modified, no new version,
  as AWS's operation; any version, current or not.  An S3 backend app refuses the
  flag with 501, and the envelope is written as below instead;
* a single-part object by a backend **self-copy** with ``x-amz-metadata-directive:
  REPLACE`` (the backend copies the ciphertext as it is);
* a multipart-format object **part by backend part** (``part_copy.copy_parts``), which
  keeps the segment boundaries, part numbers and ``-N`` its segments and listing sizes
  depend on;

each conditional on the backend ETag that was opened (``x-amz-copy-source-if-match``),
so an object overwritten meanwhile is never clobbered: the update starts again once on
the new object, then gives up with 503 SlowDown.  Every other piece of user metadata,
the content headers, the storage class and the website redirect are written again as
they were; an SSE-KMS encryption context stored with the object is kept and bound again.

Refused as AWS refuses them (InvalidRequest): unencrypted objects (including objects a
backend encrypted on its own, which encproxy stores as it was sent: DSSE-KMS cannot
reach encproxy's format), SSE-C objects, requests for any other new type than SSE-KMS,
and SigV2-signed requests.  A key the provider does not know is KMS.NotFoundException,
as for PutObject.  Also refused, with NotImplemented: through an S3 backend, a
``versionId`` that is not the current version (a self-copy cannot rewrite an older
version in place); everywhere, objects whose user-metadata names hold ``_`` (a WSGI
sub-request cannot carry them unchanged).
"""
from __future__ import annotations

import logging
from urllib.parse import quote

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.format.constants import Kind
from encproxy.s3 import metadata as s3meta
from encproxy.s3 import sse, xml
from encproxy.s3.object_encryption import MAX_BODY, parse_object_encryption
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.auth.access import require_kms_key
from encproxy.wsgi.encryption import integrity, kept_tags
from encproxy.wsgi.encryption.context import EncryptionContext
from encproxy.wsgi.encryption.facts import ObjectFacts
from encproxy.wsgi.encryption.headers import (
    CONTEXT_HEADER,
    ENVELOPE_HEADER,
    check_metadata_budget,
    mode_of,
    stored_metadata,
)
from encproxy.wsgi.encryption.kept_acl import kept_acl_headers
from encproxy.wsgi.encryption.layouts import backend_parts, client_multipart_etag
from encproxy.wsgi.encryption.part_copy import copy_parts
from encproxy.wsgi.encryption.sources import Source, open_source
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.encryption")

# Headers of a HEAD answer that a REPLACE copy must send again to keep them.
KEPT_HEADERS = (*s3meta.CONTENT_HEADERS, "x-amz-storage-class",
                "x-amz-website-redirect-location")
UNENCRYPTED = ("The UpdateObjectEncryption operation doesn't support unencrypted source "
               "objects. Only source objects encrypted with SSE-S3 or SSE-KMS are supported.")
UNSUPPORTED_SOURCE = ("The UpdateObjectEncryption operation doesn't support source objects "
                      "with the encryption type DSSE-KMS or SSE-C. Only source objects "
                      "encrypted with SSE-S3 or SSE-KMS are supported.")
NEEDS_SIGV4 = ("Requests that modify an object encryption configuration require AWS "
               "Signature Version 4. Modify the request to use AWS Signature Version 4, "
               "and then try again.")
NULL_VERSION = "null"    # S3's id of the version of an object written without versioning
ATTEMPTS = 2        # the object changed under the first: look once more, then give up


def update_object_encryption(ctx: EncryptionContext, req: S3Request) -> Response:
    assert req.bucket is not None and req.key is not None
    if _signed_with_sigv2(req):
        raise errors.InvalidRequest(NEEDS_SIGV4)
    wanted = parse_object_encryption(req.read_small_body(MAX_BODY))
    key_id = ctx.keys.normalize(wanted.kms_key)      # KMS.NotFoundException if malformed
    require_kms_key(req.environ, key_id)              # [access_kms_keys]
    version = req.query.get("versionId")
    for _ in range(ATTEMPTS):
        if _attempt(ctx, req, key_id, version, wanted.bucket_key_enabled):
            return Response(b"", status=200)
    raise errors.SlowDown("The object changed while its encryption was being updated; "
                          "try again.")


def _signed_with_sigv2(req: S3Request) -> bool:
    authorization = req.headers.get("authorization", "")
    return authorization.startswith("AWS ") or "AWSAccessKeyId" in req.query


def _attempt(ctx: EncryptionContext, req: S3Request, key_id: str, version: str | None,
             bucket_key: bool = False) -> bool:
    """Re-wrap the object once (under a bucket key if ``bucket_key``: the request's
    ``BucketKeyEnabled``); False if it changed under us (nothing was written)."""
    assert req.bucket is not None and req.key is not None
    bucket, key = req.bucket, req.key
    _refuse_unsupported(ctx, req, bucket, key, version)
    src = open_source(ctx, req, bucket, key, version, None)
    if src.envelope is None:
        raise errors.InvalidRequest(UNENCRYPTED)
    if src.mode not in (sse.MODE_SSE_S3, sse.MODE_SSE_KMS):
        raise errors.InvalidRequest(UNSUPPORTED_SOURCE)
    if any("_" in name for name in src.headers if name.startswith("x-amz-meta-")):
        raise errors.NotImplementedError_(
            "encproxy cannot update the encryption of an object whose user-metadata names "
            "contain '_'.")
    context = src.headers.get(CONTEXT_HEADER)
    plan = sse.WritePlan(sse.MODE_SSE_KMS, key_id,
                         context=sse.parse_context(context) if context else None,
                         bucket_key=bucket_key)
    assert src.keys is not None
    envelope = ctx.rebound(src.keys, plan, bucket, key)     # KMS.NotFoundException here
    ctx.open_keys(envelope, bucket, key, None, context)     # it opens before it is written
    user = {k[len("x-amz-meta-"):]: v for k, v in src.user_metadata().items()}
    check_metadata_budget(user, envelope, context)
    with integrity.reported(bucket, key):
        new_key_id = integrity.authenticated_key_id(envelope)
    user_headers = {**src.user_metadata(), **stored_metadata(envelope, context)}
    # In place first (the file store): the version named, or the one opened, keeps its
    # version id, body, ETag and Last-Modified, as AWS's operation does.
    pinned = version or src.headers.get("x-amz-version-id") or NULL_VERSION
    in_place = rewrite_in_place(ctx.app, req.environ, bucket, key, pinned, user_headers,
                                src.backend_etag)
    if in_place.status == 412:
        log.info("UpdateObjectEncryption %s/%s: the object changed meanwhile", bucket, key)
        return False
    if in_place.status != 501:
        if not in_place.ok:
            raise subrequest.failure(in_place.status, in_place.body)
        ctx.remember(bucket, key, src.backend_etag, src.stored_size, ObjectFacts(
            True, src.plaintext_size, src.etag, sse.MODE_SSE_KMS, new_key_id), req.environ)
        log.info("UpdateObjectEncryption %s/%s version %s: %s -> aws:kms under %s, in place",
                 bucket, key, pinned, src.mode, new_key_id)
        return True
    # The backend cannot (an S3 backend): a self-copy, which makes a new current version.
    if version is not None:
        _refuse_noncurrent(ctx, req, src)
    headers = {name: value for name, value in src.headers.items() if name in KEPT_HEADERS}
    headers.update(user_headers)
    headers.update(kept_acl_headers(ctx.app, req.environ, bucket, key, version))
    tags = kept_tags.read_tags(ctx.app, req.environ, bucket, key, version)
    headers.update(kept_tags.tag_headers(tags))
    if src.multipart:
        backend_etag = _rewrite_parts(ctx, req, src, headers)
    else:
        backend_etag = _rewrite_single(ctx, req, src, headers)
    if backend_etag is None:
        log.info("UpdateObjectEncryption %s/%s: the object changed meanwhile", bucket, key)
        return False
    # On the latest version: the one the copy made.
    kept_tags.restore_tags(ctx.app, req.environ, bucket, key, tags, None)
    # The copy keeps every part's bytes and the index: a multipart object's client-visible
    # ETag is still the one its described index gives, else the backend's (FORMAT.md §7.8).
    etag = src.etag
    if src.multipart:
        assert src.keys is not None
        layout = ctx.layouts.layout(src.keys, src.stored_size, src.backend_etag,
                                    src.fetcher).layout
        etag = client_multipart_etag(layout, sse.MODE_SSE_KMS, backend_etag)
    ctx.remember(bucket, key, backend_etag, src.stored_size, ObjectFacts(
        True, src.plaintext_size, etag, sse.MODE_SSE_KMS, new_key_id), req.environ)
    log.info("UpdateObjectEncryption %s/%s: %s -> aws:kms under %s", bucket, key, src.mode,
             new_key_id)
    return True


def rewrite_in_place(app: WSGIApp, parent: subrequest.Environ | None, bucket: str, key: str,
                     version_id: str, headers: dict[str, str],
                     backend_etag: str) -> subrequest.SubResponse:
    """Ask the app below to give version ``version_id`` of ``key`` the user metadata
    ``headers`` (every ``x-amz-meta-*`` it is to have, the envelope included) in place:
    a REPLACE self-copy of that version, conditional on ``backend_etag``, flagged with
    ``environ.IN_PLACE`` (never a header: a client cannot ask for this).  The file store
    answers the CopyObjectResult of the same version; 412 if the version changed (nothing
    written); an S3 backend, which cannot, 501 without a backend request."""
    environ = subrequest.request_environ(parent, "PUT", bucket, key, headers={
        **headers,
        "x-amz-copy-source": "/" + quote(bucket + "/" + key, safe="/~")
        + "?versionId=" + subrequest.quote_param(version_id),
        "x-amz-metadata-directive": "REPLACE",
        "x-amz-copy-source-if-match": backend_etag})
    environ[env.IN_PLACE] = True
    resp = subrequest.run(app, environ)
    if resp.ok:
        try:
            done = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE).tag == \
                "CopyObjectResult"
        except errors.S3Error:
            done = False
        if not done:
            return subrequest.SubResponse(500, resp.headers, resp.body)
    return resp


def _refuse_unsupported(ctx: EncryptionContext, req: S3Request, bucket: str, key: str,
                        version: str | None) -> None:
    """AWS's errors for unencrypted and SSE-C objects, from a HEAD, before the keys are
    needed (an SSE-C object would otherwise ask for its customer key).  The object as
    opened afterwards is checked again: this look only chooses the error."""
    query = ("versionId=" + subrequest.quote_param(version)) if version else ""
    head = subrequest.request(ctx.app, req.environ, "HEAD", bucket, key, query)
    if not head.ok:
        # HEAD answers carry no error code: ask again with GET for the client's error
        # (NoSuchKey; NoSuchVersion or InvalidArgument for a version that does not exist).
        got = subrequest.request(ctx.app, req.environ, "GET", bucket, key, query,
                                 headers={"Range": "bytes=0-0"})
        if got.ok:
            raise errors.ServiceUnavailable()
        raise subrequest.failure(got.status, got.body)
    value = head.headers.get(ENVELOPE_HEADER)
    if value is None:
        if ctx.policy.require:
            raise integrity.envelope_missing(bucket, key)
        raise errors.InvalidRequest(UNENCRYPTED)
    envelope = ctx.decode_envelope(value, bucket, key)
    if mode_of(envelope.protection) not in (sse.MODE_SSE_S3, sse.MODE_SSE_KMS):
        raise errors.InvalidRequest(UNSUPPORTED_SOURCE)


def _refuse_noncurrent(ctx: EncryptionContext, req: S3Request, src: Source) -> None:
    """A self-copy replaces the current object: a ``versionId`` must name that one."""
    current = subrequest.request(ctx.app, req.environ, "HEAD", src.bucket, src.key)
    named = src.headers.get("x-amz-version-id") or "null"
    if not current.ok or current.headers.get("etag") != src.backend_etag or \
            (current.headers.get("x-amz-version-id") or "null") != named:
        raise errors.NotImplementedError_(
            "encproxy updates the encryption of the current version of an object only.")


def _rewrite_single(ctx: EncryptionContext, req: S3Request, src: Source,
                    headers: dict[str, str]) -> str | None:
    """The backend's self-copy with the new envelope; its new ETag, None on 412."""
    headers = {**headers, "x-amz-copy-source": src.copy_source(),
               "x-amz-metadata-directive": "REPLACE", "x-amz-tagging-directive": "REPLACE",
               "x-amz-copy-source-if-match": src.backend_etag}
    resp = subrequest.request(ctx.app, req.environ, "PUT", src.bucket, src.key,
                              headers=headers)
    if resp.status == 412:
        return None
    if not resp.ok:
        raise subrequest.failure(resp.status, resp.body)
    result = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
    if result.tag != "CopyObjectResult":      # S3 may answer a failed copy with 200
        raise subrequest.failure(500, resp.body)
    return xml.child_text(result, "ETag") or src.backend_etag


def _rewrite_parts(ctx: EncryptionContext, req: S3Request, src: Source,
                   headers: dict[str, str]) -> str | None:
    """A multipart-format object, backend part by backend part (FORMAT.md §3.4)."""
    assert src.keys is not None and src.envelope is not None
    assert src.envelope.kind is Kind.MULTIPART
    n = backend_parts(src.backend_etag)
    if n is None:
        raise errors.InternalError()
    with integrity.reported(src.bucket, src.key):
        known = ctx.layouts.layout(src.keys, src.stored_size, src.backend_etag, src.fetcher)

    def still_current() -> None:
        # Completing replaces the object: it must still be the one whose parts we copied.
        again = subrequest.request(ctx.app, req.environ, "HEAD", src.bucket, src.key)
        if again.headers.get("etag") != src.backend_etag:
            raise errors.PreconditionFailed()

    try:
        etag = copy_parts(ctx.app, req.environ, src.bucket, src.key,
                          source=src.copy_source(), source_etag=src.backend_etag,
                          ranges=known.layout.backend_part_ranges(n),
                          numbers=known.layout.backend_part_numbers(n), headers=headers,
                          before_complete=still_current)
    except errors.S3Error as exc:
        if exc.status == 412:
            return None
        raise
    ctx.layouts.remember(src.bucket, src.key, src.stored_size, etag, known)
    return etag


__all__ = ["rewrite_in_place", "update_object_encryption"]
