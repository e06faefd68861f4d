"""encproxy.s3backend.forwarding: what goes to an S3 backend and what comes back (pure)."""
from __future__ import annotations

from urllib.parse import unquote

import pytest

from encproxy import errors
from encproxy.s3.copy_source import parse_copy_source
from encproxy.s3.operations import classify
from encproxy.s3backend import forwarding as fw

# -- operations -----------------------------------------------------------------------

@pytest.mark.parametrize("method,key,query,expected", [
    pytest.param("GET", "k", {}, fw.FORWARD, id="get-object"),
    pytest.param("PUT", "k", {"uploadId": "u", "partNumber": "1"}, fw.FORWARD, id="upload-part"),
    pytest.param("GET", None, {"versions": ""}, fw.FORWARD, id="list-versions"),
    pytest.param("PUT", None, {"tagging": ""}, fw.PASS, id="put-bucket-tagging"),
    pytest.param("GET", None, {"acl": ""}, fw.PASS, id="get-bucket-acl"),
    pytest.param("PUT", None, {"policy": ""}, fw.PASS, id="put-bucket-policy"),
    pytest.param("DELETE", None, {"cors": ""}, fw.PASS, id="delete-bucket-cors"),
    pytest.param("PUT", None, {"versioning": ""}, fw.PASS, id="put-bucket-versioning"),
    pytest.param("PUT", None, {"lifecycle": ""}, fw.PASS, id="put-lifecycle"),
    pytest.param("PUT", None, {"object-lock": ""}, fw.PASS, id="put-object-lock"),
    pytest.param("GET", None, {"website": ""}, fw.PASS, id="get-website"),
    pytest.param("PUT", None, {"notification": ""}, fw.PASS, id="put-notification"),
    pytest.param("GET", None, {"ownershipControls": ""}, fw.PASS, id="ownership"),
    pytest.param("PUT", None, {"publicAccessBlock": ""}, fw.PASS, id="public-access-block"),
    pytest.param("PUT", "k", {"tagging": ""}, fw.PASS, id="put-object-tagging"),
    pytest.param("GET", "k", {"legal-hold": ""}, fw.PASS, id="get-legal-hold"),
    pytest.param("PUT", "k", {"retention": ""}, fw.PASS, id="put-retention"),
    pytest.param("PUT", None, {"encryption": ""}, fw.REFUSE, id="encryption-is-native"),
    pytest.param("GET", None, {"encryption": ""}, fw.REFUSE, id="get-encryption"),
    pytest.param("POST", "k", {"select": "", "select-type": "2"}, fw.REFUSE, id="select"),
    pytest.param("POST", "k", {"restore": ""}, fw.REFUSE, id="restore"),
    pytest.param("GET", "k", {"torrent": ""}, fw.REFUSE, id="torrent"),
    pytest.param("GET", "k", {"attributes": ""}, fw.REFUSE, id="get-object-attributes"),
    pytest.param("POST", None, {}, fw.REFUSE, id="post-object"),
    pytest.param("PATCH", "k", {}, fw.REFUSE, id="unknown-method"),
    pytest.param("HEAD", None, {"tagging": ""}, fw.REFUSE, id="head-subresource"),
])
def test_disposition(method, key, query, expected):
    assert fw.disposition(classify(method, "bucket", key, query, {})) == expected


@pytest.mark.parametrize("method,key,query", [
    pytest.param("GET", None, {"nonsense": ""}, id="unknown-on-a-listing"),
    pytest.param("GET", None, {"session": ""}, id="create-session"),
    pytest.param("GET", None, {"metadataTable": ""}, id="metadata-table"),
    pytest.param("GET", None, {"mdsearch": ""}, id="rgw-mdsearch"),
    pytest.param("PUT", "k", {"renameObject": ""}, id="rename-object"),
    pytest.param("GET", "k", {"partNumber": "1", "uploadId": "u2"}, id="list-parts-shape"),
    pytest.param("DELETE", None, {"tagging": "", "extra": "1"}, id="extra-on-pass-through"),
])
def test_unknown_query_parameters_are_refused(method, key, query):
    """Such a request names no operation, so nothing forwards it (the backend apps answer
    S3Request.refusal(), tests/unit/test_operation_parameters.py)."""
    assert classify(method, "bucket", key, query, {}) is None
    assert fw.disposition(None) == fw.REFUSE


