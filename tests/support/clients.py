"""Real S3 clients pointed at a test server."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

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


def failure(call: Callable[[], Any]) -> tuple[int, str]:
    """The status and S3 error code ``call`` failed with; (200, "") when it succeeded."""
    try:
        call()
    except ClientError as exc:
        return (exc.response["ResponseMetadata"]["HTTPStatusCode"],
                exc.response["Error"]["Code"])
    return (200, "")
