"""Subresources and query parameters encproxy does not implement are refused, on every
backend, with 501 NotImplemented in S3 XML, before anything acts on them.

The danger is a request taken for the operation its method and path look like: the file
store once took ``PUT /b/k?encryption`` (UpdateObjectEncryption) for PutObject and replaced
the object with the XML body, and ``PUT /b/k2?renameObject`` for PutObject and wrote an
empty object.  Every row sends such a request (signed, so that it gets past
authentication), then reads the bucket back: the same objects, byte for byte.
"""
from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import pytest
import requests
from support.raw_s3 import REGION, Signed, signing_key
from support.server import ACCESS_KEY, SECRET_KEY

BODY = b"the original bytes, which must survive every refused request\n" * 4
KEY = "k"
NEW_KEY = "k2"
RESTORE = (b'<RestoreRequest xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
           b"<Days>1</Days></RestoreRequest>")
SELECT = (b'<SelectObjectContentRequest xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
          b"<Expression>select * from s3object</Expression><ExpressionType>SQL</ExpressionType>"
          b"<InputSerialization><CSV/></InputSerialization>"
          b"<OutputSerialization><CSV/></OutputSerialization></SelectObjectContentRequest>")
SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}

# method, path ("{b}" is the bucket), query, extra headers, body, and what the refusal
# names: a query parameter (lower-case: its ArgumentName), an operation (upper-case: in its
# Message), or None (a request that names no operation, or HEAD, which has no body).
CASES = [
    # -- objects ---------------------------------------------------------------------------
    # (PUT ?encryption on an object is UpdateObjectEncryption, which encproxy implements:
    # tests/api/test_update_object_encryption.py.)
    pytest.param("GET", "{b}/k", "encryption", {}, b"", None, id="get-object-encryption"),
    pytest.param("DELETE", "{b}/k", "encryption", {}, b"", None,
                 id="delete-object-encryption"),
    pytest.param("HEAD", "{b}/k", "encryption", {}, b"", None, id="head-object-encryption"),
    pytest.param("PUT", "{b}/k2", "renameObject", {"x-amz-rename-source": "/{b}/k"}, b"",
                 "renameObject", id="rename-object"),
    pytest.param("PUT", "{b}/k", "renameObject", {}, b"overwritten", "renameObject",
                 id="rename-object-onto-existing"),
    pytest.param("PUT", "{b}/k", "session", {}, b"overwritten", "session", id="put-session"),
    pytest.param("GET", "{b}/k", "torrent", {}, b"", "GetObjectTorrent", id="torrent"),
    pytest.param("POST", "{b}/k", "select&select-type=2", {}, SELECT, "SelectObjectContent",
                 id="select"),
    pytest.param("POST", "{b}/k", "restore", {}, RESTORE, "RestoreObject", id="restore"),
    pytest.param("GET", "{b}/k", "nonsense", {}, b"", "nonsense", id="get-nonsense"),
    pytest.param("PUT", "{b}/k", "nonsense", {}, b"overwritten", "nonsense",
                 id="put-nonsense"),
    pytest.param("PUT", "{b}/k", "nonsense", {"x-amz-copy-source": "/{b}/k",
                                              "x-amz-metadata-directive": "REPLACE"},
                 b"", "nonsense", id="copy-nonsense"),
    pytest.param("DELETE", "{b}/k", "nonsense", {}, b"", "nonsense", id="delete-nonsense"),
    pytest.param("HEAD", "{b}/k", "nonsense", {}, b"", None, id="head-nonsense"),
    pytest.param("POST", "{b}/k", "nonsense", {}, b"<x/>", None, id="post-nonsense"),
    pytest.param("PUT", "{b}/k", "uploads", {}, b"overwritten", "uploads", id="put-uploads"),
    pytest.param("DELETE", "{b}/k", "annotation&annotationName=a", {}, b"", "annotation",
                 id="delete-annotation"),
    pytest.param("GET", "{b}/k", "part&uploadId=u&partNumber=1", {}, b"", "part",
                 id="get-part"),
    pytest.param("PUT", "{b}/k", "tagging&nonsense", {},
                 b"<Tagging><TagSet/></Tagging>", "nonsense", id="put-tagging-nonsense"),
    pytest.param("GET", "{b}/k", "versionId=null&x-amz-checksum-crc32=AAAAAA", {}, b"",
                 "x-amz-checksum-crc32", id="get-hoisted-checksum"),
    # -- buckets ---------------------------------------------------------------------------
    pytest.param("PUT", "{b}", "uploads", {}, b"", "uploads", id="create-bucket-uploads"),
    pytest.param("DELETE", "{b}", "nonsense", {}, b"", "nonsense", id="delete-bucket-nonsense"),
    pytest.param("DELETE", "{b}", "metadataTable", {}, b"", "metadataTable",
                 id="delete-metadata-table"),
    pytest.param("DELETE", "{b}", "tagging&nonsense", {}, b"", "nonsense",
                 id="delete-tagging-nonsense"),
    pytest.param("GET", "{b}", "session", {}, b"", "session", id="create-session"),
    pytest.param("GET", "{b}", "mdsearch", {}, b"", "mdsearch", id="rgw-mdsearch"),
    pytest.param("GET", "{b}", "nonsense", {}, b"", "nonsense", id="list-nonsense"),
    pytest.param("GET", "{b}", "versions&list-type=2", {}, b"", "list-type",
                 id="two-listings"),
    pytest.param("HEAD", "{b}", "nonsense", {}, b"", None, id="head-bucket-nonsense"),
    pytest.param("POST", "{b}", "nonsense", {}, b"<x/>", "nonsense", id="post-nonsense-bucket"),
    pytest.param("POST", "{b}", "metadataConfiguration", {}, b"<x/>",
                 "metadataConfiguration", id="create-metadata-configuration"),
    pytest.param("PUT", "{b}", "abac", {}, b"<x/>", "abac", id="put-abac"),
    pytest.param("GET", "", "usage", {}, b"", "usage", id="rgw-usage"),
]


