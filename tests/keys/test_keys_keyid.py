"""Key-id parsing and normalization (pure; docs/KEYS.md §3)."""
from __future__ import annotations

import pytest

from encproxy import errors
from encproxy.keys.keyid import normalize_key_id, parse_key_id

UUID = "1234abcd-12ab-34cd-56ef-1234567890ab"
ARN = f"arn:aws:kms:us-east-1:123456789012:key/{UUID}"


@pytest.mark.parametrize("given, provider, expected", [
    pytest.param("default", "local", "default", id="bare"),
    pytest.param(" default ", "local", "default", id="trimmed"),
    pytest.param("alias/default", "local", "default", id="alias"),
    pytest.param("arn:aws:kms:us-east-1:123456789012:key/test-key", "pkcs11", "test-key",
                 id="key-arn"),
    pytest.param("arn:aws:kms:eu-west-1:000000000000:alias/test-key", "kmip", "test-key",
                 id="alias-arn"),
    pytest.param("arn:aws-cn:kms:cn-north-1:123456789012:key/a.b_c-d", "local", "a.b_c-d",
                 id="partition"),
    pytest.param(UUID, "awskms", UUID, id="kms-uuid"),
    pytest.param("mrk-1234abcd12ab34cd56ef1234567890ab", "awskms",
                 "mrk-1234abcd12ab34cd56ef1234567890ab", id="kms-mrk"),
    pytest.param(ARN, "awskms", ARN, id="kms-arn-kept"),
    pytest.param("alias/aws/s3", "awskms", "alias/aws/s3", id="kms-alias-kept"),
])
def test_normalize(given, provider, expected):
    assert normalize_key_id(given, provider) == expected


@pytest.mark.parametrize("given, provider", [
    pytest.param("", "local", id="empty"),
    pytest.param("has space", "local", id="space"),
    pytest.param("x" * 129, "local", id="too-long"),
    pytest.param("-leading-dash", "local", id="leading-dash"),
    pytest.param("a/b", "local", id="slash-in-name"),
    pytest.param("alias/", "local", id="empty-alias"),
    pytest.param("arn:aws:kms:us-east-1:1234/5678example", "local", id="aws-doc-arn"),
    pytest.param("arn:aws:s3:::bucket", "awskms", id="not-kms"),
    pytest.param("caf\u00e9", "awskms", id="non-ascii"),
    pytest.param("key_with_underscore", "awskms", id="kms-bare-underscore"),
    pytest.param("alias/bad alias", "awskms", id="kms-alias-space"),
])
def test_malformed_is_kms_not_found(given, provider):
    with pytest.raises(errors.KMSNotFound) as info:
        normalize_key_id(given, provider)
    assert info.value.status == 400 and info.value.message.startswith("Invalid keyId")


def test_parse_reports_form_and_arn_parts():
    ref = parse_key_id(ARN)
    assert (ref.form, ref.name, ref.arn_resource, ref.region, ref.account) == \
        ("arn", UUID, "key", "us-east-1", "123456789012")
    assert parse_key_id("alias/x").is_alias and not parse_key_id("x").is_alias


def test_error_message_never_echoes_unprintable_text():
    with pytest.raises(errors.KMSNotFound) as info:
        normalize_key_id("bad\x00\x1b[31mid", "local")
    assert "\x00" not in info.value.message and "\x1b" not in info.value.message
