"""Large bodies stream through the store with flat memory."""
from __future__ import annotations

import errno
import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from encproxy.filestore import streams
from encproxy.filestore.store import FileStore

MiB = 1 << 20
SIZE = 64 * MiB
PEAK_LIMIT = 8 * MiB  # an eighth of the body: a whole-body buffer anywhere would blow it


class GeneratedBody:
    """A reader over bytes produced on demand, never held whole."""

    def __init__(self, size: int) -> None:
        self._pieces = self._generate(size)
        self._pending = b""

    @staticmethod
    def _generate(size: int) -> Iterator[bytes]:
        n = 0
        while n < size:
            piece = min(256 * 1024, size - n)
            yield bytes([(n // piece) % 251]) * piece
            n += piece

    def read(self, n: int) -> bytes:
        if not self._pending:
            self._pending = next(self._pieces, b"")
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


def expected_md5(size: int) -> str:
    h = hashlib.md5()
    for piece in GeneratedBody._generate(size):
        h.update(piece)
    return h.hexdigest()


def peak_of(call: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> FileStore:
    """A store holding ``bucket/big`` (SIZE bytes), for the tests that read or copy it:
    made here, so that none of them depends on another having run first."""
    store = FileStore(tmp_path_factory.mktemp("streaming") / "store")
    store.create_bucket("bucket")
    store.put_object("bucket", "big", GeneratedBody(SIZE), SIZE)
    return store


def test_put_streams(big: FileStore) -> None:
    record, peak = peak_of(lambda: big.put_object("bucket", "put", GeneratedBody(SIZE), SIZE))
    assert peak < PEAK_LIMIT, peak
    assert record.etag == expected_md5(SIZE)  # type: ignore[attr-defined]


def test_get_streams(big: FileStore) -> None:
    def read_through() -> str:
        _record, body = big.open_object("bucket", "big")
        h = hashlib.md5()
        with body:
            while piece := body.read(MiB):
                h.update(piece)
        return h.hexdigest()

    digest, peak = peak_of(read_through)
    assert peak < PEAK_LIMIT, peak
    assert digest == expected_md5(SIZE)


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "read-write"])
def test_copy_streams(big: FileStore, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool) -> None:
    if not kernel_copy:
        def unsupported(*args: object, **kwargs: object) -> int:
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(streams.os, "copy_file_range", unsupported)
    _record, peak = peak_of(lambda: big.copy_object("bucket", "big", "bucket", "copy"))
    assert peak < PEAK_LIMIT, peak
    assert big.head_object("bucket", "copy").etag == expected_md5(SIZE)


def test_part_copy_and_complete_stream(big: FileStore) -> None:
    """UploadPartCopy hashes through Python; complete concatenates in the kernel."""
    uid = big.create_upload("bucket", "assembled")

    def assemble():
        p1 = big.upload_part_copy("bucket", "assembled", uid, 1, "bucket", "big",
                                  (0, SIZE // 2 - 1))
        p2 = big.upload_part_copy("bucket", "assembled", uid, 2, "bucket", "big",
                                  (SIZE // 2, SIZE - 1))
        return big.complete_upload("bucket", "assembled", uid, [(1, p1.etag), (2, p2.etag)])

    record, peak = peak_of(assemble)
    assert peak < PEAK_LIMIT, peak
    assert record.size == SIZE  # type: ignore[attr-defined]
    _, body = big.open_object("bucket", "assembled")
    h = hashlib.md5()
    with body:
        while piece := body.read(4 * MiB):
            h.update(piece)
    assert h.hexdigest() == expected_md5(SIZE)


def test_nothing_left_in_tmp(big: FileStore) -> None:
    assert list(Path(big.layout.tmp).iterdir()) == []
