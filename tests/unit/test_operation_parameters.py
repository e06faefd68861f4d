"""encproxy.s3.operations: which operation a request is, by allowlist of subresources and
query parameters (pure), checked against AWS's own API model (botocore's S3 service model).
"""
from __future__ import annotations

import botocore.session
import pytest

from encproxy import errors
from encproxy.s3 import operations as ops
from encproxy.s3backend import forwarding

# -- against the AWS API model ----------------------------------------------------------

# AWS operations and the name encproxy gives them where it differs (AWS keeps two names
# for some, the older one deprecated; a listing of configurations by id shares the Get).
RENAMED = {
    "GetBucketLifecycle": "GetBucketLifecycleConfiguration",
    "PutBucketLifecycle": "PutBucketLifecycleConfiguration",
    "DeleteBucketLifecycle": "DeleteBucketLifecycleConfiguration",
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    "PutBucketNotification": "PutBucketNotificationConfiguration",
    "ListBucketAnalyticsConfigurations": "GetBucketAnalyticsConfiguration",
    "ListBucketInventoryConfigurations": "GetBucketInventoryConfiguration",
    "ListBucketMetricsConfigurations": "GetBucketMetricsConfiguration",
    "ListBucketIntelligentTieringConfigurations": "GetBucketIntelligentTieringConfiguration",
}
# AWS operations encproxy does not know: each must classify as None (refused), whatever
# operation its method and path alone would look like.
UNKNOWN = {
    "RenameObject", "CreateSession", "GetPart", "ListDirectoryBuckets",
    "GetObjectAnnotation", "PutObjectAnnotation",
    "DeleteObjectAnnotation", "ListObjectAnnotations", "GetBucketAbac", "PutBucketAbac",
    "GetBucketDefaultStorageClass", "PutBucketDefaultStorageClass",
    "CreateBucketMetadataConfiguration", "CreateBucketMetadataTableConfiguration",
    "GetBucketMetadataConfiguration", "GetBucketMetadataTableConfiguration",
    "DeleteBucketMetadataConfiguration", "DeleteBucketMetadataTableConfiguration",
    "UpdateBucketMetadataAnnotationTableConfiguration",
    "UpdateBucketMetadataInventoryTableConfiguration",
    "UpdateBucketMetadataJournalTableConfiguration",
}


def _model_requests():
    model = botocore.session.get_session().get_service_model("s3")
    for name in model.operation_names:
        op = model.operation_model(name)
        path, _, fixed = op.http["requestUri"].partition("?")
        if path != "/" and not path.startswith("/{Bucket}"):
            continue  # WriteGetObjectResponse: Object Lambda's own endpoint, not S3's
        query = {}
        for part in filter(None, fixed.split("&")):
            qname, _, value = part.partition("=")
            query[qname] = value
        headers = {}
        members = op.input_shape.members if op.input_shape is not None else {}
        for member in members.values():
            where = member.serialization.get("location")
            if where == "querystring":
                query[member.serialization["name"]] = "v"
            elif where == "header" and member.serialization["name"].lower() == \
                    "x-amz-copy-source":
                headers["x-amz-copy-source"] = "src/k"
        bucket = "b" if "{Bucket}" in path else None
        key = "k" if "{Key+}" in path else None
        yield pytest.param(name, op.http["method"], bucket, key, query, headers, id=name)


@pytest.mark.parametrize("name,method,bucket,key,query,headers", list(_model_requests()))
def test_every_aws_operation_with_every_parameter_it_takes(name, method, bucket, key, query,
                                                           headers):
    """A request with all of an operation's query parameters classifies as that operation;
    an operation encproxy does not know classifies as None."""
    got = ops.classify(method, bucket, key, query, headers)
    if name in UNKNOWN:
        assert got is None
        assert isinstance(ops.refusal(method, bucket, key, query, headers),
                          errors.NotImplementedError_)
        return
    assert got == RENAMED.get(name, name)
    # ...and with a parameter it does not take, it is refused, naming the parameter.
    stray = {**query, "renameObject": ""}
    assert ops.classify(method, bucket, key, stray, headers) is None
    err = ops.refusal(method, bucket, key, stray, headers)
    assert isinstance(err, errors.NotImplementedError_) and err.status == 501
    assert err.fields["ArgumentName"] == "renameObject"
    assert got in err.message


