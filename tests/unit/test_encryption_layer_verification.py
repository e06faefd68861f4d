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
from encproxy.format.layout import segment_size
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


def segments(body: bytes, sizes: list[int]) -> list[bytes]:
    out, offset = [], 0
    for size in sizes:
        out.append(body[offset:offset + segment_size(size)])
        offset += segment_size(size)
    out.append(body[offset:])
    return out


# -- item 2: the layout check ---------------------------------------------------------------------

CUTS = {
    "drop-3-5-keep-trailer": [0, 1, 5],
    "drop-trailer": [0, 1, 2, 3, 4],
    "keep-part-1-only": [0],
    "drop-part-2": [0, 2, 3, 4, 5],
    "part-2-twice": [0, 1, 1, 3, 4, 5],
}


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_truncated_object_releases_nothing(tmp_path: Path, cut: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    stack = build_stack(tmp_path)
    parts = {n: payload(PART, seed=n) for n in range(1, 6)}
    multipart_upload(stack.client, "t", parts, SSE_S3)
    record, body = stack.stored(BUCKET, "t")
    segs = segments(body, [PART] * 5)
    assert len(segs[5]) == 52
    store_parts(stack, "t", dict(record.meta.user_metadata), [segs[i] for i in CUTS[cut]])
    for fresh in (stack, stack.replica()):
        client = fresh.client
        fresh.recorder.requests.clear()
        assert head(client, "t").status_code == 500
        for rng in ("bytes=0-99", f"bytes={PART - 5}-{PART + 5}", "bytes=-10"):
            assert error_of(get(client, "t", {"range": rng})) == (500, "InternalError")
        assert error_of(get(client, "t", query="partNumber=1")) == (500, "InternalError")
        read = read_body(client, "t")
        assert read.status == 500 and not read.aborted
        # Nothing but headers was read: no chunk of the object left the backend for a read.
        ranged = [r for r in fresh.recorder.requests if "range" in r.headers]
        sizes = [int(b) - int(a) + 1 for a, b in
                 (r.headers["range"].removeprefix("bytes=").split("-") for r in ranged)]
        assert sizes and all(s == 52 for s in sizes), sizes
    assert "integrity failure on data/t" in caplog.text


def backend_reads(stack: Stack) -> list[str]:
    return [r.method + " " + r.headers.get("range", "-") for r in stack.recorder.requests]


def test_what_the_layout_check_costs(tmp_path: Path) -> None:
    """Cold: the first request, part 1's header, then every other header (in parallel),
    then the range.  Warm: the first request and the range, as before the check."""
    stack = build_stack(tmp_path)
    parts = {n: payload(PART, seed=n) for n in range(1, 5)}
    multipart_upload(stack.client, "t", parts, SSE_S3)
    data = b"".join(parts.values())
    reader = stack.replica()
    got = get(reader.client, "t", {"range": f"bytes={2 * PART + 1}-{2 * PART + 100}"})
    assert got.status_code == 206 and got.get_data() == data[2 * PART + 1:2 * PART + 101]
    cold = backend_reads(reader)
    headers = [r for r in cold if r.startswith("GET bytes=") and
               int(r.split("-")[1]) - int(r.split("=")[1].split("-")[0]) == 51]
    assert cold[0] == "HEAD -" and len(headers) == 5        # 4 parts and the trailer
    reader.recorder.requests.clear()
    got = get(reader.client, "t", {"range": f"bytes={PART + 7}-{PART + 70_000}"})
    assert got.get_data() == data[PART + 7:PART + 70_001]
    warm = backend_reads(reader)
    assert len(warm) == 2 and warm[0] == "HEAD -" and warm[1].startswith("GET bytes=")
    reader.recorder.requests.clear()
    assert int(head(reader.client, "t").headers["Content-Length"]) == len(data)
    assert backend_reads(reader) == ["HEAD -"]


# -- item 4: key ids from authenticated data ---------------------------------------------------

def forge_key_id(stack: Stack, key: str, key_id: str, multipart_sizes: list[int] | None) -> None:
    record, body = stack.stored(BUCKET, key)
    meta = dict(record.meta.user_metadata)
    envelope = Envelope.decode(meta[ENVELOPE_METADATA])
    meta[ENVELOPE_METADATA] = dataclasses.replace(envelope, key_id=key_id).encode()
    if multipart_sizes is None:
        stack.store.put_object(BUCKET, key, io.BytesIO(body), len(body),
                               ObjectMeta(user_metadata=meta))
    else:
        store_parts(stack, key, meta, [s for s in segments(body, multipart_sizes) if s])


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
@pytest.mark.parametrize("mode", [SSE_S3, SSE_KMS], ids=["sse-s3", "sse-kms"])
def test_a_forged_key_id_is_never_reported(tmp_path: Path, mode: Mode, multipart: bool,
                                           caplog: pytest.LogCaptureFixture) -> None:
    stack = build_stack(tmp_path)
    sizes = [PART, 1000]
    if multipart:
        multipart_upload(stack.client, "t", {1: payload(PART), 2: payload(1000)}, mode)
    else:
        assert put(stack.client, "t", payload(3000), mode.write).status_code == 200
    if mode is SSE_KMS:
        assert sse_headers(head(stack.client, "t"))[SSE + "-aws-kms-key-id"] == KMS_KEY_ID
    forge_key_id(stack, "t", "forged-key", sizes if multipart else None)
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
    assert "integrity failure on data/t: EnvelopeMissing" in caplog.text
    # Without require the same object is served as stored (ENCRYPTION.md): the choice is
    # the operator's, and documented.
    lax = stack.replica(require=False)
    assert get(lax.client, "t").get_data() == body
