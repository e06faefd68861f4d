"""The names encproxy gives to what it stores with an object, and which headers
describe plaintext or ciphertext: each fact is written here and nowhere else.

* the envelope (docs/FORMAT.md §2) travels as user metadata ``x-amz-meta-encproxy``;
  an SSE-KMS encryption context the client sent, as ``x-amz-meta-encproxy-context``;
* the format's authenticated ``Protection`` byte and the S3 mode names of
  ``encproxy.s3.sse`` are two spellings of one choice (``mode_of``/``protection_of``);
* request headers that describe the client's plaintext body, or ask a backend to
  encrypt, are never sent with ciphertext; response headers that describe the
  stored ciphertext are never shown to the client.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from encproxy import errors
from encproxy.format.constants import METADATA_KEY, Protection
from encproxy.format.envelope import Envelope, metadata_size
from encproxy.s3 import metadata as s3meta
from encproxy.s3 import sse
from encproxy.wsgi.subrequest import environ_key

ENVELOPE_HEADER = "x-amz-meta-" + METADATA_KEY
CONTEXT_HEADER = ENVELOPE_HEADER + "-context"

_MODE_OF_PROTECTION: Mapping[Protection, str] = {
    Protection.SSE_S3: sse.MODE_SSE_S3,
    Protection.SSE_KMS: sse.MODE_SSE_KMS,
    Protection.SSE_C: sse.MODE_SSE_C,
}


def mode_of(protection: Protection) -> str:
    """The S3 mode (``AES256``, ``aws:kms``, ``sse-c``) an envelope's protection byte names."""
    return _MODE_OF_PROTECTION[protection]


def protection_of(mode: str) -> Protection:
    """The protection byte an envelope written for S3 mode ``mode`` carries."""
    for protection, named in _MODE_OF_PROTECTION.items():
        if named == mode:
            return protection
    raise ValueError(f"no envelope protection for mode {mode!r}")


# Request headers that describe the client's plaintext body or ask the backend to encrypt
# (names, or prefixes ending in "-"): meaningless, and harmful since backends check them,
# once encproxy sends ciphertext instead.
CLIENT_ONLY_HEADERS = ("content-md5", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                       "x-amz-decoded-content-length", sse.SSE, "x-amz-checksum-")
CONDITIONAL_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")
SSE_C_HEADERS = (sse.SSE_C_ALGORITHM, sse.SSE_C_KEY, sse.SSE_C_KEY_MD5)
# Headers of a backend response that describe the stored ciphertext, not what the client sees.
CIPHERTEXT_RESPONSE_HEADERS = frozenset({
    "content-length", "etag", "content-range", "accept-ranges", "x-amz-mp-parts-count",
    "transfer-encoding", "content-md5"})
CIPHERTEXT_RESPONSE_PREFIXES = (ENVELOPE_HEADER, sse.SSE, "x-amz-checksum-")


_CLIENT_ONLY_ENVIRON = tuple(environ_key(name) for name in CLIENT_ONLY_HEADERS)


def is_client_only_environ_key(name: str) -> bool:
    return name.startswith(_CLIENT_ONLY_ENVIRON)


def client_only_removed(environ: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``environ`` without the headers in ``CLIENT_ONLY_HEADERS``."""
    return {k: v for k, v in environ.items() if not is_client_only_environ_key(k)}


def client_view(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A backend object response's headers that describe the object as the client
    sees it: no ciphertext sizes, no envelope, no backend encryption claims."""
    return [(k, v) for k, v in headers
            if k.lower() not in CIPHERTEXT_RESPONSE_HEADERS
            and not k.lower().startswith(CIPHERTEXT_RESPONSE_PREFIXES)]


def refuse_reserved_metadata(headers: Mapping[str, str]) -> None:
    """A client may not set encproxy's own metadata names."""
    if ENVELOPE_HEADER in headers or CONTEXT_HEADER in headers:
        raise errors.InvalidArgument(f"The metadata name {ENVELOPE_HEADER} is reserved "
                                     "by encproxy.", ArgumentName=ENVELOPE_HEADER)


def stored_metadata(envelope: Envelope, context: str | None) -> dict[str, str]:
    """The metadata headers that carry ``envelope`` (and the client's SSE-KMS context)."""
    headers = {ENVELOPE_HEADER: envelope.encode()}
    if context is not None:
        headers[CONTEXT_HEADER] = context
    return headers


def check_metadata_budget(user_meta: Mapping[str, str], envelope: Envelope,
                          context: str | None) -> None:
    """S3's 2 KB of user metadata must hold the client's metadata and encproxy's."""
    used = sum(len(k) + len(v) for k, v in user_meta.items()) + metadata_size(envelope)
    if context is not None:
        used += len(CONTEXT_HEADER) - len("x-amz-meta-") + len(context)
    if used > s3meta.MAX_USER_METADATA_BYTES:
        raise errors.MetadataTooLarge(Size=str(used),
                                      MaxSizeAllowed=str(s3meta.MAX_USER_METADATA_BYTES))
