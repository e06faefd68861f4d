"""The HTTP client that reaches an S3 backend: pooled, re-signing, streaming.

Layer 3 of DESIGN.md.  One :class:`S3BackendClient` per worker process is shared
by its threads: a urllib3 connection pool keeps thread-safe keep-alive connections
to the endpoint (``pool_size``).  Requests go to the pool's ``urlopen`` directly,
not through ``requests`` (neither a ``Session`` nor its ``HTTPAdapter``): that
skips per-call work a proxy does not need (a ``PreparedRequest``, a
``requests.Response`` with its cookie jar, redirects, environment proxies and
``.netrc``), and it leaves the path exactly as built (a ``Session`` would
normalise ``..`` segments, which are legal in S3 keys).  ``requests`` is still
where the CA bundle comes from, so that a backend is verified against the same
certificates as before.

Bodies:

* a streamed request body (:class:`BodySource`) is sent with an exact
  ``Content-Length`` in pieces of about 1 MiB, and signed
  ``UNSIGNED-PAYLOAD``; it is never sent ``Transfer-Encoding: chunked``.  If
  the source fails (the client went away, or its body failed verification),
  the connection to the backend is closed before the last byte, so the
  backend discards the incomplete object; the source's own error is raised.
  The request goes out only once the body's first piece is in hand
  (:class:`_Primed`): a source that fails before its first byte sends the backend
  nothing, because a backend may keep a request cut off before any of its body as
  an empty object (SeaweedFS 4.48 does);
* a small request body (``bytes``) is hashed and signed, and may be retried
  once on a connection that turned out to be stale;
* a response body is read in large pieces (:meth:`BackendResponse.pieces`);
  a connection that breaks before ``Content-Length`` bytes arrived raises
  :class:`BackendBroken` from the iterator, so that the WSGI server aborts
  the client's connection instead of finishing a short body.

A backend that cannot be reached, or that times out, is
:class:`encproxy.errors.ServiceUnavailable`.
"""
from __future__ import annotations

import copy
import hashlib
import http.client
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError

from encproxy import errors, sigv4
from encproxy.io_sizes import PIECE
from encproxy.s3backend import expect
from encproxy.s3backend.forwarding import HOP_BY_HOP, Endpoint
from encproxy.s3backend.response_head import BackendConnection, BackendTLSConnection

log = logging.getLogger("encproxy.s3backend")

USER_AGENT = "encproxy"
#: Seconds a request with ``Expect: 100-continue`` waits for the backend's first answer
#: before it sends its body anyway.
EXPECT_WAIT = 3.0
#: Methods safe to send again when a pooled connection was found dead before any answer.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class BackendConfig:
    """``[backend]`` options of ``type = s3``."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    addressing: str = "path"
    tls_verify: bool = True
    ca_bundle: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    pool_size: int = 32


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class BackendBroken(Exception):
    """The backend's connection failed while a response body was streaming.

    Deliberately not an S3Error: it happens after the response started, when
    nothing can be rendered any more; it propagates, and the server aborts the
    client's connection.
    """


class BodySource:
    """A request body of known length, streamed from ``read``: exactly ``length`` bytes.

    An iterable with a length, which is what urllib3 sends piece by piece
    under the ``Content-Length`` header encproxy sets.  The first failure of
    ``read`` (or a body that ends early) is kept in :attr:`error` and ends the
    upload; the backend never receives the last byte.
    """

    #: What the request is signed with as ``x-amz-content-sha256`` (a subclass that
    #: frames the body says how).
    payload_hash = sigv4.UNSIGNED_PAYLOAD

    def __init__(self, source: Readable, length: int, piece: int = PIECE) -> None:
        self.source = source
        self.length = length
        self.piece = piece
        self.sent = 0
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        read, piece = self.source.read, self.piece
        left = self.length - self.sent
        try:
            while left > 0:
                data = read(min(left, piece))
                if not data:
                    raise errors.IncompleteBody()
                if len(data) > left:
                    data = data[:left]
                left -= len(data)
                self.sent += len(data)
                yield data
        except BaseException as exc:
            if self.error is None and not isinstance(exc, GeneratorExit):
                self.error = exc
            raise


class _Primed:
    """A :class:`BodySource` whose first piece has been read: ``next`` raises the
    source's error if that read fails, before any request is sent."""

    def __init__(self, body: BodySource) -> None:
        self.body = body
        self._pieces = iter(body)
        self._first = next(self._pieces, b"")

    def __len__(self) -> int:
        return len(self.body)

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        yield from self._pieces


