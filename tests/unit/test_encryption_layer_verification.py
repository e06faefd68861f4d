"""The encryption layer in-process, with the backend as an attacker (issue 14, items 2, 4, 6).

* the layout check (FORMAT.md §7.7): a multipart object cut short in the backend is
  refused by HEAD, ranged, ``partNumber`` and whole reads before a byte or a size is
  released, and what the check costs in backend requests (cold: part 1's header, then
  the others in parallel; warm: nothing more than before);
* reported key ids come from the authenticated wrapped key, never the envelope's field;
* with ``require = true`` an object without an envelope is an integrity failure.
"""
from __future__ import annotations

import dataclasses
import io
import logging
from pathlib import Path

import pytest
from encryption_testkit import (
    BUCKET,
    ENCRYPTED_MODES,
    ENVELOPE_METADATA,
    KMS_KEY_ID,
    PART,
    SSE_KMS,
    SSE_S3,
    Mode,
    Stack,
    build_stack,
    error_of,
    get,
    head,
    multipart_upload,
    payload,
    put,
    read_body,
    sse_headers,
)

from encproxy.filestore.records import ObjectMeta
from encproxy.format.constants import Protection
from encproxy.format.envelope import Envelope
from encproxy.format.errors import EnvelopeAuthenticationFailed
from encproxy.keys.blob import Algorithm, ProviderKind, WrappedKey
from encproxy.wsgi.encryption.integrity import authenticated_key_id

ENCRYPTED = [pytest.param(m, id=m.name) for m in ENCRYPTED_MODES]
SSE = "x-amz-server-side-encryption"


def store_parts(stack: Stack, key: str, meta: dict[str, str], parts: list[bytes]) -> None:
    """Write ``parts`` as the backend parts of ``key``, bypassing encproxy."""
    store = stack.store
    uid = store.create_upload(BUCKET, key, ObjectMeta(user_metadata=meta))
    done = [(n, store.upload_part(BUCKET, key, uid, n, io.BytesIO(body), len(body)).etag)
            for n, body in enumerate(parts, start=1)]
    store.complete_upload(BUCKET, key, uid, done)


# -- item 2: the layout check ---------------------------------------------------------------------

CUTS = {
    "drop-3-5-keep-trailer": [0, 1, 5],
    "drop-trailer": [0, 1, 2, 3, 4],
    "keep-part-1-only": [0],
    "drop-part-2": [0, 2, 3, 4, 5],
    "part-2-twice": [0, 1, 1, 3, 4, 5],
}


SHAPES = [pytest.param(True, id="indexed"), pytest.param(False, id="minimal-trailer")]


@pytest.mark.parametrize("indexed", SHAPES)
@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_truncated_object_releases_nothing(tmp_path: Path, cut: str, indexed: bool,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """Both shapes encproxy writes: an indexed trailer (every completion now) and the
    minimal header-only trailer (encproxy before; still read)."""
    stack = build_stack(tmp_path)
    if not indexed:
        stack.minimal_trailers()
    parts = {n: payload(PART, seed=n) for n in range(1, 6)}
    multipart_upload(stack.client, "t", parts, SSE_S3)
    record, _ = stack.stored(BUCKET, "t")
    segs = stack.backend_parts(BUCKET, "t")
    assert len(segs) == 6 and (len(segs[5]) > 52) == indexed
    store_parts(stack, "t", dict(record.meta.user_metadata), [segs[i] for i in CUTS[cut]])
    altered, _ = stack.stored(BUCKET, "t")
    if indexed and cut == "part-2-twice":
        moved_part_is_found_when_read(stack, b"".join(parts.values()))
        return
    for fresh in (stack, stack.replica()):
        client = fresh.client
        fresh.recorder.requests.clear()
        assert head(client, "t").status_code == 500
        for rng in ("bytes=0-99", f"bytes={PART - 5}-{PART + 5}", "bytes=-10"):
            assert error_of(get(client, "t", {"range": rng})) == (500, "InternalError")
        assert error_of(get(client, "t", query="partNumber=1")) == (500, "InternalError")
        read = read_body(client, "t")
        assert read.status == 500 and not read.aborted
        # Nothing but segment headers and the index at the tail was read: no chunk of the
        # object was fetched for a read.
        ranged = [r.headers["range"].removeprefix("bytes=").split("-")
                  for r in fresh.recorder.requests if "range" in r.headers]
        assert ranged
        for first, last in ((int(a), int(b)) for a, b in ranged):
            is_tail = indexed and last == altered.size - 1
            assert last - first + 1 == 52 or is_tail, (first, last, altered.size)
    assert "integrity failure on data/t" in caplog.text


def moved_part_is_found_when_read(stack: Stack, data: bytes) -> None:
    """Part 2 stored again in part 3's place, same size: the object's size, part count and
    end are the index's and true, so HEAD answers them.  The moved part is found by the
    read that reaches it, as a flipped byte would be (FORMAT.md §7.7): a range over it
    fails before its first byte, a whole read aborts there; every byte released is the
    object's own, at its own offset."""
    for fresh in (stack, stack.replica()):
        client = fresh.client
        assert int(head(client, "t").headers["Content-Length"]) == len(data)
        for first, last in ((0, 99), (PART - 5, PART + 5), (len(data) - 10, len(data) - 1)):
            got = get(client, "t", {"range": f"bytes={first}-{last}"})
            assert got.status_code == 206 and got.get_data() == data[first:last + 1]
        over = get(client, "t", {"range": f"bytes={2 * PART + 5}-{2 * PART + 10}"})
        assert error_of(over) == (500, "InternalError")
        read = read_body(client, "t")
        assert read.status == 200 and read.aborted
        assert len(read.body) <= 2 * PART and data.startswith(read.body)


def backend_reads(stack: Stack) -> list[str]:
    return [r.method + " " + r.headers.get("range", "-") for r in stack.recorder.requests]


def header_reads(reads: list[str]) -> list[str]:
    return [r for r in reads if r.startswith("GET bytes=") and
            int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) == 51]


