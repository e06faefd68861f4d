"""The view of a request that S3 apps dispatch on.

``operation`` is decided once, by allowlist (``encproxy.s3.operations``): None
for a request that names nothing encproxy knows or carries a query parameter
its operation does not take.  Every layer passes None down untouched; the
backend apps refuse it with ``refusal()`` before acting on anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from encproxy import errors
from encproxy.s3 import operations
from encproxy.wsgi import environ as env


@dataclass
class S3Request:
    environ: dict[str, Any]
    method: str
    bucket: str | None
    key: str | None
    query: dict[str, str]
    headers: dict[str, str]         # lower-case names
    operation: str | None

    @classmethod
    def of(cls, environ: dict[str, Any]) -> S3Request:
        """The request ``environ`` describes, parsed once and kept in it.

        A layer that changes the request in ``environ`` (authentication installs the
        verified body and its decoded length) parses it again with ``from_environ``.
        Sub-requests are built as new environs, so a request kept in a copied
        environ is never taken for the copy's.
        """
        kept = environ.get(env.REQUEST)
        if isinstance(kept, S3Request) and kept.environ is environ:
            return kept
        return cls.from_environ(environ)

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> S3Request:
        """Parse ``environ`` (and keep the result in it for ``of``)."""
        query: dict[str, str] = {}
        for name, value in parse_qsl(environ.get(env.RAW_QUERY, ""), keep_blank_values=True):
            query.setdefault(name, value)
        headers = {}
        for name, value in environ.items():
            if name.startswith("HTTP_"):
                headers[name[5:].replace("_", "-").lower()] = value
        for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(name):
                headers[name.replace("_", "-").lower()] = environ[name]
        method = environ["REQUEST_METHOD"].upper()
        bucket, key = environ.get(env.BUCKET), environ.get(env.KEY)
        req = cls(environ, method, bucket, key, query, headers,
                  operations.classify(method, bucket, key, query, headers))
        environ[env.REQUEST] = req
        return req

    def refusal(self) -> errors.S3Error:
        """The error that refuses a request whose ``operation`` is None.

        MethodNotAllowed for a method S3 does not have; otherwise NotImplemented,
        naming the query parameter that made the request unknown, if there is one.
        """
        return operations.refusal(self.method, self.bucket, self.key, self.query, self.headers)

    @property
    def body(self) -> Any:
        return self.environ["wsgi.input"]

    def content_length(self, required: bool = True) -> int:
        text = self.environ.get("CONTENT_LENGTH")
        if not text:
            if required:
                raise errors.MissingContentLength()
            return 0
        try:
            value = int(text)
        except ValueError:
            raise errors.InvalidArgument("Content-Length is not a number",
                                         ArgumentName="Content-Length") from None
        if value < 0:
            raise errors.InvalidArgument("Content-Length is negative",
                                         ArgumentName="Content-Length")
        return value

    def read_small_body(self, limit: int) -> bytes:
        """Read a whole XML request body, refusing anything over ``limit`` bytes."""
        length = self.content_length(required=False)
        if length > limit:
            raise errors.MalformedXML()
        data = bytearray()
        while len(data) < length:
            piece = self.body.read(min(length - len(data), 1 << 20))
            if not piece:
                raise errors.IncompleteBody()
            data += piece
        return bytes(data)

    def int_param(self, name: str, default: int, lo: int, hi: int) -> int:
        if name not in self.query:
            return default
        text = self.query[name]
        try:
            value = int(text)
        except ValueError:
            raise errors.InvalidArgument(f"Provided {name} not an integer or within integer range",
                                         ArgumentName=name, ArgumentValue=text) from None
        if value < lo:
            raise errors.InvalidArgument(
                f"Argument {name} must be an integer between {lo} and {hi}",
                ArgumentName=name, ArgumentValue=text)
        return min(value, hi)
