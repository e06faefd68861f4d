"""encproxy.access: parsing ``[access]`` lines, what each operation needs, the decision;
and the settings that carry them and keep secrets (encproxy.settings)."""
from __future__ import annotations

from pathlib import Path

import pytest

from encproxy import access
from encproxy.access import ClientRules, Grant, Refusal, decide, parse_grants, permission_for
from encproxy.errors import ConfigError
from encproxy.s3 import operations
from encproxy.settings import load

BASE = """
[credentials]
main = main-secret-0123456789
team-a = team-a-secret-0123456789
"""


def every_operation() -> set[str]:
    """Every name encproxy's operation tables can give a request."""
    names = {"ListBuckets", "GetBucketLocation", "ListMultipartUploads", "ListObjectVersions",
             "ListObjectsV2", "ListObjects", "DeleteObjects", "PostObject", "CreateBucket",
             "HeadBucket", "DeleteBucket", "GetObjectAttributes", "UpdateObjectEncryption",
             "UploadPartCopy", "UploadPart", "CopyObject", "PutObject", "ListParts",
             "GetObject", "HeadObject", "AbortMultipartUpload", "DeleteObject",
             "CreateMultipartUpload", "CompleteMultipartUpload"}
    names |= set(operations.OBJECT_BODY_SUBRESOURCES.values())
    for verb in ("Get", "Put", "Delete"):
        names |= {verb + n for n in operations.BUCKET_CONFIG_SUBRESOURCES.values()}
        names |= {verb + n for n in operations.OBJECT_CONFIG_SUBRESOURCES.values()}
    return names


def test_every_operation_but_list_buckets_needs_a_permission():
    """Fail closed: an operation no permission covers would be refused to every
    restricted client, so each one S3 has is classified."""
    missing = {op for op in every_operation() - {"ListBuckets"} if permission_for(op) is None}
    assert missing == set()


@pytest.mark.parametrize(("operation", "permission"), [
    ("GetObject", "read"), ("HeadObject", "read"), ("ListObjectsV2", "read"),
    ("ListParts", "read"), ("GetObjectTagging", "read"), ("GetBucketVersioning", "read"),
    ("PutObject", "write"), ("PostObject", "write"), ("CompleteMultipartUpload", "write"),
    ("AbortMultipartUpload", "write"), ("PutObjectAcl", "write"), ("CopyObject", "write"),
    ("DeleteObject", "delete"), ("DeleteObjects", "delete"),
    ("CreateBucket", "admin"), ("DeleteBucket", "admin"), ("PutBucketPolicy", "admin"),
    ("DeleteBucketTagging", "admin"), ("GetBucketEncryption", "admin"),
    ("PutBucketEncryption", "admin"), ("UpdateObjectEncryption", "keys")])
def test_permission_for(operation, permission):
    assert permission_for(operation) == permission


