"""The checksum a new encrypted object keeps (FORMAT.md §15, docs/ENCRYPTION.md
"Checksums").

A write's checksum is the client's when it sent one (``x-amz-checksum-*`` in a
header or an ``aws-chunked`` trailer, or a POST form's field): the auth layer has
verified it against the body before the body's last byte reached this layer, and
left it in ``environ.BODY_CHECKSUMS``.  Otherwise encproxy computes one as the
plaintext streams, as S3 does: CRC64NVME by default (awscrt: about 0.02 CPU-s/GiB
here), or the algorithm a copy names (``x-amz-checksum-algorithm``).
"""
from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from encproxy import checksums, errors
from encproxy.format.checksum import FULL_OBJECT, StoredChecksum
from encproxy.s3 import checksum_headers
from encproxy.wsgi import environ as env


class WriteChecksum:
    """The FULL_OBJECT checksum of one single-part write's plaintext.

    ``sent``: the algorithm the request's body carries a checksum of (verified
    upstream), None if it carries none; ``algorithm``: what to compute when the
    client sent none (S3's default).
    """

    def __init__(self, environ: Mapping[str, Any], sent: str | None,
                 algorithm: str = checksum_headers.DEFAULT_ALGORITHM) -> None:
        self.environ = environ
        if sent not in checksum_headers.XML_NAMES or not verified_upstream(environ):
            # Nothing upstream verifies the client's (this layer used on its own): hash.
            sent = None
        self.sent = sent
        self.algorithm = sent or algorithm
        self._hasher = None if sent else checksums.new_hasher(self.algorithm)

    def observed(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        """``pieces``, hashed as they pass (nothing to hash if the client sent one)."""
        if self._hasher is None:
            yield from pieces
            return
        update = self._hasher.update
        for piece in pieces:
            update(piece)
            yield piece

    def result(self) -> StoredChecksum:
        """The checksum, once the whole plaintext has passed."""
        verified: dict[str, str] = {
            a: v for a, v in (self.environ.get(env.BODY_CHECKSUMS) or {}).items()
            if a in checksum_headers.XML_NAMES}
        if verified:
            # The client's, verified (also a POST form's, whose algorithm the headers
            # do not show).
            algorithm, value = next(iter(verified.items()))
            return StoredChecksum(algorithm, FULL_OBJECT, base64.b64decode(value))
        if self._hasher is None:
            raise errors.InternalError()   # the client's checksum went missing
        return StoredChecksum(self.algorithm, FULL_OBJECT, self._hasher.digest())


def verified_upstream(environ: Mapping[str, Any]) -> bool:
    """Whether an auth layer verifies the body's checksums (it puts the dict it fills
    at the body's end into the environ before the body is read)."""
    return env.BODY_CHECKSUMS in environ


def for_write(environ: Mapping[str, Any], headers: Mapping[str, str]) -> WriteChecksum:
    """The checksum of a PutObject (or POST Object) body."""
    return WriteChecksum(environ, checksum_headers.sent_algorithm(headers))


def for_copy(headers: Mapping[str, str], source: StoredChecksum | None) -> WriteChecksum:
    """The checksum of a re-encrypting copy, hashed on the plaintext stream: the
    algorithm ``x-amz-checksum-algorithm`` names, else the source's when it has a
    FULL_OBJECT one (a COMPOSITE one cannot describe a single-part copy), else S3's
    default."""
    named = headers.get(checksum_headers.ALGORITHM_HEADER, "").strip()
    if named:
        algorithm = checksums.checksum_algorithm(checksums.CHECKSUM_HEADER_PREFIX
                                                 + named.lower())
        if algorithm not in checksum_headers.XML_NAMES:
            raise errors.InvalidRequest("Checksum algorithm provided is unsupported.")
    elif source is not None and source.checksum_type == FULL_OBJECT:
        algorithm = source.algorithm
    else:
        algorithm = checksum_headers.DEFAULT_ALGORITHM
    return WriteChecksum({}, None, algorithm)
