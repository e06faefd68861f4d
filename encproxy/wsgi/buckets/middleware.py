"""Bucket default encryption, answered by encproxy itself (``?encryption``).

PutBucketEncryption, GetBucketEncryption and DeleteBucketEncryption never reach
the backend: the configuration lives in the ``BucketConfigStore``.  This layer
also keeps that store consistent with bucket life cycles (a deleted bucket's
configuration goes with it, and so does what encproxy kept for its open uploads;
a new bucket starts with none) and hides the
internal bucket from clients.
"""
from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Iterable
from typing import Any

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.keys.provider import KeyProvider
from encproxy.s3 import xml
from encproxy.s3.bucket_encryption import MAX_BODY, parse_configuration
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.auth.access import require_kms_key, visible_bucket
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.encryption.fact_records import FactRecords
from encproxy.wsgi.encryption.rewraps import RewrapStore
from encproxy.wsgi.encryption.upload_store import open_uploads, remove_location, upload_location
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary, xml_response

log = logging.getLogger("encproxy.bucket_encryption")


class BucketEncryptionMiddleware:
    def __init__(self, app: WSGIApp, store: BucketConfigStore, keys: KeyProvider,
                 own_backend_identity: Collection[str] = ()) -> None:
        """``own_backend_identity``: the access keys whose requests reach the backend as
        a backend user of their own (``[backend_credentials]``); their bucket encryption
        requests are decided as S3 decides them, for the bucket owner alone."""
        self.app = app
        self.store = store
        self.keys = keys
        self.own_backend_identity = frozenset(own_backend_identity)
        self._native = s3_error_boundary(self.handle)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = S3Request.of(environ)
        if req.bucket == self.store.internal_bucket or req.operation in (
                "PutBucketEncryption", "GetBucketEncryption", "DeleteBucketEncryption",
                "ListBuckets", "DeleteBucket", "CreateBucket"):
            return self._native(environ, start_response)
        return self.app(environ, start_response)

    def handle(self, environ: dict[str, Any]) -> Response:
        req = S3Request.of(environ)
        if req.bucket == self.store.internal_bucket:
            raise errors.AccessDenied()
        assert req.operation is not None
        handler: Callable[[S3Request], Response] = getattr(self, "op_" + req.operation)
        return handler(req)

    # -- the subresource --------------------------------------------------------------
    def _require_bucket(self, req: S3Request) -> str:
        assert req.bucket is not None
        resp = subrequest.request(self.app, req.environ, "HEAD", req.bucket)
        _check_answer(resp, req.bucket)
        if req.environ.get(env.ACCESS_KEY) in self.own_backend_identity:
            self._require_owner(req)
        return req.bucket

    def _require_owner(self, req: S3Request) -> None:
        """AccessDenied unless the caller's backend user owns the bucket.

        encproxy answers ``?encryption`` itself, so the backend never decides it; S3
        gives the bucket owner alone the encryption configuration (its
        ``s3:PutEncryptionConfiguration`` and ``s3:GetEncryptionConfiguration``).  A
        backend that lets another team read a bucket must not let it remove the
        bucket's encryption: the owner in the bucket's ACL must be the caller's own,
        as its ListBuckets names it, both asked as the caller.
        """
        assert req.bucket is not None
        acl = subrequest.request(self.app, req.environ, "GET", req.bucket, query="acl")
        _check_answer(acl, req.bucket)
        listing = subrequest.request(self.app, req.environ, "GET", "", query="max-buckets=1")
        _check_answer(listing, req.bucket)
        owner, caller = _owner_id(acl.body), _owner_id(listing.body)
        if owner is None or owner != caller:
            raise errors.AccessDenied()

    def op_PutBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        if req.content_length(required=False) > MAX_BODY:
            raise errors.MaxMessageLengthExceeded()
        config = parse_configuration(req.read_small_body(MAX_BODY))
        if config.kms_key_id is not None:
            key_id = self.keys.normalize(config.kms_key_id)
            require_kms_key(req.environ, key_id)
            if not self.keys.key_exists(key_id):
                raise errors.KMSNotFound(f"Invalid keyId '{config.kms_key_id}'")
            config = dataclasses.replace(config, kms_key_id=key_id)
        self.store.put(bucket, config, parent=req.environ)
        log.info("bucket %s: default encryption set to %s, blocked encryption types %s",
                 bucket, config.algorithm or "(server default)",
                 ",".join(config.blocked_encryption_types or ()) or "(none)")
        return Response(b"", status=200)

    def op_GetBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        config = self.store.get(bucket, parent=req.environ)
        if config is None:
            raise errors.ServerSideEncryptionConfigurationNotFoundError(BucketName=bucket)
        return xml_response(config.to_xml(), environ=req.environ)

    def op_DeleteBucketEncryption(self, req: S3Request) -> Response:
        bucket = self._require_bucket(req)
        self.store.delete(bucket, parent=req.environ)
        return Response(b"", status=204)

    # -- bucket life cycle ------------------------------------------------------------
    def _relay(self, req: S3Request) -> tuple[subrequest.SubResponse, Response]:
        resp = subrequest.run(self.app, req.environ)
        relayed = Response(resp.body, status=resp.status,
                           headers=[(k, v) for k, v in resp.headers.items()
                                    if k not in ("content-length",)])
        return resp, relayed

    def op_DeleteBucket(self, req: S3Request) -> Response:
        """S3 deletes a bucket's open multipart uploads with it (only objects, versions
        and delete markers keep a bucket alive), and so do the backends: what encproxy
        keeps for those uploads (records, held copies) and the bucket's configuration
        must go too.  The uploads are listed before the deletion, as nothing can list
        them after it; one created in between is left to ``encproxy uploads orphans``."""
        assert req.bucket is not None
        locations = self._upload_locations(req.bucket, req.environ)
        resp, relayed = self._relay(req)
        if resp.ok:
            self.store.delete(req.bucket, parent=req.environ)
            self._forget_uploads(req.bucket, locations, req.environ)
            for kind, records in (("rewrap", RewrapStore), ("facts", FactRecords)):
                self._forget_records(req.bucket, kind, records, req.environ)
        return relayed

    def _forget_records(self, bucket: str, kind: str,
                        records: type[RewrapStore] | type[FactRecords],
                        parent: dict[str, Any]) -> None:
        # The rewrap records of the bucket's versions and the facts records of its objects
        # (FORMAT.md §14, §17), all gone with it, as S3 deletes only an empty bucket.  The
        # bucket is gone: a failure is logged, not answered.
        try:
            records(self.store.app, self.store.internal_bucket,
                    self.store.records).remove_bucket(bucket, parent)
        except errors.S3Error as exc:
            log.warning("deleted bucket %s: could not remove its %s records (%s)", bucket,
                        kind, exc.code)

    def _upload_locations(self, bucket: str, parent: dict[str, Any]) -> list[str]:
        """Where encproxy keeps the state of each upload open in ``bucket`` (none if the
        backend will not list them: then DeleteBucket answers for itself)."""
        try:
            return [upload_location(bucket, key, upload_id)
                    for key, upload_id in open_uploads(self.store.app, bucket, parent)]
        except errors.S3Error as exc:
            if exc.code != "NoSuchBucket":
                log.warning("bucket %s: cannot list its open uploads before deleting it (%s); "
                            "`encproxy uploads orphans` finds what they leave", bucket, exc.code)
            return []

    def _forget_uploads(self, bucket: str, locations: list[str],
                        parent: dict[str, Any]) -> None:
        # The bucket is gone already: a failure here is logged, never the client's error.
        for where in locations:
            try:
                remove_location(self.store.app, self.store.internal_bucket, where, parent)
            except errors.S3Error as exc:
                log.warning("deleted bucket %s: could not remove %s%s from the internal bucket "
                            "(%s); `encproxy uploads orphans` finds it", bucket,
                            self.store.internal_bucket + "/", where, exc.code)
        if locations:
            log.info("deleted bucket %s: removed the state of %d open upload(s)", bucket,
                     len(locations))

    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        resp, relayed = self._relay(req)
        if resp.ok and not req.environ.get(env.BUCKET_EXISTED):
            # A configuration left by a bucket deleted behind encproxy's back must not
            # apply to a new bucket of the same name.  (A 200 for a bucket that already
            # existed, S3's us-east-1 answer, created nothing: its configuration stays.)
            self.store.delete(req.bucket, parent=req.environ)
        return relayed

    def op_ListBuckets(self, req: S3Request) -> Response:
        """The backend's buckets but the internal one (and, with ``[access]``, those the
        caller may not see).  A page bounded by ``max-buckets`` that lost entries to them
        is filled from the backend's next pages, so that it holds what S3 would list."""
        resp, relayed = self._relay(req)
        if not resp.ok:
            return relayed
        root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        buckets = root.find("Buckets")
        if buckets is not None:
            entries = self._shown(buckets, req.environ)
            wanted = _max_buckets(req.query.get("max-buckets"))
            page = root
            while wanted is not None and len(entries) < wanted:
                token = xml.child_text(page, "ContinuationToken")
                if not token:
                    break
                page = self._next_buckets(req, token, wanted - len(entries))
                more = page.find("Buckets")
                entries += self._shown(more, req.environ) if more is not None else []
            # S3 lists buckets by name; some backends (moto) list them as created.
            entries.sort(key=lambda b: (xml.child_text(b, "Name") or "").encode("utf-8"))
            for bucket in list(buckets):
                buckets.remove(bucket)
            buckets.extend(entries)
            if page is not root:    # the page that ended the list says what follows it
                _replace_child(root, "ContinuationToken", xml.child_text(page,
                                                                         "ContinuationToken"))
        return Response(xml.render_element(root), status=200, content_type="application/xml")

    def _shown(self, buckets: Any, environ: dict[str, Any]) -> list[Any]:
        visible = visible_bucket(environ)   # [access]: the caller's buckets only
        return [b for b in buckets
                if (name := xml.child_text(b, "Name")) != self.store.internal_bucket
                and name is not None and visible(name)]

    def _next_buckets(self, req: S3Request, token: str, count: int) -> Any:
        query = [f"max-buckets={count}", "continuation-token=" + subrequest.quote_param(token)]
        for name in ("prefix", "bucket-region"):
            if name in req.query:
                query.append(f"{name}={subrequest.quote_param(req.query[name])}")
        resp = subrequest.request(self.app, req.environ, "GET", "", query="&".join(query))
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        return xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)


def _max_buckets(value: str | None) -> int | None:
    """``max-buckets`` as the backend took it (it refused one it does not take)."""
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def _replace_child(root: Any, tag: str, text: str | None) -> None:
    """Set ``root``'s ``tag`` child to ``text`` (None: remove it)."""
    found = root.find(tag)
    if text is None:
        if found is not None:
            root.remove(found)
    elif found is not None:
        found.text = text
    else:
        ET.SubElement(root, tag).text = text


def _check_answer(resp: subrequest.SubResponse, bucket: str) -> None:
    """The backend's refusal of a check made for the caller, as S3 would answer it."""
    if resp.status == 404:
        raise errors.NoSuchBucket(BucketName=bucket)
    if resp.status == 403:
        raise errors.AccessDenied()
    if not resp.ok:
        raise errors.ServiceUnavailable() if resp.status == 503 else errors.InternalError()


def _owner_id(body: bytes) -> str | None:
    """``Owner/ID`` of a GetBucketAcl or ListBuckets answer; None if there is none."""
    try:
        owner = xml.parse(body).find("Owner")
    except errors.S3Error:
        return None
    return None if owner is None else xml.child_text(owner, "ID")
