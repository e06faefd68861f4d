"""The encproxy command line, and the aws CLI against the real server."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.server import ACCESS_KEY, SECRET_KEY, create_keys, start_server, write_config

ENCPROXY = str(Path(sys.executable).with_name("encproxy"))
AWS = str(Path(sys.executable).with_name("aws"))


def aws(server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return subprocess.run([AWS, "--endpoint-url", server.endpoint, *args], env=env, text=True,
                          capture_output=True, check=check, timeout=300)


def test_aws_cli_round_trip_50mib(server, s3, bucket, tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(50 * 1024 * 1024)
    src.write_bytes(data)
    aws(server, "s3", "cp", str(src), f"s3://{bucket}/dir/big.bin")
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].endswith('-7"')  # the CLI's 8 MiB parts: multipart up
    dst = tmp_path / "back.bin"
    aws(server, "s3", "cp", f"s3://{bucket}/dir/big.bin", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()
    listing = aws(server, "s3", "ls", f"s3://{bucket}/dir/").stdout
    assert "big.bin" in listing and str(len(data)) in listing
    aws(server, "s3", "rm", f"s3://{bucket}/dir/big.bin")


def test_aws_cli_sync_and_s3api(server, bucket, tmp_path):
    tree = tmp_path / "tree"
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name * 100)
        # sync compares mtimes with LastModified; stores that report whole seconds (moto,
        # AWS itself) would see a file written in the same second as newer than its copy.
        os.utime(tree / name, (time.time() - 10, time.time() - 10))
    aws(server, "s3", "sync", str(tree), f"s3://{bucket}/t")
    again = aws(server, "s3", "sync", str(tree), f"s3://{bucket}/t")
    assert again.stdout.strip() == ""  # nothing to transfer the second time
    out = aws(server, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "t/",
              "--query", "Contents[].Key", "--output", "text").stdout.split()
    assert sorted(out) == ["t/a.txt", "t/sub/b.txt", "t/sub/deeper/c.txt"]
    aws(server, "s3", "rm", "--recursive", f"s3://{bucket}/t")


def test_check_config_ok(tmp_path):
    config = write_config(tmp_path, 8999)
    create_keys(config)
    result = subprocess.run([ENCPROXY, "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "config ok" in result.stdout


@pytest.mark.parametrize("extra,env,section,option", [
    pytest.param("", {"ENCPROXY_SERVER_WORKERS": "many"}, "server", "workers", id="bad-value"),
    pytest.param("", {"ENCPROXY_SERVER_LISTEN": "no-port"}, "server", "listen", id="bad-listen"),
    pytest.param("", {"ENCPROXY_BACKEND_TYPE": "tape"}, "backend", "type", id="bad-type"),
    pytest.param("colour = red\n", {}, "backend", "colour", id="unknown-option"),
])
def test_bad_config_exits_2_with_one_line(tmp_path, extra, env, section, option):
    config = write_config(tmp_path, 8999, extra)
    for command in ("check-config", "serve"):
        result = subprocess.run([ENCPROXY, command, "--config", str(config)],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env})
        assert result.returncode == 2, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert f"[{section}] {option}" in lines[0]


def test_missing_config_file(tmp_path):
    result = subprocess.run([ENCPROXY, "check-config"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "ENCPROXY_CONFIG"})
    assert result.returncode == 2
    assert "conf/encproxy.ini" in result.stderr


def test_config_from_environment_variable(tmp_path, s3):
    server = start_server(tmp_path / "envsrv",
                          env={"ENCPROXY_CREDENTIALS_EnvKey": "env-secret-123456"})
    try:
        from support.clients import make_client
        import boto3
        from botocore.config import Config
        client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id="EnvKey",
                              aws_secret_access_key="env-secret-123456",
                              config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket="env-bucket")
        assert [b["Name"] for b in make_client(server.endpoint).list_buckets()["Buckets"]] == [
            "env-bucket"]
    finally:
        server.stop()
