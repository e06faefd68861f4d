"""A small progress bar for long commands (``encproxy rotate``), on a terminal only.

    rotate [##########----------]  1200/2400  50%  310/s
    rotate  1200 objects  310/s                       (total still unknown)

It draws on one line of ``stream`` (stderr) at most ``1 / interval`` times a
second and writes nothing at all when the stream is not a terminal, so logs
and pipes only get the command's summary.  Thread-safe: workers call
``advance``.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, *, total: int | None = None, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 24, interval: float = 0.1,
                 unit: str = "objects") -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else enabled
        self.width = width
        self.interval = interval
        self.unit = unit
        self.done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._drawn_len = 0
        self._lock = threading.Lock()

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = total
        self._draw()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
        self._draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = f"{self.done / elapsed:,.0f}/s"
        if self.total:
            filled = min(self.width, self.width * self.done // self.total)
            bar = "#" * filled + "-" * (self.width - filled)
            pct = 100 * self.done // self.total
            return f"{self.label} [{bar}] {self.done:>{len(str(self.total))}}/{self.total} " \
                   f"{pct:3d}%  {rate}"
        return f"{self.label}  {self.done} {self.unit}  {rate}"

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._drawn_at < self.interval:
                return
            self._drawn_at = now
            text = self.line()
            pad = max(0, self._drawn_len - len(text))
            self._drawn_len = len(text)
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["Progress"]
