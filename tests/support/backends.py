"""The storage backends the API suite runs against: the file store, moto, Ceph RGW, SeaweedFS.

moto, Ceph RGW and SeaweedFS are started by the project's own scripts
(``scripts/services/moto``, ``scripts/services/ceph-rgw``, ``scripts/services/seaweedfs``),
bounded in time,
on 127.0.0.1, and stopped by PID.  A backend that cannot start raises
RuntimeError with the script's output: the suite fails loudly, it never skips.
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services"
MOTO_KEY, MOTO_SECRET = "moto-test-key", "moto-test-secret"

# Known differences of each backend from AWS S3, with what encproxy does about them
# (docs/BACKENDS.md). A test that takes a backend-specific branch names the quirk, and
# the run summary lists every quirk exercised (conftest.py), so none goes unnoticed.
PART_NUMBER_IGNORED = ("answers GET/HEAD ?partNumber=N with the whole object; encproxy "
                       "refuses the part of a multipart object with NotImplemented rather "
                       "than return the wrong bytes")
QUIRKS: dict[str, dict[str, str]] = {
    "moto": {
        "listing-delimiter-pagination": "moto counts only keys, not common prefixes, "
                                        "toward max-keys, and its NextMarker is not a key",
        "newline-in-key": "moto's URL routing does not match a key containing a newline "
                          "(NoSuchKey on PUT)",
        "concurrent-overwrite": "moto fails concurrent PUTs of one key with 500 "
                                "(ValueError: I/O operation on closed file), when the PUTs "
                                "happen to interleave",
        "uploads-delimiter-ignored": "moto ignores the delimiter of ListMultipartUploads "
                                     "(no CommonPrefixes)",
        "conditional-write-race": "moto checks If-None-Match / If-Match and then writes, "
                                  "not atomically: concurrent conditional PUTs of one key can "
                                  "both succeed",
        "part-copy-version-id": "moto's UploadPartCopy answers no "
                                "x-amz-copy-source-version-id (its CopyObject does)",
        "anonymous-acls-ignored": "moto does not authorize anonymous requests: it serves "
                                  "private objects and buckets to them (its server mode "
                                  "checks no ACLs), so whatever it is sent unsigned succeeds",
        "multipart-acl-500": "moto answers GetObjectAcl of an object that "
                             "CompleteMultipartUpload made with 500 (its ACL is None), so "
                             "re-wrapping such an object, which keeps its ACL, fails closed",
        "suspended-put-drops-versions": "moto drops a key's earlier versions (those with "
                                        "ids) when the key is written while the bucket's "
                                        "versioning is Suspended (S3 keeps them and "
                                        "replaces only the null version)",
        "null-version-head": "moto answers HeadObject with versionId=null with 400 for a "
                             "null version written while versioning was Suspended (its "
                             "GetObject serves it), so encproxy rotate cannot look at "
                             "such a version and reports it failed",
        "checksums-partial": "moto keeps a checksum only when the client sends one (no "
                             "default CRC64NVME); its ListParts shows neither the upload's "
                             "ChecksumAlgorithm nor part checksums, and an object "
                             "CompleteMultipartUpload makes has no checksum (COMPOSITE) or a "
                             "wrong one (FULL_OBJECT), which SDKs that validate reads refuse",
        "conditions-ignored": "moto ignores If-Match on CompleteMultipartUpload and both "
                              "If-Match and If-None-Match on CopyObject (it enforces them on "
                              "PutObject, and If-None-Match on Complete); encproxy's default "
                              "[backend] conditional_writes = PutObject refuses the others "
                              "with NotImplemented",
    },
    "ceph": {
        "checksums-not-kept": "Ceph RGW 16.2 keeps no x-amz-checksum-* (its radosgw has no "
                              "code for them, nor for a STREAMING-UNSIGNED-PAYLOAD-TRAILER "
                              "body): an unencrypted object reads back without the "
                              "checksum it was sent with",
        "part-number-ignored": "Ceph RGW " + PART_NUMBER_IGNORED,
        "complete-omits-parts": "Ceph RGW refuses (InvalidPart) a CompleteMultipartUpload "
                                "that leaves out parts which were uploaded",
        "uploads-delimiter-ignored": "Ceph RGW's ListMultipartUploads with a delimiter leaves "
                                     "out the rolled-up uploads' CommonPrefixes",
        "part-copy-version-id": "Ceph RGW 16.2's UploadPartCopy answers no "
                                "x-amz-copy-source-version-id",
        "copy-version-id": "Ceph RGW 16.2 answers CopyObject in a versioned bucket without "
                           "x-amz-version-id or x-amz-copy-source-version-id",
        "unknown-version-nosuchkey": "Ceph RGW 16.2 answers a version id it never issued "
                                     "with NoSuchKey (S3: InvalidArgument or NoSuchVersion)",
        "multipart-tagging-ignored": "Ceph RGW 16.2 ignores x-amz-tagging on "
                                     "CreateMultipartUpload: the object gets no tags (s3-tests "
                                     "test_set_multipart_tagging fails on RGW alone)",
        "conditions-ignored": "Ceph RGW 16.2 enforces If-Match / If-None-Match on PutObject "
                              "only; it ignores them on CompleteMultipartUpload and CopyObject, "
                              "which encproxy's default [backend] conditional_writes = "
                              "PutObject refuses with NotImplemented",
    },
    "seaweedfs": {
        "keys-are-paths": "SeaweedFS 4.48 keeps keys as file paths in its filer: a key with "
                          "a `.` or `..` segment is refused (400 InvalidRequest), a leading "
                          "`/` and `//` are collapsed (PUT `/x` lists as `x`, `a//b` as "
                          "`a/b`), and a segment over 255 bytes is KeyTooLongError (S3: any "
                          "key of up to 1024 bytes, kept as sent)",
        "default-content-type": "SeaweedFS 4.48 gives an object PUT without Content-Type "
                                "`application/octet-stream` (S3: `binary/octet-stream`)",
        "parts-kept-per-upload": "SeaweedFS 4.48 keeps every upload of a part number: "
                                 "ListParts lists each (in no fixed order) and Complete takes "
                                 "the one its ETag names (S3: the last upload replaces the "
                                 "part). encproxy's Complete of an encrypted upload checks "
                                 "one listed upload per part number, so one whose part was "
                                 "re-sent with other bytes may fail with InvalidPart, or "
                                 "complete with the replaced upload's bytes when its ETag is "
                                 "the one named",
        "no-default-checksum": "SeaweedFS 4.48 keeps a checksum only when the client "
                               "sends one: no default CRC64NVME (S3 since 2025)",
        "part-checksums-hidden": "SeaweedFS 4.48's ListParts shows neither the upload's "
                                 "ChecksumAlgorithm/ChecksumType nor part checksums, and a "
                                 "partNumber read or GetObjectAttributes of a multipart "
                                 "object shows no checksums (the object's own checksum, "
                                 "from Complete, is right)",
        "copy-checksums": "SeaweedFS 4.48's CopyObject answers no checksum in "
                          "CopyObjectResult and ignores x-amz-checksum-algorithm: the copy "
                          "keeps the source's checksum instead of getting the one named",
        "listing-tree-order": "SeaweedFS 4.48 lists keys in the order of a walk of its "
                              "filer's directory tree (`a`, `a/b`, `a/c/d`, `a-b`), not in "
                              "UTF-8 byte order (`a`, `a-b`, `a/b`) as S3 does; StartAfter, "
                              "Marker and NextMarker follow that order",
        "key-and-prefix-one-entry": "SeaweedFS 4.48 with a delimiter puts a key `a` and "
                                    "the common prefix `a/` in one page even at max-keys 1, "
                                    "so a page can hold max-keys + 1 entries (S3: at most "
                                    "max-keys keys and prefixes together)",
        "abort-aborted-succeeds": "SeaweedFS 4.48 answers 204 to AbortMultipartUpload of "
                                  "an upload already aborted (S3: 404 NoSuchUpload)",
        "copy-part-etag": "SeaweedFS 4.48's UploadPartCopy answers an ETag that is not the "
                          "MD5 of the copied bytes (`…-2` for 5 MiB of a 6 MiB source; S3: "
                          "the part's MD5); Complete with it takes the right bytes",
        "uploads-by-id": "SeaweedFS 4.48's ListMultipartUploads lists uploads by upload id "
                         "(a SHA-1 of the key, then random), not by key and then initiation, "
                         "and its Initiated is in whole seconds: encproxy sorts a complete "
                         "listing by key and Initiated, but a truncated page keeps the "
                         "backend's order, and uploads of one key initiated in one second "
                         "keep their random order",
        "uploads-delimiter-ignored": "SeaweedFS 4.48 ignores the delimiter of "
                                     "ListMultipartUploads (no CommonPrefixes)",
        "versions-null-listed-last": "SeaweedFS 4.48's ListObjectVersions lists a key's "
                                     "null version (written while versioning was "
                                     "Suspended, the latest) after its versions with ids "
                                     "(S3: newest first); IsLatest is right",
        "unknown-version-nosuchkey": "SeaweedFS 4.48 answers CopyObject of a version id "
                                     "it never issued with 404 NoSuchKey (S3: "
                                     "InvalidArgument or NoSuchVersion); in a bucket "
                                     "never versioned, HEAD and GET ignore such a "
                                     "versionId and answer the current object",
        "acl-headers-ignored": "SeaweedFS 4.48 ignores x-amz-acl and x-amz-grant-* on "
                               "PutObject, CreateMultipartUpload and CopyObject: "
                               "GetObjectAcl shows the owner's FULL_CONTROL only (S3: "
                               "the ACL the write names); PutObjectAcl sets an ACL",
        "versions-multipart-etag": "SeaweedFS 4.48's ListObjectVersions answers a multipart "
                                   "object's ETag as `…-N` over its stored chunks (`-5` for "
                                   "3 parts of 5 MiB, 5 MiB and 1000 B), not the ETag that "
                                   "Complete, HEAD, GET and ListObjects answer: encproxy "
                                   "cannot match the entry to the object it wrote, so it "
                                   "lists an encrypted multipart object with the backend's "
                                   "ETag and (ciphertext) size",
    },
}
# Quirks that are races: they show in some runs and not in others. A run where they do not
# show must still pass its assertions, so it counts as a pass, not as a stale entry.
INTERMITTENT = {("moto", "concurrent-overwrite"), ("moto", "conditional-write-race")}


@dataclass
class Backend:
    kind: str                          # "file", "moto", "ceph" or "seaweedfs"
    endpoint: str | None = None
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"
    directory: Path | None = None
    stop: Callable[[], None] = field(default=lambda: None, repr=False)
    # [backend] options every encproxy in front of this backend gets (server_env's own
    # options override them): what an operator sets for this kind of backend.
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.endpoint is not None

    def quirk(self, name: str) -> str | None:
        """The reason text if this backend has the named quirk."""
        return QUIRKS.get(self.kind, {}).get(name)

    def server_env(self, **options: str) -> dict[str, str]:
        """Environment overrides that point an encproxy server at this backend."""
        if not self.is_s3:
            return {}
        env = {"ENCPROXY_BACKEND_TYPE": "s3", "ENCPROXY_BACKEND_ENDPOINT": str(self.endpoint),
               "ENCPROXY_BACKEND_ACCESS_KEY": self.access_key,
               "ENCPROXY_BACKEND_SECRET_KEY": self.secret_key,
               "ENCPROXY_BACKEND_REGION": self.region}
        env.update({"ENCPROXY_BACKEND_" + k.upper(): v
                    for k, v in {**self.options, **options}.items()})
        return env

    def client(self) -> Any:
        """A boto3 client on the backend itself, bypassing encproxy."""
        assert self.is_s3, "the file store has no S3 endpoint of its own"
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def _run_service(script: str, *args: str, timeout: float) -> dict[str, str]:
    try:
        result = subprocess.run([str(SERVICES / script), *args], capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"scripts/services/{script} {' '.join(args)} did not finish in "
                           f"{timeout} s:\n{exc.stdout or ''}{exc.stderr or ''}") from None
    if result.returncode != 0:
        raise RuntimeError(f"scripts/services/{script} {' '.join(args)} failed "
                           f"({result.returncode}):\n{result.stdout}{result.stderr}")
    values = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = value.strip('"')
    return values


def start_moto(directory: Path) -> Backend:
    values = _run_service("moto", "start", str(directory), timeout=60)
    return Backend("moto", values["MOTO_ENDPOINT"], MOTO_KEY, MOTO_SECRET, directory=directory,
                   stop=lambda: _run_service("moto", "stop", str(directory), timeout=30) and None)


def start_ceph(directory: Path) -> Backend:
    values = _run_service("ceph-rgw", "start", str(directory), timeout=180)
    return Backend("ceph", values["RGW_ENDPOINT"], values["RGW_ACCESS_KEY"],
                   values["RGW_SECRET_KEY"], directory=directory,
                   stop=lambda: _run_service("ceph-rgw", "stop", str(directory),
                                             timeout=60) and None)


def start_seaweedfs(directory: Path) -> Backend:
    values = _run_service("seaweedfs", "start", str(directory), timeout=90)
    # SeaweedFS enforces If-Match and If-None-Match on all three writes, as AWS does
    # (docs/BACKENDS.md, "Conditional writes"), so they are configured as in front of AWS.
    return Backend("seaweedfs", values["SEAWEEDFS_ENDPOINT"], values["SEAWEEDFS_ACCESS_KEY"],
                   values["SEAWEEDFS_SECRET_KEY"], directory=directory,
                   stop=lambda: _run_service("seaweedfs", "stop", str(directory),
                                             timeout=30) and None,
                   options={"conditional_writes":
                            "PutObject, CopyObject, CompleteMultipartUpload"})


def start_backend(kind: str, directory: Path) -> Backend:
    if kind == "file":
        return Backend("file")
    if kind == "moto":
        return start_moto(directory)
    if kind == "ceph":
        return start_ceph(directory)
    if kind == "seaweedfs":
        return start_seaweedfs(directory)
    raise ValueError(kind)


# -- what a backend holds: the attacker's (and auditor's) view, for every backend kind ----
@dataclass
class StoredObject:
    user_metadata: dict[str, str]
    body: bytes
    etag: str = ""     # the backend's own ETag, unquoted


class Stored:
    """Read and write a backend's objects directly, bypassing encproxy.

    The file store through its storage engine (``support.backend_files``), an S3
    backend through boto3. For tests that check the backend never holds plaintext, and
    that tamper with stored objects as someone with write access to the backend could.
    """

    def __init__(self, backend: Backend, root: Path) -> None:
        self.backend = backend
        self.root = root
        self._client = backend.client() if backend.is_s3 else None

    def read(self, bucket: str, key: str) -> StoredObject:
        if self._client is None:
            from support.backend_files import read_stored
            record, body = read_stored(self.root, bucket, key)
            return StoredObject(dict(record.meta.user_metadata), body, record.etag)
        got = self._client.get_object(Bucket=bucket, Key=key)
        return StoredObject(dict(got["Metadata"]), got["Body"].read(), got["ETag"].strip('"'))

    def write(self, bucket: str, key: str, body: bytes, user_metadata: dict[str, str]) -> None:
        if self._client is None:
            from support.backend_files import write_stored
            write_stored(self.root, bucket, key, body, user_metadata)
            return
        self._client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=user_metadata)

    def names(self, bucket: str, prefix: str) -> list[str]:
        """The keys under ``prefix`` in ``bucket``, in the backend's listing order."""
        if self._client is None:
            from encproxy.filestore.store import FileStore
            store, found, start = FileStore(self.root), [], None
            while True:
                page = store.list_objects(bucket, prefix=prefix, start_after=start)
                found += [record.key for record in page.contents]
                if not page.is_truncated:
                    return found
                start = page.next_marker
        return [entry["Key"] for page in self._client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix) for entry in page.get("Contents", [])]

    def all_bytes(self) -> bytes:
        """Every stored body and every metadata name and value, concatenated."""
        if self._client is None:
            from support.backend_files import all_stored_bytes
            return all_stored_bytes(self.root)
        out = bytearray()
        for bucket in self._client.list_buckets()["Buckets"]:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket["Name"]):
                for entry in page.get("Contents", []):
                    got = self._client.get_object(Bucket=bucket["Name"], Key=entry["Key"])
                    for name, value in got["Metadata"].items():
                        out += name.encode() + b"\0" + value.encode() + b"\0"
                    out += got["Body"].read()
        return bytes(out)
