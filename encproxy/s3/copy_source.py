"""The ``x-amz-copy-source`` header of CopyObject and UploadPartCopy (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from encproxy import errors
from encproxy.s3.names import check_bucket_name, check_key


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None = None


def parse_copy_source(raw: str) -> CopySource:
    """``[/]bucket/key[?versionId=V]``, URL-encoded, as S3 accepts it."""
    source, _, query = raw.partition("?")
    bucket, _, key = unquote(source).lstrip("/").partition("/")
    if not bucket or not key:
        raise errors.InvalidArgument("Copy Source must mention the source bucket and key: "
                                     "sourcebucket/sourcekey",
                                     ArgumentName="x-amz-copy-source", ArgumentValue=raw)
    version_id = None
    if query:
        name, _, value = query.partition("=")
        if name != "versionId":
            raise errors.InvalidArgument("Unsupported copy source parameter.",
                                         ArgumentName="x-amz-copy-source", ArgumentValue=raw)
        version_id = unquote(value)
    check_bucket_name(bucket)
    check_key(key)
    return CopySource(bucket, key, version_id)
