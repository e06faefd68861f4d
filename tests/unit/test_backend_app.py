"""encproxy.wsgi.apps.s3backend over a scripted backend: what it sends, how it answers.

The backend client is replaced by a script of canned answers, so each test shows the
exact requests the app makes and how it turns the backend's answers (including the
quirks of real servers) into the client's.
"""
from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import defusedxml.ElementTree as ET
import pytest
from werkzeug.test import Client

from encproxy.s3 import continuation
from encproxy.s3backend.client import BackendBroken, BodySource
from encproxy.wsgi import environ as env
from encproxy.wsgi.apps.s3backend import S3BackendApp
from encproxy.wsgi.listing_page import ListingSlot


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    broken_after: int | None = None   # the connection breaks after this many body bytes


@dataclass
class Sent:
    method: str
    bucket: str | None
    key: str | None
    query: str
    headers: dict[str, str]
    body: bytes | None


class FakeResponse:
    def __init__(self, answer: Answer, method: str) -> None:
        self.status = answer.status
        self.headers = list(answer.headers)
        if not any(k.lower() == "content-length" for k, _ in self.headers):
            self.headers.append(("Content-Length", str(len(answer.body))))
        self.answer = answer
        self.method = method
        self.closed = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None else None

    def pieces(self, piece: int = 1 << 20, first: int | None = None) -> Iterator[bytes]:
        body = self.answer.body
        try:
            if self.answer.broken_after is not None:
                if self.answer.broken_after:
                    yield body[:self.answer.broken_after]
                raise BackendBroken("cut")
            for i in range(0, len(body), piece):
                yield body[i:i + piece]
        finally:
            self.close()

    def read_all(self, limit: int) -> bytes:
        return b"".join(self.pieces())

    def close(self) -> None:
        self.closed = True


class ScriptedClient:
    """Answers requests in order from a script; records what was sent."""

    def __init__(self, *answers: Answer, region: str = "us-east-1") -> None:
        self.answers = list(answers)
        self.sent: list[Sent] = []
        self.config = type("Config", (), {"region": region})()
        self.signs = False      # the app makes no unsigned twin of a scripted client
        self.backend_authorizes = False

    def request(self, method: str, bucket: str | None, key: str | None, query: str = "",
                headers: dict[str, str] | None = None,
                body: bytes | BodySource | None = None,
                expect_continue: bool = False) -> FakeResponse:
        assert not expect_continue, "only where the backend authorizes the caller"
        data = b"".join(body) if isinstance(body, BodySource) else body
        self.sent.append(Sent(method, bucket, key, query, dict(headers or {}), data))
        assert self.answers, f"unexpected backend request {method} {bucket}/{key}?{query}"
        return FakeResponse(self.answers.pop(0), method)


def call(app: S3BackendApp, method: str, path: str, query: str = "", body: bytes = b"",
         headers: dict[str, str] | None = None) -> Any:
    """Call the app as the layers above would: addressing resolved, body verified."""
    bucket, _, key = path.lstrip("/").partition("/")
    environ_overrides = {
        env.BUCKET: bucket or None, env.KEY: key or None, env.RAW_PATH: path,
        env.RAW_QUERY: query, env.REQUEST_ID: "REQ1",
    }
    client = Client(app)
    return client.open(path, method=method, query_string=query, data=io.BytesIO(body),
                       headers={**(headers or {}), "Content-Length": str(len(body))},
                       environ_overrides=environ_overrides)


def error_code(resp: Any) -> str:
    return ET.fromstring(resp.get_data()).findtext("Code")


# -- errors --------------------------------------------------------------------------

