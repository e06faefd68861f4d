"""``encproxy rotate`` in-process: the Rotator over the file store's WSGI app and a
local keyring, with objects written in the format directly (docs/OPERATIONS.md §6)."""
from __future__ import annotations

import base64
import io
import json
import os

import pytest

from encproxy import errors
from encproxy.crypto.keys import new_object, open_object
from encproxy.crypto.single import ObjectDecryptor, ObjectEncryptor
from encproxy.filestore.records import ObjectMeta
from encproxy.filestore.store import FileStore
from encproxy.format.constants import Kind, Protection
from encproxy.format.envelope import Envelope
from encproxy.keys.blob import WrappedKey
from encproxy.keys.local import LocalKeyring
from encproxy.keys.provider import KeyAdminError
from encproxy.progress import Progress
from encproxy.rotation import (
    CURRENT,
    FAILED,
    PLAIN,
    REWRAPPED,
    SKIP_SSE_C,
    SKIPPED,
    VANISHED,
    WOULD_REWRAP,
    Rotator,
)
from encproxy.wsgi.apps.filestore import FileStoreApp

BUCKET = "rot-bucket"


class World:
    def __init__(self, tmp_path) -> None:
        self.store = FileStore(tmp_path / "data")
        self.store.create_bucket(BUCKET)
        self.app = FileStoreApp(self.store, region="us-east-1")
        self.keys = LocalKeyring(tmp_path / "keys", metadata_ttl=0)
        self.keys.create_key("k1")
        self.keys.create_key("k2")

    def put(self, key: str, data: bytes, *, key_id: str = "k1",
            protection: Protection = Protection.SSE_S3, kind: Kind = Kind.SINGLE,
            context: dict[str, str] | None = None, meta: dict[str, str] | None = None,
            content: dict[str, str] | None = None) -> None:
        objkeys, envelope = new_object(self.keys, key_id, BUCKET, key, kind=Kind.SINGLE,
                                       protection=protection, extra_context=context)
        body = b"".join(bytes(v) for v in ObjectEncryptor(objkeys, len(data)).encrypt([data]))
        user = {"encproxy": envelope.encode(), **(meta or {})}
        if kind is Kind.MULTIPART:  # only the envelope matters to the rotator
            mp_keys, mp_env = new_object(self.keys, key_id, BUCKET, key, kind=Kind.MULTIPART)
            user["encproxy"] = mp_env.encode()
        if context:
            user["encproxy-context"] = base64.b64encode(json.dumps(context).encode()).decode()
        self.store.put_object(BUCKET, key, io.BytesIO(body), len(body),
                              ObjectMeta(content_headers=content or {}, user_metadata=user))

    def stored(self, key: str):
        record, reader = self.store.open_object(BUCKET, key)
        with reader:
            return record, reader.read()

    def read(self, key: str, context: dict[str, str] | None = None) -> bytes:
        record, body = self.stored(key)
        envelope = Envelope.decode(record.meta.user_metadata["encproxy"])
        objkeys = open_object(self.keys, envelope, BUCKET, key, context)
        return b"".join(bytes(v) for v in ObjectDecryptor(objkeys, len(body)).decrypt([body]))

    def version(self, key: str) -> str:
        record, _ = self.stored(key)
        envelope = Envelope.decode(record.meta.user_metadata["encproxy"])
        return WrappedKey.from_bytes(envelope.wrapped_key).key_version


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_rewraps_under_the_current_version_keeping_body_and_metadata(world):
    data = os.urandom(70_000)
    context = {"department": "finance"}
    world.put("a/one", data, meta={"color": "blue"}, context=context,
              content={"content-type": "text/csv", "cache-control": "no-cache"})
    world.put("a/two", b"second")
    before_record, before_body = world.stored("a/one")
    world.keys.rotate_key("k1")

    summary = Rotator(world.app, world.keys).run(BUCKET)
    assert summary.counts[REWRAPPED] == 2 and summary.failed == 0
    assert dict(summary.in_use) == {("k1", "2"): 2}

    record, body = world.stored("a/one")
    assert body == before_body                           # not re-encrypted
    assert record.etag == before_record.etag
    assert record.meta.content_headers == before_record.meta.content_headers
    meta = dict(record.meta.user_metadata)
    old_meta = dict(before_record.meta.user_metadata)
    assert meta.pop("encproxy") != old_meta.pop("encproxy")
    assert meta == old_meta                               # color, encproxy-context
    assert world.version("a/one") == "2"
    assert world.read("a/one", context) == data
    assert world.read("a/two") == b"second"


