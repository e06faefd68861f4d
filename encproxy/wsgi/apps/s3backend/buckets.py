"""The S3 backend's bucket operations and listings: checked as the file store checks
them, answered as the file store answers where the backend's view differs."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote_plus

from werkzeug.wrappers import Response

from encproxy import errors
from encproxy.s3 import continuation, xml
from encproxy.s3.names import check_bucket_name
from encproxy.s3backend import forwarding
from encproxy.s3backend.client import S3BackendClient
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.s3backend.relay import (
    backend_error,
    read_result,
    read_result_source,
    relay,
    result_headers,
    send,
    small_body,
)
from encproxy.wsgi.listing_page import EDITED_IN_LISTINGS, ListingSlot, parsed_page
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import xml_response


class BucketOperations:
    client: S3BackendClient
    region: str

    # -- buckets ----------------------------------------------------------------------
    def op_CreateBucket(self, req: S3Request) -> Response:
        assert req.bucket is not None
        check_bucket_name(req.bucket)
        body = small_body(req)
        if body.strip():
            config = xml.parse(body)
            if config.tag != "CreateBucketConfiguration":
                raise errors.MalformedXML()
            constraint = xml.child_text(config, "LocationConstraint")
            if constraint and constraint != self.region:
                raise errors.IllegalLocationConstraintException(
                    f"The {constraint} location constraint is incompatible for the region "
                    f"specific endpoint this request was sent to.")
        head = self.client.request("HEAD", req.bucket, None)
        head.close()
        if head.status == 200:
            return self._create_existing(req)
        if head.status == 403:
            raise errors.relayed("BucketAlreadyExists", 409,
                                 "The requested bucket name is not available.",
                                 BucketName=req.bucket)
        backend_region = self.client.config.region
        config_body = b""
        if backend_region != "us-east-1":
            root = xml.Node("CreateBucketConfiguration")
            root.add("LocationConstraint", backend_region)
            config_body = xml.render(root)
        resp = send(self.client, req, body=config_body, query="")
        if resp.status >= 300:
            raise backend_error(req, resp)
        resp.close()
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def _create_existing(self, req: S3Request) -> Response:
        """CreateBucket of a bucket the caller owns: S3 answers BucketAlreadyOwnedByYou,
        except in us-east-1, where for legacy compatibility it answers 200 and resets
        the bucket's ACL (to the request's, or private)."""
        assert req.bucket is not None
        if self.region != "us-east-1":
            raise errors.BucketAlreadyOwnedByYou(BucketName=req.bucket)
        acl_headers = {name: value for name, value in req.headers.items()
                       if name.lower() == "x-amz-acl" or name.lower().startswith("x-amz-grant-")}
        if not acl_headers:
            acl_headers = {"x-amz-acl": "private"}
        resp = self.client.request("PUT", req.bucket, None, query="acl", headers=acl_headers)
        if resp.status >= 300:
            raise backend_error(req, resp)
        resp.close()
        req.environ[env.BUCKET_EXISTED] = True
        return Response(b"", status=200, headers={"Location": "/" + req.bucket})

    def op_HeadBucket(self, req: S3Request) -> Response:
        resp = send(self.client, req)
        if resp.status >= 300:
            raise backend_error(req, resp)
        resp.close()
        return Response(None, status=200, headers={"x-amz-bucket-region": self.region})

    def op_GetBucketLocation(self, req: S3Request) -> Response:
        resp = send(self.client, req, method="HEAD", query="")
        if resp.status >= 300:
            raise backend_error(req, resp)
        resp.close()
        # The region clients sign for, not the backend's; us-east-1 is an empty constraint.
        return xml_response(xml.Node("LocationConstraint",
                                     None if self.region == "us-east-1" else self.region),
                            environ=req.environ)

    # -- listings ---------------------------------------------------------------------
    def op_ListObjects(self, req: S3Request) -> Response:
        _check_list_arguments(req, "max-keys")
        return relay(req, send(self.client, req))

    def op_ListObjectsV2(self, req: S3Request) -> Response:
        if req.query.get("list-type") != "2":
            raise errors.InvalidArgument("Invalid List Type specified in Request",
                                         ArgumentName="list-type",
                                         ArgumentValue=req.query.get("list-type", ""))
        _check_list_arguments(req, "max-keys")
        token = req.query.get("continuation-token")
        # An empty token is no token, as S3 reads it (it is still echoed back).
        replace = {} if not token else {"continuation-token": continuation.unwrap(token)}
        query = forwarding.forward_query(req.environ.get(env.RAW_QUERY, ""), replace,
                                         omit=() if token else ("continuation-token",))
        resp = send(self.client, req, query=query)
        root, source = read_result_source(req, resp)
        if token == "" and root.find("ContinuationToken") is None:
            root.append(root.makeelement("ContinuationToken", {}))
        echoed, following = root.find("ContinuationToken"), root.find("NextContinuationToken")
        if echoed is not None:
            echoed.text = token
        if following is not None:
            following.text = continuation.wrap(following.text or "", _last_listed(root))
        slot = req.environ.get(env.LISTING_PAGE)
        if isinstance(slot, ListingSlot):     # the layer above renders it (listing_page.py)
            slot.page = parsed_page(root, "Contents", source)
            return Response(b"", status=200, headers=result_headers(resp))
        return Response(xml.render_edited(root, source, EDITED_IN_LISTINGS), status=200,
                        headers=result_headers(resp))

    def op_ListMultipartUploads(self, req: S3Request) -> Response:
        _check_list_arguments(req, "max-uploads")
        resp = send(self.client, req)
        root = read_result(req, resp)
        if (xml.child_text(root, "IsTruncated") or "").strip() != "true":
            _sort_uploads(root)
        return Response(xml.render_element(root), status=200, headers=result_headers(resp))


def _last_listed(root: ET.Element) -> str:
    """The last key or common prefix of a ListObjectsV2 page (decoded): the next page
    lists only keys after it."""
    url_encoded = (xml.child_text(root, "EncodingType") or "") == "url"
    last = ""
    for path in ("Contents/Key", "CommonPrefixes/Prefix"):
        found = root.findall(path)
        if found:
            name = found[-1].text or ""
            last = max(last, unquote_plus(name) if url_encoded else name)
    return last


def _check_list_arguments(req: S3Request, max_name: str) -> None:
    """``encoding-type`` and the page size, checked as the file store checks them."""
    encoding = req.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request",
                                     ArgumentName="encoding-type", ArgumentValue=encoding)
    req.int_param(max_name, 1000, 0, 1000)


def _sort_uploads(root: Any) -> None:
    """A whole listing in S3's order: by key (UTF-8 bytes), then by initiation.
    Ceph RGW orders one key's uploads by upload id, moto does not sort at all."""
    url = (xml.child_text(root, "EncodingType") or "") == "url"
    uploads = root.findall("Upload")
    if not uploads:
        return
    at = list(root).index(uploads[0])
    for upload in uploads:
        root.remove(upload)

    def order(upload: Any) -> tuple[bytes, str]:
        key = xml.child_text(upload, "Key") or ""
        return ((unquote_plus(key) if url else key).encode("utf-8"),
                xml.child_text(upload, "Initiated") or "")

    for offset, upload in enumerate(sorted(uploads, key=order)):
        root.insert(at + offset, upload)