def test_backend_error_is_rendered_as_encproxys_own():
    backend = ScriptedClient(Answer(404, [("x-amz-request-id", "BACKEND")],
                                    b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code>"
                                    b"<Message>gone</Message><Key>k</Key>"
                                    b"<RequestId>BACKEND</RequestId><HostId>h</HostId>"
                                    b"<Resource>/backend/path</Resource></Error>"))
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt/k")
    root = ET.fromstring(resp.get_data())
    assert resp.status_code == 404 and root.findtext("Code") == "NoSuchKey"
    assert root.findtext("Message") == "gone" and root.findtext("Key") == "k"
    assert root.findtext("RequestId") == "REQ1" and root.findtext("Resource") == "/bkt/k"
    assert root.findtext("HostId") is None
    assert resp.headers.get("x-amz-request-id") == "REQ1"


@pytest.mark.parametrize("status,code", [
    (503, "SlowDown"), (500, "InternalError"), (409, "BucketNotEmpty"), (400, "InvalidTag"),
])
def test_backend_error_codes_and_statuses_are_kept(status, code):
    backend = ScriptedClient(Answer(status, [], f"<Error><Code>{code}</Code></Error>".encode()))
    resp = call(S3BackendApp(backend, "us-east-1"), "DELETE", "/bkt")
    assert resp.status_code == status and error_code(resp) == code


def test_head_error_has_no_body_and_304_keeps_validators():
    backend = ScriptedClient(Answer(404), Answer(304, [("ETag", '"e"'),
                                                       ("Last-Modified", "x")]))
    app = S3BackendApp(backend, "us-east-1")
    resp = call(app, "HEAD", "/bkt/k")
    assert resp.status_code == 404 and resp.get_data() == b""
    resp = call(app, "GET", "/bkt/k", headers={"If-None-Match": '"e"'})
    assert resp.status_code == 304 and resp.headers["ETag"] == '"e"'
    assert backend.sent[1].headers["if-none-match"] == '"e"'


def test_unknown_upload_is_no_such_upload():
    backend = ScriptedClient(Answer(404, [], b"<Error><Code>NoSuchKey</Code></Error>"))
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt/k", "uploadId=u")
    assert error_code(resp) == "NoSuchUpload"


def test_error_inside_a_200_is_an_error():
    backend = ScriptedClient(Answer(200, [], b"<?xml version='1.0'?><Error><Code>InternalError"
                                             b"</Code><Message>m</Message></Error>"))
    resp = call(S3BackendApp(backend, "us-east-1"), "PUT", "/bkt/dst",
                headers={"x-amz-copy-source": "/bkt/src"})
    assert resp.status_code == 500 and error_code(resp) == "InternalError"


# -- refusals ------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,query,headers", [
    ("POST", "/bkt/k", "select&select-type=2", {}),
    ("POST", "/bkt/k", "restore", {}),
    ("GET", "/bkt/k", "torrent", {}),
    ("GET", "/bkt/k", "attributes", {}),
    ("PUT", "/bkt", "encryption", {}),
    ("GET", "/bkt", "session", {}),
    ("PUT", "/bkt/k", "renameObject", {}),
    ("PUT", "/bkt/k", "", {"x-amz-server-side-encryption": "AES256"}),
])
def test_refused_without_a_backend_request(method, path, query, headers):
    backend = ScriptedClient()
    resp = call(S3BackendApp(backend, "us-east-1"), method, path, query, headers=headers)
    assert resp.status_code == 501 and error_code(resp) == "NotImplemented"
    assert backend.sent == []


