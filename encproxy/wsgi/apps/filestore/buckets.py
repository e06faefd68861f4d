"""The file store's service and bucket operations, object listings included."""
from __future__ import annotations

import base64
from collections.abc import Callable

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.filestore.records import ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.s3 import xml
from encproxy.s3.dates import iso8601
from encproxy.s3.names import check_bucket_name
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.filestore.common import (
    acl_from_request,
    check_version_id,
    common_prefixes,
    encoder,
    list_params,
    owner_nodes,
    quoted,
)
from encproxy.wsgi.listing_page import ListedEntry, ListingPage, ListingSlot
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import request_id, xml_response


class BucketOperations:
    store: FileStore
    region: str

    # -- service and buckets ----------------------------------------------------------
    def op_ListBuckets(self, req: S3Request) -> Response:
        """Every bucket in name order, or a page of them (``prefix``, ``max-buckets``,
        ``continuation-token``, ``bucket-region``), as AWS pages them since 2024."""
        prefix = req.query.get("prefix", "")
        paged = "max-buckets" in req.query or "continuation-token" in req.query
        limit = req.int_param("max-buckets", 10_000, 1, 10_000)
        after = _bucket_token(req.query["continuation-token"]) \
            if "continuation-token" in req.query else ""
        region = req.query.get("bucket-region")
        names = [b for b in self.store.list_buckets()
                 if b.name.startswith(prefix) and b.name > after
                 and (region is None or region == self.region)]
        page = names[:limit]
        root = xml.Node("ListAllMyBucketsResult")
        buckets = root.add("Buckets")
        for b in page:
            entry = [xml.Node("Name", b.name), xml.Node("CreationDate", iso8601(b.created))]
            if paged or region is not None:
                entry.append(xml.Node("BucketRegion", self.region))
            buckets.add("Bucket", entry)
        root.add("Owner", owner_nodes())
        if len(names) > limit:
            root.add("ContinuationToken",
                     base64.urlsafe_b64encode(page[-1].name.encode()).decode())
        if "prefix" in req.query:
            root.add("Prefix", prefix)
        return xml_response(root, environ=req.environ)

    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        check_bucket_name(req.bucket)
        acl = acl_from_request(req)
        body = req.read_small_body(xml.MAX_REQUEST_XML)
        if body.strip():
            config = xml.parse(body)
            if config.tag != "CreateBucketConfiguration":
                raise errors.MalformedXML()
            constraint = xml.child_text(config, "LocationConstraint")
            if constraint and constraint != self.region:
                raise errors.IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible for the region "
                    f"specific endpoint this request was sent to.")
        try:
            self.store.create_bucket(req.bucket, acl)
        except errors.BucketAlreadyOwnedByYou:
            # S3's legacy us-east-1 answer: 200, the bucket kept, its ACL reset.
            if self.region != "us-east-1":
                raise
            self.store.put_bucket_acl(req.bucket, acl)
            req.environ[env.BUCKET_EXISTED] = True
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def op_HeadBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        return Response(b"", status=200, headers={"x-amz-bucket-region": self.region})

    def op_DeleteBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.delete_bucket(req.bucket)
        return Response(b"", status=204)

    def op_GetBucketLocation(self, req: S3Request) -> Response:
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        # us-east-1 is reported as an empty constraint, as S3 does.
        return xml_response(xml.Node("LocationConstraint",
                                     None if self.region == "us-east-1" else self.region),
                            environ=req.environ)

    # -- listing ----------------------------------------------------------------------
    def op_ListObjects(self, req: S3Request) -> Response:
        assert req.bucket is not None
        prefix, delimiter, max_keys, url = list_params(req)
        marker = req.query.get("marker", "")
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=marker or None, max_keys=max_keys)
        enc = encoder(url)

        def build(entries: list[ListedEntry] | None) -> xml.Node:
            root = xml.Node("ListBucketResult")
            root.add("Name", req.bucket)
            root.add("Prefix", enc(prefix))
            root.add("Marker", enc(marker))
            if result.is_truncated and delimiter and result.next_marker:
                root.add("NextMarker", enc(result.next_marker))
            root.add("MaxKeys", max_keys)
            if delimiter:
                root.add("Delimiter", enc(delimiter))
            root.add("IsTruncated", result.is_truncated)
            root.extend(_contents(result.contents, enc, owner=True, entries=entries))
            root.extend(common_prefixes(result.common_prefixes, enc))
            if url:
                root.add("EncodingType", "url")
            return root
        return _listing_response(req, build, lambda: _listed(result.contents))

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        assert req.bucket is not None
        if req.query.get("list-type") != "2":
            raise errors.InvalidArgument("Invalid List Type specified in Request",
                                         ArgumentName="list-type",
                                         ArgumentValue=req.query.get("list-type", ""))
        prefix, delimiter, max_keys, url = list_params(req)
        token = req.query.get("continuation-token")
        start_after = req.query.get("start-after", "")
        after = _decode_token(token) if token is not None else (start_after or None)
        result = self.store.list_objects(req.bucket, prefix=prefix, delimiter=delimiter,
                                         start_after=after, max_keys=max_keys)
        enc = encoder(url)
        owner = req.query.get("fetch-owner") == "true"

        def build(entries: list[ListedEntry] | None) -> xml.Node:
            root = xml.Node("ListBucketResult")
            root.add("Name", req.bucket)
            root.add("Prefix", enc(prefix))
            if token is not None:
                root.add("ContinuationToken", token)
            if start_after:
                root.add("StartAfter", enc(start_after))
            root.add("KeyCount", len(result.contents) + len(result.common_prefixes))
            root.add("MaxKeys", max_keys)
            if delimiter:
                root.add("Delimiter", enc(delimiter))
            root.add("IsTruncated", result.is_truncated)
            if next_token is not None:
                root.add("NextContinuationToken", next_token)
            root.extend(_contents(result.contents, enc, owner=owner, entries=entries))
            root.extend(common_prefixes(result.common_prefixes, enc))
            if url:
                root.add("EncodingType", "url")
            return root
        next_token = _encode_token(result.next_marker) \
            if result.is_truncated and result.next_marker else None
        return _listing_response(req, build, lambda: _listed(result.contents), next_token)

    def op_ListObjectVersions(self, req: S3Request) -> Response:
        """Every version and delete marker, by key then newest first, from the index.
        Markers as S3's: ``key-marker`` alone lists after that key; with
        ``version-id-marker``, after that version of that key."""
        assert req.bucket is not None
        prefix, delimiter, max_keys, url = list_params(req)
        key_marker = req.query.get("key-marker", "")
        id_marker = req.query.get("version-id-marker") or None   # empty: none
        if id_marker is not None:
            if not key_marker:
                raise errors.InvalidArgument(
                    "A version-id marker cannot be specified without a key marker.",
                    ArgumentName="version-id-marker", ArgumentValue=id_marker)
            check_version_id(id_marker, "version-id-marker")
        result = self.store.list_versions(req.bucket, prefix=prefix, delimiter=delimiter,
                                          key_marker=key_marker or None,
                                          version_id_marker=id_marker, max_keys=max_keys)
        enc = encoder(url)
        objects = [v for v in result.versions if not v.delete_marker]

        def build(entries: list[ListedEntry] | None) -> xml.Node:
            root = xml.Node("ListVersionsResult")
            root.add("Name", req.bucket)
            root.add("Prefix", enc(prefix))
            root.add("KeyMarker", enc(key_marker))
            root.add("VersionIdMarker", id_marker or "")
            if result.is_truncated and result.next_key_marker:
                root.add("NextKeyMarker", enc(result.next_key_marker))
                if result.next_version_id_marker is not None:
                    root.add("NextVersionIdMarker", result.next_version_id_marker)
            root.add("MaxKeys", max_keys)
            if delimiter:
                root.add("Delimiter", enc(delimiter))
            root.add("IsTruncated", result.is_truncated)
            listed = iter(entries or ())
            for v in result.versions:
                common = [xml.Node("Key", enc(v.key)), xml.Node("VersionId", v.version_id),
                          xml.Node("IsLatest", v.is_latest),
                          xml.Node("LastModified", iso8601(v.last_modified))]
                if v.delete_marker:
                    root.add("DeleteMarker", [*common, xml.Node("Owner", owner_nodes())])
                    continue
                shown = next(listed) if entries is not None else None
                root.add("Version", [
                    *common, xml.Node("ETag", shown.etag if shown else quoted(v.etag)),
                    xml.Node("Size", shown.size if shown else v.size),
                    xml.Node("Owner", owner_nodes()),
                    xml.Node("StorageClass", v.storage_class)])
            root.extend(common_prefixes(result.common_prefixes, enc))
            if url:
                root.add("EncodingType", "url")
            return root
        return _listing_response(req, build, lambda: [
            ListedEntry(v.key, quoted(v.etag), v.size, v.is_latest, v.version_id,
                        v.listing_facts) for v in objects])

    # -- versioning -------------------------------------------------------------------
    def op_GetBucketVersioning(self, req: S3Request) -> Response:
        """``Status`` once versioning was ever set; an empty document before, as S3."""
        assert req.bucket is not None
        status = self.store.bucket_versioning(req.bucket)
        root = xml.Node("VersioningConfiguration")
        if status is not None:
            root.add("Status", status)
        return xml_response(root, environ=req.environ)

    def op_PutBucketVersioning(self, req: S3Request) -> Response:
        """Enabled or Suspended.  MFA delete cannot be enabled: encproxy has no MFA
        device to check tokens against, so it refuses rather than pretend."""
        assert req.bucket is not None
        self.store.require_bucket(req.bucket)
        config = xml.parse(req.read_small_body(xml.MAX_REQUEST_XML))
        if config.tag != "VersioningConfiguration":
            raise errors.MalformedXML()
        status = xml.child_text(config, "Status")
        mfa = xml.child_text(config, "MfaDelete")
        if status not in ("Enabled", "Suspended") or mfa not in (None, "Enabled", "Disabled"):
            raise errors.IllegalVersioningConfigurationException()
        if mfa == "Enabled":
            raise errors.NotImplementedError_(
                "encproxy's file store does not implement MFA delete.", ArgumentName="MfaDelete")
        self.store.put_bucket_versioning(req.bucket, status)
        return Response(b"", status=200)


