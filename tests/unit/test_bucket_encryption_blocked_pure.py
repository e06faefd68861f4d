"""BlockedEncryptionTypes in the ?encryption configuration (pure): parsing, rendering in AWS's
element order, and the stored form, whose version 1 records (written before the element
existed) must stay readable and byte for byte what they were."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from encproxy import errors
from encproxy.s3 import xml
from encproxy.s3.bucket_encryption import BucketEncryption, parse_configuration

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "format" / "authenticated_records.json"
AES256 = "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>" \
         "</ApplyServerSideEncryptionByDefault>"


def body(rule_inner: str, ns: str = NS) -> bytes:
    return (f"<ServerSideEncryptionConfiguration {ns}><Rule>{rule_inner}</Rule>"
            "</ServerSideEncryptionConfiguration>").encode()


def blocked(*types: str) -> str:
    return ("<BlockedEncryptionTypes>"
            + "".join(f"<EncryptionType>{t}</EncryptionType>" for t in types)
            + "</BlockedEncryptionTypes>")


# -- parsing --------------------------------------------------------------------------------

@pytest.mark.parametrize("data,expected", [
    pytest.param(body(AES256 + blocked("SSE-C")),
                 BucketEncryption("AES256", None, False, ("SSE-C",)), id="aes256-block-sse-c"),
    pytest.param(body(AES256 + blocked("NONE")),
                 BucketEncryption("AES256", None, False, ("NONE",)), id="aes256-unblock"),
    pytest.param(body(blocked("SSE-C")),
                 BucketEncryption(None, None, False, ("SSE-C",)), id="only-blocked"),
    pytest.param(body(blocked("SSE-C") + "<BucketKeyEnabled>true</BucketKeyEnabled>"),
                 BucketEncryption(None, None, True, ("SSE-C",)), id="blocked-and-bucket-key"),
    pytest.param(body("<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                      "<KMSMasterKeyID>k1</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"
                      "<BucketKeyEnabled>true</BucketKeyEnabled>" + blocked("SSE-C")),
                 BucketEncryption("aws:kms", "k1", True, ("SSE-C",)), id="aws-order-kms"),
    pytest.param(body(blocked("SSE-C") + AES256),
                 BucketEncryption("AES256", None, False, ("SSE-C",)), id="any-order"),
    pytest.param(body(AES256 + blocked("NONE", "SSE-C")),
                 BucketEncryption("AES256", None, False, ("NONE", "SSE-C")),
                 id="both-kept-in-order"),
    pytest.param(body(AES256 + "<BlockedEncryptionTypes/>"),
                 BucketEncryption("AES256", None, False, ()), id="empty-list"),
    pytest.param(body(AES256 + "<BlockedEncryptionTypes>\n  <EncryptionType> SSE-C "
                      "</EncryptionType>\n</BlockedEncryptionTypes>"),
                 BucketEncryption("AES256", None, False, ("SSE-C",)), id="whitespace"),
    pytest.param(body(blocked("SSE-C"), ns='xmlns=""'),
                 BucketEncryption(None, None, False, ("SSE-C",)), id="empty-namespace"),
    pytest.param(body(blocked("SSE-C"), ns=""),
                 BucketEncryption(None, None, False, ("SSE-C",)), id="no-namespace"),
])
def test_parse_valid(data, expected):
    assert parse_configuration(data) == expected


@pytest.mark.parametrize("data", [
    pytest.param(body(AES256 + blocked("SSE-KMS")), id="unknown-type"),
    pytest.param(body(AES256 + blocked("AES256")), id="algorithm-is-not-a-type"),
    pytest.param(body(AES256 + blocked("sse-c")), id="case-matters"),
    pytest.param(body(AES256 + blocked("")), id="empty-type"),
    pytest.param(body(AES256 + blocked("SSE-C", "DSSE")), id="one-unknown-among-known"),
    pytest.param(body(AES256 + "<BlockedEncryptionTypes><Type>SSE-C</Type>"
                               "</BlockedEncryptionTypes>"), id="unknown-child"),
    pytest.param(body(AES256 + blocked("SSE-C") + blocked("NONE")), id="two-elements"),
    pytest.param(body(AES256 + "<BlockedEncryptionTypes><EncryptionType><EncryptionType>SSE-C"
                               "</EncryptionType></EncryptionType></BlockedEncryptionTypes>"),
                 id="nested"),
    pytest.param(body("<EncryptionType>SSE-C</EncryptionType>"), id="type-outside-its-list"),
    pytest.param(body(""), id="empty-rule"),
])
def test_parse_invalid_is_malformed_xml(data):
    with pytest.raises(errors.MalformedXML):
        parse_configuration(data)


@pytest.mark.parametrize("types,blocks", [
    pytest.param(None, False, id="no-element"),
    pytest.param((), False, id="empty"),
    pytest.param(("NONE",), False, id="none"),
    pytest.param(("SSE-C",), True, id="sse-c"),
    pytest.param(("NONE", "SSE-C"), True, id="both-sse-c-wins"),
    pytest.param(("SSE-C", "NONE"), True, id="both-other-order"),
])
def test_blocks_sse_c(types, blocks):
    assert BucketEncryption("AES256", None, False, types).blocks_sse_c is blocks
    assert BucketEncryption(None, None, False, types).blocks_sse_c is blocks


# -- rendering ------------------------------------------------------------------------------

PREFIX = b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'


@pytest.mark.parametrize("config,expected", [
    pytest.param(BucketEncryption("aws:kms", "key-1", True, ("SSE-C",)),
                 b"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
                 b"<KMSMasterKeyID>key-1</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>"
                 b"<BucketKeyEnabled>true</BucketKeyEnabled><BlockedEncryptionTypes>"
                 b"<EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes></Rule>",
                 id="all-three-in-aws-order"),
    pytest.param(BucketEncryption(None, None, False, ("NONE", "SSE-C")),
                 b"<Rule><BucketKeyEnabled>false</BucketKeyEnabled><BlockedEncryptionTypes>"
                 b"<EncryptionType>NONE</EncryptionType><EncryptionType>SSE-C</EncryptionType>"
                 b"</BlockedEncryptionTypes></Rule>", id="no-default"),
    pytest.param(BucketEncryption("AES256"),
                 b"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>"
                 b"</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled>"
                 b"</Rule>", id="no-element-none-rendered"),
])
def test_render(config, expected):
    assert xml.render(config.to_xml()).endswith(PREFIX + expected
                                                + b"</ServerSideEncryptionConfiguration>")


@pytest.mark.parametrize("inner", [
    AES256 + blocked("SSE-C"), blocked("NONE"), blocked("NONE", "SSE-C") + AES256,
    "<ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>"
    "<KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault>" + blocked("SSE-C"),
])
def test_rendered_configuration_parses_back_to_itself(inner):
    config = parse_configuration(body(inner))
    assert parse_configuration(xml.render(config.to_xml())) == config


# -- the stored form ------------------------------------------------------------------------

STORED_CASES = [
    BucketEncryption("AES256"),
    BucketEncryption("aws:kms", "k", True),
    BucketEncryption("AES256", None, False, ("SSE-C",)),
    BucketEncryption("aws:kms", "k", True, ("NONE", "SSE-C")),
    BucketEncryption("aws:kms", None, False, ()),
    BucketEncryption(None, None, False, ("SSE-C",)),
    BucketEncryption(None, None, True, None),
]


@pytest.mark.parametrize("config", STORED_CASES, ids=repr)
def test_stored_form_round_trips(config):
    assert BucketEncryption.from_json(config.to_json()) == config


def test_version_1_bytes_unchanged_for_configurations_version_1_can_say():
    """The bucket-encryption body of the authenticated-record vectors (FORMAT.md §14.2) is a
    version 1 body written before BlockedEncryptionTypes existed: the same configuration
    still serialises to exactly those bytes, and they still read."""
    vectors = json.loads(VECTORS.read_text())
    (entry,) = [r for r in vectors["vectors"] if r["purpose"] == "bucket-encryption"]
    old = bytes.fromhex(entry["body_hex"])
    config = BucketEncryption("aws:kms", "test-key", False)
    assert config.to_json() == old
    assert BucketEncryption.from_json(old) == config
    assert not config.blocks_sse_c


@pytest.mark.parametrize("stored,expected", [
    pytest.param(b'{"algorithm": "AES256", "bucket_key_enabled": false, "kms_key_id": null, '
                 b'"version": 1}', BucketEncryption("AES256"), id="v1-aes256"),
    pytest.param(b'{"algorithm": "aws:kms", "bucket_key_enabled": true, "kms_key_id": "k", '
                 b'"version": 1}', BucketEncryption("aws:kms", "k", True), id="v1-kms"),
    pytest.param(b'{"algorithm": "AES256", "version": 1}', BucketEncryption("AES256"),
                 id="v1-minimal"),
    pytest.param(b'{"algorithm": null, "blocked_encryption_types": ["SSE-C"], '
                 b'"bucket_key_enabled": false, "kms_key_id": null, "version": 2}',
                 BucketEncryption(None, None, False, ("SSE-C",)), id="v2-blocked-only"),
])
def test_stored_records_read(stored, expected):
    assert BucketEncryption.from_json(stored) == expected


def test_written_versions():
    assert json.loads(BucketEncryption("AES256").to_json())["version"] == 1
    assert "blocked_encryption_types" not in json.loads(BucketEncryption("AES256").to_json())
    v2 = json.loads(BucketEncryption("AES256", None, False, ("SSE-C",)).to_json())
    assert v2 == {"version": 2, "algorithm": "AES256", "kms_key_id": None,
                  "bucket_key_enabled": False, "blocked_encryption_types": ["SSE-C"]}
    assert json.loads(BucketEncryption(None, None, True).to_json())["version"] == 2


@pytest.mark.parametrize("stored", [
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": ["SSE-C"], "version": 1}',
                 id="v1-with-blocked-field"),
    pytest.param(b'{"algorithm": null, "version": 1}', id="v1-without-algorithm"),
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": null, "version": 2}',
                 id="v2-of-a-v1-configuration"),
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": ["SSE-KMS"], '
                 b'"version": 2}', id="v2-unknown-type"),
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": "SSE-C", "version": 2}',
                 id="v2-types-not-a-list"),
    pytest.param(b'{"algorithm": "DSSE", "blocked_encryption_types": [], "version": 2}',
                 id="v2-unknown-algorithm"),
    pytest.param(b'{"algorithm": null, "blocked_encryption_types": [], "kms_key_id": "k", '
                 b'"version": 2}', id="v2-key-without-kms"),
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": [], "colour": 1, '
                 b'"version": 2}', id="v2-unknown-field"),
    pytest.param(b'{"algorithm": "AES256", "blocked_encryption_types": [], "version": 3}',
                 id="unknown-version"),
])
def test_stored_garbage_is_an_internal_error(stored):
    with pytest.raises(errors.InternalError):
        BucketEncryption.from_json(stored)