@pytest.mark.parametrize("query,headers", [
    ("", {"x-amz-copy-source": "/bkt/k?versionId=v1", "x-amz-metadata-directive": "REPLACE",
          "x-amz-copy-source-if-match": '"e"', "x-amz-meta-encproxy": "new"}),
    ("versionId=v1", {}),
])
def test_an_in_place_rewrite_is_refused_without_a_backend_request(query, headers):
    """The encryption layer's in-place flag (environ.IN_PLACE): an S3 backend cannot rewrite
    a version's metadata in place, and a copy would make a new current version: 501, and
    nothing reaches the backend.  Without the flag the same copy is sent."""
    backend = ScriptedClient(Answer(200, [("ETag", '"e"')]),     # the copy source's HEAD
                             Answer(200, [], b"<CopyObjectResult><ETag>&quot;e&quot;</ETag>"
                                             b"</CopyObjectResult>"))
    app = S3BackendApp(backend, "us-east-1")
    environ = {env.BUCKET: "bkt", env.KEY: "k", env.RAW_PATH: "/bkt/k", env.RAW_QUERY: query,
               env.REQUEST_ID: "REQ1", env.IN_PLACE: True}
    resp = Client(app).put("/bkt/k", query_string=query, headers=headers,
                           environ_overrides=environ)
    assert resp.status_code == 501 and error_code(resp) == "NotImplemented"
    assert backend.sent == []
    if headers:
        resp = call(app, "PUT", "/bkt/k", query, headers={**headers, "encproxy.in_place": "1"})
        assert resp.status_code == 200, resp.get_data()
        assert [r.method for r in backend.sent] == ["HEAD", "PUT"]
        assert backend.sent[1].headers["x-amz-copy-source"].lstrip("/") == "bkt/k?versionId=v1"


# -- what is sent --------------------------------------------------------------------