@pytest.mark.parametrize("method,key,query", [
    pytest.param("GET", None, {"list-type": "2", "prefix": "", "delimiter": "/",
                               "encoding-type": "url", "max-keys": "5", "fetch-owner": "true",
                               "start-after": "a", "continuation-token": "t"}, id="list-v2"),
    pytest.param("GET", "k", {"versionId": "v", "response-content-type": "x",
                              "X-Amz-Signature": "s", "X-Amz-Date": "d", "x-id": "GetObject"},
                 id="presigned-get"),
    pytest.param("GET", None, {"analytics": "", "id": "a"}, id="config-with-id"),
    pytest.param("PUT", "k", {"tagging": "", "versionId": "v"}, id="object-tagging-version"),
])
def test_known_query_parameters_pass(method, key, query):
    fw.check_parameters(classify(method, "bucket", key, query, {}), query)


def test_refusal_is_not_implemented_and_names_the_operation():
    err = fw.refusal("SelectObjectContent")
    assert isinstance(err, errors.NotImplementedError_) and err.status == 501
    assert "SelectObjectContent" in err.message and "object bodies" in err.message
    assert "this request" in fw.refusal(None).message


def test_every_configuration_subresource_but_encryption_passes():
    assert "PutBucketEncryption" not in fw.PASS_THROUGH
    assert {"GetBucketTagging", "PutBucketAcl", "DeleteBucketPolicy", "PutObjectTagging",
            "GetObjectRetention"} <= fw.PASS_THROUGH
    assert not fw.PASS_THROUGH & fw.IMPLEMENTED


# -- request headers --------------------------------------------------------------------

CLIENT_HEADERS = {
    "authorization": "AWS4-HMAC-SHA256 Credential=...", "x-amz-date": "20260101T000000Z",
    "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "x-amz-decoded-content-length": "5", "x-amz-trailer": "x-amz-checksum-crc32",
    "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": "AAAAAA==",
    "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "x-amz-security-token": "token",
    "host": "client.example", "content-length": "99", "expect": "100-continue",
    "connection": "keep-alive", "transfer-encoding": "chunked", "te": "trailers",
    "user-agent": "aws-cli", "amz-sdk-invocation-id": "x", "x-amz-user-agent": "y",
    "x-amz-something-new": "?",
    "content-type": "text/plain", "content-encoding": "gzip, aws-chunked",
    "cache-control": "no-cache", "x-amz-meta-colour": "blue", "x-amz-tagging": "a=b",
    "x-amz-acl": "private", "if-match": '"e"', "range": "bytes=0-1",
    "x-amz-storage-class": "STANDARD", "x-amz-copy-source-range": "bytes=0-9",
}


def test_forward_headers_is_an_allowlist():
    out = fw.forward_headers(CLIENT_HEADERS)
    assert out == {"content-type": "text/plain", "content-encoding": "gzip",
                   "cache-control": "no-cache", "x-amz-meta-colour": "blue",
                   "x-amz-tagging": "a=b", "x-amz-acl": "private", "if-match": '"e"',
                   "range": "bytes=0-1", "x-amz-storage-class": "STANDARD",
                   "x-amz-copy-source-range": "bytes=0-9"}


def test_aws_chunked_alone_drops_content_encoding():
    assert "content-encoding" not in fw.forward_headers({"content-encoding": "aws-chunked"})


@pytest.mark.parametrize("name", [
    "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
])
def test_backend_encryption_headers_are_refused(name):
    with pytest.raises(errors.NotImplementedError_) as exc:
        fw.forward_headers({name: "AES256"})
    assert exc.value.fields["Header"] == name


def test_hop_by_hop_never_forwarded():
    assert not fw.HOP_BY_HOP & fw.FORWARDED_HEADERS
    assert not fw.HOP_BY_HOP & fw.RELAYED_HEADERS


