"""Where everything lives under the store's root, and which names are safe there.

::

    root/                                  mode 0700
      tmp/                                 every write starts here (same filesystem)
        <kind>-<time_ns hex>-<random>      temp files and staging directories
      buckets/<bucket>/                    appears and disappears by one rename
        bucket                             record file: name, creation time
        objects/<h[0:2]>/<h[2:4]>/<h>.<r>  one file per object version, h = sha256(key UTF-8)
                                           hex, r random (the index names each file)
        uploads/<upload id>/               one directory per multipart upload
          upload                           record file: key, metadata, initiation time
          part-00001 … part-10000          one file per uploaded part
      lost+found/                          only from versions before the index (a failed bucket
                                           delete that could not be undone)
      locks/<h[0:2]>                       256 lock files: a bucket record's change holds one
      index.sqlite3                        the metadata index (``index.py``)

Object keys never reach a path: an object's file name is the SHA-256 of its
key, so ``/``, ``..``, newlines or 1024-byte keys are all just bytes to hash,
and the key itself is kept inside the file.  Bucket names are checked against
the S3 DNS rules' character set before use, and upload ids are ours (hex), so
no name from a request can climb out of the root.  The two fan-out levels
keep directories small (65,536 leaves).

Upload ids are ``<16 hex digits of time_ns><32 random hex digits>``: 128
unguessable bits, URL-safe, and sorting them sorts uploads by initiation,
which ListMultipartUploads needs.

The names in ``tmp/`` carry the time they were made, so that the stale-file
sweep never mistakes a directory just renamed in (whose mtime is old) for an
abandoned one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass

from encproxy.errors import InvalidArgument, InvalidBucketName, KeyTooLongError, NoSuchUpload

MAX_KEY_BYTES = 1024
MAX_PART_NUMBER = 10000
BUCKET_RECORD = "bucket"
UPLOAD_RECORD = "upload"
PART_PREFIX = "part-"

# Defensive: the caller has applied all of S3's bucket rules; this is the subset that makes
# a name a safe single path component (alphanumeric at both ends, so never "." or "..").
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_UPLOAD_ID = re.compile(r"[0-9a-f]{48}")
_TMP_NAME = re.compile(r"[a-z]+-([0-9a-f]{1,16})-")


def check_bucket_name(name: str) -> str:
    if not isinstance(name, str) or not _BUCKET_NAME.fullmatch(name):
        raise InvalidBucketName(BucketName=str(name))
    return name


def check_key(key: str) -> bytes:
    """The key's UTF-8 bytes; refuses empty, non-UTF-8 and over-long keys."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("An object key must not be empty.", ArgumentName="key")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("An object key must be valid UTF-8.", ArgumentName="key") from None
    if len(raw) > MAX_KEY_BYTES:
        raise KeyTooLongError(Size=str(len(raw)), MaxSizeAllowed=str(MAX_KEY_BYTES))
    return raw


def check_text(value: str, name: str) -> str:
    """A prefix, delimiter or marker: any string that is valid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{name} must be valid UTF-8.", ArgumentName=name) from None
    return value


def check_upload_id(upload_id: str) -> str:
    if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
        raise NoSuchUpload(UploadId=str(upload_id))
    return upload_id


def check_part_number(part_number: int) -> int:
    if isinstance(part_number, bool) or not isinstance(part_number, int) or \
            not 1 <= part_number <= MAX_PART_NUMBER:
        raise InvalidArgument("Part number must be an integer between 1 and 10000, inclusive",
                              ArgumentName="partNumber", ArgumentValue=str(part_number))
    return part_number


def new_upload_id() -> str:
    return f"{time.time_ns():016x}{secrets.token_hex(16)}"


def tmp_prefix(kind: str) -> str:
    """Prefix for a temp name in ``tmp/``: ``<kind>-<time_ns hex>-`` (random part follows)."""
    return f"{kind}-{time.time_ns():x}-"


def tmp_name_time(name: str) -> float | None:
    """The creation time encoded in a ``tmp/`` entry's name, if it has one."""
    m = _TMP_NAME.match(name)
    return int(m.group(1), 16) / 1e9 if m else None


def part_file_name(part_number: int) -> str:
    return f"{PART_PREFIX}{part_number:05d}"


def part_number_of(file_name: str) -> int | None:
    if not file_name.startswith(PART_PREFIX):
        return None
    digits = file_name[len(PART_PREFIX):]
    if len(digits) != 5 or not digits.isdigit():
        return None
    n = int(digits)
    return n if 1 <= n <= MAX_PART_NUMBER else None


@dataclass(frozen=True)
class ObjectPath:
    """An object's file and the two fan-out directories above it."""

    objects_dir: str
    level1: str
    level2: str
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


class Layout:
    """Paths below one root.  Every method validates the names it is given."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.tmp = os.path.join(self.root, "tmp")
        self.buckets = os.path.join(self.root, "buckets")
        self.lost_found = os.path.join(self.root, "lost+found")
        self.locks = os.path.join(self.root, "locks")

    def create(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        for d in (self.tmp, self.buckets, self.locks):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)

    def bucket(self, name: str) -> str:
        return os.path.join(self.buckets, check_bucket_name(name))

    def bucket_record(self, name: str) -> str:
        return os.path.join(self.bucket(name), BUCKET_RECORD)

    def objects(self, bucket: str) -> str:
        return os.path.join(self.bucket(bucket), "objects")

    def uploads(self, bucket: str) -> str:
        return os.path.join(self.bucket(bucket), "uploads")

    def object(self, bucket: str, key: str) -> ObjectPath:
        h = hashlib.sha256(check_key(key)).hexdigest()
        objects = self.objects(bucket)
        level1 = os.path.join(objects, h[0:2])
        level2 = os.path.join(level1, h[2:4])
        return ObjectPath(objects, level1, level2, os.path.join(level2, h))

    def upload(self, bucket: str, upload_id: str) -> str:
        return os.path.join(self.uploads(bucket), check_upload_id(upload_id))

    def upload_record(self, bucket: str, upload_id: str) -> str:
        return os.path.join(self.upload(bucket, upload_id), UPLOAD_RECORD)
