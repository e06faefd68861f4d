"""The backend attacker against encproxy's own records (issue 14, items 1, 3 and 5).

Someone who can read and write the backend (internal bucket included) rewrites the
records encproxy keeps there: upload records, bucket encryption configurations and
held copies.  Every attack must be detected, no plaintext may reach the backend, no
wrong bytes may reach a client, and the server log must say which record failed and
why.  Two encproxy processes share one backend: A creates, B serves (B has cached
nothing), as in the issue.  Runs on the file store, moto and Ceph RGW.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.backends import Stored
from support.clients import make_client
from support.server import start_server

INTERNAL = "encproxy-internal"
MARKER = b"ATTACKER-RECORDS-MARKER-51c2"
MiB = 1024 * 1024
KMS = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "test-key"}}]}
OTHER_KMS = {"Rules": [{"ApplyServerSideEncryptionByDefault": {
    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "other-key"}}]}

def marked(size: int) -> bytes:
    unit = MARKER + os.urandom(64)
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture(scope="module")
def pair(backend, tmp_path_factory):
    """Two strict encproxy processes (require = true, default AES256) over one backend."""
    env = {**backend.server_env(), "ENCPROXY_ENCRYPTION_REQUIRE": "true",
           "ENCPROXY_ENCRYPTION_DEFAULT": "AES256"}
    base = tmp_path_factory.mktemp("attacker")
    a = start_server(base / "a", env=env)
    shared = {**env, "ENCPROXY_BACKEND_ROOT": str(a.root),
              "ENCPROXY_KEYS_KEYRING": str(base / "a" / "keys")}
    b = start_server(base / "b", env=shared)
    yield a, b, Stored(backend, a.root)
    b.stop()
    a.stop()


def new_bucket(s3) -> str:
    name = "atk-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=name)
    return name


def internal_names(stored: Stored, prefix: str) -> list[str]:
    if stored._client is None:   # noqa: SLF001 - the test support's own handle
        from encproxy.filestore.store import FileStore
        return [r.key for r in FileStore(stored.root).list_objects(INTERNAL, prefix=prefix,
                                                                   max_keys=1000).contents]
    listed = stored._client.list_objects_v2(Bucket=INTERNAL, Prefix=prefix)  # noqa: SLF001
    return [o["Key"] for o in listed.get("Contents", [])]


def delete_internal(stored: Stored, name: str) -> None:
    if stored._client is None:   # noqa: SLF001
        from encproxy.filestore.store import FileStore
        FileStore(stored.root).delete_object(INTERNAL, name)
    else:
        stored._client.delete_object(Bucket=INTERNAL, Key=name)  # noqa: SLF001


def upload_dir(bucket: str, key: str, upload_id: str) -> str:
    digest = hashlib.sha256()
    for part in (bucket, key, upload_id):
        raw = part.encode()
        digest.update(len(raw).to_bytes(4, "big") + raw)
    return "uploads/" + digest.hexdigest() + "/"


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def logged(server, *needles: str) -> bool:
    text = server.log_text()
    return all(n in text for n in needles)


# -- item 1: an upload record rewritten to "not encrypted" ----------------------------------

def forged_upload_record(attack: str, stored: Stored, bucket: str, key: str,
                         upload_id: str, other_upload: str) -> bytes:
    if attack == "v1-json-none":   # the attack, verbatim
        return (b'{"v": 1, "bucket": "%s", "key": "%s", "mode": "none", "envelope": null, '
                b'"key_id": null, "context": null}' % (bucket.encode(), key.encode()))
    if attack == "forged-mac-none":
        body = (b'{"bucket": "%s", "context": null, "envelope": null, "key_id": null, '
                b'"key": "%s", "mode": "none", "v": 2}' % (bucket.encode(), key.encode()))
        return b"encproxy-record/2 " + b"00" * 32 + b"\n" + body
    if attack == "edited-body":
        real = stored.read(INTERNAL, upload_dir(bucket, key, upload_id) + "record").body
        head, _, body = real.partition(b"\n")
        return head + b"\n" + body.replace(b'"AES256"', b'"none"')
    assert attack == "replayed-from-another-upload"
    return stored.read(INTERNAL, upload_dir(bucket, key, other_upload) + "record").body


@pytest.mark.parametrize("attack", ["v1-json-none", "forged-mac-none", "edited-body",
                                    "replayed-from-another-upload"])
def test_rewritten_upload_record_never_lets_plaintext_in(pair, attack):
    a, b, stored = pair
    sa, sb = make_client(a.endpoint), make_client(b.endpoint)
    bucket, key = new_bucket(sa), "obj-" + attack
    upload_id = sa.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    other = sa.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    where = upload_dir(bucket, key, upload_id) + "record"
    stored.write(INTERNAL, where, forged_upload_record(attack, stored, bucket, key, upload_id,
                                                       other), {})
    detected = True
    for number, size in ((1, 5 * MiB), (2, 1000)):
        with pytest.raises(ClientError) as caught:
            sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                           Body=marked(size))
        detected &= error_code(caught.value) == "InternalError"
    with pytest.raises(ClientError):   # nor may B complete it
        sb.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                 "ETag": '"x"'}]})
    assert MARKER not in stored.all_bytes()
    assert logged(b, "integrity failure on upload record", where, "Record")
    for uid in (upload_id, other):   # Abort needs no record: nothing is left behind
        sa.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
    assert internal_names(stored, upload_dir(bucket, key, upload_id)) == []
    assert detected


# -- item 3: a bucket configuration redirected to another key --------------------------------

@pytest.mark.parametrize("attack", ["edited-key-id", "v1-json-other-key", "moved-from-bucket",
                                    "forged-mac"])
def test_edited_configuration_never_redirects_writes(pair, attack):
    a, b, stored = pair
    sa, sb = make_client(a.endpoint), make_client(b.endpoint)
    bucket, decoy = new_bucket(sa), new_bucket(sa)
    sa.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=KMS)
    sa.put_bucket_encryption(Bucket=decoy, ServerSideEncryptionConfiguration=OTHER_KMS)
    where = "bucket-encryption/" + bucket
    real = stored.read(INTERNAL, where).body
    forged = {
        "edited-key-id": real.replace(b'"test-key"', b'"other-key"'),
        "v1-json-other-key": b'{"algorithm": "aws:kms", "bucket_key_enabled": false, '
                             b'"kms_key_id": "other-key", "version": 1}',
        "moved-from-bucket": stored.read(INTERNAL, "bucket-encryption/" + decoy).body,
        "forged-mac": b"encproxy-record/2 " + b"ab" * 32 + b'\n{"algorithm": "aws:kms", '
                      b'"bucket_key_enabled": false, "kms_key_id": "other-key", "version": 1}',
    }[attack]
    assert forged != real
    stored.write(INTERNAL, where, forged, {})
    with pytest.raises(ClientError) as caught:
        sb.put_object(Bucket=bucket, Key="k", Body=marked(10_000))
    detected = error_code(caught.value) == "InternalError"
    with pytest.raises(ClientError):
        sb.get_bucket_encryption(Bucket=bucket)
    with pytest.raises(ClientError) as missing:
        sb.head_object(Bucket=bucket, Key="k")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")
    assert MARKER not in stored.all_bytes()
    assert logged(b, "integrity failure on bucket-encryption record", where, "Record")
    # The documented remedy: PutBucketEncryption again.
    sa.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=KMS)
    put = sb.put_object(Bucket=bucket, Key="k", Body=marked(10_000))
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", "test-key")
    assert detected


def test_deleted_configuration_falls_back_to_the_server_default(pair):
    a, b, stored = pair
    sa, sb = make_client(a.endpoint), make_client(b.endpoint)
    bucket = new_bucket(sa)
    sa.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=KMS)
    delete_internal(stored, "bucket-encryption/" + bucket)
    put = sb.put_object(Bucket=bucket, Key="k", Body=marked(1000))
    assert put["ServerSideEncryption"] == "AES256"   # [encryption] default, still encrypted
    assert MARKER not in stored.all_bytes()


# -- item 5: the held copy of a gapped upload's last part ------------------------------------

def flip_in_place(stored: Stored, name: str) -> None:
    """Flip one byte of a stored object; on the file store keep its record (and ETag)."""
    if stored._client is None:   # noqa: SLF001
        from encproxy.filestore.store import FileStore
        path = Path(FileStore(stored.root).object_file(INTERNAL, name))
        raw = bytearray(path.read_bytes())
        raw[-20] ^= 0x01   # inside the body, which ends the file
        path.write_bytes(bytes(raw))
        return
    body = bytearray(stored.read(INTERNAL, name).body)
    body[-20] ^= 0x01
    stored.write(INTERNAL, name, bytes(body), {})


def held_names(stored: Stored, bucket: str, key: str, upload_id: str) -> list[str]:
    return [n for n in internal_names(stored, upload_dir(bucket, key, upload_id))
            if "/held/" in n]


def tamper_held(attack: str, stored: Stored, bucket: str, key: str, upload_id: str,
                first_attempt: str | None) -> str:
    """Tamper as ``attack`` says; the held copy (or reference) attacked."""
    names = held_names(stored, bucket, key, upload_id)
    current = [n for n in names if n != first_attempt]
    assert len(current) == 1, names
    target = current[0]
    if attack == "flip-a-byte":
        flip_in_place(stored, target)
    elif attack == "other-attempt":
        assert first_attempt is not None
        stored.write(INTERNAL, target, stored.read(INTERNAL, first_attempt).body, {})
    elif attack == "deleted":
        delete_internal(stored, target)
    else:
        assert attack == "reference-edited"
        refs = [n for n in internal_names(stored, upload_dir(bucket, key, upload_id))
                if "/held-ref/" in n]
        for ref in refs:
            body = stored.read(INTERNAL, ref).body
            stored.write(INTERNAL, ref, body.replace(b'"part": 9', b'"part": 7'), {})
        target = refs[0]
    return target


@pytest.mark.parametrize("attack", ["flip-a-byte", "other-attempt", "reference-edited",
                                    "deleted"])
def test_tampered_held_copy_fails_complete_never_loses_the_upload(pair, attack):
    a, b, stored = pair
    sa, sb = make_client(a.endpoint), make_client(b.endpoint)
    bucket, key = new_bucket(sa), "gapped-" + attack
    upload_id = sa.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    first = marked(5 * MiB)
    e2 = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                        Body=first)["ETag"]
    first_attempt = None
    if attack == "other-attempt":
        sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=9,
                       Body=marked(100))
        first_attempt = held_names(stored, bucket, key, upload_id)[0]
    last = marked(100)
    e9 = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=9,
                        Body=last)["ETag"]
    target = tamper_held(attack, stored, bucket, key, upload_id, first_attempt)
    parts = {"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 9, "ETag": e9}]}
    with pytest.raises(ClientError) as caught:
        sb.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload=parts)
    detected = error_code(caught.value) == "InternalError"
    with pytest.raises(ClientError):
        sb.head_object(Bucket=bucket, Key=key)   # no object, readable or not
    if attack == "reference-edited":
        assert logged(b, "integrity failure on held record", target,
                      "RecordAuthenticationFailed")
    else:   # the segment check, or the backend's If-Match / absence before it
        line = next(x for x in b.log_text().splitlines() if target in x)
        assert "integrity failure on" in line or "missing, changed (If-Match)" in line, line
    # Not lost: the client learns it failed, re-sends the last part, and completes.
    e9 = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=9,
                        Body=last)["ETag"]
    parts["Parts"][1]["ETag"] = e9
    sa.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload=parts)
    assert sb.get_object(Bucket=bucket, Key=key)["Body"].read() == first + last
    assert MARKER not in stored.all_bytes()
    assert internal_names(stored, upload_dir(bucket, key, upload_id)) == []
    assert detected


# The file store only: there the attacker can rewrite a stored file and keep its ETag, so
# the segment check itself must fire (an S3 backend recomputes the ETag, and the If-Match
# of the test above catches the flip first).
@pytest.mark.parametrize("backend", ["file"], indirect=True)
def test_a_held_copy_flipped_in_place_is_named_with_its_reason(pair, backend):
    """On the file store the attacker can keep the ETag: the segment check itself fires."""
    a, b, stored = pair
    sb = make_client(b.endpoint)
    bucket, key = new_bucket(sb), "gapped-in-place"
    upload_id = sb.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    e2 = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                        Body=marked(5 * MiB))["ETag"]
    e9 = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=9,
                        Body=marked(100))["ETag"]
    target = held_names(stored, bucket, key, upload_id)[0]
    flip_in_place(stored, target)
    with pytest.raises(ClientError):
        sb.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 9, "ETag": e9}]})
    assert logged(b, "integrity failure on " + INTERNAL + "/" + target,
                  "ChunkAuthenticationFailed")
    sb.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


# -- within one server, every worker sees a configuration change at once --------------------

def test_every_worker_sees_put_bucket_encryption_for_the_next_request(backend, tmp_path):
    env = {**backend.server_env(), "ENCPROXY_ENCRYPTION_CONFIG_CACHE_SECONDS": "30"}
    server = start_server(tmp_path / "srv", env=env)
    try:
        s3 = make_client(server.endpoint)
        bucket = new_bucket(s3)

        def put(key: str) -> str:
            client = make_client(server.endpoint)   # a connection of its own
            return client.put_object(Bucket=bucket, Key=key, Body=marked(2000)).get(
                "ServerSideEncryption", "")
        with ThreadPoolExecutor(8) as pool:   # every worker caches "no configuration"
            assert set(pool.map(put, [f"warm-{i}" for i in range(32)])) == {""}
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(put, [f"after-{i}" for i in range(48)]))
        assert answers == ["AES256"] * 48
        stored = Stored(backend, server.root)
        for i in range(48):
            assert "encproxy" in stored.read(bucket, f"after-{i}").user_metadata
            assert MARKER not in stored.read(bucket, f"after-{i}").body
        log = server.log_text()
        assert "Booting worker" not in log or log.count("Booting worker") >= 2
    finally:
        server.stop()


# -- issue 15: part records (which backend part a client's part ETag is) ----------------------

def part_record_names(stored: Stored, bucket: str, key: str, upload_id: str) -> list[str]:
    return internal_names(stored, upload_dir(bucket, key, upload_id) + "part/")


@pytest.mark.parametrize("attack", ["moved-to-another-etag", "edited-backend-etag",
                                    "from-another-upload", "deleted"])
def test_a_rewritten_part_record_fails_complete_closed(pair, attack, backend_client, quirks):
    """Part 1 uploaded as A, then as B: the backend holds B.  Each upload of a part has a
    record named by the part, a MAC of its plaintext MD5 and the digest of the backend ETag
    it got (FORMAT.md §7.8).  An attacker makes a record say that A's bytes made B's part
    (B's record moved there, A's edited, another upload's), so that a Complete naming A's
    ETag would take B's bytes; or deletes B's record.  Complete must fail (500 for a record
    that does not verify, InvalidPart for one that is gone), write nothing, and leave the
    upload to complete once the client re-sends."""
    a, b, stored = pair
    sa, sb = make_client(a.endpoint), make_client(b.endpoint)
    bucket, key = new_bucket(sa), "parts-" + attack
    upload_id = sa.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    body_a, body_b, last = marked(5 * MiB), marked(5 * MiB + 1), marked(10)
    e_a = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                         Body=body_a)["ETag"]
    (record_a,) = part_record_names(stored, bucket, key, upload_id)
    e_b = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                         Body=body_b)["ETag"]
    e_last = sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
                            Body=last)["ETag"]
    (record_b,) = [n for n in part_record_names(stored, bucket, key, upload_id)
                   if "/part/00001/" in n and n != record_a]
    if backend_client is not None:   # the premise: B replaced A, the backend has one part 1
        listed = backend_client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
        numbers = [p["PartNumber"] for p in listed["Parts"]]
        assert 1 in numbers
        if quirks("parts-kept-per-upload"):   # the test ends here: leave no upload records
            sa.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        with quirks.breaks("parts-kept-per-upload"):
            assert len(numbers) == len(set(numbers))
    # Where a record saying "A's bytes made the backend part B" would be.
    forged_at = record_a.rsplit("/", 1)[0] + "/" + record_b.rsplit("/", 1)[1]
    named, expected = e_a, "InternalError"
    if attack == "moved-to-another-etag":
        stored.write(INTERNAL, forged_at, stored.read(INTERNAL, record_b).body, {})
    elif attack == "edited-backend-etag":
        real = stored.read(INTERNAL, record_a).body
        backend_b = stored.read(INTERNAL, record_b).body.split(b'"etag": "')[1].split(b'"')[0]
        backend_a = real.split(b'"etag": "')[1].split(b'"')[0]
        stored.write(INTERNAL, forged_at, real.replace(backend_a, backend_b), {})
    elif attack == "from-another-upload":
        other = sa.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        sb.upload_part(Bucket=bucket, Key=key, UploadId=other, PartNumber=1, Body=body_a)
        (theirs,) = part_record_names(stored, bucket, key, other)
        stored.write(INTERNAL, forged_at, stored.read(INTERNAL, theirs).body, {})
        sa.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=other)
    else:
        delete_internal(stored, record_b)
        named, expected = e_b, "InvalidPart"   # encproxy cannot vouch for B's bytes any more
    parts = {"Parts": [{"PartNumber": 1, "ETag": named}, {"PartNumber": 2, "ETag": e_last}]}
    with pytest.raises(ClientError) as caught:
        sb.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                     MultipartUpload=parts)
    assert error_code(caught.value) == expected
    with pytest.raises(ClientError):
        sb.head_object(Bucket=bucket, Key=key)   # nothing was completed
    if expected == "InternalError":
        assert logged(b, "integrity failure on part record", forged_at)
    if attack == "deleted":   # the client re-sends the part
        assert sb.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
                              Body=body_b)["ETag"] == e_b
    parts["Parts"][0]["ETag"] = e_b
    done = sa.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload=parts)
    assert sb.get_object(Bucket=bucket, Key=key)["Body"].read() == body_b + last
    assert done["ETag"].endswith('-2"')
    assert internal_names(stored, upload_dir(bucket, key, upload_id)) == []