def test_the_model_and_the_unknown_list_agree():
    """UNKNOWN names only AWS operations (a typo would make its test vacuous)."""
    names = set(botocore.session.get_session().get_service_model("s3").operation_names)
    assert names >= UNKNOWN | set(RENAMED)


# -- the table itself --------------------------------------------------------------------

@pytest.mark.parametrize("method,bucket,key,query,headers,expected", [
    pytest.param("PUT", "b", "k", {"renameObject": ""}, {"x-amz-rename-source": "b/j"}, None,
                 id="rename-object-is-not-a-put"),
    pytest.param("PUT", "b", "k", {"encryption": ""}, {}, "UpdateObjectEncryption",
                 id="object-encryption-is-update-object-encryption"),
    pytest.param("PUT", "b", "k", {"encryption": "", "versionId": "null"}, {},
                 "UpdateObjectEncryption", id="update-object-encryption-version"),
    pytest.param("GET", "b", "k", {"encryption": ""}, {}, None, id="get-object-encryption"),
    pytest.param("DELETE", "b", "k", {"encryption": ""}, {}, None,
                 id="delete-object-encryption-is-not-a-delete"),
    pytest.param("PUT", "b", None, {"encryption": ""}, {}, "PutBucketEncryption",
                 id="bucket-encryption"),
    pytest.param("PUT", "b", "k", {"uploads": ""}, {}, None, id="put-uploads"),
    pytest.param("PUT", "b", None, {"uploads": ""}, {}, None, id="create-bucket-uploads"),
    pytest.param("DELETE", "b", None, {"nonsense": ""}, {}, None,
                 id="delete-bucket-with-nonsense"),
    pytest.param("DELETE", "b", "k", {"annotation": "", "annotationName": "a"}, {}, None,
                 id="delete-annotation-is-not-a-delete"),
    pytest.param("GET", "b", "k", {"part": "", "uploadId": "u", "partNumber": "1"}, {}, None,
                 id="get-part-is-not-list-parts"),
    pytest.param("GET", "b", None, {"session": ""}, {}, None, id="create-session"),
    pytest.param("GET", "b", None, {"mdsearch": ""}, {}, None, id="rgw-mdsearch"),
    pytest.param("GET", None, None, {"usage": ""}, {}, None, id="rgw-usage"),
    pytest.param("HEAD", "b", None, {"read-stats": "true"}, {}, None, id="rgw-read-stats"),
    pytest.param("GET", "b", None, {"versions": "", "list-type": "2"}, {}, None,
                 id="two-listings"),
    pytest.param("GET", "b", None, {"acl": "", "versioning": ""}, {}, None,
                 id="two-subresources"),
    pytest.param("GET", "b", None, {"tagging": "", "versionId": "v"}, {}, None,
                 id="version-of-a-bucket-configuration"),
    pytest.param("GET", "b", "k", {"tagging": "", "versionId": "v"}, {}, "GetObjectTagging",
                 id="version-of-an-object-configuration"),
    pytest.param("GET", "b", None, {"analytics": "", "id": "a"}, {},
                 "GetBucketAnalyticsConfiguration", id="configuration-by-id"),
    pytest.param("GET", "b", None, {"cors": "", "id": "a"}, {}, None,
                 id="id-on-a-configuration-without-ids"),
    pytest.param("GET", "b", None, {"list-type": "2", "allow-unordered": "true"}, {},
                 "ListObjectsV2", id="rgw-allow-unordered-v2"),
    pytest.param("GET", "b", None, {"allow-unordered": "true"}, {}, "ListObjects",
                 id="rgw-allow-unordered-v1"),
    pytest.param("GET", "b", None, {"versions": "", "allow-unordered": "true"}, {}, None,
                 id="allow-unordered-is-for-object-listings-only"),
    pytest.param("POST", "b", None, {}, {}, "PostObject", id="post-object"),
    pytest.param("POST", "b", None, {"nonsense": ""}, {}, None, id="post-with-nonsense"),
    pytest.param("POST", "b", "k", {}, {}, None, id="bare-object-post"),
    pytest.param("PATCH", "b", "k", {}, {}, None, id="unknown-method"),
])
def test_classification(method, bucket, key, query, headers, expected):
    assert ops.classify(method, bucket, key, query, headers) == expected