def test_idempotent_and_dry_run_writes_nothing(world):
    for i in range(5):
        world.put(f"k{i}", b"x" * i)
    world.keys.rotate_key("k1")
    dry = Rotator(world.app, world.keys, dry_run=True).run(BUCKET)
    assert dry.counts[WOULD_REWRAP] == 5 and dict(dry.in_use) == {("k1", "1"): 5}
    assert {world.version(f"k{i}") for i in range(5)} == {"1"}
    first = Rotator(world.app, world.keys).run(BUCKET)
    assert first.counts[REWRAPPED] == 5
    again = Rotator(world.app, world.keys).run(BUCKET)
    assert again.counts[CURRENT] == 5 and again.counts[REWRAPPED] == 0


def test_to_key_moves_objects_to_another_key(world):
    world.put("p/moved", b"payload")
    world.put("q/stays", b"other")
    summary = Rotator(world.app, world.keys, to_key="alias/k2").run(BUCKET, prefix="p/")
    assert summary.listed == 1 and summary.counts[REWRAPPED] == 1
    record, _ = world.stored("p/moved")
    envelope = Envelope.decode(record.meta.user_metadata["encproxy"])
    assert envelope.key_id == "k2"
    assert WrappedKey.from_bytes(envelope.wrapped_key).key_id == "k2"
    assert world.read("p/moved") == b"payload"
    assert Envelope.decode(world.stored("q/stays")[0].meta.user_metadata["encproxy"]).key_id \
        == "k1"


def test_sse_c_and_plaintext_are_reported(world):
    world.put("enc", b"e")
    world.store.put_object(BUCKET, "plain", io.BytesIO(b"p"), 1, ObjectMeta())
    # An SSE-C object: its envelope says so (the rotator never needs its key).
    world.put("ssec", b"c", protection=Protection.SSE_C)
    world.keys.rotate_key("k1")
    summary = Rotator(world.app, world.keys).run(BUCKET)
    assert summary.counts[REWRAPPED] == 1
    assert summary.counts[PLAIN] == 1
    assert summary.skipped == {SKIP_SSE_C: 1}
    assert dict(summary.in_use) == {("k1", "2"): 1}
    text = summary.render()
    assert SKIP_SSE_C in text and "k1 version 2: 1" in text


def test_a_concurrent_overwrite_is_never_clobbered(world):
    world.put("raced", b"old body")
    world.keys.rotate_key("k1")
    state = {"done": False}

    def racing_app(environ, start_response):
        # Overwrite the object just before the rotator's copy reaches the store.
        if environ["REQUEST_METHOD"] == "PUT" and not state["done"]:
            state["done"] = True
            world.put("raced", b"new body written meanwhile")
        return world.app(environ, start_response)

    summary = Rotator(racing_app, world.keys).run(BUCKET)
    assert summary.failed == 0
    # The overwrite (already under version 2) survived; the rotator looked again.
    assert world.read("raced") == b"new body written meanwhile"
    assert summary.counts[CURRENT] == 1


def test_vanished_and_unreadable_objects(world):
    world.put("gone", b"g")
    world.put("broken", b"b")
    record, body = world.stored("broken")
    meta = dict(record.meta.user_metadata)
    envelope = Envelope.decode(meta["encproxy"])
    moved = new_object(world.keys, "k1", BUCKET, "elsewhere", kind=Kind.SINGLE)[1]
    meta["encproxy"] = envelope.replace_wrapping("k1", moved.wrapped_key).encode()
    world.store.put_object(BUCKET, "broken", io.BytesIO(body), len(body),
                           ObjectMeta(user_metadata=meta))
    world.keys.rotate_key("k1")

    def deleting_app(environ, start_response):
        if environ["REQUEST_METHOD"] == "HEAD" and environ["PATH_INFO"].endswith("/gone"):
            world.store.delete_object(BUCKET, "gone")
        return world.app(environ, start_response)

    summary = Rotator(deleting_app, world.keys).run(BUCKET)
    assert summary.counts[VANISHED] == 1
    assert summary.counts[FAILED] == 1 and summary.failures[0][0] == "broken"
    assert "InternalError" in summary.failures[0][1]
    assert world.version("broken") == "1"  # left as it was


