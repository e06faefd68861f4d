"""Authentication as WSGI middleware: verify the request, then hand it on.

``AuthenticationMiddleware(app, secret_lookup, region, allow_sigv2=True,
anonymous=None)`` refuses badly signed requests with the S3 error AWS would send.
A request with no credentials at all (no ``Authorization``, no signature or
credential in its query, a POST form without any authentication field) is
refused with AccessDenied unless ``anonymous`` is given: then it is authorized by
calling ``anonymous(request)`` (the file store's ``AnonymousAccess``, which decides
by the stored ACLs, and raises AccessDenied), before any layer below acts; the
stack chooses it by backend and ``[auth] anonymous`` (``encproxy.wsgi.stack``).  A
request that carries any part of a signature is verified as before and fails
as before.
Requests are signed with SigV4 (``encproxy.sigv4``: header, presigned URL,
``aws-chunked`` bodies) or, unless ``allow_sigv2`` is off, SigV2
(``encproxy.sigv2``: ``Authorization: AWS ...`` and ``AWSAccessKeyId`` /
``Signature`` / ``Expires`` URLs; with it off they get S3's answer for a
SigV4-only region, InvalidRequest).  A SigV2 request has no payload hash: its
body is as sent, with ``Content-MD5`` and checksums verified when present.  The
headers a SigV2 presigned URL carries in its query (botocore puts ``x-amz-*``,
Content-Type and Content-MD5 there) become the request's headers and leave
the query.  POST Object (a browser upload) is authorized by its form's signed
policy (``encproxy.s3.post_policy``), read by ``post_form``.

Otherwise the middleware calls ``app`` with an environ in which:

* ``encproxy.access_key`` (``environ.ACCESS_KEY``) names the caller; for an
  allowed anonymous request it is unset and ``encproxy.anonymous``
  (``environ.ANONYMOUS``) is True;
* ``wsgi.input`` is a :class:`~encproxy.wsgi.auth.body.VerifiedBody` when the
  request has a body: ``aws-chunked`` framing removed, signatures and digests
  checked as it streams, the final bytes withheld until they all pass;
  ``wsgi.input_terminated`` is set, since that stream ends by itself;
* for ``aws-chunked`` bodies, ``CONTENT_LENGTH`` is the decoded length,
  ``aws-chunked`` is gone from ``HTTP_CONTENT_ENCODING`` (the header too, if
  nothing else was in it) and ``HTTP_TRANSFER_ENCODING`` is dropped;
* ``encproxy.body_checksums`` (``environ.BODY_CHECKSUMS``) is filled with
  ``{algorithm: base64}`` once the body has verified (at once for a request
  without a body), for the app to echo as ``x-amz-checksum-*``;
* for POST Object, ``encproxy.post_form`` (``environ.POST_FORM``) holds the
  form's fields, and ``wsgi.input`` is the file's data alone.

The inner app's response passes through untouched: only a failure *before*
delegating is rendered here, through the same error boundary every layer
uses.  The signature is checked against the request target exactly as the
client sent it (``environ.RAW_PATH`` / ``RAW_QUERY``, which the outer layer
sets), never against the decoded ``PATH_INFO``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from werkzeug.wrappers import Response

from encproxy import checksums, errors, sigv2, sigv4
from encproxy.awschunked import ChunkSigning
from encproxy.s3 import operations, post_policy
from encproxy.wsgi import environ as env
from encproxy.wsgi.auth.body import IO_SIZE, BodySpec, VerifiedBody, verify_empty_body
from encproxy.wsgi.auth.post_form import read_form
from encproxy.wsgi.request import S3Request
from encproxy.wsgi.responses import WSGIApp, s3_error_boundary
from encproxy.wsgi.subrequest import environ_key

Clock = Callable[[], datetime]
# Allows an anonymous request (returns) or raises the S3 error that refuses it.
AnonymousAuthorizer = Callable[[S3Request], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def wire_bytes(value: str) -> bytes:
    """Bytes of a WSGI string: WSGI carries request bytes as latin-1 text (PEP 3333).

    A string that cannot be latin-1 did not come from the wire that way, so
    it is taken as text and encoded as UTF-8.
    """
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def request_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The request headers with lower-case, dash-separated names, values as received.

    WSGI merges repeated headers with ``,`` and spells ``-`` as ``_``; a
    header sent with an underscore in its name cannot be told apart (gunicorn
    drops those by default).
    """
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            headers[key[5:].lower().replace("_", "-")] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def raw_target(environ: dict[str, Any]) -> tuple[bytes, bytes]:
    """The path and query exactly as sent, preferring what the outer layer recorded."""
    path = environ.get(env.RAW_PATH)
    query = environ.get(env.RAW_QUERY)
    if path is None:
        uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if uri:
            path, separator, uri_query = uri.partition("?")
            if query is None and separator:
                query = uri_query
        else:
            raw = wire_bytes(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
            path = quote(raw, safe="/~")
    if query is None:
        query = environ.get("QUERY_STRING", "")
    return wire_bytes(path or "/"), wire_bytes(query)


def virtual_bucket(environ: dict[str, Any], raw_path: bytes) -> str | None:
    """The bucket of a virtual-hosted request (its path does not name it), else None.

    The gateway resolved the bucket and key; a path-style path is ``/bucket``
    followed by the key, and a virtual-hosted one is the key alone.
    """
    bucket, key = environ.get(env.BUCKET), environ.get(env.KEY)
    if not bucket:
        return None
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    path_style = ("/" + bucket + "/" + key,) if key else ("/" + bucket, "/" + bucket + "/")
    return None if path in path_style else bucket


def hoisted_checksums(pairs: Iterable[tuple[str, str | None]],
                      headers: Mapping[str, str]) -> dict[str, str]:
    """The checksum headers a SigV4 presigned upload URL carries in its (signed) query.

    Presigners hoist ``x-amz-checksum-*`` and ``x-amz-sdk-checksum-algorithm`` into
    the URL (the Node SDK v3 does by default, with the CRC32 of the body it had when
    presigning).  S3 holds the body to them as to the same headers: they become
    headers, verified as the body streams (BadDigest when they do not match).  Sent
    both ways, with different values, they are refused.
    """
    carried: dict[str, str] = {}
    for name, value in pairs:
        lname = name.lower()
        if lname.startswith("x-amz-checksum-") or lname == checksums.SDK_ALGORITHM_HEADER:
            value = value or ""
            if lname in carried or headers.get(lname, value) != value:
                raise errors.InvalidRequest(
                    f"The {lname} query parameter conflicts with another value of it.")
            carried[lname] = value
    return carried


def without_parameters(raw_query: str, names: Iterable[str]) -> str:
    """``raw_query`` without the parameters named (any case), the rest as sent."""
    drop = {name.lower() for name in names}
    kept = [part for part in raw_query.split("&") if part and unquote_to_bytes(
        part.partition("=")[0]).decode("utf-8", "replace").lower() not in drop]
    return "&".join(kept)


def strip_aws_chunked(environ: dict[str, Any]) -> None:
    """Remove the ``aws-chunked`` coding: the inner app sees the decoded body."""
    codings = [c.strip() for c in environ.get("HTTP_CONTENT_ENCODING", "").split(",")]
    kept = [c for c in codings if c and c.lower() != "aws-chunked"]
    if kept:
        environ["HTTP_CONTENT_ENCODING"] = ",".join(kept)
    else:
        environ.pop("HTTP_CONTENT_ENCODING", None)


class AuthenticationMiddleware:
    """Verify the signature (SigV4, SigV2, a POST policy) and the body's claims, then
    call ``app``.

    ``secret_lookup(access_key)`` returns the secret or None; it is called
    per request, so credentials can be reloaded behind it.  ``region`` is
    the region clients must sign for (None accepts any).  ``clock`` returns
    the current time as an aware datetime; tests freeze it.  ``allow_sigv2``
    (``[auth] allow_sigv2``) accepts Signature Version 2.  ``anonymous`` authorizes
    requests without credentials (None: refused, AccessDenied).
    """

    def __init__(self, app: WSGIApp, secret_lookup: sigv4.SecretLookup,
                 region: str | None = sigv4.DEFAULT_REGION, clock: Clock = _utc_now,
                 io_size: int = IO_SIZE, allow_sigv2: bool = True,
                 anonymous: AnonymousAuthorizer | None = None) -> None:
        self.app = app
        self.secret_lookup = secret_lookup
        self.region = region
        self.clock = clock
        self.io_size = io_size
        self.allow_sigv2 = allow_sigv2
        self.anonymous = anonymous

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        try:
            self.authenticate(environ)
        except Exception as exc:  # rendered (or logged) by the shared boundary
            failure = exc

            def fail(_environ: dict[str, Any]) -> Response:
                raise failure

            return s3_error_boundary(fail)(environ, start_response)
        return self.app(environ, start_response)

    def authenticate(self, environ: dict[str, Any]) -> str | None:
        """Verify the request and prepare ``environ`` for the inner app; return the
        caller's access key (None: an allowed anonymous request); raise S3Error."""
        headers = request_headers(environ)
        path, query = raw_target(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        names = [name for name, _ in sigv2.parse_query(query)]
        access_key: str | None
        # Whether the request as S3Request parses it (query, headers, length) changed;
        # a new body alone does not count: S3Request reads wsgi.input from the environ.
        changed = False
        if method == "POST" and environ.get(env.KEY) is None \
                and S3Request.of(environ).operation == "PostObject":
            access_key = self._authenticate_post(environ, headers, names)
            changed = True
        elif self.anonymous is not None and without_credentials(headers, names):
            # No signature: the body is as sent, its Content-MD5 and checksums verified.
            changed = self._install_body(environ, headers, sigv2_payload(headers), None)
            access_key = None
        elif sigv2.requested(headers, names):
            if not self.allow_sigv2:
                raise sigv4.unsupported_authorization(sigv2.SCHEME)
            verified2 = sigv2.verify(method, path, query, headers, self.secret_lookup,
                                     self.clock(), bucket=virtual_bucket(environ, path))
            changed = self._carry_query_headers(environ, headers, verified2.query_headers)
            changed = self._install_body(environ, headers, sigv2_payload(headers),
                                         None) or changed
            access_key = verified2.access_key
        else:
            verified = sigv4.verify(method, path, query, headers, self.secret_lookup,
                                    self.clock(), region=self.region)
            if method in ("PUT", "POST") and "X-Amz-Signature" in names:
                changed = self._carry_query_headers(
                    environ, headers, hoisted_checksums(sigv2.parse_query(query), headers))
            changed = self._install_body(environ, headers, verified.payload_hash,
                                         verified) or changed
            access_key = verified.access_key
        if changed:
            environ.pop(env.REQUEST, None)  # parsed again by the next S3Request.of
        if access_key is None:
            assert self.anonymous is not None
            environ.pop(env.ACCESS_KEY, None)
            self.anonymous(S3Request.of(environ))
            environ[env.ANONYMOUS] = True
            return None
        environ[env.ACCESS_KEY] = access_key
        environ.pop(env.ANONYMOUS, None)
        return access_key

    def _authenticate_post(self, environ: dict[str, Any], headers: Mapping[str, str],
                           names: Iterable[str]) -> str | None:
        """POST Object: the form's policy signs the upload; read it, check it all.
        None: a form without any authentication, when anonymous requests may be allowed."""
        # A PostObject query holds nothing but authentication (and the SDKs' x-id).
        if "authorization" in headers or any(name != "x-id" for name in names):
            raise errors.InvalidArgument(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified", ArgumentName="Authorization")
        head = read_form(environ, self.io_size)
        fields = head.by_name
        bucket = environ[env.BUCKET]
        key = post_policy.object_key(fields, head.file.filename)
        if self.anonymous is not None and post_policy.is_anonymous(fields):
            return None
        access_key = post_policy.authenticate(fields, self.secret_lookup, region=self.region,
                                              allow_sigv2=self.allow_sigv2)
        policy = post_policy.decode_policy(fields["policy"])
        post_policy.check_policy(policy, fields, bucket, key, head.file_length, self.clock())
        return access_key

    @staticmethod
    def _carry_query_headers(environ: dict[str, Any], headers: dict[str, str],
                             carried: Mapping[str, str]) -> bool:
        """Headers a presigned query carried (any a SigV2 URL carries; a SigV4 upload
        URL's checksums) become headers, and leave the query.  True if any did."""
        if not carried:
            return False
        for name, value in carried.items():
            environ[environ_key(name)] = value
            headers[name] = value
        for key in (env.RAW_QUERY, "QUERY_STRING"):
            if key in environ:
                environ[key] = without_parameters(environ[key], carried)
        return True

    def _install_body(self, environ: dict[str, Any], headers: dict[str, str],
                      payload_hash: str, signing: ChunkSigning | None) -> bool:
        """Put the verified body in ``environ``; True if its headers changed with it
        (an ``aws-chunked`` body: its decoded length, its codings)."""
        chunked_transfer = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if S3Request.of(environ).operation == "CompleteMultipartUpload":
            # CompleteMultipartUpload's x-amz-checksum-<algorithm> is the whole object's
            # checksum (AWS), which the layer that completes checks: not of this XML body.
            whole = set(checksums.checksum_header_names(headers))
            headers = {k: v for k, v in headers.items() if k not in whole}
        spec = BodySpec.from_headers(headers, payload_hash,
                                     method=environ.get("REQUEST_METHOD", "GET"),
                                     chunked_transfer=chunked_transfer)
        # One dict, filled in place: inner layers may work on copies of the environ.
        sums: dict[str, str] = environ.setdefault(env.BODY_CHECKSUMS, {})
        if not spec.has_body:
            sums.update(verify_empty_body(spec) or {})
            return False

        def record(checks: dict[str, str]) -> None:
            sums.update(checks)

        environ["wsgi.input"] = VerifiedBody(environ["wsgi.input"].read, spec, signing=signing,
                                             io_size=self.io_size, on_verified=record)
        environ["wsgi.input_terminated"] = True
        if spec.aws_chunked:
            environ["CONTENT_LENGTH"] = str(spec.decoded_length)
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            strip_aws_chunked(environ)
            return True
        return False


def without_credentials(headers: Mapping[str, str], names: Iterable[str]) -> bool:
    """Whether a request carries no credentials at all: no ``Authorization`` header and
    none of a presigned URL's parameters (SigV4's or SigV2's), not even one.  Anything
    partial is not anonymous: it is verified, and fails, as a signed request."""
    return "authorization" not in headers and not any(
        name in operations.SIGV4_QUERY_AUTH or name in operations.SIGV2_QUERY_AUTH
        for name in names)


def sigv2_payload(headers: Mapping[str, str]) -> str:
    """The body claim of a SigV2 request: none (the body is as sent) unless it sends
    ``x-amz-content-sha256``, which is then verified; signed chunks need SigV4."""
    claim = headers.get("x-amz-content-sha256")
    if claim is None:
        return sigv4.UNSIGNED_PAYLOAD
    payload = sigv4.classify_payload_hash(claim.strip())
    if payload in (sigv4.STREAMING_SIGNED, sigv4.STREAMING_SIGNED_TRAILER):
        raise errors.InvalidRequest(f"{payload} requires Signature Version 4 "
                                    f"({sigv4.ALGORITHM}).")
    return payload