def signed_request(server, method: str, path: str, query: str, headers: dict[str, str],
                   body: bytes) -> requests.Response:
    url = f"{server.endpoint}/{path}" + (f"?{query}" if query else "")
    if body:
        headers = {**headers, "content-length": str(len(body))}
    signed = Signed(method, url, headers, hashlib.sha256(body).hexdigest())
    return requests.request(method, url, data=body or None, headers=signed.headers, timeout=30)


def snapshot(s3, bucket: str) -> dict[str, tuple[bytes, str]]:
    """Every object of the bucket: its bytes and ETag, as a client reads them."""
    out = {}
    for entry in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        got = s3.get_object(Bucket=bucket, Key=entry["Key"])
        out[entry["Key"]] = (got["Body"].read(), got["ETag"])
    return out


@pytest.fixture(params=["plain", "encrypted"])
def filled(request, s3, bucket) -> str:
    if request.param == "encrypted":
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=SSE_S3)
    s3.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    return bucket


@pytest.mark.parametrize("method,path,query,headers,body,named", CASES)
def test_refused_and_nothing_changes(server, s3, filled, method, path, query, headers, body,
                                     named):
    before = snapshot(s3, filled)
    assert before[KEY][0] == BODY and set(before) == {KEY}
    resp = signed_request(server, method, path.format(b=filled), query,
                          {k: v.format(b=filled) for k, v in headers.items()}, body)
    assert resp.status_code == 501, resp.text
    if method != "HEAD":
        assert resp.headers.get("content-type", "").startswith("application/xml")
        root = ET.fromstring(resp.content)
        assert root.tag == "Error" and root.findtext("Code") == "NotImplemented"
        if named is not None and named[0].islower():
            assert root.findtext("ArgumentName") == named
        elif named is not None:
            assert named in (root.findtext("Message") or "")
    # The bucket is still there, with the same objects, byte for byte.
    assert s3.head_bucket(Bucket=filled)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert snapshot(s3, filled) == before


@pytest.mark.parametrize("method,query,status", [
    pytest.param("GET", "", 200, id="get"),
    pytest.param("HEAD", "", 200, id="head"),
    pytest.param("GET", "versionId=null", 200, id="get-null-version"),
    pytest.param("GET", "x-id=GetObject", 200, id="sdk-routing-hint"),
])
def test_the_same_requests_without_the_stray_parameter_work(server, s3, filled, method, query,
                                                           status):
    """The control: the signing above is sound, so each 501 is the refusal under test."""
    resp = signed_request(server, method, f"{filled}/{KEY}", query, {}, b"")
    assert resp.status_code == status
    if method == "GET":
        assert resp.content == BODY


def node_sdk_v3_presigned_get(endpoint: str, path: str) -> str:
    """A presigned GET as the Node SDK v3 makes it: besides AWS's documented parameters it
    signs ``X-Amz-Content-Sha256``, the routing hint ``x-id`` and, since its checksums
    became default, the hoisted header ``x-amz-checksum-mode``."""
    now = datetime.now(UTC)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{date}/{REGION}/s3/aws4_request"
    params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
              "X-Amz-Credential": f"{ACCESS_KEY}/{scope}", "X-Amz-Date": amz_date,
              "X-Amz-Expires": "300", "X-Amz-SignedHeaders": "host",
              "x-amz-checksum-mode": "ENABLED", "x-id": "GetObject"}
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                     for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", path, query, f"host:{urlsplit(endpoint).netloc}\n", "host",
                           "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(signing_key(SECRET_KEY, date), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    return f"{endpoint}{path}?{query}&X-Amz-Signature={signature}"


def test_a_node_sdk_v3_presigned_get_works(server, filled):
    """Once refused through S3 backends ("does not forward the query parameter
    'X-Amz-Content-Sha256'"): every parameter the presigner signs is accepted."""
    url = node_sdk_v3_presigned_get(server.endpoint, f"/{filled}/{KEY}")
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == BODY
    tampered = requests.get(url.replace("x-id=GetObject", "x-id=PutObject"), timeout=30)
    assert tampered.status_code == 403


@pytest.mark.parametrize("path", ["{b}", "{b}/" + KEY], ids=["listing", "object"])
def test_a_post_redirect_target_is_answered(server, filled, path):
    """S3 appends ``bucket``, ``key`` and ``etag`` to a POST Object's
    ``success_action_redirect``; a form that redirects to a listing or an object of the
    gateway gets what S3 answers there, as if they were absent (ceph/s3-tests
    ``test_post_object_success_redirect_action``).  They name no subresource."""
    query = f'bucket={filled}&key=foo.txt&etag="{"0" * 32}"'
    resp = signed_request(server, "GET", path.format(b=filled), query, {}, b"")
    assert resp.status_code == 200, resp.text
    if path == "{b}":
        root = ET.fromstring(resp.content)
        assert root.tag.endswith("ListBucketResult")
        assert [e.text for e in root.iter() if e.tag.endswith("Key")] == [KEY]
    else:
        assert resp.content == BODY
    # Not a licence for any parameter: one more, and the request is refused as before.
    refused = signed_request(server, "GET", path.format(b=filled), query + "&nonsense", {}, b"")
    assert refused.status_code == 501