# -- query strings ----------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    pytest.param("", "", id="empty"),
    pytest.param("uploads", "uploads", id="bare"),
    pytest.param("uploads=", "uploads", id="bare-with-equals"),
    pytest.param("prefix=a%20b&delimiter=%2F", "prefix=a%20b&delimiter=%2F", id="kept"),
    pytest.param("prefix=a+b", "prefix=a%2Bb", id="plus-is-literal"),
    pytest.param("prefix=%7e%41", "prefix=~A", id="canonical-spelling"),
    pytest.param("partNumber=2&uploadId=x&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                 "&X-Amz-Credential=a%2Fb&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
                 "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc&X-Amz-Security-Token=t",
                 "partNumber=2&uploadId=x", id="presign-stripped"),
    # The Node SDK v3 presigner's GET and PUT: its hoisted checksum headers (a digest of
    # the plaintext among them) stay the client's, as the headers do.
    pytest.param("X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&x-amz-checksum-mode=ENABLED"
                 "&versionId=v1&x-id=GetObject", "versionId=v1&x-id=GetObject",
                 id="node-presigned-get"),
    pytest.param("x-amz-checksum-crc32=AAAAAA%3D%3D&x-amz-sdk-checksum-algorithm=CRC32"
                 "&X-Amz-Checksum-SHA256=x&X-AMZ-SDK-CHECKSUM-ALGORITHM=SHA256"
                 "&partNumber=1&uploadId=u&x-id=UploadPart",
                 "partNumber=1&uploadId=u&x-id=UploadPart", id="node-presigned-put"),
    pytest.param("response-content-type=text%2Fplain%3B%20charset%3Dutf-8",
                 "response-content-type=text%2Fplain%3B%20charset%3Dutf-8", id="override"),
])
def test_forward_query(raw, expected):
    assert fw.forward_query(raw) == expected


def test_forward_query_replaces_a_parameter():
    assert fw.forward_query("list-type=2&continuation-token=abc",
                            {"continuation-token": "k/é"}) == \
        "list-type=2&continuation-token=k%2F%C3%A9"


# -- paths ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,expected", [
    pytest.param("plain.txt", "plain.txt", id="plain"),
    pytest.param("a b+c%d", "a%20b%2Bc%25d", id="reserved"),
    pytest.param("ü/鍵", "%C3%BC/%E9%8D%B5", id="utf8"),
    pytest.param("a//b/../c/./d", "a//b/../c/./d", id="dots-and-slashes-kept"),
    pytest.param("/lead", "/lead", id="leading-slash"),
    pytest.param("~tilde-_.", "~tilde-_.", id="unreserved"),
    pytest.param("q?x=1#f", "q%3Fx%3D1%23f", id="query-chars"),
    pytest.param("tab\tnl\n", "tab%09nl%0A", id="control"),
])
def test_quote_key(key, expected):
    assert fw.quote_key(key) == expected
    assert unquote(fw.quote_key(key)) == key


@pytest.mark.parametrize("url,addressing,bucket,key,path,host", [
    ("http://127.0.0.1:9000", "path", None, None, "/", "127.0.0.1:9000"),
    ("http://127.0.0.1:9000", "path", "b", None, "/b", "127.0.0.1:9000"),
    ("http://127.0.0.1:9000/", "path", "b", "k/x y", "/b/k/x%20y", "127.0.0.1:9000"),
    ("https://S3.Example.com:443", "path", "b", "k", "/b/k", "s3.example.com"),
    ("http://s3.example.com:80", "virtual", "b", "k", "/k", "b.s3.example.com"),
    ("http://localhost:7480", "virtual", "b", None, "/", "b.localhost:7480"),
    ("http://localhost:7480", "virtual", None, None, "/", "localhost:7480"),
])
def test_endpoint_target(url, addressing, bucket, key, path, host):
    endpoint = fw.Endpoint.from_url(url, addressing)
    assert endpoint.target(bucket, key) == (path, host)


@pytest.mark.parametrize("url", ["ftp://x", "http://x/path", "http://x?q", "x:80"])
def test_endpoint_refuses_paths_and_other_schemes(url):
    with pytest.raises(ValueError):
        fw.Endpoint.from_url(url)


# -- copy sources -----------------------------------------------------------------------

