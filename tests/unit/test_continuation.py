"""encproxy.s3.continuation: ListObjectsV2 tokens over an S3 backend, which carry the
backend's token and the key the next page starts after."""
from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encproxy import errors
from encproxy.s3 import continuation


@given(st.text(max_size=300), st.text(max_size=1024))
def test_tokens_round_trip(backend_token: str, after: str) -> None:
    token = continuation.wrap(backend_token, after)
    assert continuation.unwrap(token) == backend_token
    assert continuation.start_after(token) == after
    assert token == token.strip() and "=" not in token.rstrip("=")   # URL-safe base64


def test_tokens_issued_before_the_key_was_carried_are_still_taken():
    old = base64.urlsafe_b64encode(b"\x01" + "key/é".encode()).decode()
    assert continuation.unwrap(old) == "key/é"
    assert continuation.start_after(old) is None


@pytest.mark.parametrize("bad", [
    "%%%not-a-token", "a2V5", "", "AQ", "\u00e9",
    base64.urlsafe_b64encode(b"\x02\x00").decode(),            # no room for the length
    base64.urlsafe_b64encode(b"\x02\x00\x05abc").decode(),     # a key longer than the rest
    base64.urlsafe_b64encode(b"\x02\x00\x01\xffk").decode(),   # a key that is not UTF-8
    base64.urlsafe_b64encode(b"\x03k").decode(),               # an unknown tag
])
def test_foreign_tokens_are_refused_and_say_nowhere(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument) as raised:
        continuation.unwrap(bad)
    assert raised.value.code == "InvalidArgument"
    assert continuation.start_after(bad) is None


def test_a_key_too_long_to_carry_is_carried_as_the_empty_key() -> None:
    token = continuation.wrap("t", "k" * 70_000)       # no S3 key is; a backend could list one
    assert (continuation.unwrap(token), continuation.start_after(token)) == ("t", "")