@pytest.mark.parametrize("indexed", SHAPES)
def test_what_the_layout_check_costs(tmp_path: Path, indexed: bool) -> None:
    """Cold: the first request, then the index at the tail (indexed), or part 1's header
    and every other header in parallel (minimal trailer); then the range.  Warm: the
    first request and the range, as before the check.  The writer needs no check."""
    stack = build_stack(tmp_path)
    if not indexed:
        stack.minimal_trailers()
    parts = {n: payload(PART, seed=n) for n in range(1, 5)}
    multipart_upload(stack.client, "t", parts, SSE_S3)
    data = b"".join(parts.values())
    stored, _ = stack.stored(BUCKET, "t")
    stack.recorder.requests.clear()
    got = get(stack.client, "t", {"range": f"bytes={PART + 7}-{PART + 70_000}"})
    assert got.get_data() == data[PART + 7:PART + 70_001]
    assert len(backend_reads(stack)) == 2      # the completing middleware knows the layout
    reader = stack.replica()
    got = get(reader.client, "t", {"range": f"bytes={2 * PART + 1}-{2 * PART + 100}"})
    assert got.status_code == 206 and got.get_data() == data[2 * PART + 1:2 * PART + 101]
    cold = backend_reads(reader)
    assert cold[0] == "HEAD -"
    if indexed:
        assert cold[1].startswith("GET bytes=") and \
            cold[1].endswith(f"-{stored.size - 1}") and not header_reads(cold[1:2])
        assert len(cold) == 3        # HEAD, the index, the range
    else:
        assert len(header_reads(cold)) == 5        # 4 parts and the trailer
    reader.recorder.requests.clear()
    got = get(reader.client, "t", {"range": f"bytes={PART + 7}-{PART + 70_000}"})
    assert got.get_data() == data[PART + 7:PART + 70_001]
    warm = backend_reads(reader)
    assert len(warm) == 2 and warm[0] == "HEAD -" and warm[1].startswith("GET bytes=")
    reader.recorder.requests.clear()
    assert int(head(reader.client, "t").headers["Content-Length"]) == len(data)
    assert backend_reads(reader) == ["HEAD -"]


# -- item 4: key ids from authenticated data ---------------------------------------------------

def forge_key_id(stack: Stack, key: str, key_id: str) -> None:
    record, body = stack.stored(BUCKET, key)
    meta = dict(record.meta.user_metadata)
    envelope = Envelope.decode(meta[ENVELOPE_METADATA])
    meta[ENVELOPE_METADATA] = dataclasses.replace(envelope, key_id=key_id).encode()
    if record.part_sizes is None:
        stack.store.put_object(BUCKET, key, io.BytesIO(body), len(body),
                               ObjectMeta(user_metadata=meta))
    else:
        store_parts(stack, key, meta, stack.backend_parts(BUCKET, key))


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
@pytest.mark.parametrize("mode", [SSE_S3, SSE_KMS], ids=["sse-s3", "sse-kms"])
def test_a_forged_key_id_is_never_reported(tmp_path: Path, mode: Mode, multipart: bool,
                                           caplog: pytest.LogCaptureFixture) -> None:
    stack = build_stack(tmp_path)
    if multipart:
        multipart_upload(stack.client, "t", {1: payload(PART), 2: payload(1000)}, mode)
    else:
        assert put(stack.client, "t", payload(3000), mode.write).status_code == 200
    if mode is SSE_KMS:
        assert sse_headers(head(stack.client, "t"))[SSE + "-aws-kms-key-id"] == KMS_KEY_ID
    forge_key_id(stack, "t", "forged-key")
    for fresh in (stack, stack.replica()):
        resp = head(fresh.client, "t")
        assert resp.status_code == 500 and "forged-key" not in str(resp.headers)
        for resp in (get(fresh.client, "t"), get(fresh.client, "t", {"range": "bytes=0-9"}),
                     get(fresh.client, "t", query="attributes",
                         headers={"x-amz-object-attributes": "ObjectSize"})):
            assert error_of(resp) == (500, "InternalError")
            assert b"forged-key" not in resp.get_data()
            assert "forged-key" not in str(resp.headers)
    assert "EnvelopeAuthenticationFailed" in caplog.text


