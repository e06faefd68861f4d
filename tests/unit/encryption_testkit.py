"""The encryption layer in-process: a real file store, a real keyring, the real middleware.

``build_stack(root, **policy)`` assembles what ``encproxy.wsgi.stack.build_app`` assembles
between the gateway and the backend, without authentication and without subprocesses::

    werkzeug Client -> Gateway -> EncryptionMiddleware -> FileStoreApp -> FileStore(root)

``Mode`` describes one way of writing an object (as sent, SSE-S3, SSE-KMS under the local
keyring, SSE-C): the headers a write sends, those a read needs, and the SSE headers S3
answers with. The rest are small helpers that speak S3 over the test client and read what
the file store holds on disk (encproxy/filestore/FORMAT.md), the attacker's view.
"""
from __future__ import annotations

import base64
import hashlib
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from werkzeug.test import Client, TestResponse

from encproxy import errors
from encproxy.filestore.records import ObjectRecord
from encproxy.filestore.store import FileStore
from encproxy.keys.local import LocalKeyring
from encproxy.wsgi.apps.filestore import FileStoreApp
from encproxy.wsgi.buckets.config_store import BucketConfigStore
from encproxy.wsgi.buckets.records import RecordKeys
from encproxy.wsgi.edge.gateway import Gateway
from encproxy.wsgi.encryption.middleware import EncryptionMiddleware, EncryptionPolicy

MiB = 1 << 20
PART = 5 * MiB                   # the smallest part that may be followed by another
INTERNAL_BUCKET = "encproxy-internal"
BUCKET = "data"
REGION = "us-east-1"
KEY_ID = "test-key"              # [keys] default_key
KMS_KEY_ID = "other-key"         # named by SSE-KMS writes
SSE = "x-amz-server-side-encryption"
ENVELOPE_METADATA = "encproxy"   # x-amz-meta-encproxy, FORMAT.md


