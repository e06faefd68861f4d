"""The streaming engine: chunk loops over batched, preallocated buffers.

Input is any of: an iterable of bytes-like pieces of any size, an object with
``readinto`` (preferred: it fills our buffer, no extra copy), or one with
``read``.  :class:`ByteSource` hands out exact-size views, copying only the few
bytes of a chunk that straddles two input pieces.

Output is produced in batches of about 1 MiB into one buffer that is reused:
every yielded ``memoryview`` is valid only until the next item is requested.
Write it out (socket ``sendall``, ``file.write``) before asking for the next one,
or copy it with ``bytes(view)`` (:func:`copied` does that for a whole stream).

Decryption verifies every chunk's tag before its plaintext enters a batch, and a
batch is yielded only after all of its chunks verified; the last batch of an
object is yielded only after the end of the object (final flag, seal or trailer,
no trailing bytes) verified too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from encproxy.crypto.suites import Buffer, RecordCipher, RecordRejected
from encproxy.errors import IncompleteBody
from encproxy.format.constants import CHUNK_CIPHERTEXT_SIZE, CHUNK_SIZE, TAG_SIZE
from encproxy.format.errors import ChunkAuthenticationFailed, CiphertextTruncated, FormatError
from encproxy.format.layout import chunk_count
from encproxy.format.records import AadPacker

BATCH_CHUNKS = 16                       # chunks per output batch: 1 MiB of plaintext
READ_SIZE = BATCH_CHUNKS * CHUNK_SIZE   # bytes per read from a reader source


class SupportsReadinto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class SupportsRead(Protocol):
    def read(self, size: int, /) -> bytes: ...


Source = Iterable[Buffer] | SupportsReadinto | SupportsRead


class ByteSource:
    """Exact-size views over a source of bytes; memory bounded by two buffers."""

    __slots__ = ("_cur", "_pos", "_staging", "_fetch", "_eof", "_buf")

    def __init__(self, source: Source, read_size: int = READ_SIZE) -> None:
        self._cur = memoryview(b"")
        self._pos = 0
        self._staging = bytearray(0)
        self._eof = False
        self._buf = bytearray(0)
        self._fetch: Callable[[], memoryview | None]
        if hasattr(source, "readinto"):
            self._buf = bytearray(read_size)
            readinto: Callable[[memoryview], int | None] = source.readinto
            self._fetch = lambda: self._fetch_readinto(readinto)
        elif hasattr(source, "read"):
            read: Callable[[int], bytes] = source.read
            self._fetch = lambda: self._fetch_read(read, read_size)
        else:
            iterator = iter(source)
            self._fetch = lambda: self._fetch_iter(iterator)

    def _fetch_readinto(self, readinto: Callable[[memoryview], int | None]) -> memoryview | None:
        buf = memoryview(self._buf)
        filled = 0
        while filled < len(buf):
            got = readinto(buf[filled:])
            if not got:
                break
            filled += got
        return buf[:filled] if filled else None

    def _fetch_read(self, read: Callable[[int], bytes], size: int) -> memoryview | None:
        data = read(size)
        return memoryview(data).cast("B") if data else None

    @staticmethod
    def _fetch_iter(iterator: Iterator[Buffer]) -> memoryview | None:
        for piece in iterator:
            if len(piece):
                view = memoryview(piece)
                return view if view.format == "B" and view.ndim == 1 else view.cast("B")
        return None

    def _advance(self) -> bool:
        if self._eof:
            return False
        piece = self._fetch()
        if piece is None:
            self._eof = True
            self._cur, self._pos = memoryview(b""), 0
            return False
        self._cur, self._pos = piece, 0
        return True

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes (fewer only at the end), valid until the next call."""
        pos, cur = self._pos, self._cur
        if len(cur) - pos >= n:
            self._pos = pos + n
            return cur[pos:pos + n]
        if len(self._staging) < n:
            self._staging = bytearray(n)
        staging = memoryview(self._staging)
        got = len(cur) - pos
        staging[:got] = cur[pos:]
        self._pos = len(cur)
        while got < n and self._advance():
            cur = self._cur
            k = min(n - got, len(cur))
            staging[got:got + k] = cur[:k]
            self._pos = k
            got += k
        return staging[:got]

    def take_units(self, n: int, unit: int) -> memoryview:
        """Up to ``n`` bytes in whole ``unit``s without copying when the current piece
        holds them; else exactly ``min(n, unit)`` bytes (fewer only at the end)."""
        pos, cur = self._pos, self._cur
        avail = len(cur) - pos
        if avail >= n:
            self._pos = pos + n
            return cur[pos:pos + n]
        if avail >= unit:
            m = avail - avail % unit
            self._pos = pos + m
            return cur[pos:pos + m]
        return self.take(min(n, unit))

    def at_end(self) -> bool:
        """True if the source has no more bytes (reads ahead one piece if needed)."""
        return self._pos >= len(self._cur) and not self._advance()