def envelope_with(key_id: str, blob_key_id: str, provider: ProviderKind) -> Envelope:
    blob = WrappedKey(provider, Algorithm.KMS_CIPHERTEXT if provider is ProviderKind.AWSKMS
                      else Algorithm.AES256_GCM, blob_key_id, "" if provider is
                      ProviderKind.AWSKMS else "1", b"" if provider is ProviderKind.AWSKMS
                      else bytes(12), bytes(48)).to_bytes()
    from encproxy.format.constants import Kind, Suite
    return Envelope(Kind.SINGLE, Suite.AES256_GCM, bytes(16), bytes(32), key_id, blob,
                    protection=Protection.SSE_KMS)


ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(("envelope_id", "blob_id", "provider", "expected"), [
    ("test-key", "test-key", ProviderKind.LOCAL, "test-key"),
    ("other-key", "test-key", ProviderKind.LOCAL, None),
    ("alias/test-key", "test-key", ProviderKind.LOCAL, None),
    (ARN, ARN, ProviderKind.AWSKMS, ARN),
    ("1234abcd-12ab-34cd-56ef-1234567890ab", ARN, ProviderKind.AWSKMS,
     "1234abcd-12ab-34cd-56ef-1234567890ab"),
    ("alias/anything", ARN, ProviderKind.AWSKMS, ARN),       # unverifiable: the blob's id
    ("ffffffff-12ab-34cd-56ef-1234567890ab", ARN, ProviderKind.AWSKMS, None),
    (ARN.replace("1111", "9999"), ARN, ProviderKind.AWSKMS, None),
])
def test_authenticated_key_id(envelope_id: str, blob_id: str, provider: ProviderKind,
                              expected: str | None) -> None:
    envelope = envelope_with(envelope_id, blob_id, provider)
    if expected is None:
        with pytest.raises(EnvelopeAuthenticationFailed):
            authenticated_key_id(envelope)
    else:
        assert authenticated_key_id(envelope) == expected


# -- item 6: an envelope stripped --------------------------------------------------------------

@pytest.mark.parametrize("mode", ENCRYPTED)
def test_a_stripped_envelope_fails_closed_under_require(tmp_path: Path, mode: Mode,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    stack = build_stack(tmp_path, require=True)
    data = payload(5000)
    assert put(stack.client, "t", data, mode.write).status_code == 200
    record, body = stack.stored(BUCKET, "t")
    meta = {k: v for k, v in record.meta.user_metadata.items()
            if not k.startswith(ENVELOPE_METADATA)}
    stack.store.put_object(BUCKET, "t", io.BytesIO(body), len(body),
                           ObjectMeta(user_metadata=meta))
    with caplog.at_level(logging.ERROR, "encproxy.encryption"):
        assert head(stack.client, "t").status_code == 500
        for resp in (get(stack.client, "t"), get(stack.client, "t", {"range": "bytes=0-9"}),
                     get(stack.client, "t", query="attributes",
                         headers={"x-amz-object-attributes": "ObjectSize"})):
            assert error_of(resp) == (500, "InternalError")
            assert resp.get_data()[:5] != body[:5]
        copy = stack.client.put("/data/copy", headers={
            "x-amz-copy-source": "/data/t", "x-amz-server-side-encryption": "AES256"})
        assert error_of(copy) == (500, "InternalError")
        # Nor does it decide a conditional write: If-Match with the backend's own ETag.
        backend_etag = '"' + stack.stored(BUCKET, "t")[0].etag.strip('"') + '"'
        cond = put(stack.client, "t", b"overwrite", {**mode.write, "If-Match": backend_etag})
        assert error_of(cond) == (500, "InternalError")
        assert stack.stored(BUCKET, "t")[1] == body
    assert "integrity failure on data/t: EnvelopeMissing" in caplog.text
    # Without require the same object is served as stored (ENCRYPTION.md): the choice is
    # the operator's, and documented.
    lax = stack.replica(require=False)
    assert get(lax.client, "t").get_data() == body