class BackendResponse:
    """A backend response whose body has not been read; close it when done."""

    def __init__(self, response: urllib3.BaseHTTPResponse, method: str,
                 own_connection: bool = False) -> None:
        """``own_connection``: the response's connection is not a pooled one: closed
        with the response, whatever was read."""
        self._raw = response
        self._own_connection = own_connection
        self.status: int = response.status
        self.method = method
        self._exhausted = False
        self.headers: list[tuple[str, str]] = [
            (name, value) for name, value in self._raw.headers.iteritems()
            if name.lower() not in HOP_BY_HOP]

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None and value.isdigit() else None

    def _nothing_to_read(self) -> bool:
        """The answer has no body (RFC 9112 §6.3): to a HEAD, a 204 or a 304, or a
        ``Content-Length: 0`` that no ``Transfer-Encoding`` overrides."""
        return self.method == "HEAD" or self.status in (204, 304) or (
            self.content_length == 0 and self.header("transfer-encoding") is None)

    def pieces(self, piece: int = PIECE, first: int | None = None) -> Iterator[bytes]:
        """The body in pieces of up to ``piece`` bytes (the first up to ``first``);
        BackendBroken if it ends early."""
        expected = None if self.method == "HEAD" else self.content_length
        read = self._raw.read
        received = 0
        size = first or piece
        try:
            while True:
                try:
                    data = read(size, decode_content=False)
                    size = piece
                except Exception as exc:
                    raise BackendBroken(f"backend connection failed after {received} bytes "
                                        f"of {expected}: {exc}") from exc
                if not data:
                    self._exhausted = True
                    break
                received += len(data)
                yield data
            if expected is not None and received != expected:
                raise BackendBroken(f"backend body ended after {received} of {expected} bytes")
        finally:
            self.close()

    def read_all(self, limit: int) -> bytes:
        """The whole (small) body; BackendBroken if it is larger than ``limit``."""
        chunks: list[bytes] = []
        size = 0
        for data in self.pieces():
            size += len(data)
            if size > limit:
                self.close()
                raise BackendBroken(f"backend response larger than {limit} bytes")
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        """Release the connection: back to the pool if the body was read, else closed."""
        if not self._exhausted and not self._own_connection and self._nothing_to_read():
            # A write's or a HEAD's caller closes without reading: reading an answer
            # known to be empty takes nothing from the socket, and keeps the connection
            # (a new one per write cost a TCP handshake and ~0.1 ms of CPU each side).
            try:
                self._exhausted = self._raw.read(PIECE, decode_content=False) == b""
            except Exception:  # noqa: BLE001 - closed below, as any unread answer
                self._exhausted = False
        if not self._exhausted or self._own_connection:
            self._raw.close()  # unread bytes would corrupt the next response on it
        self._raw.release_conn()


