"""Moving bytes: client bodies into temp files, stored bodies between files, reads.

Everything streams in pieces of ``PIECE`` (1 MiB, the size DESIGN.md §5 found
best), so memory stays flat whatever the object size.  Copies between stored
files that need no MD5 use ``copy_file_range(2)``, which copies inside the
kernel (and shares extents on filesystems that can); the MD5 of a multipart
object is computed from its parts' MD5s, so completing an upload never
re-reads the data through Python.
"""
from __future__ import annotations

import errno
import io
import os
from typing import TYPE_CHECKING, Protocol

from encproxy.checksums import Hasher
from encproxy.digests import Digest
from encproxy.errors import IncompleteBody, InternalError
from encproxy.filestore.atomic import TempFile
from encproxy.filestore.storefile import corrupt
from encproxy.io_sizes import PIECE

if TYPE_CHECKING:
    from hashlib import _Hash

    from _typeshed import WriteableBuffer

# copy_file_range cannot serve this pair of files: fall back to read/write.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF,
                   errno.EPERM}


class BodyReader(Protocol):
    """A request body: ``read(n)`` returns at most n bytes, ``b""`` at the end.

    It may raise (an S3Error for a bad checksum or chunk signature, an OSError
    for a dropped connection); the write is then abandoned and the error
    propagates unchanged.
    """

    def read(self, n: int, /) -> bytes: ...


def receive(body: BodyReader, length: int, out: TempFile, md5: Digest | None,
            checksum: Hasher | None = None) -> None:
    """Copy exactly ``length`` bytes of ``body`` into ``out``, hashing them into ``md5``
    (and ``checksum``).

    A body that ends early raises IncompleteBody.  A reader that returns more
    than it was asked for breaks its contract and raises InternalError rather
    than having the excess ignored.  Nothing is read past ``length``: the
    caller bounds the stream (``wsgi.input`` is bounded by Content-Length), and
    probing for more could block on a raw socket.
    """
    remaining = length
    while remaining:
        want = min(PIECE, remaining)
        piece = body.read(want)
        if not piece:
            raise IncompleteBody(f"The body ended after {length - remaining} of the "
                                 f"{length} bytes announced.")
        n = len(piece)
        if n > want:
            raise InternalError("The request body returned more bytes than asked for.")
        if md5 is not None:
            md5.update(piece)
        if checksum is not None:
            checksum.update(piece)
        out.write(piece)
        remaining -= n


class Updatable(Protocol):
    """Anything bytes are fed to: a hash, or ``checksums.DigestSet`` of several."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...


def copy_range(src_fd: int, offset: int, length: int, out: TempFile,
               md5: _Hash | Updatable | None = None, *, path: str = "?") -> None:
    """Append ``length`` bytes of ``src_fd`` from ``offset`` to ``out``.

    With ``md5``, the bytes pass through Python to be hashed; without, the
    kernel copies them when it can.
    """
    done = 0
    if md5 is None:
        try:
            while done < length:
                n = os.copy_file_range(src_fd, out.fd, min(length - done, 1 << 30),
                                       offset + done)
                if n == 0:
                    raise corrupt(path, "ended before its header said")
                done += n
            return
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
    buf = bytearray(min(PIECE, max(length - done, 1)))
    view = memoryview(buf)
    while done < length:
        n = os.preadv(src_fd, [view[: min(len(buf), length - done)]], offset + done)
        if n == 0:
            raise corrupt(path, "ended before its header said")
        if md5 is not None:
            md5.update(view[:n])
        out.write(view[:n])
        done += n


class ObjectBody(io.RawIOBase):
    """A read-only, seekable view of one stored body: positions are body offsets.

    It holds its own descriptor of the file it opened, so it keeps reading that
    version even if the object is replaced or deleted meanwhile.  It never
    reads past the body, and reports a file that turns out shorter than its
    header said as an error, not as a short body.  Close it (it is a context
    manager; garbage collection also closes it).
    """

    def __init__(self, fd: int, body_offset: int, size: int, path: str = "?") -> None:
        super().__init__()
        self._fd = fd
        self._base = body_offset
        self._size = size
        self._pos = 0
        self._path = path

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._checkClosed()
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        n = os.preadv(self._fd, [view[:want]], self._base + self._pos)
        if n == 0:
            raise corrupt(self._path, "ended before its header said")
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if negative), in one allocation."""
        self._checkClosed()
        if size is None or size < 0:
            return self.readall()
        want = min(size, self._size - self._pos)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._base + self._pos)
        if not data:
            raise corrupt(self._path, "ended before its header said")
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        """The rest of the body in one piece (``read()``): sized for small bodies only."""
        buf = bytearray(max(self._size - self._pos, 0))
        view = memoryview(buf)
        got = 0
        while got < len(buf):
            got += self.readinto(view[got:])
        return bytes(buf)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()