@pytest.mark.parametrize("raw,bucket,key,version,encoded", [
    ("src/k", "src", "k", None, "src/k"),
    ("/src/dir/a%20b", "src", "dir/a b", None, "src/dir/a%20b"),
    ("src/a+b", "src", "a+b", None, "src/a%2Bb"),
    ("src/%C3%BC?versionId=v%2B1", "src", "ü", "v+1", "src/%C3%BC?versionId=v%2B1"),
])
def test_copy_source(raw, bucket, key, version, encoded):
    source = parse_copy_source(raw)
    assert (source.bucket, source.key, source.version_id) == (bucket, key, version)
    assert fw.encode_copy_source(source) == encoded


@pytest.mark.parametrize("raw,error", [
    ("justbucket", errors.InvalidArgument), ("/src/", errors.InvalidArgument),
    ("src/k?partNumber=1", errors.InvalidArgument), ("BAD_BUCKET/k", errors.InvalidBucketName),
    ("src/" + "x" * 1025, errors.KeyTooLongError),
])
def test_bad_copy_source(raw, error):
    with pytest.raises(error):
        parse_copy_source(raw)


# -- responses --------------------------------------------------------------------------

def test_relay_headers_is_an_allowlist():
    backend = [("ETag", '"e"'), ("Content-Length", "5"), ("Content-Type", "text/plain"),
               ("Last-Modified", "x"), ("x-amz-meta-a", "1"), ("x-amz-version-id", "v"),
               ("x-amz-request-id", "backend"), ("x-amz-id-2", "backend"),
               ("Server", "Ceph"), ("Connection", "close"), ("Transfer-Encoding", "chunked"),
               ("x-amz-server-side-encryption", "AES256"), ("x-amz-checksum-crc32", "AAAA"),
               ("x-rgw-object-type", "Normal"), ("Date", "now"), ("Set-Cookie", "a=b")]
    assert fw.relay_headers(backend) == [
        ("ETag", '"e"'), ("Content-Length", "5"), ("Content-Type", "text/plain"),
        ("Last-Modified", "x"), ("x-amz-meta-a", "1"), ("x-amz-version-id", "v")]


@pytest.mark.parametrize("etag,parts", [
    ('"d41d8cd98f00b204e9800998ecf8427e"', 0), ("d41d8cd98f00b204e9800998ecf8427e", 0),
    ('"16cafe8d6b8c1c55c3d339c8d69326c6-2"', 2), ('"abc"', None), ("", None),
])
def test_parts_in_etag(etag, parts):
    assert fw.parts_in_etag(etag) == parts


# -- a plain body's trailing checksum ---------------------------------------------------

def _decoded(framed: bytes, trailer: str) -> tuple[bytes, dict[str, str]]:
    """What encproxy's own aws-chunked decoder (the one that verifies clients' bodies)
    reads from ``framed``: the data and the trailers."""
    import io

    from encproxy.awschunked import AwsChunkedDecoder
    from encproxy.sigv4 import STREAMING_UNSIGNED_TRAILER
    source = io.BytesIO(framed)
    decoder = AwsChunkedDecoder(source.read, STREAMING_UNSIGNED_TRAILER, trailer=trailer)
    data = b"".join(iter(decoder.read, b""))
    assert source.read() == b""   # every counted byte is part of the framing
    return data, decoder.trailers


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
@pytest.mark.parametrize("length", [1, 9, 10, 11, 25])
def test_trailer_framing_counts_exactly_what_it_frames(algorithm: str, length: int) -> None:
    import base64

    from encproxy.checksums import new_hasher
    data = bytes(range(length))
    hasher = new_hasher(algorithm)
    hasher.update(data)
    value = base64.b64encode(hasher.digest()).decode()
    framing = fw.TrailerFraming(algorithm, length, piece=10)
    framed = b"".join(framing.chunk_header(size) + data[start:start + size] + b"\r\n"
                      for start, size in zip(range(0, length, 10), framing.chunk_sizes(),
                                             strict=True))
    framed += framing.trailer(value)
    assert len(framed) == framing.encoded_length()
    decoded, trailers = _decoded(framed, algorithm)
    assert decoded == data and trailers == {f"x-amz-checksum-{algorithm}": value}
    assert framing.headers() == {"content-encoding": "aws-chunked",
                                 "x-amz-decoded-content-length": str(length),
                                 "x-amz-trailer": f"x-amz-checksum-{algorithm}",
                                 "x-amz-sdk-checksum-algorithm": algorithm.upper()}