class S3BackendClient:
    """Sends S3 requests to one backend endpoint, signed with its credentials (or, from
    :meth:`unsigned`, not signed at all)."""

    def __init__(self, config: BackendConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.endpoint = Endpoint.from_url(config.endpoint, config.addressing)
        self.identity = sigv4.SigningIdentity(config.access_key, config.secret_key,
                                              config.region)
        self.clock = clock
        self.verify: bool | str = (config.ca_bundle or True) if config.tls_verify else False
        self.timeout = (config.connect_timeout, config.read_timeout)
        self._timeout = urllib3.Timeout(connect=config.connect_timeout,
                                        read=config.read_timeout)
        # One endpoint, one pool; a busier moment opens extra connections (not pooled).
        self.pool = _pool(self.endpoint.base_url, self.verify, config.pool_size, self._timeout)
        self.signs = True
        # Whether the backend decides who may write (an anonymous caller's twin, a client's
        # own backend user): a client's Expect: 100-continue then waits for its answer.
        self.backend_authorizes = False

    def unsigned(self) -> S3BackendClient:
        """A client of the same endpoint and connection pool that signs nothing: an
        anonymous caller's requests go with it, so that the backend's own ACLs decide
        them as they would decide the caller's requests made to it directly."""
        twin = copy.copy(self)
        twin.signs = False
        twin.backend_authorizes = True
        return twin

    def signing_as(self, access_key: str, secret_key: str) -> S3BackendClient:
        """A client of the same endpoint and connection pool that signs as another
        backend identity: a client credential mapped to its own backend user
        (``[backend_credentials]``), so that the backend's own policies and ACLs decide."""
        twin = copy.copy(self)
        twin.identity = sigv4.SigningIdentity(access_key, secret_key, self.identity.region)
        twin.backend_authorizes = True
        return twin

    def close(self) -> None:
        self.pool.close()

    def request(self, method: str, bucket: str | None, key: str | None, query: str = "",
                headers: Mapping[str, str] | None = None,
                body: bytes | BodySource | None = None, signed: bool = True,
                expect_continue: bool = False) -> BackendResponse:
        """Send one request and return the response once its headers arrived.

        ``query`` is already encoded for the wire
        (:func:`encproxy.s3backend.forwarding.forward_query`); ``headers`` are
        sent as given (lower-case names), plus Host, Content-Length and the
        signature (none when ``signed`` is false: a CORS preflight, which S3 never
        authenticates).  Raises ServiceUnavailable if the backend cannot be reached
        or times out, or the error of a failed :class:`BodySource`.  With
        ``expect_continue`` a streamed body is sent only once the backend answered
        "100 Continue" (:mod:`encproxy.s3backend.expect`).
        """
        path, host = self.endpoint.target(bucket, key)
        out = {name.lower(): value for name, value in (headers or {}).items()}
        out["host"] = host
        if isinstance(body, BodySource):
            out["content-length"] = str(body.length)
            payload_hash = body.payload_hash
        elif body is not None or method in ("PUT", "POST"):
            data = body or b""
            out["content-length"] = str(len(data))
            payload_hash = hashlib.sha256(data).hexdigest()
        else:
            payload_hash = sigv4.EMPTY_SHA256
        if signed and self.signs:
            out.update(sigv4.sign(method, path, query, out, self.identity, self.clock(),
                                  payload_hash))
        out["user-agent"] = USER_AGENT
        target = path + ("?" + query if query else "")
        if expect_continue and isinstance(body, BodySource):
            # The body is read only once the backend said "100 Continue"; not primed.
            return self._send_expecting(method, target, out, body)
        sent: bytes | BodySource | _Primed | None = body
        if isinstance(body, BodySource) and body.length:
            sent = _Primed(body)   # the source's error, if any, raised here
        retry = method in IDEMPOTENT and not isinstance(body, BodySource)
        started = time.monotonic()
        while True:
            try:
                # No retries, redirects or decoding here: a stale connection is retried
                # below, once; bodies pass through as the backend sent them.
                response = self.pool.urlopen(
                    method, target, body=sent, headers=out, retries=False, redirect=False,
                    assert_same_host=False, preload_content=False, decode_content=False,
                    timeout=self._timeout, chunked=False)
                return BackendResponse(response, method)
            except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
                if isinstance(body, BodySource) and body.error is not None:
                    raise body.error from None
                if retry and _stale_connection(exc):
                    retry = False
                    continue
                elapsed = time.monotonic() - started
                log.warning("backend %s %s%s failed after %.1f s: %s", method, host, path,
                            elapsed, _describe(exc))
                raise errors.ServiceUnavailable(
                    "The storage backend is not available; please retry.") from None
            except BaseException:
                if isinstance(body, BodySource) and body.error is not None:
                    raise body.error from None
                raise


    def _send_expecting(self, method: str, target: str, headers: Mapping[str, str],
                        body: BodySource) -> BackendResponse:
        """``request`` with ``Expect: 100-continue``, on a connection of its own."""
        conn = self.pool._new_conn()
        # urllib3's connections are http.client's (its BaseHTTPConnection is a Protocol).
        assert isinstance(conn, http.client.HTTPConnection)
        started = time.monotonic()
        try:
            conn.timeout = self.timeout[0]
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(self.timeout[1])
            raw, sent = expect.send_expecting(conn, method, target, headers, body,
                                              wait=EXPECT_WAIT)
        except BaseException as exc:
            conn.close()
            if body.error is not None:
                raise body.error from None
            if not isinstance(exc, (OSError, http.client.HTTPException)):
                raise
            log.warning("backend %s %s failed after %.1f s: %s", method, target,
                        time.monotonic() - started, _describe(exc))
            raise errors.ServiceUnavailable(
                "The storage backend is not available; please retry.") from None
        if not sent:
            log.info("backend %s %s: answered %d before the body", method, target, raw.status)
        wrapped = urllib3.HTTPResponse(
            body=raw, headers=urllib3.HTTPHeaderDict(raw.getheaders()), status=raw.status,
            version=raw.version, reason=raw.reason, preload_content=False,
            decode_content=False, original_response=raw, connection=conn)
        return BackendResponse(wrapped, method, own_connection=True)


def _pool(base_url: str, verify: bool | str, size: int,
          timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    """The endpoint's connection pool, verifying TLS as ``requests``' adapter did:
    against ``verify`` (a CA bundle file, or a directory of certificates), or
    ``requests``' own bundle (True); nothing verified when ``verify`` is False."""
    tls: dict[str, Any] = {}
    if base_url.startswith("https:"):
        if verify is False:
            tls = {"cert_reqs": "CERT_NONE"}
        else:
            bundle = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
            tls = {"cert_reqs": "CERT_REQUIRED",
                   **({"ca_cert_dir": bundle} if os.path.isdir(bundle) else
                      {"ca_certs": bundle})}
    pool = urllib3.connection_from_url(base_url, maxsize=size, block=False,
                                       retries=False, timeout=timeout, **tls)
    # Responses whose heads are read without the email package (response_head.py).
    pool.ConnectionCls = BackendTLSConnection if base_url.startswith("https:") \
        else BackendConnection
    return pool


def _stale_connection(exc: BaseException) -> bool:
    """A pooled keep-alive connection that the backend had closed: safe to try again.

    The backend dropped the connection before answering (``RemoteDisconnected``,
    a reset, a broken pipe); a refused or timed-out connection is not stale.
    """
    if isinstance(exc, (urllib3.exceptions.TimeoutError, urllib3.exceptions.SSLError,
                        TimeoutError)):
        return False
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if not isinstance(item, BaseException) or item in seen:
            continue
        if isinstance(item, (ConnectionResetError, BrokenPipeError)):
            return True
        seen.append(item)
        todo.extend([*item.args, item.__cause__, item.__context__])
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return "connect timeout"
    if isinstance(exc, ReadTimeoutError):
        return "read timeout"
    reason: Any = exc.args[0] if exc.args else exc
    return f"{type(exc).__name__}: {getattr(reason, 'reason', reason)}"
