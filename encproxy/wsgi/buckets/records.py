"""Records root keys, and authenticated records in the internal bucket (FORMAT.md §14).

Everything encproxy keeps about itself in the backend (upload records, held-copy
references, bucket encryption configurations) is stored sealed with a MAC
(``encproxy.crypto.records``) under keys derived from a 32-byte **records root key**
``R``.  A root lives in the internal bucket at ``records/roots/<root id>`` only
*wrapped* under ``[keys] records_key`` (default: ``default_key``) by the key provider,
with a wrap context naming its purpose and the internal bucket; every record names
the root it was sealed under.  A root is accepted only if

* its name is the id of its blob (a hash), and
* the blob names the configured key (a blob wrapped under any other key, one the
  attacker controls included, is refused before it is unwrapped), and it unwraps under
  the fixed context: only a process the key provider lets unwrap can have made it.

Each process keeps the roots it unwrapped in memory.  To seal, it uses the first root
(by name) that it can unwrap, and creates one if there is none: replicas that race to
create one each make their own, and every root of the deployment opens every record,
so the race loses nothing.  Roots of other deployments sharing the backend (other
keys) are skipped.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from encproxy import errors, metrics
from encproxy.crypto.records import (
    ROOT_KEY_SIZE,
    open_record,
    purpose_key,
    root_id,
    root_wrap_context,
    seal_record,
    split_record,
)
from encproxy.format.errors import RecordMalformed, RecordsRootInvalid
from encproxy.keys.blob import WrappedKey
from encproxy.keys.provider import KeyProvider
from encproxy.s3 import xml
from encproxy.wsgi import subrequest
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.records")

ROOTS_PREFIX = "records/roots/"


def ensure_internal_bucket(app: WSGIApp, bucket: str, parent: dict[str, Any] | None) -> None:
    """Create the internal bucket if it does not exist yet."""
    resp = subrequest.request(app, parent, "PUT", bucket)
    if not resp.ok and resp.error_code() not in ("BucketAlreadyOwnedByYou",
                                                 "BucketAlreadyExists"):
        raise subrequest.internal_failure(resp.status)


def describe(where: str, purpose: str, bucket: str, key: str, upload_id: str | None) -> str:
    """How the log names one record (never its content)."""
    upload = f" upload {upload_id}" if upload_id is not None else ""
    return f"{purpose} record {where} ({bucket}/{key}{upload})"


def report(what: str, exc: errors.IntegrityError) -> None:
    metrics.integrity_failure(type(exc).__name__)
    log.error("integrity failure on %s: %s (%s)", what, type(exc).__name__,
              exc.default_message)


@contextlib.contextmanager
def decoding(what: str) -> Iterator[None]:
    """Decode the fields of the authenticated record ``what`` in this block: an integrity
    error raised in it is reported and re-raised; a field of the wrong shape (ValueError,
    TypeError, KeyError) is RecordMalformed, reported and raised."""
    try:
        yield
    except errors.IntegrityError as exc:
        report(what, exc)
        raise
    except (ValueError, TypeError, KeyError) as exc:
        failure = RecordMalformed()
        report(what, failure)
        raise failure from exc


class RecordKeys:
    """Seals and opens records with keys derived from the records root keys."""

    def __init__(self, app: WSGIApp, internal_bucket: str, keys: KeyProvider,
                 key_id: str) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.keys = keys
        self.key_id = key_id
        self._lock = threading.Lock()
        self._roots: dict[str, bytes] = {}          # root id -> R (verified, unwrapped)
        self._sealing: str | None = None
        self._derived: dict[tuple[str, str], bytes] = {}
        self._described: str | None = None

    # -- records ------------------------------------------------------------------------
    def seal(self, purpose: str, bucket: str, key: str, upload_id: str | None, body: bytes,
             parent: dict[str, Any] | None) -> bytes:
        root, mac_key = self.sealing_key(purpose, parent)
        return seal_record(mac_key, root, purpose, bucket, key, upload_id, body)

    def open(self, where: str, purpose: str, bucket: str, key: str, upload_id: str | None,
             stored: bytes, parent: dict[str, Any] | None) -> bytes:
        """The verified body of a stored record; a failure is reported and raised."""
        try:
            mac_key = self.opening_key(split_record(stored)[0], purpose, parent)
            return open_record(mac_key, purpose, bucket, key, upload_id, stored)
        except errors.IntegrityError as exc:
            report(describe(where, purpose, bucket, key, upload_id), exc)
            raise

    def sealing_key(self, purpose: str, parent: dict[str, Any] | None) -> tuple[str, bytes]:
        """(root id, MAC key of ``purpose``) to seal with: records made elsewhere than
        in a record body (facts records' names) are sealed with these."""
        with self._lock:
            if self._sealing is None:
                self._sealing = self._find_or_create(parent)
            return self._sealing, self._mac_key(self._sealing, purpose)

    def loaded_sealing_key(self, purpose: str) -> tuple[str, bytes] | None:
        """``sealing_key`` if this process already has its root (no I/O, no key provider
        call); None if it has none yet."""
        with self._lock:
            if self._sealing is None:
                return None
            return self._sealing, self._mac_key(self._sealing, purpose)

    def opening_key(self, root: str, purpose: str, parent: dict[str, Any] | None) -> bytes:
        """The MAC key of ``purpose`` under the root named ``root``; RecordsRootInvalid if
        that root is missing or not this deployment's."""
        with self._lock:
            if root not in self._roots:
                self._roots[root] = self._load(root, parent)
            return self._mac_key(root, purpose)

    def _mac_key(self, root: str, purpose: str) -> bytes:
        found = self._derived.get((root, purpose))
        if found is None:
            found = self._derived[(root, purpose)] = purpose_key(self._roots[root], purpose)
        return found

    # -- roots --------------------------------------------------------------------------
    def _find_or_create(self, parent: dict[str, Any] | None) -> str:
        """The root this process seals with: the first stored one it can unwrap, or a
        new one."""
        for name in self._stored_roots(parent):
            root = name[len(ROOTS_PREFIX):]
            if root in self._roots:
                return root
            try:
                self._roots[root] = self._load(root, parent)
                return root
            except errors.IntegrityError:
                continue   # another deployment's (another key), or damaged: not ours
        return self._create(parent)

    def _stored_roots(self, parent: dict[str, Any] | None) -> list[str]:
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket,
                                  query="list-type=2&prefix="
                                  + subrequest.quote_param(ROOTS_PREFIX))
        if resp.status == 404:
            return []
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        return sorted(xml.child_text(e, "Key") or "" for e in root.findall("Contents"))

    def _load(self, root: str, parent: dict[str, Any] | None) -> bytes:
        """The root key named ``root``, read, checked and unwrapped; RecordsRootInvalid if
        it is missing, misnamed, under another key, or does not unwrap."""
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket,
                                  ROOTS_PREFIX + root)
        if resp.status == 404:
            log.error("records root %s does not exist", root)
            raise RecordsRootInvalid()
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        if root_id(resp.body) != root:
            raise RecordsRootInvalid()
        return self._unwrap(root, resp.body)

    def _unwrap(self, root: str, blob: bytes) -> bytes:
        try:
            named = WrappedKey.from_bytes(blob).key_id
        except errors.KeyUnwrapFailed:
            raise RecordsRootInvalid() from None
        if named != self.key_id and named != self._described_key_id():
            log.error("records root %s is wrapped under key %r, not the configured %r",
                      root, named, self.key_id)
            raise RecordsRootInvalid()
        try:
            key = self.keys.unwrap(blob, root_wrap_context(self.internal_bucket))
        except errors.KeyUnwrapFailed:
            log.error("records root %s does not unwrap under key %r", root, self.key_id)
            raise RecordsRootInvalid() from None
        if len(key) != ROOT_KEY_SIZE:
            raise RecordsRootInvalid()
        return key

    def _described_key_id(self) -> str:
        """The provider's own name of the records key (AWS KMS: its ARN, which blobs hold)."""
        if self._described is None:
            self._described = self.keys.describe(self.key_id).key_id
        return self._described

    def _create(self, parent: dict[str, Any] | None) -> str:
        ensure_internal_bucket(self.app, self.internal_bucket, parent)
        key = os.urandom(ROOT_KEY_SIZE)
        blob = self.keys.wrap(self.key_id, key, root_wrap_context(self.internal_bucket))
        root = root_id(blob)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket,
                                  ROOTS_PREFIX + root,
                                  headers={"content-type": "application/octet-stream"},
                                  body=blob)
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        self._roots[root] = key
        log.info("created records root %s (wrapped under %s)", root, self.key_id)
        return root