def test_resume_with_start_after_and_pages(world, monkeypatch):
    import encproxy.rotation as rotation
    monkeypatch.setattr(rotation, "PAGE", 3)
    for i in range(8):
        world.put(f"obj-{i}", b"x")
    world.keys.rotate_key("k1")
    summary = Rotator(world.app, world.keys).run(BUCKET, start_after="obj-4")
    assert summary.listed == 3 and summary.counts[REWRAPPED] == 3
    assert summary.resume_after == "obj-7"
    assert [world.version(f"obj-{i}") for i in range(8)] == ["1"] * 5 + ["2"] * 3


def test_unknown_target_key_and_internal_bucket(world):
    with pytest.raises(errors.KMSNotFound):
        Rotator(world.app, world.keys, to_key="missing")
    with pytest.raises(errors.InvalidArgument):
        Rotator(world.app, world.keys, internal_bucket=BUCKET).run(BUCKET)
    with pytest.raises(errors.NoSuchBucket):
        Rotator(world.app, world.keys).run("no-such-bucket")


def test_retire_refuses_the_current_version(world):
    world.keys.rotate_key("k1")
    with pytest.raises(KeyAdminError, match="current version"):
        world.keys.retire_version("k1", "2")
    with pytest.raises(KeyAdminError, match="no version"):
        world.keys.retire_version("k1", "7")
    info = world.keys.retire_version("k1", "1")
    assert info.versions == ("2",)
    assert (world.keys.directory / "retired" / "k1.v1.key").exists()


def test_progress_bar_on_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress("rotate", stream=tty, interval=0)
    bar.set_total(None)
    bar.advance(3)
    bar.set_total(10)
    bar.advance(2)
    bar.close()
    out = tty.getvalue()
    assert "rotate  3 objects" in out and "[#####" in out and " 5/10  50%" in out
    assert out.endswith("\n")
    pipe = io.StringIO()
    quiet = Progress("rotate", stream=pipe, interval=0)
    quiet.advance(5)
    quiet.close()
    assert pipe.getvalue() == ""


def test_a_copy_that_fails_with_200_and_an_error_body_is_a_failure(world):
    world.put("obj", b"data")
    world.keys.rotate_key("k1")

    def failing_copy(environ, start_response):
        if environ["REQUEST_METHOD"] == "PUT":
            start_response("200 OK", [("Content-Type", "application/xml")])
            return [b"<Error><Code>InternalError</Code><Message>x</Message></Error>"]
        return world.app(environ, start_response)

    summary = Rotator(failing_copy, world.keys).run(BUCKET)
    assert summary.failed == 1 and "InternalError" in summary.failures[0][1]
    assert dict(summary.in_use) == {("k1", "1"): 1}   # still under the old version
    assert world.version("obj") == "1" and world.read("obj") == b"data"


def test_a_retired_version_is_reported_as_still_in_use(world):
    world.put("old", b"data")
    world.keys.rotate_key("k1")
    world.keys.retire_version("k1", "1")
    summary = Rotator(world.app, world.keys).run(BUCKET)
    assert summary.failed == 1 and "KMS.NotFoundException" in summary.failures[0][1]
    assert dict(summary.in_use) == {("k1", "1"): 1}


def test_a_multipart_envelope_on_a_single_part_body_is_a_failure(world):
    world.put("mp", b"m", kind=Kind.MULTIPART)   # its backend ETag has no -N
    world.keys.rotate_key("k1")
    summary = Rotator(world.app, world.keys).run(BUCKET)
    assert summary.failed == 1 and "multipart backend ETag" in summary.failures[0][1]
    assert world.version("mp") == "1"
