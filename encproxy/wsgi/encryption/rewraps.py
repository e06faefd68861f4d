"""Re-wrapped data keys of older versions, kept beside them: **rewrap records**.

S3 has no operation that rewrites a version in place: a copy always makes a new current
version.  So through an S3 backend ``encproxy rotate`` cannot give a non-current version
a new envelope, and retiring the master-key version its data key is wrapped under would
make it unreadable.  Instead, rotation writes the data key wrapped again under the
current version of the *same* master key into an authenticated record in the internal
bucket (FORMAT.md §14)::

    rewraps/<bucket>/<h>   h = SHA-256(bucket, key, version id), hex; purpose "rewrap",
                           bound to (bucket, key, version id)

whose JSON body names the key and version id, the object id and master key of the
envelope it replaces, and the new envelope (FORMAT.md §2: the same object and
protection, the data key wrapped again).  The version's own envelope is never changed.
A read of a version whose data key no longer unwraps (its master-key version retired, or
the key disabled) opens it with the record's envelope instead
(``EncryptionContext.open_keys``): nothing costs more while the old master-key version
exists.

What binds the record: its MAC (purpose, bucket, key, version id); its envelope must
describe the same object as the version's own (object id, master key, kind, suite,
format version, protection: a record of another object is refused); and it must open,
which authenticates the data key against the envelope tag (FORMAT.md §3).  A record that does
not verify is an integrity failure; a missing one leaves the read failing as it would
have (an attacker who deletes records can only make older versions unreadable once their
old master-key version is retired, as deleting the versions would).

A record goes when its version does: at once for a DeleteObject of that version id
through encproxy and for DeleteBucket; and ``encproxy rotate`` removes, after a run over
the whole bucket, the records whose version the backend no longer has (versions deleted
by DeleteObjects, by lifecycle expiration, or behind encproxy's back).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from encproxy import errors
from encproxy.crypto.records import PURPOSE_REWRAP, split_record
from encproxy.format.envelope import Envelope
from encproxy.format.errors import RecordMalformed
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.records import RecordKeys, decoding, ensure_internal_bucket
from encproxy.wsgi.encryption.upload_store import list_internal
from encproxy.wsgi.responses import WSGIApp

log = logging.getLogger("encproxy.rewraps")

PREFIX = "rewraps/"
BODY_VERSION = 1


class Rewrap(NamedTuple):
    """What a verified rewrap record says: ``envelope``, the version's envelope with its
    data key wrapped again (under the current version of the same master key when the
    record was written)."""

    envelope: Envelope

    def applied_to(self, envelope: Envelope) -> Envelope:
        """The envelope to open the version whose own envelope is ``envelope`` with;
        RecordMalformed if the record describes another object, master key or mode."""
        new = self.envelope
        if (new.object_id, new.key_id, new.kind, new.suite, new.version, new.protection) \
                != (envelope.object_id, envelope.key_id, envelope.kind, envelope.suite,
                    envelope.version, envelope.protection):
            raise RecordMalformed()
        return new


def rewrap_location(bucket: str, key: str, version_id: str) -> str:
    digest = hashlib.sha256()
    for part in (bucket, key, version_id):
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return bucket_prefix(bucket) + digest.hexdigest()


def bucket_prefix(bucket: str) -> str:
    return PREFIX + bucket + "/"


class RewrapStore:
    """Reads and writes rewrap records in the internal bucket."""

    def __init__(self, app: WSGIApp, internal_bucket: str, records: RecordKeys) -> None:
        self.app = app
        self.internal_bucket = internal_bucket
        self.records = records

    def put(self, bucket: str, key: str, version_id: str, rewrapped: Envelope,
            parent: dict[str, Any] | None) -> None:
        """Keep ``rewrapped``: the version's envelope with its data key wrapped again."""
        ensure_internal_bucket(self.app, self.internal_bucket, parent)
        body = json.dumps({"v": BODY_VERSION, "key": key, "version_id": version_id,
                           "object_id": rewrapped.object_id.hex(), "key_id": rewrapped.key_id,
                           "envelope": rewrapped.encode()}, sort_keys=True).encode()
        sealed = self.records.seal(PURPOSE_REWRAP, bucket, key, version_id, body, parent)
        resp = subrequest.request(self.app, parent, "PUT", self.internal_bucket,
                                  rewrap_location(bucket, key, version_id),
                                  headers={"content-type": "application/octet-stream"},
                                  body=sealed)
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)

    def get(self, bucket: str, key: str, version_id: str,
            parent: dict[str, Any] | None) -> Rewrap | None:
        """The verified record of this version; None if there is none."""
        where = rewrap_location(bucket, key, version_id)
        resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, where)
        if resp.status == 404:
            return None
        if not resp.ok:
            raise subrequest.internal_failure(resp.status)
        name = f"{self.internal_bucket}/{where}"
        body = self.records.open(name, PURPOSE_REWRAP, bucket, key, version_id, resp.body,
                                 parent)
        with decoding(f"rewrap record {name} ({bucket}/{key} version {version_id})"):
            data = json.loads(body.decode("utf-8"))
            if data["v"] != BODY_VERSION or (data["key"], data["version_id"]) != (key, version_id):
                raise ValueError("rewrap record version or binding")
            envelope = Envelope.decode(str(data["envelope"]))
            if (envelope.object_id.hex(), envelope.key_id) != (data["object_id"], data["key_id"]):
                raise ValueError("rewrap record fields")
            return Rewrap(envelope)

    def delete(self, bucket: str, key: str, version_id: str,
               parent: dict[str, Any] | None) -> None:
        """Best effort: a record left behind is removed by ``collect``."""
        where = rewrap_location(bucket, key, version_id)
        resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket, where)
        if not resp.ok and resp.status != 404:
            log.warning("could not delete the rewrap record of %s/%s version %s (%s); the "
                        "next `encproxy rotate` of the bucket removes it", bucket, key,
                        version_id, resp.status)

    def remove_bucket(self, bucket: str, parent: dict[str, Any] | None) -> int:
        """Delete every record of ``bucket`` (after DeleteBucket); how many."""
        removed = 0
        for name, _, _ in list_internal(self.app, self.internal_bucket, bucket_prefix(bucket),
                                        parent):
            resp = subrequest.request(self.app, parent, "DELETE", self.internal_bucket, name)
            if not resp.ok and resp.status != 404:
                raise subrequest.internal_failure(resp.status)
            removed += 1
        return removed

    def collect(self, bucket: str, version_exists: Callable[[str, str], bool],
                parent: dict[str, Any] | None) -> int:
        """Delete the records of ``bucket`` whose version ``version_exists`` says is gone;
        how many.  What a record names is read without verifying it: a forged name can
        only make this delete a record, which an attacker with the backend can anyway."""
        removed = 0
        for name, _, _ in list_internal(self.app, self.internal_bucket, bucket_prefix(bucket),
                                        parent):
            resp = subrequest.request(self.app, parent, "GET", self.internal_bucket, name)
            if not resp.ok:
                continue
            try:
                data = json.loads(split_record(resp.body)[2].decode("utf-8"))
                key, version_id = str(data["key"]), str(data["version_id"])
            except (ValueError, KeyError, TypeError, errors.S3Error):
                log.warning("rewrap record %s/%s is unreadable: left for an operator",
                            self.internal_bucket, name)
                continue
            if name != rewrap_location(bucket, key, version_id) \
                    or version_exists(key, version_id):
                continue
            gone = subrequest.request(self.app, parent, "DELETE", self.internal_bucket, name)
            if gone.ok or gone.status == 404:
                removed += 1
        return removed
