"""``encproxy uploads orphans``: find, and with ``--delete`` remove, what encproxy kept in
its internal bucket for uploads and buckets that no longer exist.

See docs/OPERATIONS.md ("Orphaned upload state").

::

    encproxy uploads orphans [--delete] [--config PATH]

Complete, Abort and DeleteBucket remove what encproxy keeps for an upload
(``uploads/<h>/``: its record, held copies, held references and part records, FORMAT.md
§14), but a crash, a failed backend request, an upload aborted or a bucket deleted behind
encproxy's back, or an encproxy older than that clean-up leaves it there for good.

``h`` hashes the bucket, key and upload id, so a location cannot be traced back to
its upload, and its record cannot be authenticated without the upload id (the MAC
binds it).  Nothing read from the internal bucket decides what is deleted: the command
asks the backend which uploads exist (ListBuckets, then ListMultipartUploads of every
bucket) and computes their locations; a location that no open upload has is an
orphan.  The internal bucket is listed *first*: an upload's record is written only
after the backend created the upload, so every record listed belongs to an upload
the later backend listing shows unless it ended meanwhile.  If any bucket cannot be
listed, nothing is deleted (the run fails).

* The record of an upload that still exists is authenticated; one that does not
  verify is reported (the request that uses it fails closed anyway) and **kept**:
  the state of an upload that exists is never deleted.
* A bucket configuration (``bucket-encryption/<bucket>``) whose bucket neither
  ListBuckets lists nor HEAD finds is an orphan too.
* What an orphan's record claims (bucket, key) is shown as unverified, never used.

Exit status: 0 if everything found was removed (or, without ``--delete``, nothing
was found), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from encproxy import errors
from encproxy.crypto.records import PURPOSE_UPLOAD
from encproxy.s3 import xml
from encproxy.settings import Settings
from encproxy.wsgi import environ as env
from encproxy.wsgi import subrequest
from encproxy.wsgi.buckets.config_store import PREFIX as CONFIG_PREFIX
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.encryption.upload_store import (
    PREFIX as UPLOADS_PREFIX,
)
from encproxy.wsgi.encryption.upload_store import (
    UploadRecord,
    list_internal,
    open_uploads,
    remove_location,
    upload_location,
)
from encproxy.wsgi.responses import WSGIApp

LOCATION = re.compile(r"uploads/[0-9a-f]{64}/")


@dataclass
class Finding:
    name: str               # uploads/<h>/ or bucket-encryption/<bucket>
    what: str               # what is kept there
    reason: str
    removable: bool         # an orphan (False: reported only)
    result: str = ""        # "removed", or why removing failed


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # backend listings that failed

    @property
    def orphans(self) -> list[Finding]:
        return [f for f in self.findings if f.removable]

    def render(self, deleted: bool) -> str:
        lines = []
        for f in self.findings:
            kind = "orphan" if f.removable else "kept"
            tail = f" [{f.result}]" if f.result else ""
            lines.append(f"{kind} {f.name}: {f.what}; {f.reason}{tail}")
        lines.extend(f"problem: {p}" for p in self.problems)
        removed = sum(1 for f in self.findings if f.result == "removed")
        failed = sum(1 for f in self.findings if f.result not in ("", "removed"))
        failed += sum(1 for f in self.findings if not f.removable) + len(self.problems)
        note = "" if deleted or not self.orphans else " (dry run: --delete removes them)"
        lines.append(f"found {len(self.findings)}, removed {removed}{note}, failed {failed}")
        return "\n".join(lines)

    def ok(self, deleted: bool) -> bool:
        if self.problems or any(not f.removable for f in self.findings):
            return False
        if not deleted:
            return not self.findings
        return all(f.result == "removed" for f in self.findings)


def backend_buckets(backend: WSGIApp) -> set[str]:
    """Every bucket ListBuckets lists (every page)."""
    names: set[str] = set()
    token = ""
    while True:
        query = "continuation-token=" + subrequest.quote_param(token) if token else ""
        environ = subrequest.request_environ(None, "GET", "", query=query)
        environ[env.BUCKET] = None      # the service, not a bucket named ""
        resp = subrequest.run(backend, environ)
        if not resp.ok:
            raise subrequest.failure(resp.status, resp.body)
        root = xml.parse(resp.body, max_size=subrequest.MAX_SUBRESPONSE)
        buckets = root.find("Buckets")
        for entry in buckets if buckets is not None else []:
            names.add(xml.child_text(entry, "Name") or "")
        next_token = xml.child_text(root, "ContinuationToken") or ""
        if not next_token or next_token == token:
            return names
        token = next_token


def _claimed(stored: bytes, buckets: set[str]) -> str:
    """What an orphan's record says it is, for the operator only: never verified, never
    used (its MAC binds the upload id, which nothing names any more)."""
    try:
        body = stored.split(b"\n", 1)[1] if stored.startswith(b"encproxy-record/") else stored
        data = json.loads(body.decode("utf-8"))
        bucket, key = str(data["bucket"]), str(data["key"])
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        return "record unreadable"
    gone = "" if bucket in buckets else ", a bucket that does not exist"
    return f"record claims bucket {bucket!r}{gone}, key {key!r} (unverified)"


def _describe(names: list[str], where: str) -> str:
    kinds = Counter(name[len(where):].split("/", 1)[0] for name in names)
    parts = ["a record" if kinds.pop("record", 0) else "no record",
             f"{kinds.pop('held', 0)} held copy(ies)",
             f"{kinds.pop('held-ref', 0)} held reference(s)",
             f"{kinds.pop('part', 0)} part record(s)"]
    parts.extend(f"{n} other ({k})" for k, n in sorted(kinds.items()))
    return ", ".join(parts)


def find(backend: WSGIApp, internal_bucket: str, records: RecordKeys | None) -> Report:
    """What the internal bucket holds for uploads and buckets that no longer exist.

    ``records`` authenticates the records of uploads that exist (None: not checked)."""
    report = Report()
    # 1. The internal bucket first (see the module docstring: the order makes it safe).
    locations: dict[str, list[str]] = {}
    for name, _, _ in list_internal(backend, internal_bucket, UPLOADS_PREFIX, None):
        match = LOCATION.match(name)
        if match is None:
            report.findings.append(Finding(name, "an object", "not a name encproxy writes "
                                           "(left alone)", removable=False))
            continue
        locations.setdefault(match.group(0), []).append(name)
    configs = [name for name, _, _ in list_internal(backend, internal_bucket, CONFIG_PREFIX,
                                                    None)]
    # 2. What exists in the backend, and where encproxy keeps each open upload's state.
    buckets = backend_buckets(backend) - {internal_bucket}
    live: dict[str, tuple[str, str, str]] = {}
    for bucket in sorted(buckets):
        try:
            for key, upload_id in open_uploads(backend, bucket, None):
                live[upload_location(bucket, key, upload_id)] = (bucket, key, upload_id)
        except errors.S3Error as exc:
            if exc.code != "NoSuchBucket":    # deleted meanwhile: its uploads went with it
                report.problems.append(f"cannot list the open uploads of bucket {bucket}: "
                                       f"{exc.code}; nothing is deleted")
    complete = not report.problems
    # 3. Upload locations.
    for where, names in sorted(locations.items()):
        if where in live:
            bucket, key, upload_id = live[where]
            reason = _check_record(backend, internal_bucket, records, where, names, bucket,
                                   key, upload_id)
            if reason:
                report.findings.append(Finding(where, _describe(names, where), reason,
                                               removable=False))
            continue
        claimed = "no record"
        if where + "record" in names:
            resp = subrequest.request(backend, None, "GET", internal_bucket, where + "record")
            claimed = (_claimed(resp.body, buckets) if resp.ok
                       else f"record unreadable (backend status {resp.status})")
        reason = f"no open upload in the backend has this location; {claimed}"
        report.findings.append(Finding(
            where, _describe(names, where), reason if complete else
            reason + "; not removed: the backend's uploads could not all be listed",
            removable=complete))
    # 4. Bucket configurations of buckets that are gone.
    for name in configs:
        bucket = name[len(CONFIG_PREFIX):]
        if bucket in buckets:
            continue
        head = subrequest.request(backend, None, "HEAD", bucket)
        if head.status == 404:
            report.findings.append(Finding(name, "bucket encryption configuration",
                                           f"bucket {bucket!r} does not exist", removable=True))
        elif not head.ok:
            report.problems.append(f"cannot tell whether bucket {bucket!r} exists "
                                   f"(HEAD answered {head.status}); its configuration is kept")
    return report


def _check_record(backend: WSGIApp, internal_bucket: str, records: RecordKeys | None,
                  where: str, names: list[str], bucket: str, key: str,
                  upload_id: str) -> str:
    """Why the state of an upload that exists needs the operator (empty: it does not)."""
    if records is None or where + "record" not in names:
        return ""
    resp = subrequest.request(backend, None, "GET", internal_bucket, where + "record")
    if resp.status == 404:
        return ""     # completed or aborted meanwhile
    if not resp.ok:
        return f"record unreadable (backend status {resp.status})"
    try:
        body = records.open(f"{internal_bucket}/{where}record", PURPOSE_UPLOAD, bucket, key,
                            upload_id, resp.body, None)
        record = UploadRecord.from_json(body)
        if (record.bucket, record.key) != (bucket, key):
            return f"record of upload {upload_id} of {bucket}/{key} names another object"
    except errors.IntegrityError as exc:
        return (f"record of upload {upload_id} of {bucket}/{key} fails authentication "
                f"({type(exc).__name__}); the upload exists, so it is kept")
    return ""


def remove(backend: WSGIApp, internal_bucket: str, report: Report) -> None:
    for finding in report.orphans:
        try:
            if finding.name.startswith(UPLOADS_PREFIX):
                remove_location(backend, internal_bucket, finding.name, None)
            else:
                resp = subrequest.request(backend, None, "DELETE", internal_bucket,
                                          finding.name)
                if not resp.ok and resp.status != 404:
                    raise subrequest.internal_failure(resp.status)
            finding.result = "removed"
        except errors.S3Error as exc:
            finding.result = f"removing failed: {exc.code}"


def cmd_orphans(settings: Settings, args: argparse.Namespace) -> int:
    from encproxy.keys.factory import build_provider
    from encproxy.wsgi.stack import build_backend
    backend = build_backend(settings)
    internal = settings.get("backend", "internal_bucket")
    keys = build_provider(settings, cache=False)
    try:
        records = RecordKeys(backend, internal, keys, keys.normalize(
            settings.get("keys", "records_key") or settings.get("keys", "default_key")))
        try:
            report = find(backend, internal, records)
            if args.delete:
                remove(backend, internal, report)
        except errors.S3Error as exc:
            print(f"encproxy: uploads orphans: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        print(report.render(args.delete))
        return 0 if report.ok(args.delete) else 1
    finally:
        keys.close()


def add_uploads_parser(sub: Any) -> None:
    """Register ``encproxy uploads orphans`` on the top-level subparsers of ``encproxy.cli``."""
    sp = sub.add_parser("uploads", help="encproxy's state of multipart uploads")
    commands = sp.add_subparsers(dest="uploads_command", required=True)
    orphans = commands.add_parser(
        "orphans", help="list (--delete: remove) what the internal bucket keeps for uploads "
        "and buckets that no longer exist")
    orphans.add_argument("--delete", action="store_true",
                         help="remove the orphans found (never the state of an upload that "
                         "exists)")
    orphans.add_argument("--config", metavar="PATH",
                         help="ini file (default: $ENCPROXY_CONFIG, else conf/encproxy.ini)")
    orphans.set_defaults(func=cmd_orphans)


__all__ = ["Finding", "Report", "add_uploads_parser", "cmd_orphans", "find", "remove"]
