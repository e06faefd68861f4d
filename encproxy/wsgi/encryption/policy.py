"""The server-wide part of the encryption decision (``[encryption]``, ``[keys] default_key``).

Values are checked where a policy is made: a policy that does not name a mode
encproxy knows would otherwise fall through ``sse.decide_write`` to "store as
sent", which is plaintext at rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from encproxy.s3 import sse

DefaultMode = Literal["none", "AES256", "aws:kms"]
DEFAULT_MODES: tuple[str, ...] = get_args(DefaultMode)
assert DEFAULT_MODES == (sse.MODE_NONE, sse.MODE_SSE_S3, sse.MODE_SSE_KMS)


@dataclass(frozen=True)
class EncryptionPolicy:
    default: DefaultMode = "none"
    require: bool = False
    allow_insecure_sse_c: bool = False
    default_key: str = "default"

    def __post_init__(self) -> None:
        if self.default not in DEFAULT_MODES:
            raise ValueError(f"unknown default encryption {self.default!r}: "
                             f"expected one of {', '.join(DEFAULT_MODES)}")
        for name in ("require", "allow_insecure_sse_c"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool")
        if not isinstance(self.default_key, str) or not self.default_key:
            raise ValueError("default_key must name a key")
