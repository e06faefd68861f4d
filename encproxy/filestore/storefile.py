"""The one file format of the store: a small header, then the body.

Objects, parts, upload records and bucket records are all files of this
format, so metadata and body are one file and change together by one rename
(see ``encproxy/filestore/FORMAT.md``)::

    offset  size  field
    0       8     magic  b"ENCPXFS\\0"
    8       2     version, big-endian (1)
    10      2     flags (0; readers refuse anything else)
    12      4     J = length of the JSON record
    16      8     B = length of the body
    24      16    MD5 of the body (binary); for a multipart object, the MD5 of
                  the concatenated part MD5s
    40      8     time: float64 seconds since the epoch (last modified,
                  initiated, created)
    48      J     JSON record: ASCII (non-ASCII escaped), keys sorted
    48+J    B     body

The fixed fields come first and have a fixed size so that the writer can
stream a body of known length, learn its MD5 only at the end, and then write
them in place (``pwrite`` at offset 0) before the file is made visible.  A
reader checks magic, version, flags, ``J <= 1 MiB`` (before parsing any JSON)
and that the file is exactly ``48 + J + B`` bytes long, so a truncated or
padded file is reported, never served.

JSON records by kind (all keys always present):

- ``object``: ``key``, ``meta``, ``parts`` (null, or the part sizes
  run-length encoded as ``[[size, count], ...]``, so that 10,000 equal parts
  cost a few bytes of header);
- ``part``: ``upload_id``, ``part_number``;
- ``upload``: ``upload_id``, ``bucket``, ``key``, ``meta``;
- ``bucket``: ``name``, ``acl``, ``cors``.

``meta`` is ``{"content_headers": {...}, "user_metadata": {...},
"storage_class": "...", "acl": ACL}``.  ACL is null (private) or a list of
``[grantee type, grantee, permission]``; records written before ACLs were kept
have no ``acl`` key, read as null.  ``cors`` is null (no CORS configuration) or
the rules in order, each ``{"id", "allowed_methods", "allowed_origins",
"allowed_headers", "expose_headers", "max_age_seconds"}``; records written
before CORS was kept have no ``cors`` key, read as null.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from encproxy.errors import InternalError, MetadataTooLarge, S3Error
from encproxy.filestore import checksums as fs_checksums
from encproxy.filestore import etag as etags
from encproxy.filestore.records import (
    BucketRecord,
    ObjectMeta,
    ObjectRecord,
    PartRecord,
    UploadRecord,
)
from encproxy.format.checksum import DIGEST_SIZES, TYPE_CODES
from encproxy.s3.acl import Acl, Grant
from encproxy.s3.cors import CorsConfiguration, CorsRule, check_configuration

log = logging.getLogger("encproxy.filestore")

MAGIC = b"ENCPXFS\x00"
VERSION = 1
FIXED = struct.Struct(">8sHHIQ16sd")
HEADER_SIZE = FIXED.size  # 48
MAX_JSON = 1 << 20
_FIRST_READ = 4096
EMPTY_MD5 = bytes(16)  # placeholder until the body's MD5 is known
MD5_OF_EMPTY = bytes.fromhex("d41d8cd98f00b204e9800998ecf8427e")  # header-only records


@dataclass(frozen=True)
class Header:
    json_length: int
    body_length: int
    md5: bytes
    time: float
    fields: dict[str, Any]

    @property
    def body_offset(self) -> int:
        return HEADER_SIZE + self.json_length


def corrupt(path: str, reason: str) -> S3Error:
    """Log a damaged store file in full; the client sees only InternalError."""
    log.error("file store: damaged file %s: %s", path, reason)
    return InternalError("The stored object is damaged and cannot be read.")


def encode_fields(fields: Mapping[str, Any]) -> bytes:
    data = json.dumps(fields, ensure_ascii=True, separators=(",", ":"),
                      sort_keys=True).encode("ascii")
    if len(data) > MAX_JSON:
        raise MetadataTooLarge(Size=str(len(data)), MaxSizeAllowed=str(MAX_JSON))
    return data


def encode_fixed(json_length: int, body_length: int, md5: bytes, time: float) -> bytes:
    return FIXED.pack(MAGIC, VERSION, 0, json_length, body_length, md5, time)


def read_header(fd: int, kind: str, path: str) -> Header:
    """Read and check the header of the open file ``fd``; ``path`` is for the log."""
    first = os.pread(fd, HEADER_SIZE + _FIRST_READ, 0)
    if len(first) < HEADER_SIZE:
        raise corrupt(path, "shorter than the fixed header")
    magic, version, flags, json_length, body_length, md5, time = FIXED.unpack_from(first)
    if magic != MAGIC:
        raise corrupt(path, "bad magic")
    if version != VERSION or flags != 0:
        raise corrupt(path, f"unknown version {version} / flags {flags}")
    if json_length > MAX_JSON:
        raise corrupt(path, f"header record of {json_length} bytes exceeds the cap")
    end = HEADER_SIZE + json_length
    data = first[HEADER_SIZE:end]
    if len(data) < json_length:
        data += os.pread(fd, end - len(first), len(first))
        if len(data) != json_length:
            raise corrupt(path, "header record truncated")
    try:
        fields = json.loads(data)
    except ValueError:
        raise corrupt(path, "header record is not JSON") from None
    if not isinstance(fields, dict) or fields.get("kind") != kind:
        raise corrupt(path, f"not a {kind} file")
    size = os.fstat(fd).st_size
    if size != end + body_length:
        raise corrupt(path, f"file is {size} bytes, header says {end + body_length}")
    return Header(json_length, body_length, md5, time, fields)


# -- records <-> JSON ---------------------------------------------------------------

def acl_fields(acl: Acl | None) -> list[list[str]] | None:
    if acl is None:
        return None
    return [[g.grantee_type, g.grantee, g.permission] for g in acl]


def decode_acl(value: Any) -> Acl | None:
    """A stored ACL; absent (older records) or null is private.  Any other shape is
    damage (the caller reports it)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError("acl")
    grants = []
    for item in value:
        if not isinstance(item, list) or len(item) != 3 or \
                not all(isinstance(x, str) for x in item):
            raise TypeError("grant")
        grants.append(Grant(item[0], item[1], item[2]))   # ValueError if not a grant
    return tuple(grants)