def _contents(records: list[ObjectRecord], encode: Callable[[str], str], owner: bool,
              entries: list[ListedEntry] | None = None) -> list[xml.Node]:
    """The ``Contents`` entries, rendered as strings: what ``xml.Node`` trees of them would
    render to (tests/unit/test_filestore_listing_render.py), at a fraction of the cost.
    ``entries``: the page as the layer above corrected it (listing_page.py), whose ETags
    and sizes are shown; None: the records' own."""
    esc = xml.escape_text
    owner_markup = xml.markup(xml.Node("Owner", owner_nodes())) if owner else ""
    out: list[xml.Node] = []
    for i, r in enumerate(records):
        etag, size = (entries[i].etag, entries[i].size) if entries is not None \
            else (quoted(r.etag), r.size)
        out.append(xml.Fragment(
            f"<Contents><Key>{esc(encode(r.key))}</Key>"
            f"<LastModified>{iso8601(r.last_modified)}</LastModified>"
            f"<ETag>{esc(etag)}</ETag><Size>{size}</Size>{owner_markup}"
            f"<StorageClass>{esc(r.meta.storage_class)}</StorageClass></Contents>"))
    return out


def _listed(records: list[ObjectRecord]) -> list[ListedEntry]:
    return [ListedEntry(r.key, quoted(r.etag), r.size, carried_facts=r.listing_facts)
            for r in records]


def _listing_response(req: S3Request, build: Callable[[list[ListedEntry] | None], xml.Node],
                      entries: Callable[[], list[ListedEntry]],
                      next_token: str | None = None) -> Response:
    """The page built by ``build``, as XML; or left in the listing slot of the layer above
    (listing_page.py) with its ``entries``, for that layer to correct and render."""
    slot = req.environ.get(env.LISTING_PAGE)
    if not isinstance(slot, ListingSlot):
        return xml_response(build(None), environ=req.environ)
    listed = entries()
    slot.page = ListingPage(listed, lambda: xml.render(build(listed)), next_token)
    return Response(b"", status=200, content_type="application/xml",
                    headers={"x-amz-request-id": request_id(req.environ)})


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    try:
        name = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        return name.decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token") from None


def _bucket_token(token: str) -> str:
    """The last bucket name of the page a ListBuckets continuation token ends."""
    try:
        name = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        return name.decode("utf-8")
    except (ValueError, UnicodeError):
        raise errors.InvalidArgument("The continuation token provided is incorrect",
                                     ArgumentName="continuation-token",
                                     ArgumentValue=token) from None