SIGV4_PRESIGNED = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "c",
                   "X-Amz-Date": "20260101T000000Z", "X-Amz-Expires": "900",
                   "X-Amz-SignedHeaders": "host", "X-Amz-Signature": "s"}


@pytest.mark.parametrize("extra", [
    pytest.param(SIGV4_PRESIGNED, id="sigv4-presigned"),
    pytest.param({**SIGV4_PRESIGNED, "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
                  "x-id": "GetObject"}, id="node-sdk-v3-presigned"),
    pytest.param({**SIGV4_PRESIGNED, "X-Amz-Security-Token": "t"}, id="session-token"),
    pytest.param({"AWSAccessKeyId": "a", "Signature": "s", "Expires": "1"},
                 id="sigv2-presigned"),
])
@pytest.mark.parametrize("method,key,query,expected", [
    pytest.param("GET", "k", {}, "GetObject", id="get"),
    pytest.param("PUT", "k", {}, "PutObject", id="put"),
    pytest.param("GET", "k", {"x-amz-checksum-mode": "ENABLED"}, "GetObject",
                 id="get-checksum-mode-hoisted"),
    pytest.param("PUT", "k", {"uploadId": "u", "partNumber": "2"}, "UploadPart",
                 id="upload-part"),
    pytest.param("GET", None, {"list-type": "2"}, "ListObjectsV2", id="list"),
])
def test_presigned_urls_carry_their_authentication_on_any_operation(method, key, query,
                                                                     expected, extra):
    assert ops.classify(method, "b", key, {**query, **extra}, {}) == expected


@pytest.mark.parametrize("name", [
    pytest.param("x-amz-credential", id="sigv4-names-are-case-sensitive"),
    pytest.param("x-amz-checksum-crc32", id="hoisted-checksum-is-not-verified-so-refused"),
    pytest.param("x-amz-acl", id="hoisted-acl-is-not-applied-so-refused"),
    pytest.param("", id="empty-name"),
])
def test_parameters_no_operation_takes(name):
    assert ops.classify("PUT", "b", "k", {name: "v"}, {}) is None
    assert ops.refusal("PUT", "b", "k", {name: "v"}, {}).fields["ArgumentName"] == name


def test_refusal_of_an_unknown_method_is_method_not_allowed():
    err = ops.refusal("PATCH", "b", "k", {}, {})
    assert isinstance(err, errors.MethodNotAllowed) and err.status == 405


def test_refusal_of_an_unknown_subresource_names_nothing_it_cannot():
    err = ops.refusal("POST", "b", "k", {}, {})
    assert isinstance(err, errors.NotImplementedError_) and "ArgumentName" not in err.fields


def test_check_parameters():
    ops.check_parameters("GetObject", ["versionId", "partNumber", "x-id", "X-Amz-Date"])
    with pytest.raises(errors.NotImplementedError_) as exc:
        ops.check_parameters("GetObject", ["versionId", "torrent"])
    assert exc.value.fields["ArgumentName"] == "torrent"


def test_every_named_operation_has_a_row():
    """No operation name can escape the table (a missing row would refuse every request
    of that operation, a silent loss of a feature)."""
    named = {ops.name_operation(m, b, k, {sub: ""}, h)
             for m in ("GET", "PUT", "POST", "DELETE", "HEAD")
             for b, k in (("b", None), ("b", "k"), (None, None))
             for sub in ["", "uploads", "uploadId", "versions", "list-type", "location",
                         "delete", "attributes", "encryption",
                         *ops.BUCKET_CONFIG_SUBRESOURCES, *ops.OBJECT_CONFIG_SUBRESOURCES,
                         *ops.OBJECT_BODY_SUBRESOURCES]
             for h in ({}, {"x-amz-copy-source": "a/b"})}
    named.discard(None)
    assert named <= set(ops.PARAMETERS)


def test_the_s3_backend_uses_the_same_table():
    assert forwarding.check_parameters is ops.check_parameters
    presign = {name.decode() for name in forwarding.PRESIGN_PARAMETERS}
    assert presign == ops.ANY_OPERATION - {"x-id"}
    assert "X-Amz-Content-Sha256" in presign and "Signature" in presign