def meta_fields(meta: ObjectMeta) -> dict[str, Any]:
    return {"content_headers": dict(meta.content_headers),
            "user_metadata": dict(meta.user_metadata),
            "storage_class": meta.storage_class,
            "acl": acl_fields(meta.acl)}


def encode_runs(sizes: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for s in sizes:
        if runs and runs[-1][0] == s:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    return runs


def decode_runs(runs: Any) -> tuple[int, ...]:
    out: list[int] = []
    for size, count in runs:
        if not isinstance(size, int) or not isinstance(count, int) or size < 0 or count < 1:
            raise ValueError("bad part-size run")
        out.extend([size] * count)
    return tuple(out)


def object_fields(key: str, meta: ObjectMeta, part_sizes: Sequence[int] | None,
                  part_checksums: Sequence[bytes] | None = None) -> dict[str, Any]:
    """An object's record; ``part_checksums``: the digests of a multipart object's
    parts, in order, of its checksum's algorithm (FORMAT.md, "Checksums")."""
    fields: dict[str, Any] = {"kind": "object", "key": key, "meta": meta_fields(meta),
                              "parts": None if part_sizes is None else encode_runs(part_sizes)}
    if part_checksums is not None:
        fields["part_checksums"] = base64.b64encode(b"".join(part_checksums)).decode("ascii")
    return fields


def _meta(fields: Mapping[str, Any]) -> ObjectMeta:
    m = fields["meta"]
    return ObjectMeta(content_headers=m["content_headers"], user_metadata=m["user_metadata"],
                      storage_class=m["storage_class"], acl=decode_acl(m.get("acl")))


def object_record(h: Header, path: str) -> ObjectRecord:
    try:
        key = h.fields["key"]
        if not isinstance(key, str):
            raise TypeError("key")
        runs = h.fields["parts"]
        part_sizes = None if runs is None else decode_runs(runs)
        if part_sizes is not None and (not part_sizes or sum(part_sizes) != h.body_length):
            raise ValueError("part sizes do not add up to the body")
        etag = etags.md5_etag(h.md5) if part_sizes is None else \
            etags.multipart_etag(h.md5, len(part_sizes))
        sums = h.fields.get("part_checksums")
        part_checksums = None
        if sums is not None:
            if not isinstance(sums, str) or part_sizes is None:
                raise TypeError("part_checksums")
            part_checksums = base64.b64decode(sums, validate=True)
        return ObjectRecord(key=key, size=h.body_length, etag=etag, last_modified=h.time,
                            meta=_meta(h.fields), part_sizes=part_sizes,
                            part_checksums=part_checksums)
    except Exception as exc:  # any shape error in a stored record is damage
        raise corrupt(path, f"bad object record: {exc!r}") from None


def part_fields(upload_id: str, part_number: int,
                checksum: str | None = None) -> dict[str, Any]:
    """A part's record; ``checksum`` (``filestore.checksums.encode_part``, fixed width:
    rewritten in place once the body is hashed), absent in parts written before."""
    fields: dict[str, Any] = {"kind": "part", "upload_id": upload_id,
                              "part_number": part_number}
    if checksum is not None:
        fields["checksum"] = checksum
    return fields


def part_record(h: Header, path: str, upload_id: str, part_number: int) -> PartRecord:
    if h.fields.get("upload_id") != upload_id or h.fields.get("part_number") != part_number:
        raise corrupt(path, "part file does not belong to its upload directory")
    try:
        checksum = fs_checksums.decode_part(h.fields.get("checksum"))
    except ValueError:
        raise corrupt(path, "bad part checksum") from None
    return PartRecord(number=part_number, etag=etags.md5_etag(h.md5), size=h.body_length,
                      last_modified=h.time, checksum=checksum)


def upload_fields(upload_id: str, bucket: str, key: str, meta: ObjectMeta,
                  tags: Sequence[tuple[str, str]] = (),
                  checksum: tuple[str, str] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": "upload", "upload_id": upload_id, "bucket": bucket,
                              "key": key, "meta": meta_fields(meta)}
    if tags:
        fields["tags"] = [[k, v] for k, v in tags]
    if checksum is not None:
        fields["checksum"] = list(checksum)
    return fields


def decode_upload_checksum(value: Any) -> tuple[str, str] | None:
    """An upload's (algorithm, type); absent (none named, or written before) is none."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and value[0] in DIGEST_SIZES
            and value[1] in TYPE_CODES):
        raise TypeError("checksum")
    return str(value[0]), str(value[1])


def decode_tags(value: Any) -> tuple[tuple[str, str], ...]:
    """An upload's tags; absent (no tags, or written before tags were kept) is none."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t)
            for t in value):
        raise TypeError("tags")
    return tuple((t[0], t[1]) for t in value)


