"""The wrapped-key blob codec and the canonical context encoding (pure; docs/KEYS.md §2)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy.errors import KeyUnwrapFailed
from encproxy.keys.blob import (
    MAX_BLOB_SIZE,
    Algorithm,
    ProviderKind,
    WrappedKey,
    aad,
    check_context,
    encode_context,
    encode_header,
)

SAMPLE = WrappedKey(ProviderKind.LOCAL, Algorithm.AES256_GCM, "default", "2",
                    bytes(range(12)), bytes(range(48)))
# Known answer: the layout of docs/KEYS.md §2, byte for byte.
SAMPLE_HEX = ("010101" "07" + b"default".hex() + "01" + b"2".hex() + "0c" + bytes(range(12)).hex()
              + "0030" + bytes(range(48)).hex())


def test_known_answer():
    assert SAMPLE.to_bytes().hex() == SAMPLE_HEX
    assert WrappedKey.from_bytes(bytes.fromhex(SAMPLE_HEX)) == SAMPLE
    assert SAMPLE.header() == bytes.fromhex(SAMPLE_HEX)[:13]
    assert encode_header(ProviderKind.LOCAL, Algorithm.AES256_GCM, "default", "2") \
        == SAMPLE.header()


def test_context_encoding_known_answer():
    assert encode_context({"b": "2", "a": "1"}) == (
        b"encproxy/keys/1 context\x00" + b"\x00\x02"
        + b"\x00\x01a" + b"\x00\x00\x00\x011" + b"\x00\x01b" + b"\x00\x00\x00\x012")
    header = SAMPLE.header()
    assert aad(header, {}) == (b"encproxy/keys/1 wrap\x00" + struct.pack(">H", len(header))
                               + header + b"encproxy/keys/1 context\x00\x00\x00")


def test_kms_blob_without_nonce_round_trips():
    blob = WrappedKey(ProviderKind.AWSKMS, Algorithm.KMS_CIPHERTEXT,
                      "arn:aws:kms:us-east-1:123456789012:key/" + "a" * 36, "", b"",
                      b"\x01" * 184)
    assert WrappedKey.from_bytes(blob.to_bytes()) == blob


@pytest.mark.parametrize("raw", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x01" * 8, id="short"),
    pytest.param(b"\x01" * (MAX_BLOB_SIZE + 1), id="over-512"),
    pytest.param(bytes.fromhex(SAMPLE_HEX)[:-1], id="truncated"),
    pytest.param(bytes.fromhex(SAMPLE_HEX) + b"\0", id="trailing"),
    pytest.param(b"\x01\x09" + bytes.fromhex(SAMPLE_HEX)[2:], id="unknown-provider"),
    pytest.param(b"\x01\x01\x09" + bytes.fromhex(SAMPLE_HEX)[3:], id="unknown-algorithm"),
    pytest.param(b"\x01\x01\x01\x00" + bytes.fromhex(SAMPLE_HEX)[4:], id="empty-key-id"),
    pytest.param(b"\x01\x01\x01\xff" + bytes.fromhex(SAMPLE_HEX)[4:], id="key-id-too-long"),
    pytest.param(bytes.fromhex(SAMPLE_HEX).replace(b"default", b"def ult"), id="space-in-id"),
    pytest.param(bytes.fromhex(SAMPLE_HEX).replace(b"\x0c\x00\x01", b"\x0b\x00\x01"),
                 id="gcm-nonce-11"),
    pytest.param(bytes.fromhex(SAMPLE_HEX).replace(b"\x00\x30", b"\x00\x00", 1),
                 id="zero-ciphertext"),
])
def test_malformed_blobs_are_refused(raw):
    with pytest.raises(KeyUnwrapFailed) as info:
        WrappedKey.from_bytes(raw)
    assert info.value.reason == "malformed-blob"


def test_future_version_is_refused_by_name():
    with pytest.raises(KeyUnwrapFailed) as info:
        WrappedKey.from_bytes(b"\x02" + bytes.fromhex(SAMPLE_HEX)[1:])
    assert info.value.reason == "unsupported-blob-version"


def test_not_bytes_is_refused():
    with pytest.raises(KeyUnwrapFailed):
        WrappedKey.from_bytes("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    dict(key_id=""), dict(key_id="x" * 129), dict(key_id="caf\u00e9"), dict(key_version="v" * 65),
    dict(nonce=b"\0" * 11), dict(ciphertext=b"\0" * 16), dict(ciphertext=b"\0" * 481),
])
def test_encoder_refuses_what_the_decoder_would(kwargs):
    fields = dict(provider=ProviderKind.LOCAL, algorithm=Algorithm.AES256_GCM, key_id="k",
                  key_version="1", nonce=b"\0" * 12, ciphertext=b"\0" * 48)
    with pytest.raises(ValueError):
        WrappedKey(**{**fields, **kwargs})


def test_whole_blob_capped_at_512():
    with pytest.raises(ValueError):
        WrappedKey(ProviderKind.AWSKMS, Algorithm.KMS_CIPHERTEXT, "k" * 128, "v" * 64,
                   b"\0" * 32, b"\0" * 480)


_text = st.text(st.characters(codec="utf-8"), max_size=12)


@given(st.dictionaries(_text.filter(bool), _text, max_size=5),
       st.dictionaries(_text.filter(bool), _text, max_size=5))
def test_context_encoding_is_injective(a, b):
    assert (encode_context(a) == encode_context(b)) == (a == b)


@given(st.dictionaries(_text.filter(bool), _text, max_size=5))
def test_context_encoding_ignores_order(a):
    assert encode_context(dict(reversed(list(a.items())))) == encode_context(a)


@pytest.mark.parametrize("context", [
    {"": "x"}, {"a": 1}, {1: "a"}, {f"k{i}": "v" for i in range(17)}, {"k": "v" * 4097},
    {"k" * 129: "v"}, ["not", "a", "mapping"],
])
def test_bad_contexts_are_programming_errors(context):
    with pytest.raises(ValueError):
        check_context(context)  # type: ignore[arg-type]
