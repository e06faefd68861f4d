"""Multipart objects: one segment per uploaded part, and the trailer (FORMAT.md §7).

    segment  = header(52) || chunk_0 || ... || chunk_{K-1}
    object   = segment_{n_1} || ... || segment_{n_m} [|| trailer]

The completed part numbers ``n_1 < ... < n_m`` are ``1..m``, or any ascending
numbers in 1..10000 when an indexed trailer lists them (FORMAT.md §7.3).

Each upload of a part draws a fresh 16-byte salt: its key is derived from the
upload's data key, the part number and the salt, so a part uploaded twice never
reuses a (key, nonce) pair.  The header is authenticated under that key.

Typical use::

    # CreateMultipartUpload
    keys, envelope = new_object(provider, key_id, bucket, key, kind=Kind.MULTIPART)
    # UploadPart n (any replica; keys from open_object(...) on the upload's envelope)
    enc = PartEncryptor(keys, n, content_length)
    backend.upload_part(n, length=enc.ciphertext_size, body=enc.encrypt(client_body))
    # CompleteMultipartUpload, sizes from ListParts via segment_plaintext_size()
    plan = plan_completion(numbers, sizes, can_rewrite_last_part=True)
    if plan.trailer is not Trailer.NONE:
        trailer = build_trailer(keys, plan)
        # plan.trailer_in_own_part: upload as part plan.trailer_number;
        # plan.held_tail: re-upload the last part as its segment || trailer
    backend.complete(plan.backend_part_numbers)
    # GetObject
    layout = None
    if is_indexed(stored_size, backend_parts):       # cache it by the backend ETag
        layout = read_index(keys, tail_of(index_tail_hint(backend_parts)), stored_size,
                            backend_parts)
    dec = MultipartDecryptor(keys, stored_size, layout=layout)
    for view in dec.decrypt(backend_body): write(view)
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterator, Sequence

from encproxy.crypto.keys import ObjectKeys, hkdf_expand, hkdf_extract, new_segment_salt
from encproxy.crypto.stream import (
    BATCH_CHUNKS,
    READ_SIZE,
    Batch,
    ByteSource,
    Source,
    decrypt_chunks,
    encrypt_chunks,
    trimmed,
)
from encproxy.crypto.suites import RecordCipher, RecordRejected, record_cipher
from encproxy.errors import IncompleteBody
from encproxy.format.checksum import DIGEST_SIZES, StoredChecksum
from encproxy.format.constants import (
    CHUNK_CIPHERTEXT_SIZE,
    CHUNK_SIZE,
    FOOTER_SIZE,
    INDEX_RECORD_INDEX,
    SEGMENT_HEADER_INDEX,
    SEGMENT_HEADER_SIZE,
    TAG_SIZE,
    Domain,
    Kind,
    Suite,
)
from encproxy.format.errors import (
    CiphertextSizeInvalid,
    CiphertextTrailingData,
    CiphertextTruncated,
    FinalSegmentMissing,
    FinalSegmentUnexpected,
    IndexAuthenticationFailed,
    IndexMalformed,
    RecordAuthenticationFailed,
    SegmentHeaderAuthenticationFailed,
    SegmentHeaderMalformed,
    SegmentLayoutMismatch,
    SegmentOutOfOrder,
)
from encproxy.format.layout import (
    CompletionPlan,
    IndexDescription,
    MultipartLayout,
    MultipartRangePlan,
    Trailer,
    check_part,
    chunk_count,
    is_contiguous,
    is_indexed,
    segment_size,
)
from encproxy.format.records import AadPacker, aad, segment_label
from encproxy.format.segment import (
    PartIndex,
    SegmentHeader,
    decode_footer,
    decode_index,
    encode_footer,
    encode_index,
    trailer_header,
)


def _require_multipart(keys: Sealer) -> None:
    if keys.kind is not Kind.MULTIPART:
        raise ValueError("these keys belong to a single-part object")


def _header_aad(header: SegmentHeader) -> bytes:
    return aad(header.suite, Domain.SEGMENT_HEADER, header.part_number, SEGMENT_HEADER_INDEX,
               final=False, extra=header.authenticated_bytes())


def _index_aad(header: SegmentHeader) -> bytes:
    return aad(header.suite, Domain.INDEX, header.part_number, INDEX_RECORD_INDEX, final=True)


COMPLETION_LABEL = b"encproxy/1 completion"


def completion_key(keys: ObjectKeys) -> bytes:
    """The upload's completion key (FORMAT.md §7.9): it seals trailers and nothing else,
    so a server that holds it (wrapped, during an SSE-C upload) can complete the upload
    without the customer's key, yet can neither read nor forge a part."""
    return _part_key(keys, COMPLETION_LABEL)


