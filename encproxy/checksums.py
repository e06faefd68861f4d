"""Body digests a client can claim: Content-MD5 and ``x-amz-checksum-*``.

Pure module (stdlib plus ``awscrt``, botocore's own native checksums: CRC32,
CRC32C and CRC64NVME, the checksum AWS CLI v2 uploads with, and their
``combine`` for full-object checksums of multipart uploads).  It knows the wire format of
each claim (base64 of the big-endian digest), validates it the way S3 does,
and hashes a body incrementally in one pass however many digests are wanted,
so that MD5, SHA-256 and a CRC never read the body twice.

Error codes follow S3: a malformed Content-MD5 is ``InvalidDigest``, a
malformed or repeated ``x-amz-checksum-*`` is ``InvalidRequest``, and a
mismatch is ``BadDigest`` ("The CRC32 you specified did not match the
calculated checksum.").  Algorithms S3 knows but encproxy cannot compute
(the xxHash family needs native code we do not ship) are refused with
``NotImplemented`` rather than accepted unchecked.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from awscrt import checksums as awscrt_checksums

from encproxy import errors

CHECKSUM_HEADER_PREFIX = "x-amz-checksum-"

# algorithm -> digest size in bytes
DIGEST_SIZES: dict[str, int] = {
    "crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32, "sha512": 64,
}
ALGORITHMS = tuple(DIGEST_SIZES)
UNSUPPORTED_ALGORITHMS = frozenset({"xxhash64", "xxhash3", "xxhash128"})
# Response/configuration headers that share the prefix but carry no body digest.
_NOT_DIGEST_HEADERS = frozenset({"x-amz-checksum-algorithm", "x-amz-checksum-type",
                                 "x-amz-checksum-mode"})
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z", re.ASCII)


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class _AwsCrc:
    """One of S3's CRCs, from awscrt's accelerated C (botocore's own native code): its
    CRC32 ~10% faster than ``zlib.crc32`` here, its CRC32C ~7x google_crc32c and without
    a copy of memoryviews, its CRC64NVME hardware-accelerated (docs/ENCRYPTION.md,
    "Checksums")."""

    __slots__ = ("_function", "_size", "_value")

    def __init__(self, function: Callable[[Any, int], int], size: int) -> None:
        self._function, self._size, self._value = function, size, 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = self._function(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


_CRCS: dict[str, tuple[Callable[[Any, int], int], int]] = {
    "crc32": (awscrt_checksums.crc32, 4),
    "crc32c": (awscrt_checksums.crc32c, 4),
    "crc64nvme": (awscrt_checksums.crc64nvme, 8),
}


def new_hasher(algorithm: str) -> Hasher:
    """An incremental hasher for ``md5`` or any of :data:`ALGORITHMS`."""
    if algorithm in _CRCS:
        return _AwsCrc(*_CRCS[algorithm])
    if algorithm in ("md5", "sha1", "sha256", "sha512"):
        return hashlib.new(algorithm)
    raise ValueError(f"unknown digest algorithm {algorithm!r}")


def to_base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def display_name(algorithm: str) -> str:
    """The spelling S3 uses in messages: CRC32, CRC32C, SHA1, SHA256."""
    return algorithm.upper()


def _decode_base64(value: str, size: int) -> bytes | None:
    value = value.strip()
    if not _BASE64_RE.match(value) or len(value) % 4:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


# -- claims ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChecksumClaim:
    """An ``x-amz-checksum-<algorithm>`` value, decoded."""

    algorithm: str
    digest: bytes

    @property
    def header(self) -> str:
        return CHECKSUM_HEADER_PREFIX + self.algorithm

    @property
    def value(self) -> str:
        return to_base64(self.digest)


def parse_content_md5(value: str) -> bytes:
    """Decode a Content-MD5 header (base64 of 16 bytes) or raise InvalidDigest."""
    digest = _decode_base64(value, 16)
    if digest is None:
        raise errors.InvalidDigest("The Content-MD5 you specified is not valid.")
    return digest


def checksum_algorithm(header_name: str) -> str:
    """The algorithm named by an ``x-amz-checksum-<algorithm>`` header (lower-case).

    Raises NotImplemented for an algorithm S3 has but encproxy cannot verify,
    and InvalidRequest for one S3 does not have.
    """
    name = header_name.strip().lower()
    if not name.startswith(CHECKSUM_HEADER_PREFIX):
        raise errors.InvalidRequest(f"The header {header_name} is not a checksum header.")
    algorithm = name[len(CHECKSUM_HEADER_PREFIX):]
    if algorithm in DIGEST_SIZES:
        return algorithm
    if algorithm in UNSUPPORTED_ALGORITHMS:
        raise errors.NotImplementedError_(
            f"The {display_name(algorithm)} checksum algorithm is not supported.")
    raise errors.InvalidRequest(f"The checksum header {name} is not supported.")


def parse_checksum_value(algorithm: str, value: str) -> ChecksumClaim:
    """Decode the base64 value of an ``x-amz-checksum-<algorithm>`` header or trailer."""
    digest = _decode_base64(value, DIGEST_SIZES[algorithm])
    if digest is None:
        raise errors.InvalidRequest(
            f"Value for {CHECKSUM_HEADER_PREFIX}{algorithm} header is invalid.")
    return ChecksumClaim(algorithm, digest)


def checksum_header_names(headers: Iterable[str]) -> list[str]:
    """The body-digest ``x-amz-checksum-*`` header names among ``headers`` (lower-case)."""
    return [name.lower() for name in headers
            if name.lower().startswith(CHECKSUM_HEADER_PREFIX)
            and name.lower() not in _NOT_DIGEST_HEADERS]


def parse_checksum_headers(headers: Mapping[str, str]) -> ChecksumClaim | None:
    """The one ``x-amz-checksum-*`` header claim of a request, if any.

    ``headers`` has lower-case names.  More than one is refused, as S3 does.
    """
    names = checksum_header_names(headers)
    if not names:
        return None
    if len(names) > 1:
        raise errors.InvalidRequest(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    algorithm = checksum_algorithm(names[0])
    return parse_checksum_value(algorithm, headers[names[0]])


def parse_trailer_declaration(value: str) -> str:
    """The checksum algorithm an ``x-amz-trailer`` header announces.

    S3 accepts exactly one trailing header, and only a checksum.
    """
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if len(names) != 1 or not names[0].startswith(CHECKSUM_HEADER_PREFIX):
        raise errors.InvalidRequest(
            "The value specified in the x-amz-trailer header is not supported")
    return checksum_algorithm(names[0])


SDK_ALGORITHM_HEADER = "x-amz-sdk-checksum-algorithm"


def check_sdk_algorithm(value: str, sent: str | None) -> None:
    """Check ``x-amz-sdk-checksum-algorithm`` against the checksum the request carries.

    ``sent`` is the algorithm of the ``x-amz-checksum-*`` header or of the
    ``x-amz-trailer`` declaration (None: neither).  As S3: a declaration with
    no checksum is InvalidRequest, one naming another algorithm than the value
    sent is BadDigest (the value cannot be the digest the SDK said it
    computed), and a name S3 does not know is InvalidRequest.
    """
    algorithm = value.strip().lower()
    if algorithm not in DIGEST_SIZES and algorithm not in UNSUPPORTED_ALGORITHMS:
        raise errors.InvalidRequest(f"Value for {SDK_ALGORITHM_HEADER} header is invalid.")
    if sent is None:
        raise errors.InvalidRequest(
            f"{SDK_ALGORITHM_HEADER} specified, but no corresponding {CHECKSUM_HEADER_PREFIX}* "
            "or x-amz-trailer headers were found.")
    if sent != algorithm:
        raise errors.BadDigest(
            f"The {display_name(algorithm)} you specified did not match the calculated "
            f"checksum: the request carries {CHECKSUM_HEADER_PREFIX}{sent}, not "
            f"{CHECKSUM_HEADER_PREFIX}{algorithm}.")


# -- verification ---------------------------------------------------------------------

class DigestSet:
    """Several digests of one body, fed in a single pass.

    ``update`` feeds every hasher; ``digests()`` ends them.  Hashers are
    named ``md5``, ``sha256`` or a checksum algorithm; asking for the same
    name twice (say SHA-256 for both ``x-amz-content-sha256`` and
    ``x-amz-checksum-sha256``) hashes once.
    """

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._hashers: dict[str, Hasher] = {name: new_hasher(name) for name in algorithms}
        self._updaters = [hasher.update for hasher in self._hashers.values()]

    def __contains__(self, algorithm: str) -> bool:
        return algorithm in self._hashers

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for update in self._updaters:
            update(data)

    def digests(self) -> dict[str, bytes]:
        return {name: hasher.digest() for name, hasher in self._hashers.items()}


def check_content_md5(expected: bytes, actual: bytes) -> None:
    if expected != actual:
        raise errors.BadDigest("The Content-MD5 you specified did not match what we received.",
                               ExpectedDigest=to_base64(expected),
                               CalculatedDigest=to_base64(actual))


def check_checksum(claim: ChecksumClaim, actual: bytes) -> None:
    if claim.digest != actual:
        raise errors.BadDigest(f"The {display_name(claim.algorithm)} you specified did not "
                               f"match the calculated checksum.")


# -- checksums of multipart uploads ---------------------------------------------------

CRC_ALGORITHMS = frozenset({"crc32", "crc32c", "crc64nvme"})
# The reflected polynomials, for the pure-Python combination (awscrt before its combine_*).
_POLYNOMIALS = {"crc32": (0xEDB88320, 32), "crc32c": (0x82F63B78, 32),
                "crc64nvme": (0x9A6C9329AC4BC9B5, 64)}


def _gf2_times(matrix: Sequence[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


@lru_cache(maxsize=64)
def _zeros_operator(algorithm: str, length: int) -> tuple[int, ...]:
    """The GF(2) matrix that appending ``length`` zero bytes applies to a CRC register
    (zlib's crc32_combine, for any reflected CRC; cached: parts mostly share a size)."""
    poly, width = _POLYNOMIALS[algorithm]
    op = [poly] + [1 << i for i in range(width - 1)]     # one zero bit
    for _ in range(3):                                    # one zero byte
        op = [_gf2_times(op, column) for column in op]
    result: list[int] | None = None
    while length:
        if length & 1:
            result = op if result is None else [_gf2_times(op, c) for c in result]
        length >>= 1
        if length:
            op = [_gf2_times(op, column) for column in op]
    assert result is not None
    return tuple(result)


def _combine_pure(algorithm: str) -> Callable[[int, int, int], int]:
    def combine(crc1: int, crc2: int, length2: int) -> int:
        if length2 <= 0:   # the identity (an empty part's CRC is 0)
            return crc1 ^ crc2
        return _gf2_times(_zeros_operator(algorithm, length2), crc1) ^ crc2
    return combine


# awscrt's combine (C) where this awscrt has it (0.38 does), else the same in Python.
_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    algorithm: getattr(awscrt_checksums, f"combine_{algorithm}", None) or _combine_pure(algorithm)
    for algorithm in ("crc32", "crc32c", "crc64nvme")}


def combine_crc(algorithm: str, parts: Iterable[tuple[bytes, int]]) -> bytes:
    """The CRC of the concatenation of parts, from each part's CRC and length,
    without reading them again (awscrt's combine): a FULL_OBJECT checksum."""
    size = DIGEST_SIZES[algorithm]
    combine = _COMBINE[algorithm]
    value: int | None = None
    for digest, length in parts:
        crc = int.from_bytes(digest, "big")
        value = crc if value is None else combine(value, crc, length)
    if value is None:
        raise ValueError("no parts")
    return value.to_bytes(size, "big")


def composite(algorithm: str, part_digests: Iterable[bytes]) -> bytes:
    """A COMPOSITE checksum: the checksum of the concatenated part digests (S3 shows it
    with ``-N``, the part count)."""
    hasher = new_hasher(algorithm)
    for digest in part_digests:
        hasher.update(digest)
    return hasher.digest()
