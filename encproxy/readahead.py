"""Running a producer of byte pieces one step ahead, on another core.

A decrypting GET reads ciphertext, decrypts it and sends plaintext.  Reading
and AES-GCM release the GIL, and so does the socket send, so a helper thread
that produces the next pieces while the request thread sends the current one
keeps both cores busy.  The queue is bounded: memory stays at ``depth`` pieces.

Pure module: no I/O of its own.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

DEPTH = 2
_ITEM, _END, _ERROR = 0, 1, 2


def read_ahead(source: Iterator[bytes], depth: int = DEPTH) -> Iterator[bytes]:
    """Yield what ``source`` yields, produced in a helper thread up to ``depth`` ahead.

    An exception in ``source`` is raised here, in order.  Closing this iterator
    early (a client that went away) stops the helper and closes ``source`` in
    the helper's own thread.
    """
    slots: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[int, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for piece in source:
                if not put((_ITEM, piece)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    helper = threading.Thread(target=produce, name="encproxy-readahead", daemon=True)
    helper.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _ITEM:
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stop.set()
        helper.join()