class CompletionKeys:
    """What a Complete without the data key seals a trailer with: ``segment_cipher`` of
    the completion key, in the place of the data key's (``seal_header``, ``build_trailer``)."""

    kind = Kind.MULTIPART

    def __init__(self, suite: Suite, object_id: bytes, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a completion key is 32 bytes")
        self.suite = suite
        self._prk = hkdf_extract(object_id, key)

    def segment_cipher(self, part_number: int, salt: bytes) -> RecordCipher:
        return record_cipher(self.suite, hkdf_expand(
            self._prk, segment_label(self.suite, part_number, salt), self.suite.key_size))

    @classmethod
    def of(cls, keys: ObjectKeys) -> CompletionKeys:
        return cls(keys.suite, keys.object_id, completion_key(keys))


Sealer = ObjectKeys | CompletionKeys


def seal_header(keys: Sealer, header: SegmentHeader) -> tuple[SegmentHeader, RecordCipher]:
    """Tag a header under its segment key; returns the tagged header and the key."""
    cipher = keys.segment_cipher(header.part_number, header.salt)
    tag = cipher.seal(SEGMENT_HEADER_INDEX, _header_aad(header), b"")
    return header.with_tag(tag), cipher


def open_segment_header(keys: ObjectKeys, raw: bytes | memoryview, *,
                        part_number: int | None = None
                        ) -> tuple[SegmentHeader, RecordCipher]:
    """Parse and authenticate a segment header; optionally require its part number.

    Raises SegmentHeaderMalformed (shape), SegmentHeaderAuthenticationFailed (tag)
    or SegmentOutOfOrder (an authentic header of another part).
    """
    _require_multipart(keys)
    header = SegmentHeader.decode(bytes(raw))
    if header.suite is not keys.suite:
        raise SegmentHeaderAuthenticationFailed()
    if header.completion_keyed:
        cipher = CompletionKeys.of(keys).segment_cipher(header.part_number, header.salt)
    else:
        cipher = keys.segment_cipher(header.part_number, header.salt)
    try:
        cipher.open(SEGMENT_HEADER_INDEX, _header_aad(header), header.tag)
    except RecordRejected:
        raise SegmentHeaderAuthenticationFailed() from None
    if part_number is not None and header.part_number != part_number:
        raise SegmentOutOfOrder()
    return header, cipher


class PartEncryptor:
    """Encrypts one upload of one part (UploadPart) into a segment.

    ``fixed_salt_for_vectors`` exists for known-answer tests only: a fixed salt
    reuses nonces when a part is uploaded twice.
    """

    def __init__(self, keys: ObjectKeys, part_number: int, plaintext_size: int, *,
                 fixed_salt_for_vectors: bytes | None = None) -> None:
        _require_multipart(keys)
        check_part(part_number, plaintext_size)
        self.keys = keys
        self.part_number = part_number
        self.plaintext_size = plaintext_size
        self.ciphertext_size = segment_size(plaintext_size)
        salt = fixed_salt_for_vectors or new_segment_salt()
        self.header, self._cipher = seal_header(
            keys, SegmentHeader.data(keys.suite, part_number, plaintext_size, salt))

    @property
    def terminal(self) -> bool:
        """True if this part can only be the last part of the upload."""
        return self.header.terminal

    def encrypt(self, source: Source) -> Iterator[memoryview]:
        """Yield the segment (``ciphertext_size`` bytes) in ~1 MiB views.

        Raises IncompleteBody if the source holds fewer or more than
        ``plaintext_size`` bytes.
        """
        src = ByteSource(source, READ_SIZE)
        out = Batch(BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE, slack=SEGMENT_HEADER_SIZE)
        out.put(self.header.encode())
        yield from encrypt_chunks(
            self._cipher, AadPacker(self.keys.suite, Domain.SEGMENT_CHUNK, self.part_number),
            self.plaintext_size, src, out)
        if not src.at_end():
            raise IncompleteBody()
        yield out.take()


def build_trailer(keys: Sealer, plan: CompletionPlan, *,
                  fixed_salt_for_vectors: bytes | None = None) -> bytes:
    """The trailer bytes ``plan`` calls for (``b""`` for Trailer.NONE), sealed under the
    data key's segment keys, or under the completion key's (``CompletionKeys``: a
    completion-keyed trailer, FORMAT.md §7.9).

    Upload them as one more part when ``plan.trailer_in_own_part``; otherwise
    append them to the last part's segment and upload that part again.  Each call
    draws a fresh salt, so a retried CompleteMultipartUpload is safe.
    """
    _require_multipart(keys)
    layout = plan.layout
    if layout.trailer is Trailer.NONE:
        return b""
    salt = fixed_salt_for_vectors or new_segment_salt()
    number = layout.last_part_number + 1
    completion = isinstance(keys, CompletionKeys)
    if layout.trailer is Trailer.HEADER_ONLY:
        header, _ = seal_header(keys, trailer_header(keys.suite, number, salt,
                                                     completion_keyed=completion))
        return header.encode()
    index = encode_index(layout.part_numbers, layout.part_sizes, plan.index_pad,
                         layout.description)
    header, cipher = seal_header(
        keys, trailer_header(keys.suite, number, salt, index_size=len(index),
                             described=layout.description is not None,
                             completion_keyed=completion,
                             checksummed=layout.description is not None
                             and layout.description.checksum is not None))
    record = cipher.seal(INDEX_RECORD_INDEX, _index_aad(header), index)
    trailer = header.encode() + record
    trailer += encode_footer(len(trailer) + FOOTER_SIZE)
    if len(trailer) != layout.trailer_size:
        raise AssertionError("indexed trailer size disagrees with the plan")
    return trailer


def _open_index(header: SegmentHeader, cipher: RecordCipher,
                record: bytes | memoryview) -> PartIndex:
    try:
        plaintext = cipher.open(INDEX_RECORD_INDEX, _index_aad(header), record)
    except RecordRejected:
        raise IndexAuthenticationFailed() from None
    index = decode_index(plaintext, header.described, header.checksummed)
    if header.part_number != index.part_numbers[-1] + 1:
        raise IndexMalformed()
    return index


def read_index(keys: ObjectKeys, tail: bytes | memoryview, ciphertext_size: int,
               backend_parts: int) -> MultipartLayout:
    """The layout of an indexed object from its last bytes (at least the whole trailer;
    ``index_tail_hint(backend_parts)`` bytes surely are): every part's number and size.

    Raises IndexMalformed, IndexAuthenticationFailed, SegmentHeaderAuthenticationFailed
    (a trailer of another upload), or CiphertextSizeInvalid when the index does not
    add up to the stored size and part count.
    """
    _require_multipart(keys)
    if not is_indexed(ciphertext_size, backend_parts):
        raise ValueError("this object's size does not carry the index signal")
    tail = memoryview(tail)
    trailer_size = decode_footer(tail[-FOOTER_SIZE:])
    if trailer_size > len(tail) or trailer_size > ciphertext_size:
        raise IndexMalformed()
    trailer = tail[len(tail) - trailer_size:]
    try:
        header, cipher = open_segment_header(keys, trailer[:SEGMENT_HEADER_SIZE])
    except SegmentHeaderMalformed:
        raise IndexMalformed() from None   # the footer points at something else
    if not header.indexed or header.span != trailer_size:
        raise IndexMalformed()
    index = _open_index(header, cipher, trailer[SEGMENT_HEADER_SIZE:trailer_size - FOOTER_SIZE])
    layout = MultipartLayout(index.part_sizes, Trailer.INDEXED, trailer_size,
                             part_numbers=index.part_numbers, description=index.description)
    if layout.ciphertext_size != ciphertext_size \
            or backend_parts not in (layout.parts, layout.parts + 1):
        raise CiphertextSizeInvalid()
    return layout


class MultipartDecryptor:
    """Decrypts a multipart object whose stored size is ``ciphertext_size``.

    ``layout`` (from the listing arithmetic, a prediction or the index) is checked
    against every header read.  ``decrypt`` works without it for parts numbered
    ``1..m``; an object whose part numbers have gaps needs the layout from its index
    (``read_index``): without it the first gap raises SegmentOutOfOrder.
    """

    def __init__(self, keys: ObjectKeys, ciphertext_size: int, *,
                 layout: MultipartLayout | None = None) -> None:
        _require_multipart(keys)
        if layout is not None and layout.ciphertext_size != ciphertext_size:
            raise CiphertextSizeInvalid()
        if layout is not None and not layout.contiguous and layout.trailer is not Trailer.INDEXED:
            raise ValueError("a layout with gaps in its part numbers comes from an index")
        self.keys = keys
        self.ciphertext_size = ciphertext_size
        self.layout = layout
        self.part_sizes: tuple[int, ...] = ()
        self.part_numbers: tuple[int, ...] = ()

    def decrypt(self, source: Source, *, plaintext_size: int | None = None
                ) -> Iterator[memoryview]:
        """Yield the whole plaintext, walking the segments; the last view only after
        the object's end verified (terminal segment or trailer, exact size).

        ``plaintext_size`` (what the response announced) must then match.
        Afterwards ``part_numbers`` and ``part_sizes`` describe the parts.

        The part numbers met must be those of the layout when it has gaps (it then
        comes from the index), else ``1, 2, 3, ...``; an indexed trailer must list
        exactly the parts met, and an object without one must be numbered ``1..m``.
        """
        src = ByteSource(source, BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE)
        out = Batch(BATCH_CHUNKS * CHUNK_SIZE)
        sizes: list[int] = []
        numbers: list[int] = []
        consumed, terminal, ended, indexed = 0, False, False, False
        while consumed < self.ciphertext_size:
            short = consumed + SEGMENT_HEADER_SIZE > self.ciphertext_size
            if ended or (terminal and short):
                raise FinalSegmentUnexpected()
            if short:
                raise CiphertextTruncated()
            raw = src.take(SEGMENT_HEADER_SIZE)
            if len(raw) != SEGMENT_HEADER_SIZE:
                raise CiphertextTruncated()
            header, cipher = open_segment_header(self.keys, raw)
            # After a terminal part only an indexed trailer may follow (held tail).
            if terminal and not header.indexed:
                raise FinalSegmentUnexpected()
            if header.part_number != self._expected_number(header, numbers):
                raise SegmentOutOfOrder()
            if consumed + header.span > self.ciphertext_size:
                raise CiphertextTruncated()
            if header.trailer:
                self._check_trailer(header, cipher, src, numbers, sizes)
                ended, indexed = True, header.indexed
            else:
                self._check_layout(len(sizes), header)
                yield from decrypt_chunks(
                    cipher, AadPacker(self.keys.suite, Domain.SEGMENT_CHUNK, header.part_number),
                    header.plaintext_size, 0, chunk_count(header.plaintext_size) - 1, src, out)
                sizes.append(header.plaintext_size)
                numbers.append(header.part_number)
            consumed += header.span
            terminal = header.terminal
        if not terminal:
            raise FinalSegmentMissing()
        if not src.at_end():
            raise CiphertextTrailingData()
        if not indexed and not is_contiguous(numbers):
            raise SegmentOutOfOrder()   # gaps that no index vouches for
        if self.layout is not None and len(sizes) != self.layout.parts:
            raise SegmentLayoutMismatch()
        if plaintext_size is not None and plaintext_size != sum(sizes):
            raise CiphertextSizeInvalid()
        self.part_sizes, self.part_numbers = tuple(sizes), tuple(numbers)
        yield out.take()

    def _expected_number(self, header: SegmentHeader, numbers: list[int]) -> int:
        """The part number the next segment must carry: the layout's (which has gaps
        only if it came from the index), else one more than the previous part's; a
        trailer's is always the last part number + 1."""
        position = len(numbers)
        if header.trailer or self.layout is None or position >= self.layout.parts:
            return (numbers[-1] if numbers else 0) + 1
        return self.layout.part_numbers[position]

    def _check_layout(self, position: int, header: SegmentHeader) -> None:
        if self.layout is not None and (
                position >= self.layout.parts
                or self.layout.part_sizes[position] != header.plaintext_size):
            raise SegmentLayoutMismatch()

    def _check_trailer(self, header: SegmentHeader, cipher: RecordCipher, src: ByteSource,
                       numbers: list[int], sizes: list[int]) -> None:
        if not sizes:
            raise FinalSegmentMissing()
        if not header.indexed:
            return
        record = src.take(header.plaintext_size + TAG_SIZE)
        if len(record) != header.plaintext_size + TAG_SIZE:
            raise CiphertextTruncated()
        index = _open_index(header, cipher, record)
        if index.part_numbers != tuple(numbers):
            raise SegmentOutOfOrder()
        if index.part_sizes != tuple(sizes):
            raise SegmentLayoutMismatch()
        footer = src.take(FOOTER_SIZE)
        if len(footer) != FOOTER_SIZE:
            raise CiphertextTruncated()
        if decode_footer(footer) != header.span:
            raise IndexMalformed()

    def decrypt_range(self, plan: MultipartRangePlan, source: Source,
                      first_header: bytes | memoryview | None = None) -> Iterator[memoryview]:
        """Yield exactly ``plan.length`` bytes from the ciphertext range of ``plan``.

        When ``plan.needs_header``, pass the first piece's segment header (bytes
        ``plan.header_range``).  A header that disagrees with the plan's layout
        raises SegmentLayoutMismatch: if the layout was predicted, walk the headers
        and retry.
        """
        if plan.needs_header and first_header is None:
            raise ValueError("this plan needs the first segment's header")
        return trimmed(self._range(plan, source, first_header), plan.skip, plan.length)

    def _range(self, plan: MultipartRangePlan, source: Source,
               first_header: bytes | memoryview | None) -> Iterator[memoryview]:
        src = ByteSource(source, BATCH_CHUNKS * CHUNK_CIPHERTEXT_SIZE)
        out = Batch(BATCH_CHUNKS * CHUNK_SIZE)
        for piece in plan.pieces:
            span = piece.span
            raw: bytes | memoryview
            if piece.header_inline:
                raw = src.take(SEGMENT_HEADER_SIZE)
                if len(raw) != SEGMENT_HEADER_SIZE:
                    raise CiphertextTruncated()
            else:
                assert first_header is not None  # checked by decrypt_range (plan.needs_header)
                raw = first_header
            header, cipher = open_segment_header(self.keys, raw, part_number=span.part_number)
            if header.trailer or header.plaintext_size != span.plaintext_size:
                raise SegmentLayoutMismatch()
            yield from decrypt_chunks(
                cipher, AadPacker(self.keys.suite, Domain.SEGMENT_CHUNK, span.part_number),
                span.plaintext_size, piece.first_chunk, piece.last_chunk, src, out)
        if not src.at_end():
            raise CiphertextTrailingData()
        yield out.take()


def walk_step(keys: ObjectKeys, offset: int, raw_header: bytes | memoryview,
              part_number: int) -> tuple[SegmentHeader, int]:
    """One step of a header walk: authenticate the header found at ``offset``, require
    ``part_number`` (SegmentOutOfOrder), and return it with the next segment's offset.

    Without an index the walk expects ``1, 2, 3, ...`` (the trailer too is the next
    number); with one it expects ``index.segment_numbers[step]``.
    """
    header, _ = open_segment_header(keys, raw_header, part_number=part_number)
    return header, offset + header.span


def layout_from_headers(headers: Sequence[SegmentHeader], *,
                        index: MultipartLayout | None = None) -> MultipartLayout:
    """The layout of an object from its walked (authenticated) headers, in order.

    The data segments must be numbered ``1..m``, or, given the layout read from the
    object's index, exactly as the index lists them (SegmentOutOfOrder); a trailer
    must be numbered last + 1.  With ``index``, the walked layout must equal it
    (SegmentLayoutMismatch).
    """
    data = [h for h in headers if not h.trailer]
    if not data or not headers[-1].terminal:
        raise FinalSegmentMissing()
    for i, h in enumerate(headers[:-1]):
        if h.trailer or (h.terminal and not (i == len(headers) - 2 and headers[-1].indexed)):
            raise FinalSegmentUnexpected()
    numbers = tuple(h.part_number for h in data)
    if numbers != (index.part_numbers if index is not None else
                   tuple(range(1, len(numbers) + 1))):
        raise SegmentOutOfOrder()
    last = headers[-1]
    if last.trailer and last.part_number != numbers[-1] + 1:
        raise SegmentOutOfOrder()
    trailer = (Trailer.NONE if not last.trailer
               else Trailer.INDEXED if last.indexed else Trailer.HEADER_ONLY)
    layout = MultipartLayout(tuple(h.plaintext_size for h in data), trailer,
                             last.span if last.trailer else 0, part_numbers=numbers)
    if index is not None and layout != index:
        raise SegmentLayoutMismatch()
    return layout


# -- S3-style ETags of multipart objects (FORMAT.md §7.8) ----------------------------------

UPLOAD_DIGEST_LABEL = b"encproxy/1 upload id\x00"
PART_NAME_LABEL = b"encproxy/1 part etag name"
PART_MD5_LABEL = b"encproxy/1 part etag seal"
PART_CHECKSUM_LABEL = b"encproxy/1 part checksum seal"
_U32 = struct.Struct(">I")


def upload_digest(upload_id: str) -> bytes:
    """The 32-byte digest of an upload id that a described index carries."""
    return hashlib.sha256(UPLOAD_DIGEST_LABEL
                          + upload_id.encode("utf-8", "surrogatepass")).digest()


def multipart_etag_md5(part_md5s: Sequence[bytes]) -> bytes:
    """S3's multipart ETag before ``-N``: the MD5 of the concatenated binary MD5s of
    the parts, in the Complete's order."""
    return hashlib.md5(b"".join(part_md5s), usedforsecurity=False).digest()


def describe(part_md5s: Sequence[bytes], upload_id: str,
             checksum: StoredChecksum | None = None,
             part_checksums: Sequence[bytes] = ()) -> IndexDescription:
    """The description a completion of ``upload_id`` with these parts (and, if the
    upload has one, the object's checksum and its parts' digests) writes."""
    return IndexDescription(multipart_etag_md5(part_md5s), upload_digest(upload_id), checksum,
                            tuple(part_checksums))


def _part_key(keys: ObjectKeys, label: bytes) -> bytes:
    _require_multipart(keys)
    return hkdf_expand(hkdf_extract(keys.object_id, keys.data_key), label, 32)


def part_etag_name(keys: ObjectKeys, part_number: int, md5: bytes) -> str:
    """The name (32 hex digits) under which the record of an uploaded part with this
    plaintext MD5 is kept: keyed by the upload's data key, so that the name confirms
    no guess of the part's content to whoever reads the backend (FORMAT.md §7.8)."""
    digest = hmac.new(_part_key(keys, PART_NAME_LABEL), _U32.pack(part_number) + md5,
                      hashlib.sha256).digest()
    return digest[:16].hex()


def _md5_pad(keys: ObjectKeys, part_number: int, name: str) -> bytes:
    return hmac.new(_part_key(keys, PART_MD5_LABEL),
                    _U32.pack(part_number) + bytes.fromhex(name), hashlib.sha256).digest()[:16]


def seal_part_md5(keys: ObjectKeys, part_number: int, md5: bytes) -> tuple[str, str]:
    """The record name and the sealed plaintext MD5 (hex) of a part record: the MD5
    XORed with a pad derived from the name, which is itself a MAC of the MD5 (a
    synthetic-IV construction: deterministic, and equal only for equal parts)."""
    if len(md5) != 16:
        raise ValueError("an MD5 is 16 bytes")
    name = part_etag_name(keys, part_number, md5)
    pad = _md5_pad(keys, part_number, name)
    return name, bytes(a ^ b for a, b in zip(md5, pad, strict=True)).hex()


def open_part_md5(keys: ObjectKeys, part_number: int, name: str, sealed: str) -> bytes:
    """The plaintext MD5 of a part record (``seal_part_md5``); RecordAuthenticationFailed
    unless the name is the MAC of that MD5 under this upload's keys."""
    try:
        raw = bytes.fromhex(sealed)
        pad = _md5_pad(keys, part_number, name)
    except ValueError:
        raise RecordAuthenticationFailed() from None
    if len(raw) != 16:
        raise RecordAuthenticationFailed()
    md5 = bytes(a ^ b for a, b in zip(raw, pad, strict=True))
    if not hmac.compare_digest(part_etag_name(keys, part_number, md5), name):
        raise RecordAuthenticationFailed()
    return md5


def _checksum_pad(keys: ObjectKeys, part_number: int, name: str, algorithm: str) -> bytes:
    return hmac.new(_part_key(keys, PART_CHECKSUM_LABEL),
                    _U32.pack(part_number) + bytes.fromhex(name) + algorithm.encode("ascii"),
                    hashlib.sha256).digest()[:DIGEST_SIZES[algorithm]]


def seal_part_checksum(keys: ObjectKeys, part_number: int, name: str, algorithm: str,
                       digest: bytes) -> str:
    """The part's checksum (``x-amz-checksum-<algorithm>`` of its plaintext) as a part
    record keeps it (hex; FORMAT.md §15): XORed with a pad derived from the record's
    name, which is a MAC of the part's MD5, like the MD5 itself.  The record's MAC
    authenticates it; the pad keeps the digest from confirming guesses."""
    if len(digest) != DIGEST_SIZES[algorithm]:
        raise ValueError("digest size")
    pad = _checksum_pad(keys, part_number, name, algorithm)
    return bytes(a ^ b for a, b in zip(digest, pad, strict=True)).hex()


def open_part_checksum(keys: ObjectKeys, part_number: int, name: str, algorithm: str,
                       sealed: str) -> bytes:
    """The digest ``seal_part_checksum`` sealed; RecordAuthenticationFailed if malformed."""
    try:
        raw = bytes.fromhex(sealed)
        pad = _checksum_pad(keys, part_number, name, algorithm)
    except (ValueError, KeyError):
        raise RecordAuthenticationFailed() from None
    if len(raw) != len(pad):
        raise RecordAuthenticationFailed()
    return bytes(a ^ b for a, b in zip(raw, pad, strict=True))
