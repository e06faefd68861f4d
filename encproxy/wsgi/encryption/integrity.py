"""Integrity failures: what encproxy does when stored bytes do not verify.

Every such failure is counted and logged with the object and the reason (the
error's class, from the closed list of docs/FORMAT.md §8), then propagates: as
an S3 error if no response header has been sent yet, else as an exception that
makes the server abort the connection, so that a client never mistakes a short
body for a whole one.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from encproxy import errors, metrics

log = logging.getLogger("encproxy.encryption")


def report(bucket: str, key: str, exc: errors.IntegrityError) -> None:
    metrics.integrity_failure(type(exc).__name__)
    log.error("integrity failure on %s/%s: %s (%s)", bucket, key, type(exc).__name__,
              exc.default_message)


@contextmanager
def reported(bucket: str, key: str) -> Iterator[None]:
    """Report an integrity failure raised inside the block, and let it propagate."""
    try:
        yield
    except errors.IntegrityError as exc:
        report(bucket, key, exc)
        raise
