"""The metadata index: one SQLite database (WAL mode) beside the object files.

The index says which object versions exist, in which order, which is the
latest, which are delete markers, and which file holds each version's body;
listings are pages of it (``ORDER BY key LIMIT``) instead of a scan of every
object file.  Bodies stay in their own files (``storefile.py``), each named
uniquely, so that a file is never replaced in place: a write renames a new
file in and then commits the row that names it, and the commit is the moment
the version becomes visible (``encproxy/filestore/FORMAT.md``, "The index").

Every process opens its own connections (one per thread, reopened after a
fork); writes that read, decide and write take ``BEGIN IMMEDIATE``, SQLite's
one write lock across processes, and wait for it up to ``BUSY_TIMEOUT_MS``.
Reads see one snapshot (WAL).
"""
from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from typing import NamedTuple

from encproxy.errors import InternalError

INDEX_FILE = "index.sqlite3"
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_MS = 60_000
NULL_VERSION = "null"
# An object file's name: the key's SHA-256 in hex, then (for every file written since
# the index) a dot and 32 random hex digits, so that no write replaces a file in place.
FILE_NAME = re.compile(r"[0-9a-f]{64}(\.[0-9a-f]{32})?")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    versioning TEXT,            -- NULL (never enabled), 'Enabled' or 'Suspended'
    tags TEXT                   -- NULL (no tag set) or a JSON list of [key, value]
);
CREATE TABLE IF NOT EXISTS versions (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,       -- per key, increasing: newer versions have larger seq
    version_id TEXT NOT NULL,   -- 'null' or 32 hex digits
    latest INTEGER NOT NULL,    -- 1 on exactly the row of largest seq of each key
    delete_marker INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,         -- bare, '' for a delete marker
    mtime REAL NOT NULL,
    storage_class TEXT NOT NULL,
    file TEXT,                  -- the body's file name; NULL for a delete marker
    tags TEXT,                  -- NULL (no tags) or a JSON list of [key, value]
    checksum TEXT,              -- NULL (none kept) or 'algorithm TYPE base64' (checksum.py)
    listing_facts TEXT,         -- NULL, or what the layer above keeps for its listings
    PRIMARY KEY (bucket, key, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_id ON versions (bucket, key, version_id);
CREATE INDEX IF NOT EXISTS versions_latest ON versions (bucket, key) WHERE latest = 1;
CREATE INDEX IF NOT EXISTS versions_file ON versions (bucket, file) WHERE file IS NOT NULL;
"""


class Row(NamedTuple):
    """One version (or delete marker) as the index holds it.  A tuple: a listing makes
    a thousand, and a frozen dataclass costs several times as much to make."""

    bucket: str
    key: str
    seq: int
    version_id: str
    latest: bool
    delete_marker: bool
    size: int
    etag: str
    mtime: float
    storage_class: str
    file: str | None
    tags: str | None
    checksum: str | None = None
    listing_facts: str | None = None


COLUMNS = ("bucket, key, seq, version_id, latest, delete_marker, size, etag, mtime, "
           "storage_class, file, tags, checksum, listing_facts")


def row_of(values: tuple[object, ...]) -> Row:
    (bucket, key, seq, version_id, latest, marker, size, etag, mtime, storage_class, file,
     tags, checksum, listing_facts) = values
    if file is not None and not (isinstance(file, str) and FILE_NAME.fullmatch(file)):
        raise InternalError("The file store's index names an invalid file.")
    return Row(str(bucket), str(key), int(seq), str(version_id), bool(latest),  # type: ignore[call-overload]
               bool(marker), int(size), str(etag), float(mtime),  # type: ignore[call-overload, arg-type]
               str(storage_class), file, None if tags is None else str(tags),
               None if checksum is None else str(checksum),
               None if listing_facts is None else str(listing_facts))


class Index:
    """Connections to ``root/index.sqlite3`` (created with its schema if missing)."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, INDEX_FILE)
        self._local = threading.local()
        # Private like the rest of the root (SQLite gives its -wal and -shm files the
        # database file's mode).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self.connection()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork: SQLite connections must
        not cross one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                               isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InternalError("The file store's index cannot use WAL mode.")
        # FULL: a commit is durable before the client hears of it (WAL fsync per commit).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.executescript(_SCHEMA)
        _add_columns(conn)
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed if the block returns, rolled
        back if it raises.  Holds the database's one write lock across processes."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself fails: SQLite may leave the transaction open (busy,
            # full, I/O error), holding the store's write lock. Once this raises, nothing
            # of the block is committed.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query in the block sees one snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# Columns added since the first schema, in order: an index made before gets them (NULL).
ADDED_COLUMNS = ("checksum", "listing_facts")


def _missing_columns(conn: sqlite3.Connection) -> list[str]:
    present = {column[1] for column in conn.execute("PRAGMA table_info(versions)").fetchall()}
    return [name for name in ADDED_COLUMNS if name not in present]


def _add_columns(conn: sqlite3.Connection) -> None:
    """An index made before checksums (or listing facts) were kept gets the columns
    (NULL: none), in one write transaction, so that processes opening it at once add
    them once."""
    if not _missing_columns(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for name in _missing_columns(conn):
            conn.execute(f"ALTER TABLE versions ADD COLUMN {name} TEXT")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# -- queries used inside transactions ---------------------------------------------------

def latest(conn: sqlite3.Connection, bucket: str, key: str) -> Row | None:
    found = conn.execute(f"SELECT {COLUMNS} FROM versions WHERE bucket = ? AND key = ? "
                         "AND latest = 1", (bucket, key)).fetchone()
    return None if found is None else row_of(found)


def by_id(conn: sqlite3.Connection, bucket: str, key: str, version_id: str) -> Row | None:
    found = conn.execute(f"SELECT {COLUMNS} FROM versions WHERE bucket = ? AND key = ? "
                         "AND version_id = ?", (bucket, key, version_id)).fetchone()
    return None if found is None else row_of(found)


def versioning(conn: sqlite3.Connection, bucket: str) -> str | None:
    found = conn.execute("SELECT versioning FROM buckets WHERE name = ?", (bucket,)).fetchone()
    return None if found is None or found[0] is None else str(found[0])


def next_seq(conn: sqlite3.Connection, bucket: str, key: str) -> int:
    found = conn.execute("SELECT MAX(seq) FROM versions WHERE bucket = ? AND key = ?",
                         (bucket, key)).fetchone()
    return 1 if found is None or found[0] is None else int(found[0]) + 1


def insert_latest(conn: sqlite3.Connection, row: Row) -> None:
    """Add ``row`` as the key's latest version (the previous latest no longer is)."""
    conn.execute("UPDATE versions SET latest = 0 WHERE bucket = ? AND key = ? AND latest = 1",
                 (row.bucket, row.key))
    conn.execute(f"INSERT INTO versions ({COLUMNS}) "
                 "VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (row.bucket, row.key, row.seq, row.version_id, int(row.delete_marker),
                  row.size, row.etag, row.mtime, row.storage_class, row.file, row.tags,
                  row.checksum, row.listing_facts))


def remove(conn: sqlite3.Connection, row: Row) -> None:
    """Delete ``row``; if it was the latest, the newest remaining version becomes so."""
    conn.execute("DELETE FROM versions WHERE bucket = ? AND key = ? AND seq = ?",
                 (row.bucket, row.key, row.seq))
    if row.latest:
        conn.execute("UPDATE versions SET latest = 1 WHERE bucket = ? AND key = ? AND seq = "
                     "(SELECT MAX(seq) FROM versions WHERE bucket = ? AND key = ?)",
                     (row.bucket, row.key, row.bucket, row.key))


def has_versions(conn: sqlite3.Connection, bucket: str) -> bool:
    return conn.execute("SELECT 1 FROM versions WHERE bucket = ? LIMIT 1",
                        (bucket,)).fetchone() is not None


def names_file(conn: sqlite3.Connection, bucket: str, file: str) -> bool:
    """Whether a row of ``bucket`` names ``file`` (by the ``versions_file`` index)."""
    return conn.execute("SELECT 1 FROM versions WHERE bucket = ? AND file = ? LIMIT 1",
                        (bucket, file)).fetchone() is not None


def claim_sweep(conn: sqlite3.Connection, now: float, interval: float) -> bool:
    """In a write transaction: True (and the time noted) if no sweep started within
    ``interval`` seconds, so that of the workers starting together one sweeps."""
    got = conn.execute("SELECT value FROM meta WHERE name = 'swept_at'").fetchone()
    if got is not None and now - float(got[0]) < interval:
        return False
    conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('swept_at', ?)",
                 (repr(now),))
    return True


def rows_from(conn: sqlite3.Connection, bucket: str, start: str, prefix: str, *,
              latest_only: bool) -> Iterator[Row]:
    """Rows of ``bucket`` with key >= ``start``, by key then newest first, while keys
    still start with ``prefix`` (the caller applies markers and delimiters);
    ``latest_only``: each key's latest version, keys whose latest is a delete marker
    left out (what ListObjects lists)."""
    where = "bucket = ? AND key >= ?" + (
        " AND latest = 1 AND delete_marker = 0" if latest_only else "")
    cursor = conn.execute(f"SELECT {COLUMNS} FROM versions WHERE {where} "
                          "ORDER BY key, seq DESC", (bucket, max(start, prefix)))
    for values in cursor:
        row = row_of(values)
        if not row.key.startswith(prefix):
            if row.key > prefix:
                return
            continue
        yield row