def test_put_streams_the_body_with_its_checksum_without_content_md5():
    """A plain body's checksum goes on with it (the encryption layer strips it from
    ciphertext); Content-MD5 does not (encproxy computes its own for small bodies)."""
    backend = ScriptedClient(Answer(200, [("ETag", '"e"'), ("x-amz-checksum-crc32", "X")]))
    app = S3BackendApp(backend, "us-east-1")
    body = b"hello world"
    resp = call(app, "PUT", "/bkt/dir/a%20b", body=body, headers={
        "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        "x-amz-checksum-crc32": "DUoRhQ==", "x-amz-meta-a": "1", "Content-Type": "t/x"})
    sent = backend.sent[0]
    assert (sent.method, sent.bucket, sent.key) == ("PUT", "bkt", "dir/a%20b")
    assert sent.body == body
    assert sent.headers == {"x-amz-meta-a": "1", "content-type": "t/x",
                            "x-amz-checksum-crc32": "DUoRhQ==",
                            "x-amz-sdk-checksum-algorithm": "CRC32"}
    assert resp.status_code == 200 and resp.headers["ETag"] == '"e"'
    assert "x-amz-checksum-crc32" not in resp.headers  # only what encproxy verified


def test_put_echoes_the_checksums_encproxy_verified():
    backend = ScriptedClient(Answer(200, [("ETag", '"e"')]))
    app = S3BackendApp(backend, "us-east-1")
    client = Client(app)
    resp = client.open("/bkt/k", method="PUT", data=b"x", environ_overrides={
        env.BUCKET: "bkt", env.KEY: "k", env.RAW_PATH: "/bkt/k", env.RAW_QUERY: "",
        env.BODY_CHECKSUMS: {"crc32": "jHNlIQ=="}})
    assert resp.headers["x-amz-checksum-crc32"] == "jHNlIQ=="


def _trailed_put(app: S3BackendApp, data: bytes, algorithm: str, value: str,
                 query: str = "", extra: dict[str, str] | None = None,
                 chunk: int = 7) -> Any:
    """A plain PUT whose client streamed ``aws-chunked`` with ``value`` in its trailer,
    as the authentication layer hands it on: decoded and verified by the real
    ``VerifiedBody``, which fills BODY_CHECKSUMS once the body has verified."""
    from encproxy.sigv4 import STREAMING_UNSIGNED_TRAILER
    from encproxy.wsgi.auth.body import BodySpec, VerifiedBody
    framed = bytearray()
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        framed += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    framed += f"0\r\nx-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()
    headers = {"content-length": str(len(framed)), "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": f"x-amz-checksum-{algorithm}", **(extra or {})}
    sums: dict[str, str] = {}
    body = VerifiedBody(io.BytesIO(bytes(framed)).read,
                        BodySpec.from_headers(headers, STREAMING_UNSIGNED_TRAILER),
                        on_verified=sums.update)
    path = "/bkt/k"
    passed = {k: v for k, v in headers.items()
              if k not in ("content-length", "content-encoding",
                           "x-amz-decoded-content-length")}
    kept = [c for c in headers["content-encoding"].split(",") if c != "aws-chunked"]
    if kept:   # what strip_aws_chunked leaves
        passed["content-encoding"] = ",".join(kept)
    return Client(app).open(path, method="PUT", query_string=query, headers=passed,
                            environ_overrides={
                                env.BUCKET: "bkt", env.KEY: "k", env.RAW_PATH: path,
                                env.RAW_QUERY: query, env.REQUEST_ID: "REQ1",
                                env.BODY_CHECKSUMS: sums, "wsgi.input": body,
                                "CONTENT_LENGTH": str(len(data))})


def _crc32c(data: bytes) -> str:
    from encproxy.checksums import new_hasher
    hasher = new_hasher("crc32c")
    hasher.update(data)
    return base64.b64encode(hasher.digest()).decode()


@pytest.mark.parametrize("query", ["", "partNumber=2&uploadId=U"])
def test_a_trailing_checksum_goes_on_in_a_trailer_of_its_own(query):
    """[backend] trailing_checksums: the plain body is re-framed as aws-chunked and
    the verified trailer value ends it, for PutObject and UploadPart."""
    backend = ScriptedClient(Answer(200, [("ETag", '"e"')]))
    app = S3BackendApp(backend, "us-east-1", trailing_checksums=True)
    data = b"the plain body, longer than one chunk"
    value = _crc32c(data)
    resp = _trailed_put(app, data, "crc32c", value, query,
                        extra={"content-type": "t/x", "content-encoding": "aws-chunked,gzip"})
    assert resp.status_code == 200, resp.get_data()
    sent = backend.sent[0]
    assert sent.headers == {"content-type": "t/x", "content-encoding": "aws-chunked,gzip",
                            "x-amz-decoded-content-length": str(len(data)),
                            "x-amz-trailer": "x-amz-checksum-crc32c",
                            "x-amz-sdk-checksum-algorithm": "CRC32C"}
    assert sent.body is not None and sent.body.endswith(
        f"0\r\nx-amz-checksum-crc32c:{value}\r\n\r\n".encode())
    from encproxy.awschunked import AwsChunkedDecoder
    from encproxy.sigv4 import STREAMING_UNSIGNED_TRAILER
    decoder = AwsChunkedDecoder(io.BytesIO(sent.body).read, STREAMING_UNSIGNED_TRAILER,
                                trailer="crc32c")
    assert b"".join(iter(decoder.read, b"")) == data   # verifies the trailer too
    assert resp.headers["x-amz-checksum-crc32c"] == value


def test_a_trailing_checksum_is_not_forwarded_without_the_option():
    """Ceph RGW 16.2 takes no aws-chunked trailer: the body goes as it is, with no
    checksum (the backend keeps its own default, if any; never a wrong one)."""
    backend = ScriptedClient(Answer(200, [("ETag", '"e"')]))
    data = b"the plain body"
    value = _crc32c(data)
    resp = _trailed_put(S3BackendApp(backend, "us-east-1"), data, "crc32c", value)
    assert resp.status_code == 200
    sent = backend.sent[0]
    assert sent.body == data and sent.headers == {}
    assert resp.headers["x-amz-checksum-crc32c"] == value   # verified, echoed


def test_a_wrong_trailing_checksum_never_reaches_the_backend_whole():
    """The trailer is the verified value or nothing: a body whose trailer does not
    verify fails before the backend gets the end of it (BadDigest)."""
    class Recording(ScriptedClient):
        def request(self, method, bucket, key, query="", headers=None, body=None,
                    expect_continue=False):
            self.pieces: list[bytes] = []
            for piece in body:
                self.pieces.append(piece)
            raise AssertionError("the body ended")

    backend = Recording(Answer(200))
    data = bytes(range(256)) * (10 * 1024)   # 2.5 MiB: some chunks go before the end
    resp = _trailed_put(S3BackendApp(backend, "us-east-1", trailing_checksums=True), data,
                        "crc32c", _crc32c(b"another body"), chunk=64 * 1024)
    assert resp.status_code == 400 and error_code(resp) == "BadDigest"
    assert backend.pieces and not any(b"x-amz-checksum" in p for p in backend.pieces)


def test_small_bodies_get_encproxys_own_content_md5():
    backend = ScriptedClient(Answer(200))
    body = b"<Tagging><TagSet/></Tagging>"
    call(S3BackendApp(backend, "us-east-1"), "PUT", "/bkt", "tagging", body,
         headers={"Content-MD5": "bogus", "x-amz-checksum-sha256": "bogus"})
    sent = backend.sent[0]
    assert sent.query == "tagging" and sent.body == body
    assert sent.headers == {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def test_complete_forwards_numbers_etags_and_part_checksums_in_order():
    backend = ScriptedClient(
        Answer(200, [], b"<CompleteMultipartUploadResult><Location>http://backend/x</Location>"
                        b"<ETag></ETag></CompleteMultipartUploadResult>"),
        Answer(200, [("ETag", '"abc-2"')]))
    body = (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag>"
            b"<ChecksumCRC32>x</ChecksumCRC32></Part><Part><PartNumber>3</PartNumber>"
            b"<ETag>b</ETag></Part></CompleteMultipartUpload>")
    resp = call(S3BackendApp(backend, "us-east-1"), "POST", "/bkt/k", "uploadId=u", body,
                headers={"Host": "client.example"})
    forwarded = ET.fromstring(backend.sent[0].body)
    assert [(p.findtext("{*}PartNumber"), p.findtext("{*}ETag"))
            for p in forwarded] == [("1", '"a"'), ("3", '"b"')]
    # A plain upload's part checksums go on (the backend got them with the parts).
    assert [p.findtext("{*}ChecksumCRC32") for p in forwarded] == ["x", None]
    assert backend.sent[1].method == "HEAD"  # the backend gave no ETag (Ceph RGW)
    result = ET.fromstring(resp.get_data())
    assert result.findtext("{*}ETag") == '"abc-2"'
    assert result.findtext("{*}Location") == "http://client.example/bkt/k"


def test_complete_refuses_descending_parts_itself():
    backend = ScriptedClient()
    body = (b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part>"
            b"<Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>")
    resp = call(S3BackendApp(backend, "us-east-1"), "POST", "/bkt/k", "uploadId=u", body)
    assert error_code(resp) == "InvalidPartOrder" and backend.sent == []


def test_create_bucket_that_exists_is_already_owned_outside_us_east_1():
    backend = ScriptedClient(Answer(200))
    resp = call(S3BackendApp(backend, "eu-west-1"), "PUT", "/bkt")
    assert resp.status_code == 409 and error_code(resp) == "BucketAlreadyOwnedByYou"
    assert [s.method for s in backend.sent] == ["HEAD"]


def test_create_bucket_that_exists_in_us_east_1_resets_its_acl():
    """S3's legacy us-east-1 answer: 200, and the bucket's ACL reset to the request's."""
    backend = ScriptedClient(Answer(200), Answer(200))
    resp = call(S3BackendApp(backend, "us-east-1"), "PUT", "/bkt",
                headers={"x-amz-acl": "public-read"})
    assert resp.status_code == 200 and resp.headers["Location"] == "/bkt"
    assert [(s.method, s.query) for s in backend.sent] == [("HEAD", ""), ("PUT", "acl")]
    assert backend.sent[1].headers == {"x-amz-acl": "public-read"}


def test_create_bucket_in_the_backends_region():
    backend = ScriptedClient(Answer(404), Answer(200), region="eu-west-3")
    body = (b"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint>"
            b"</CreateBucketConfiguration>")
    resp = call(S3BackendApp(backend, "us-east-1"), "PUT", "/bkt", body=body)
    assert resp.status_code == 200 and resp.headers["Location"] == "/bkt"
    assert b"<LocationConstraint>eu-west-3</LocationConstraint>" in backend.sent[1].body


def test_location_and_region_are_encproxys():
    backend = ScriptedClient(Answer(200, [("x-amz-bucket-region", "backend-1")]), Answer(200))
    app = S3BackendApp(backend, "eu-central-1")
    assert call(app, "HEAD", "/bkt").headers["x-amz-bucket-region"] == "eu-central-1"
    resp = call(app, "GET", "/bkt", "location")
    assert ET.fromstring(resp.get_data()).text == "eu-central-1"
    assert backend.sent[1].method == "HEAD"


# -- listings ------------------------------------------------------------------------

def test_continuation_tokens_are_wrapped_both_ways():
    backend = ScriptedClient(Answer(200, [], (
        b"<ListBucketResult><ContinuationToken>k1</ContinuationToken><KeyCount>2</KeyCount>"
        b"<Contents><Key>b</Key></Contents><Contents><Key>d</Key></Contents>"
        b"<CommonPrefixes><Prefix>c/</Prefix></CommonPrefixes>"
        b"<NextContinuationToken>k2</NextContinuationToken></ListBucketResult>")))
    mine = continuation.wrap("k1", "a")
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt",
                f"list-type=2&continuation-token={mine}")
    assert backend.sent[0].query == "list-type=2&continuation-token=k1"
    root = ET.fromstring(resp.get_data())
    assert root.findtext("{*}ContinuationToken") == mine
    following = root.findtext("{*}NextContinuationToken") or ""
    assert continuation.unwrap(following) == "k2"
    # The next page starts after the page's last key or common prefix, whichever is last.
    assert continuation.start_after(following) == "d"


LISTING = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name>'
    b"<Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
    b"<IsTruncated>true</IsTruncated><NextContinuationToken>k2</NextContinuationToken>"
    b"<Contents><Key>a%20b</Key><ETag>&quot;e1&quot;</ETag><Size>100</Size></Contents>"
    b"<Contents><Key>c</Key><ETag>&quot;e2&quot;</ETag><Size>200</Size>"
    b"<StorageClass>STANDARD</StorageClass></Contents>"
    b"<EncodingType>url</EncodingType></ListBucketResult>")


def test_a_listing_is_left_unrendered_for_the_layer_that_offers_a_slot():
    """The page left in the slot renders as the XML the app answers without one, with
    the entries as the layer above corrected them (listing_page.py)."""
    query = "list-type=2&max-keys=2&encoding-type=url"
    as_xml = call(S3BackendApp(ScriptedClient(Answer(200, [], LISTING)), "us-east-1"),
                  "GET", "/bkt", query).get_data()
    slot = ListingSlot()
    client = Client(S3BackendApp(ScriptedClient(Answer(200, [], LISTING)), "us-east-1"))
    resp = client.get("/bkt", query_string=query, environ_overrides={
        env.BUCKET: "bkt", env.KEY: None, env.RAW_PATH: "/bkt", env.RAW_QUERY: query,
        env.REQUEST_ID: "REQ1", env.LISTING_PAGE: slot})
    assert resp.status_code == 200 and resp.get_data() == b""
    page = slot.page
    assert page is not None
    assert [(e.key, e.etag, e.size) for e in page.entries] == [
        ("a b", '"e1"', 100), ("c", '"e2"', 200)]
    assert page.next_token is not None and continuation.unwrap(page.next_token) == "k2"
    assert continuation.start_after(page.next_token) == "c"   # decoded: url encoding
    assert page.render() == as_xml
    page.entries[1].etag, page.entries[1].size = '"client"', 7
    root = ET.fromstring(page.render())
    second = root.findall("{*}Contents")[1]
    assert (second.findtext("{*}ETag"), second.findtext("{*}Size")) == ('"client"', "7")
    assert root.findall("{*}Contents")[0].findtext("{*}Size") == "100"


def test_foreign_continuation_token_is_refused():
    backend = ScriptedClient()
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt",
                "list-type=2&continuation-token=k1")
    assert error_code(resp) == "InvalidArgument" and backend.sent == []


