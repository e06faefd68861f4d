"""ETags as the file store computes and compares them (pure).

Convention: the store keeps and returns every ETag *bare*, without the double
quotes that S3 puts around it in headers and XML:

- a single-part object or a part: the lower-case hex MD5 of its bytes,
  ``"d41d8cd98f00b204e9800998ecf8427e"`` for an empty body;
- a multipart object: the hex MD5 of the concatenated *binary* MD5s of its
  parts, then ``-`` and the part count, ``"…-3"``.

The S3 edge adds the quotes when it renders (``quote``).  Anything that
arrives from a client (CompleteMultipartUpload's ``<ETag>``, ``If-Match``) is
compared with ``same_etag``, which ignores quotes and case.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable


def quote(etag: str) -> str:
    """The ETag as S3 sends it in headers and XML: in double quotes."""
    return '"' + unquote(etag) + '"'


def unquote(etag: str) -> str:
    """A client-supplied ETag reduced to the bare form the store keeps.

    Clients send ETags quoted, unquoted, or with the quotes XML-escaped and
    decoded by the parser; some keep a weak ``W/`` prefix from HTTP caches.
    """
    value = etag.strip()
    if value.startswith("W/"):
        value = value[2:]
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    return value.strip().lower()


def same_etag(a: str, b: str) -> bool:
    """Whether two ETags name the same content, whatever their quoting."""
    return unquote(a) == unquote(b)


def md5_etag(digest: bytes) -> str:
    """The ETag of a single-part object or of a part, from its binary MD5."""
    return digest.hex()


def multipart_digest(part_digests: Iterable[bytes]) -> bytes:
    """MD5 over the concatenated binary MD5s of the parts, in part order."""
    h = hashlib.md5()
    for d in part_digests:
        h.update(d)
    return h.digest()


def multipart_etag(digest: bytes, parts_count: int) -> str:
    """The ETag of a multipart object: ``multipart_digest`` in hex, ``-N``."""
    return f"{digest.hex()}-{parts_count}"