def upload_record(h: Header, path: str) -> UploadRecord:
    try:
        f = h.fields
        if not all(isinstance(f[n], str) for n in ("upload_id", "bucket", "key")):
            raise TypeError("names")
        return UploadRecord(upload_id=f["upload_id"], bucket=f["bucket"], key=f["key"],
                            initiated=h.time, meta=_meta(f), tags=decode_tags(f.get("tags")),
                            checksum=decode_upload_checksum(f.get("checksum")))
    except Exception as exc:
        raise corrupt(path, f"bad upload record: {exc!r}") from None


def cors_fields(rules: CorsConfiguration | None) -> list[dict[str, Any]] | None:
    if rules is None:
        return None
    return [{"id": r.id, "allowed_methods": list(r.allowed_methods),
             "allowed_origins": list(r.allowed_origins),
             "allowed_headers": list(r.allowed_headers),
             "expose_headers": list(r.expose_headers),
             "max_age_seconds": r.max_age_seconds} for r in rules]


_CORS_KEYS = frozenset({"id", "allowed_methods", "allowed_origins", "allowed_headers",
                        "expose_headers", "max_age_seconds"})


def decode_cors(value: Any) -> CorsConfiguration | None:
    """A stored CORS configuration; absent (older records) or null is none.  Any other
    shape, or rules S3 would refuse, is damage (the caller reports it)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise TypeError("cors")
    rules = []
    for item in value:
        if not isinstance(item, dict) or set(item) != _CORS_KEYS:
            raise TypeError("cors rule")
        lists = {k: item[k] for k in _CORS_KEYS if k.startswith(("allowed", "expose"))}
        if not all(isinstance(v, list) for v in lists.values()):
            raise TypeError("cors rule")
        # CorsRule checks every value (an S3Error if S3 would refuse it).
        rules.append(CorsRule(id=item["id"], max_age_seconds=item["max_age_seconds"],
                              **{k: tuple(v) for k, v in lists.items()}))
    return check_configuration(tuple(rules))


def bucket_fields(name: str, acl: Acl | None = None,
                  cors: CorsConfiguration | None = None) -> dict[str, Any]:
    return {"kind": "bucket", "name": name, "acl": acl_fields(acl), "cors": cors_fields(cors)}


def bucket_record(h: Header, path: str, name: str) -> BucketRecord:
    try:
        if h.fields.get("name") != name:
            raise ValueError("bucket record names another bucket")
        return BucketRecord(name, h.time, decode_acl(h.fields.get("acl")),
                            decode_cors(h.fields.get("cors")))
    except Exception as exc:
        raise corrupt(path, f"bad bucket record: {exc!r}") from None