def payload(size: int, seed: int = 0) -> bytes:
    """Random bytes: any 32-byte slice of them occurs in a ciphertext only by accident."""
    return random.Random(seed).randbytes(size)


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def customer_headers(key: bytes, copy_source: bool = False) -> dict[str, str]:
    prefix = "x-amz-copy-source-" if copy_source else "x-amz-"
    return {
        prefix + "server-side-encryption-customer-algorithm": "AES256",
        prefix + "server-side-encryption-customer-key": base64.b64encode(key).decode(),
        prefix + "server-side-encryption-customer-key-md5":
            base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


@dataclass(frozen=True)
class Mode:
    """One way of writing an object, and what reading it back takes."""

    name: str
    write: Mapping[str, str] = field(default_factory=dict)
    response: Mapping[str, str] = field(default_factory=dict)  # SSE headers of PUT/GET/HEAD
    customer_key: bytes | None = None

    @property
    def encrypted(self) -> bool:
        return self.name != "none"

    @property
    def sse_c(self) -> bool:
        return self.customer_key is not None

    @property
    def read(self) -> dict[str, str]:
        return customer_headers(self.customer_key) if self.customer_key else {}

    @property
    def copy_source(self) -> dict[str, str]:
        return customer_headers(self.customer_key, copy_source=True) if self.customer_key \
            else {}

    def __repr__(self) -> str:
        return f"Mode({self.name})"


CUSTOMER_KEY = bytes(range(32))
OTHER_CUSTOMER_KEY = bytes(range(32, 64))
NONE = Mode("none")
SSE_S3 = Mode("AES256", {SSE: "AES256"}, {SSE: "AES256"})
SSE_KMS = Mode("aws:kms", {SSE: "aws:kms", SSE + "-aws-kms-key-id": KMS_KEY_ID},
               {SSE: "aws:kms", SSE + "-aws-kms-key-id": KMS_KEY_ID})
SSE_C = Mode("sse-c", customer_headers(CUSTOMER_KEY), {
    SSE + "-customer-algorithm": "AES256",
    SSE + "-customer-key-md5": customer_headers(CUSTOMER_KEY)[SSE + "-customer-key-md5"]},
    CUSTOMER_KEY)
ALL_MODES = (NONE, SSE_S3, SSE_KMS, SSE_C)
ENCRYPTED_MODES = (SSE_S3, SSE_KMS, SSE_C)


def sse_headers(resp: TestResponse) -> dict[str, str]:
    """The response's x-amz-server-side-encryption* headers, lower-case names."""
    return {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith(SSE)}


@dataclass(frozen=True)
class BackendRequest:
    """One request as the backend app received it (lower-case header names)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


class Recorder:
    """A pass-through WSGI layer that notes what reaches the backend (nothing is changed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[BackendRequest] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        self.requests.append(BackendRequest(environ["REQUEST_METHOD"],
                                            environ.get("PATH_INFO", ""),
                                            environ.get("QUERY_STRING", ""), headers))
        return self.app(environ, start_response)


@dataclass
class Stack:
    root: Path
    store: FileStore
    backend: FileStoreApp
    recorder: Recorder      # between the encryption layer and the file store
    configs: BucketConfigStore
    keys: LocalKeyring
    middleware: EncryptionMiddleware
    client: Client
    direct: Client          # the same file store without the encryption layer

    # -- what the file store holds ----------------------------------------------------
    def stored(self, bucket: str, key: str) -> tuple[ObjectRecord, bytes]:
        record, reader = self.store.open_object(bucket, key)
        with reader:
            return record, reader.read()

    def object_file(self, bucket: str, key: str) -> Path:
        """The file of the object's latest version, as the store's index names it
        (FORMAT.md's layout: a hash of the key and a random suffix, never the key)."""
        return Path(self.store.object_file(bucket, key))

    def flip_stored_byte(self, bucket: str, key: str, offset: int) -> None:
        """Flip one bit of the stored body at ``offset`` (negative: from the end), on disk."""
        record, _ = self.stored(bucket, key)
        path = self.object_file(bucket, key)
        raw = bytearray(path.read_bytes())
        body_start = len(raw) - record.size   # the header and its JSON come first
        raw[body_start + (offset % record.size)] ^= 0x01
        path.write_bytes(bytes(raw))

    def backend_parts(self, bucket: str, key: str) -> list[bytes]:
        """The stored body of a multipart object cut at its backend part boundaries."""
        record, body = self.stored(bucket, key)
        assert record.part_sizes is not None
        out, offset = [], 0
        for size in record.part_sizes:
            out.append(body[offset:offset + size])
            offset += size
        return out

    def minimal_trailers(self) -> Stack:
        """Complete uploads as encproxy did before it indexed every completion
        (FORMAT.md §7.3): no trailer after a terminal part, else a header-only one."""
        self.middleware.uploads.always_index = False
        return self

    def replica(self, read_ahead_records: bool = False, **policy: Any) -> Stack:
        """Another middleware over the same store and keyring: nothing cached."""
        return build_stack(self.root, read_ahead_records=read_ahead_records, **policy)


def build_stack(root: Path, read_ahead_records: bool = False, **policy: Any) -> Stack:
    """The stack over ``root`` (created if new) with ``EncryptionPolicy(**policy)``.

    ``allow_insecure_sse_c`` defaults to True (the test client speaks http); the default
    key is ``test-key``. Buckets ``data`` and the internal bucket exist.
    ``read_ahead_records``: listings read facts records ahead, as over an S3 backend.
    """
    keyring = root / "keys"
    new = not keyring.exists()
    if new:
        keyring.mkdir(mode=0o700, parents=True)
    keys = LocalKeyring(keyring)
    if new:
        keys.create_key(KEY_ID)
        keys.create_key(KMS_KEY_ID)
    store = FileStore(root / "data")
    for bucket in (INTERNAL_BUCKET, BUCKET):
        if not store.bucket_exists(bucket):
            store.create_bucket(bucket)
    backend = FileStoreApp(store, region=REGION)
    recorder = Recorder(backend)
    configs = BucketConfigStore(recorder, INTERNAL_BUCKET, ttl=60.0,
                                records=RecordKeys(recorder, INTERNAL_BUCKET, keys, KEY_ID))
    options: dict[str, Any] = {"allow_insecure_sse_c": True, "default_key": KEY_ID, **policy}
    middleware = EncryptionMiddleware(recorder, configs, keys, EncryptionPolicy(**options),
                                      read_ahead_records=read_ahead_records)
    return Stack(root, store, backend, recorder, configs, keys, middleware,
                 Client(Gateway(middleware, ())), Client(Gateway(backend, ())))


# -- S3 XML -------------------------------------------------------------------------------

def parse_xml(body: bytes) -> ElementTree.Element:
    """The document with namespaces dropped from tag names."""
    root = ElementTree.fromstring(body)
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def error_of(resp: TestResponse) -> tuple[int, str | None]:
    """(status, S3 error code); the code is None when there is no XML error body."""
    body = resp.get_data()
    if not body:
        return resp.status_code, None
    root = parse_xml(body)
    assert root.tag == "Error", body
    return resp.status_code, root.findtext("Code")


def assert_error(resp: TestResponse, status: int, code: str) -> ElementTree.Element | None:
    """The response is S3 error ``code`` with ``status``: an XML body, or none for HEAD."""
    assert resp.status_code == status, (resp.status_code, resp.get_data()[:500])
    body = resp.get_data()
    if resp.request.method == "HEAD":
        assert body == b""
        return None
    assert resp.mimetype == "application/xml", resp.headers
    root = parse_xml(body)
    assert (root.tag, root.findtext("Code")) == ("Error", code), body
    return root


# -- requests -----------------------------------------------------------------------------

def path(bucket: str, key: str | None = None) -> str:
    from urllib.parse import quote
    return "/" + bucket + ("/" + quote(key, safe="/") if key is not None else "")


def put(client: Client, key: str, data: bytes, headers: Mapping[str, str] | None = None,
        bucket: str = BUCKET) -> TestResponse:
    # werkzeug sends no Content-Length for an empty body: S3 clients send 0.
    return client.put(path(bucket, key), data=data, headers=dict(headers or {}),
                      environ_overrides={"CONTENT_LENGTH": str(len(data))})


def get(client: Client, key: str, headers: Mapping[str, str] | None = None,
        bucket: str = BUCKET, query: str = "") -> TestResponse:
    return client.get(path(bucket, key), query_string=query, headers=dict(headers or {}))


def head(client: Client, key: str, headers: Mapping[str, str] | None = None,
         bucket: str = BUCKET, query: str = "") -> TestResponse:
    return client.head(path(bucket, key), query_string=query, headers=dict(headers or {}))


@dataclass(frozen=True)
class Read:
    """What a GET delivered: status, the body bytes received, whether it was cut short."""

    status: int
    body: bytes
    aborted: bool


def read_body(client: Client, key: str, headers: Mapping[str, str] | None = None,
              bucket: str = BUCKET) -> Read:
    """GET, collecting the body piece by piece; an integrity failure raised while the
    body streams (the server would abort the connection) ends it."""
    resp = get(client, key, headers, bucket)
    received = bytearray()
    try:
        for piece in resp.iter_encoded():
            received += piece
    except errors.IntegrityError:
        return Read(resp.status_code, bytes(received), True)
    finally:
        resp.close()
    return Read(resp.status_code, bytes(received), False)


# -- multipart uploads --------------------------------------------------------------------

def create_upload(client: Client, key: str, headers: Mapping[str, str] | None = None,
                  bucket: str = BUCKET) -> str:
    resp = client.post(path(bucket, key), query_string="uploads", headers=dict(headers or {}))
    assert resp.status_code == 200, resp.get_data()
    upload_id = parse_xml(resp.get_data()).findtext("UploadId")
    assert upload_id
    return upload_id


def upload_part(client: Client, key: str, upload_id: str, number: int, data: bytes,
                headers: Mapping[str, str] | None = None,
                bucket: str = BUCKET) -> TestResponse:
    return client.put(path(bucket, key), query_string={"partNumber": number,
                                                       "uploadId": upload_id},
                      data=data, headers=dict(headers or {}),
                      environ_overrides={"CONTENT_LENGTH": str(len(data))})


def complete_body(parts: list[tuple[int, str]]) -> bytes:
    return ("<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts)
        + "</CompleteMultipartUpload>").encode()


def complete(client: Client, key: str, upload_id: str, parts: list[tuple[int, str]],
             headers: Mapping[str, str] | None = None, bucket: str = BUCKET) -> TestResponse:
    return client.post(path(bucket, key), query_string={"uploadId": upload_id},
                       data=complete_body(parts),
                       headers={"content-type": "application/xml", **(headers or {})})


def multipart_upload(client: Client, key: str, parts: Mapping[int, bytes], mode: Mode,
                     bucket: str = BUCKET) -> TestResponse:
    """Create, upload ``parts`` (number -> plaintext), complete; Complete's response."""
    upload_id = create_upload(client, key, mode.write, bucket)
    done = []
    for number, data in sorted(parts.items()):
        resp = upload_part(client, key, upload_id, number, data, mode.read, bucket)
        assert resp.status_code == 200, resp.get_data()
        done.append((number, resp.headers["ETag"]))
    resp = complete(client, key, upload_id, done, mode.read, bucket)
    assert resp.status_code == 200, resp.get_data()
    return resp


def sample_slices(data: bytes, width: int = 32) -> list[bytes]:
    """A few slices of ``data`` to look for in what is stored (start, middle, end, and
    every MiB boundary)."""
    if len(data) < width:
        return []
    starts = {0, len(data) // 2 - width // 2, len(data) - width}
    starts |= set(range(MiB, len(data) - width, MiB))
    return [data[s:s + width] for s in sorted(starts)]


def assert_not_plaintext(stored: bytes, plaintext: bytes) -> None:
    """What the backend holds is not the plaintext, and contains no slice of it."""
    assert stored != plaintext
    for piece in sample_slices(plaintext):
        assert piece not in stored


def random_key() -> str:
    return "k-" + os.urandom(6).hex()