class Batch:
    """A reusable output buffer of ``limit`` bytes (plus slack for headers and seals)."""

    __slots__ = ("buf", "view", "pos", "limit")

    def __init__(self, limit: int, slack: int = 0) -> None:
        self.buf = bytearray(limit + slack)
        self.view = memoryview(self.buf)
        self.pos = 0
        self.limit = limit

    def put(self, data: Buffer) -> None:
        n = len(data)
        self.view[self.pos:self.pos + n] = data
        self.pos += n

    def take(self) -> memoryview:
        """The filled part; the batch is empty again (the view stays valid until reuse)."""
        view, self.pos = self.view[:self.pos], 0
        return view


def batch_for(chunks: int, unit: int, slack: int = 0) -> Batch:
    """A batch of at most BATCH_CHUNKS units, no larger than ``chunks`` needs: a 4 KiB
    object does not pay for zeroing a 1 MiB buffer."""
    return Batch(min(BATCH_CHUNKS, max(1, chunks)) * unit, slack)


def encrypt_chunks(cipher: RecordCipher, aad: AadPacker, plaintext_size: int,
                   src: ByteSource, out: Batch,
                   observe: Callable[[memoryview], object] | None = None
                   ) -> Iterator[memoryview]:
    """Seal a chunk stream of ``plaintext_size`` bytes from ``src`` into ``out``.

    Yields full batches; leaves the last, partial batch in ``out`` for the caller.
    Raises IncompleteBody if ``src`` ends early.
    """
    last = chunk_count(plaintext_size) - 1
    last_size = plaintext_size - last * CHUNK_SIZE
    seal_run, take_units, view = cipher.seal_run, src.take_units, out.view
    pack, part = aad.plain(), aad.part_number
    pos, limit, i = out.pos, out.limit, 0
    while i <= last:
        room = (limit - pos) // CHUNK_CIPHERTEXT_SIZE
        if room == 0:
            out.pos = pos
            yield out.take()
            pos, room = 0, limit // CHUNK_CIPHERTEXT_SIZE
        k = min(room, last + 1 - i)
        want = k * CHUNK_SIZE if i + k <= last else (k - 1) * CHUNK_SIZE + last_size
        pt = take_units(want, CHUNK_SIZE)
        got = len(pt)
        if got != want:   # a run of whole chunks, or the source ended
            if got < CHUNK_SIZE:
                raise IncompleteBody()
            k = got // CHUNK_SIZE
        if observe is not None:
            observe(pt)
        seal_run(i, k, last, pack, part, pt, view[pos:pos + got + k * TAG_SIZE])
        pos += got + k * TAG_SIZE
        i += k
    out.pos = pos


def decrypt_chunks(cipher: RecordCipher, aad: AadPacker, plaintext_size: int, first: int,
                   last: int, src: ByteSource, out: Batch,
                   rejected: type[FormatError] = ChunkAuthenticationFailed
                   ) -> Iterator[memoryview]:
    """Open chunks ``first..last`` of a stream of ``plaintext_size`` bytes into ``out``.

    Yields full batches of verified plaintext; leaves the last batch in ``out``.
    Raises CiphertextTruncated if ``src`` ends early, ``rejected`` on a bad tag.
    """
    final = chunk_count(plaintext_size) - 1
    final_record = plaintext_size - final * CHUNK_SIZE + TAG_SIZE
    open_run, take_units, view = cipher.open_run, src.take_units, out.view
    pack, part = aad.plain(), aad.part_number
    pos, limit, i = out.pos, out.limit, first
    try:
        while i <= last:
            room = (limit - pos) // CHUNK_SIZE
            if room == 0:
                out.pos = pos
                yield out.take()
                pos, room = 0, limit // CHUNK_SIZE
            k = min(room, last + 1 - i)
            want = (k * CHUNK_CIPHERTEXT_SIZE if i + k - 1 < final
                    else (k - 1) * CHUNK_CIPHERTEXT_SIZE + final_record)
            records = take_units(want, CHUNK_CIPHERTEXT_SIZE)
            got = len(records)
            if got != want:   # a run of whole records, or the source ended
                if got < CHUNK_CIPHERTEXT_SIZE:
                    raise CiphertextTruncated()
                k = got // CHUNK_CIPHERTEXT_SIZE
            plain = got - k * TAG_SIZE
            open_run(i, k, final, pack, part, records, view[pos:pos + plain])
            pos += plain
            i += k
    except RecordRejected:
        out.pos = 0
        raise rejected() from None
    out.pos = pos


def trimmed(batches: Iterable[memoryview], skip: int, length: int) -> Iterator[memoryview]:
    """Drop ``skip`` bytes at the front and everything after ``length`` bytes."""
    for view in batches:
        if skip:
            if len(view) <= skip:
                skip -= len(view)
                continue
            view, skip = view[skip:], 0
        if len(view) > length:
            view = view[:length]
        if view:
            length -= len(view)
            yield view


def copied(batches: Iterable[memoryview]) -> Iterator[bytes]:
    """The same stream as independent ``bytes`` objects (for consumers that keep them,
    such as WSGI servers that require ``bytes``).  Costs one copy."""
    for view in batches:
        yield bytes(view)
