"""Parsing and rendering of the ?encryption configuration (pure)."""
from __future__ import annotations

import pytest

from encproxy import errors
from encproxy.s3 import xml
from encproxy.s3.bucket_encryption import BucketEncryption, parse_configuration

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def body(inner: str, ns: str = NS) -> bytes:
    return f"<ServerSideEncryptionConfiguration {ns}>{inner}</ServerSideEncryptionConfiguration>".encode()


def rule(default: str, extra: str = "") -> str:
    return f"<Rule><ApplyServerSideEncryptionByDefault>{default}</ApplyServerSideEncryptionByDefault>{extra}</Rule>"


@pytest.mark.parametrize("data,expected", [
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm>")),
                 BucketEncryption("AES256"), id="aes256"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm>"), ns='xmlns=""'),
                 BucketEncryption("AES256"), id="empty-namespace-as-in-aws-example"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm>"), ns=""),
                 BucketEncryption("AES256"), id="no-namespace"),
    pytest.param(body(rule("<KMSMasterKeyID>k1</KMSMasterKeyID><SSEAlgorithm>aws:kms</SSEAlgorithm>")),
                 BucketEncryption("aws:kms", "k1"), id="yandex-order"),
    pytest.param(body(rule("<SSEAlgorithm>aws:kms</SSEAlgorithm>")),
                 BucketEncryption("aws:kms"), id="kms-without-key"),
    pytest.param(body(rule("<KMSMasterKeyID>arn:aws:kms:us-east-1:1234/5678example</KMSMasterKeyID>")),
                 BucketEncryption("aws:kms", "arn:aws:kms:us-east-1:1234/5678example"),
                 id="aws-example-without-algorithm"),
    pytest.param(body(rule("<SSEAlgorithm>aws:kms</SSEAlgorithm>",
                           "<BucketKeyEnabled>true</BucketKeyEnabled>")),
                 BucketEncryption("aws:kms", None, True), id="bucket-key-enabled"),
    pytest.param(body("<Rule><BucketKeyEnabled>true</BucketKeyEnabled></Rule>"),
                 BucketEncryption(None, None, True), id="rule-without-default"),
])
def test_parse_valid(data, expected):
    assert parse_configuration(data) == expected


@pytest.mark.parametrize("data,error,argument", [
    pytest.param(b"not xml", errors.MalformedXML, None, id="not-xml"),
    pytest.param(b"<Other/>", errors.MalformedXML, None, id="wrong-root"),
    pytest.param(body(""), errors.MalformedXML, None, id="no-rule"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm>") * 2), errors.MalformedXML,
                 None, id="two-rules"),
    pytest.param(body(rule("<SSEAlgorithm>SSE-KMS</SSEAlgorithm>")), errors.MalformedXML, None,
                 id="unknown-algorithm"),
    pytest.param(body(rule("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm>")),
                 errors.NotImplementedError_, None, id="dsse-not-offered"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>")),
                 errors.InvalidArgument, "ApplyServerSideEncryptionByDefault", id="key-with-aes256"),
    pytest.param(body(rule("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID> </KMSMasterKeyID>")),
                 errors.InvalidArgument, "KMSMasterKeyID", id="empty-key"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm>",
                           "<BucketKeyEnabled>yes</BucketKeyEnabled>")),
                 errors.MalformedXML, None, id="bad-boolean"),
    pytest.param(body("<Rule></Rule>"), errors.MalformedXML, None, id="empty-rule"),
    pytest.param(body(rule("<SSEAlgorithm>AES256</SSEAlgorithm><Colour>red</Colour>")),
                 errors.MalformedXML, None, id="unknown-element"),
    pytest.param(b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>' + body(rule(
        "<SSEAlgorithm>&a;</SSEAlgorithm>")), errors.MalformedXML, None, id="dtd-refused"),
    pytest.param(b"<x>" + b" " * 20000 + b"</x>", errors.MaxMessageLengthExceeded, None,
                 id="too-big"),
])
def test_parse_invalid(data, error, argument):
    with pytest.raises(error) as exc:
        parse_configuration(data)
    if argument:
        assert exc.value.fields["ArgumentName"] == argument


def test_render_matches_aws_order():
    out = xml.render(BucketEncryption("aws:kms", "key-1", False).to_xml())
    assert out.endswith(
        b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
        b"<KMSMasterKeyID>key-1</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"
        b"<BucketKeyEnabled>false</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>")


def test_stored_form_round_trips_and_rejects_garbage():
    config = BucketEncryption("aws:kms", "k", True)
    assert BucketEncryption.from_json(config.to_json()) == config
    for bad in (b"{}", b"[]", b"nonsense", b'{"version": 1, "algorithm": "AES256", "kms_key_id": "k"}'):
        with pytest.raises(errors.InternalError):
            BucketEncryption.from_json(bad)