def test_grants_and_the_decision():
    rules = ClientRules(parse_grants("team-a-*: all; shared: read ; arch?ve: read,write"))
    assert rules.grants[0] == Grant("team-a-*", frozenset(access.PERMISSIONS))
    assert decide(rules, "PutObject", "team-a-x") is None
    assert decide(rules, "PutObject", "shared") == Refusal("write", "shared")
    assert decide(rules, "GetObject", "shared") is None
    assert decide(rules, "PutObject", "archive") is None
    assert decide(rules, "PutObject", "archives") == Refusal("write", "archives")
    assert decide(rules, "ListBuckets", None) is None
    # a copy needs read on its source's bucket as well
    assert decide(rules, "CopyObject", "team-a-x", "shared") is None
    assert decide(rules, "CopyObject", "team-a-x", "other") == Refusal("read", "other")
    assert decide(rules, "UploadPartCopy", "shared", "team-a-x") == Refusal("write", "shared")
    assert decide(rules, "MadeUpOperation", "team-a-x") == Refusal("permission", "team-a-x")
    assert rules.sees("shared") and not rules.sees("other")
    assert str(Refusal("write", "b")) == "no write on b"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "no grants"),
    ("team-a-*", "expected BUCKET-PATTERN: PERMISSIONS"),
    ("Team-A: read", "is not a bucket name pattern"),
    ("b/c: read", "is not a bucket name pattern"),
    ("team-a-*:", "no permissions"),
    ("team-a-*: read, own", "unknown permission 'own'"),
])
def test_grant_syntax_errors(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_grants(text)


def test_settings_carry_the_rules_and_kms_keys():
    settings = load(BASE + "[access]\nteam-a = a-*: read write\n"
                    "[access_kms_keys]\nteam-a = key-1, key-2\n", Path("."), environ={})
    rules = settings.access["team-a"]
    assert rules.allows("write", "a-1") and not rules.allows("delete", "a-1")
    assert rules.kms_keys == frozenset({"key-1", "key-2"})
    assert "main" not in settings.access
    assert access.unrestricted(settings.credentials, settings.access) == ["main"]


def test_rules_from_the_environment():
    settings = load(BASE, Path("."), environ={"ENCPROXY_ACCESS_team-a": "a-*: read",
                                              "ENCPROXY_ACCESS_KMS_KEYS_team-a": "key-1"})
    assert settings.access["team-a"].allows("read", "a-b")
    assert settings.access["team-a"].kms_keys == frozenset({"key-1"})


@pytest.mark.parametrize(("extra", "where", "problem"), [
    ("[access]\nnobody = a: read\n", ("access", "nobody"), "names no access key"),
    ("[access]\nteam-a = a: fly\n", ("access", "team-a"), "unknown permission"),
    ("[access_kms_keys]\nteam-a = k\n", ("access_kms_keys", "team-a"),
     "names no client of [access]"),
    ("[access]\nteam-a = a: read\n[access_kms_keys]\nteam-a = ,\n",
     ("access_kms_keys", "team-a"), "no key ids"),
])
def test_check_config_names_the_bad_line(extra, where, problem):
    with pytest.raises(ConfigError) as exc:
        load(BASE + extra, Path("."), environ={})
    assert (exc.value.section, exc.value.option) == where
    assert problem in exc.value.problem


def test_a_warning_when_several_clients_have_full_access(caplog):
    from encproxy.server import warn_shared_full_access
    shared = load(BASE, Path("."), environ={})
    with caplog.at_level("WARNING", logger="encproxy.server"):
        warn_shared_full_access(shared)
    assert "2 client credentials have full access to every bucket (main, team-a)" in caplog.text
    caplog.clear()
    ruled = load(BASE + "[access]\nteam-a = a-*: read\n", Path("."), environ={})
    with caplog.at_level("WARNING", logger="encproxy.server"):
        warn_shared_full_access(ruled)
    assert caplog.text == ""


# -- secrets: file:PATH values, and no world-readable file that holds one -----------------

def test_secrets_from_files(tmp_path):
    from encproxy.settings import load_file
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "team-a").write_text("team-a-secret-from-a-file\n")
    (tmp_path / "backend-secret").write_text("backend-secret-from-a-file")
    config = tmp_path / "encproxy.ini"
    config.write_text("[credentials]\nteam-a = file:secrets/team-a\n"
                      "[backend]\ntype = s3\nendpoint = http://127.0.0.1:1\naccess_key = AK\n"
                      f"secret_key = file:{tmp_path / 'backend-secret'}\n")
    config.chmod(0o644)   # no secret in it: others may read it
    settings = load_file(config, environ={})
    assert settings.credentials == {"team-a": "team-a-secret-from-a-file"}
    assert settings.get("backend", "secret_key") == "backend-secret-from-a-file"
    assert settings.inline_secrets == ()


def test_a_missing_secret_file_names_its_line_not_a_secret(tmp_path):
    from encproxy.settings import load_file
    config = tmp_path / "encproxy.ini"
    config.write_text("[credentials]\nteam-a = file:nowhere\n")
    with pytest.raises(ConfigError) as exc:
        load_file(config, environ={})
    assert (exc.value.section, exc.value.option) == ("credentials", "team-a")
    assert "cannot read its secret file nowhere" in exc.value.problem
    (tmp_path / "binary").write_bytes(b"\xff\xfe secret")
    config.write_text("[credentials]\nteam-a = file:binary\n")
    with pytest.raises(ConfigError, match="its secret file binary is not UTF-8 text"):
        load_file(config, environ={})
    with pytest.raises(ConfigError, match="read from a config file only"):
        load("[credentials]\nteam-a = file:x\n", Path("."), environ={})


def test_a_world_readable_file_with_secrets_is_refused(tmp_path):
    from encproxy.settings import load_file
    config = tmp_path / "encproxy.ini"
    config.write_text(BASE)
    config.chmod(0o644)
    with pytest.raises(ConfigError) as exc:
        load_file(config, environ={})
    assert exc.value.section == "file"
    assert "[credentials] main, [credentials] team-a" in exc.value.problem
    assert f"chmod o-rwx {config}" in exc.value.problem
    assert "secret-0123456789" not in str(exc.value)
    config.chmod(0o640)    # the group may read it (a deployment's service group)
    assert load_file(config, environ={}).credentials["main"] == "main-secret-0123456789"
    # The same secret from the environment: nothing in the file to protect.
    config.write_text("[credentials]\n")
    config.chmod(0o644)
    assert load_file(config, environ={"ENCPROXY_CREDENTIALS_x1y": "secret-from-env"}
                     ).credentials == {"x1y": "secret-from-env"}