def test_trailer_framing_refuses_a_value_of_another_size() -> None:
    framing = fw.TrailerFraming("crc64nvme", 5, piece=10)
    with pytest.raises(ValueError):
        framing.trailer("AAAAAA==")   # a CRC32's four bytes would not fill the count


@pytest.mark.parametrize(("operation", "headers", "expected"), [
    ("PutObject", {"x-amz-trailer": "x-amz-checksum-crc32c"}, "crc32c"),
    ("UploadPart", {"x-amz-trailer": "x-amz-checksum-sha256"}, "sha256"),
    ("PutObject", {}, None),
    # A checksum sent as a header goes as a header (plain_checksum_headers).
    ("PutObject", {"x-amz-trailer": "x-amz-checksum-crc32",
                   "x-amz-checksum-crc32": "AAAAAA=="}, None),
    ("CompleteMultipartUpload", {"x-amz-trailer": "x-amz-checksum-crc32"}, None),
])
def test_trailing_algorithm(operation: str, headers: dict[str, str],
                            expected: str | None) -> None:
    assert fw.trailing_algorithm(operation, headers) == expected


# -- a plain request's checksum headers -------------------------------------------------

@pytest.mark.parametrize(("operation", "headers", "expected"), [
    ("PutObject", {"x-amz-checksum-crc32": "DUoRhQ=="},
     {"x-amz-checksum-crc32": "DUoRhQ==", "x-amz-sdk-checksum-algorithm": "CRC32"}),
    ("UploadPart", {"x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
     {"x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
      "x-amz-sdk-checksum-algorithm": "SHA256"}),
    ("CreateMultipartUpload", {"x-amz-checksum-algorithm": "CRC32C",
                               "x-amz-checksum-type": "FULL_OBJECT"},
     {"x-amz-checksum-algorithm": "CRC32C", "x-amz-checksum-type": "FULL_OBJECT"}),
    ("CopyObject", {"x-amz-checksum-algorithm": "CRC32C"},
     {"x-amz-checksum-algorithm": "CRC32C"}),
    ("GetObject", {"x-amz-checksum-mode": "ENABLED"}, {"x-amz-checksum-mode": "ENABLED"}),
    ("HeadObject", {"x-amz-checksum-mode": "ENABLED"}, {"x-amz-checksum-mode": "ENABLED"}),
    # Nothing else: Complete's whole-object checksum is refused by the app, a trailer
    # is re-framed (trailing_algorithm), other operations take none.
    ("CompleteMultipartUpload", {"x-amz-checksum-crc32": "DUoRhQ=="}, {}),
    ("PutObject", {"x-amz-trailer": "x-amz-checksum-crc32"}, {}),
    ("PutObjectTagging", {"x-amz-checksum-crc32": "DUoRhQ=="}, {}),
    ("UploadPartCopy", {"x-amz-checksum-algorithm": "CRC32"}, {}),
])
def test_plain_checksum_headers(operation: str, headers: dict[str, str],
                                expected: dict[str, str]) -> None:
    assert fw.plain_checksum_headers(operation, headers) == expected


@pytest.mark.parametrize(("answer", "expected"), [
    ([("x-amz-checksum-crc32", "DUoRhQ=="), ("ETag", '"e"')],
     [("x-amz-checksum-crc32", "DUoRhQ=="), ("x-amz-checksum-type", "FULL_OBJECT")]),
    ([("X-Amz-Checksum-CRC32C", "AAAAAA==-3")],
     [("x-amz-checksum-crc32c", "AAAAAA==-3"), ("x-amz-checksum-type", "COMPOSITE")]),
    ([("x-amz-checksum-sha1", "x"), ("x-amz-checksum-type", "COMPOSITE")],
     [("x-amz-checksum-sha1", "x"), ("x-amz-checksum-type", "COMPOSITE")]),
    ([("Content-Length", "3")], []),
])
def test_checksum_answers(answer: list[tuple[str, str]],
                          expected: list[tuple[str, str]]) -> None:
    assert fw.checksum_answers(answer) == expected