def test_quiet_delete_reports_errors_only():
    backend = ScriptedClient(Answer(200, [], (
        b"<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key><Code>AccessDenied"
        b"</Code></Error></DeleteResult>")))
    body = b"<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object>" \
           b"<Object><Key>b</Key></Object></Delete>"
    resp = call(S3BackendApp(backend, "us-east-1"), "POST", "/bkt", "delete", body,
                headers={"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
    root = ET.fromstring(resp.get_data())
    assert root.find("{*}Deleted") is None and root.findtext("{*}Error/{*}Key") == "b"


def test_complete_upload_listing_is_sorted():
    backend = ScriptedClient(Answer(200, [], (
        b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
        b"<Upload><Key>y</Key><UploadId>1</UploadId><Initiated>2</Initiated></Upload>"
        b"<Upload><Key>x</Key><UploadId>2</UploadId><Initiated>3</Initiated></Upload>"
        b"<Upload><Key>x</Key><UploadId>3</UploadId><Initiated>1</Initiated></Upload>"
        b"<CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>"
        b"</ListMultipartUploadsResult>")))
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt", "uploads")
    root = ET.fromstring(resp.get_data())
    assert [u.findtext("{*}UploadId") for u in root.findall("{*}Upload")] == ["3", "2", "1"]
    assert [child.tag.split("}")[1] for child in root][-1] == "CommonPrefixes"


# -- reads ---------------------------------------------------------------------------

def test_part_one_of_a_single_part_object_when_the_backend_ignores_part_numbers():
    backend = ScriptedClient(Answer(200, [("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')],
                                    b"hello"))
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt/k", "partNumber=1")
    assert resp.status_code == 206 and resp.headers["Content-Range"] == "bytes 0-4/5"
    assert resp.get_data() == b"hello"


@pytest.mark.parametrize("etag,headers,number,code", [
    ('"d41d8cd98f00b204e9800998ecf8427e-3"', [], 2, "NotImplemented"),
    ('"d41d8cd98f00b204e9800998ecf8427e"', [("x-amz-mp-parts-count", "3")], 2,
     "NotImplemented"),
    ('"d41d8cd98f00b204e9800998ecf8427e"', [], 2, "InvalidPartNumber"),
])
def test_part_numbers_the_backend_ignored_are_never_answered_with_the_object(
        etag, headers, number, code):
    answer = Answer(200, [("ETag", etag), *headers], b"Z" * 100)
    backend = ScriptedClient(answer)
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt/k", f"partNumber={number}")
    assert error_code(resp) == code
    assert b"ZZZZ" not in resp.get_data()


def test_broken_backend_body_propagates_to_the_server():
    backend = ScriptedClient(Answer(200, [("Content-Length", "10")], b"0123456789",
                                    broken_after=4))
    app = S3BackendApp(backend, "us-east-1")
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/bkt/k", "QUERY_STRING": "",
               "SERVER_NAME": "x", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
               env.BUCKET: "bkt", env.KEY: "k", env.RAW_PATH: "/bkt/k", env.RAW_QUERY: ""}
    started: list[str] = []
    body = app(environ, lambda status, headers, exc_info=None: started.append(status))
    pieces = iter(body)
    assert next(pieces) == b"0123"
    with pytest.raises(BackendBroken):
        next(pieces)
    assert started == ["200 OK"]


def test_break_before_the_first_byte_is_a_503():
    backend = ScriptedClient(Answer(200, [("Content-Length", "10")], b"0123456789",
                                    broken_after=0))
    resp = call(S3BackendApp(backend, "us-east-1"), "GET", "/bkt/k")
    assert resp.status_code == 503 and error_code(resp) == "ServiceUnavailable"
