"""The operations layers in-process: readiness checks, metrics access, the request
layer's body limit and access line, log redaction, and the new [server] options."""
from __future__ import annotations

import io
import ipaddress
import json
import logging
import threading
import time
from pathlib import Path

import pytest

from encproxy import errors, metrics
from encproxy.errors import ConfigError
from encproxy.keys.provider import KeyInfo
from encproxy.logjson import AccessFormatter, JsonFormatter, TextFormatter, redact
from encproxy.settings import load
from encproxy.wsgi import environ as env
from encproxy.wsgi.edge.access_log import CountingInput, RequestLog
from encproxy.wsgi.edge.operations import OperationsLayer, ReadinessChecks


def call(app, path="/", method="GET", headers=None, body=b"", remote="127.0.0.1",
         host="127.0.0.1:8080"):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path.partition("?")[0],
               "RAW_URI": path, "QUERY_STRING": path.partition("?")[2],
               "REMOTE_ADDR": remote, "HTTP_HOST": host, "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)) if body else "", **(headers or {})}
    captured = {}

    def start_response(status, response_headers, exc_info=None):
        captured["status"] = int(status[:3])
        captured["headers"] = dict(response_headers)

    result = app(environ, start_response)
    out = b"".join(result)
    getattr(result, "close", lambda: None)()
    return captured["status"], captured["headers"], out, environ


def ok_backend(environ, start_response):
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]


class Keys:
    def __init__(self, fail=None, delay=0.0):
        self.fail, self.delay, self.calls = fail, delay, 0

    def describe(self, key_id):
        self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise self.fail
        return KeyInfo(key_id, "1", ("1",))


def layer(keys=None, backend=ok_backend, timeout=1.0, **kw):
    checks = ReadinessChecks(backend, keys or Keys(), "default", "encproxy-internal", timeout)
    inner = lambda e, s: (s("200 OK", []), [b"s3"])[1]  # noqa: E731
    return OperationsLayer(inner, ["localhost"], checks, **kw)


def test_ready_when_backend_answers_below_500():
    status, _, body, _ = call(layer(), "/_encproxy/ready")
    assert status == 200 and json.loads(body)["checks"] == {"backend": "ok", "keys": "ok"}


def test_not_ready_when_the_key_provider_is_down():
    status, _, body, _ = call(layer(Keys(fail=errors.KeyProviderUnavailable())),
                              "/_encproxy/ready")
    assert status == 503
    assert json.loads(body)["checks"] == {"backend": "ok", "keys": "ServiceUnavailable"}


def test_a_hanging_check_times_out_and_is_not_started_twice():
    keys = Keys(delay=1.0)
    app = layer(keys, timeout=0.2)
    started = time.monotonic()
    status, _, body, _ = call(app, "/_encproxy/ready")
    assert status == 503 and json.loads(body)["checks"]["keys"] == "timeout"
    assert time.monotonic() - started < 0.9
    call(app, "/_encproxy/ready")  # the first check is still running: waited on, not redone
    assert keys.calls == 1


def test_backend_5xx_is_not_ready():
    def broken(environ, start_response):
        start_response("503 Service Unavailable", [])
        return [b""]
    status, _, body, _ = call(layer(backend=broken), "/_encproxy/ready")
    assert status == 503 and json.loads(body)["checks"]["backend"] == "HTTP 503"


def test_metrics_allow_and_token():
    allow = (ipaddress.ip_network("10.0.0.0/8"),)
    app = layer(metrics_allow=allow)
    assert call(app, "/_encproxy/metrics", remote="127.0.0.1")[0] == 403
    status, headers, body, _ = call(app, "/_encproxy/metrics", remote="10.1.2.3")
    assert status == 200 and b"encproxy_requests_total" in body
    app = layer(metrics_token="t0ken")
    assert call(app, "/_encproxy/metrics")[0] == 401
    assert call(app, "/_encproxy/metrics", headers={"HTTP_AUTHORIZATION": "Basic t0ken"})[0] \
        == 401
    assert call(app, "/_encproxy/metrics", headers={"HTTP_AUTHORIZATION": "Bearer t0ken"})[0] \
        == 200


def test_reserved_paths_only_path_style():
    app = layer()
    assert call(app, "/_encproxy/health")[2] == b'{"status":"ok"}\n'
    assert call(app, "/_encproxy/health?x=1")[0] == 200
    # Virtual-hosted: an object key of bucket "photos", for the S3 stack.
    assert call(app, "/_encproxy/health", host="photos.localhost:8080")[2] == b"s3"
    assert call(app, "/_encproxyish/x")[2] == b"s3"


# -- the request layer --------------------------------------------------------------------

def echo_app(environ, start_response):
    data = environ["wsgi.input"].read()
    environ[env.BUCKET], environ[env.KEY] = "bucket-a", "some/key"
    environ[env.REQUEST_ID] = "RID1"
    start_response("200 OK", [])
    return [data, b"!"]


def test_request_layer_counts_and_logs_one_line(caplog):
    app = RequestLog(echo_app)
    with caplog.at_level(logging.INFO, logger="encproxy.access"):
        status, _, out, _ = call(app, "/bucket-a/some/key?X-Amz-Signature=abc&X-Amz-Credential=k",
                                 method="PUT", body=b"12345")
    assert status == 200 and out == b"12345!"
    (record,) = [r for r in caplog.records if r.name == "encproxy.access"]
    line = json.loads(AccessFormatter().format(record))
    assert line["bytes_in"] == 5 and line["bytes_out"] == 6 and line["status"] == 200
    assert line["operation"] == "PutObject" and line["auth"] == "presigned"
    assert line["request_id"] == "RID1" and line["complete"] is True
    assert "abc" not in json.dumps(line) and "X-Amz" not in json.dumps(line)


def test_declared_body_over_the_limit_is_refused_before_reading():
    read = []

    def app(environ, start_response):  # never reached
        read.append(True)
        return echo_app(environ, start_response)

    status, _, out, _ = call(RequestLog(app, max_body=4), "/b/k", method="PUT", body=b"12345")
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in out and not read


def test_undeclared_body_is_cut_at_the_limit():
    counting = CountingInput(io.BytesIO(b"x" * 10), limit=4)
    assert counting.read(3) == b"xxx"
    with pytest.raises(errors.EntityTooLarge):
        counting.read(3)


def test_metered_provider_counts_calls_and_errors():
    from encproxy.keys.provider import KeyProvider

    class P(Keys):
        kind = type("K", (), {"config_name": "fake"})()
        name = "fake"

    inner = P(fail=errors.KMSNotFound("x"))
    metered = metrics.MeteredProvider(inner)  # type: ignore[arg-type]
    before = _sample("encproxy_key_provider_errors_total",
                     {"provider": "fake", "call": "describe", "error": "KMS.NotFoundException"})
    with pytest.raises(errors.KMSNotFound):
        metered.describe("k")
    after = _sample("encproxy_key_provider_errors_total",
                    {"provider": "fake", "call": "describe", "error": "KMS.NotFoundException"})
    assert after == before + 1
    assert issubclass(metrics.MeteredProvider, KeyProvider)


def _sample(name, labels):
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


# -- logs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, secret", [
    ("GET /b/k?X-Amz-Signature=0a1b2c&x=1", "0a1b2c"),
    ("x-amz-security-token: FQoGZXIvYXdzE", "FQoGZXIvYXdzE"),
    ("Authorization: AWS4-HMAC-SHA256 Credential=AK/2024/us-east-1/s3/aws4_request, "
     "SignedHeaders=host, Signature=feedface", "feedface"),
    ("x-amz-server-side-encryption-customer-key=c2VjcmV0", "c2VjcmV0"),
    ("Authorization: Bearer abcdefghij123", "abcdefghij123"),
])
def test_redaction(text, secret):
    assert secret not in redact(text) and "REDACTED" in redact(text)


@pytest.mark.parametrize("text", [
    '{"key":"r0-00001","user_agent":"python","auth":"sigv4"}',
    "GET /b/k?X-Amz-Signature=abcdef0123&X-Amz-Credential=AK%2F2026 HTTP/1.1",
    "x-amz-server-side-encryption-customer-key: c2VjcmV0c2VjcmV0",
    "AUTHORIZATION: AWS4-HMAC-SHA256 Credential=AK/20261206/us-east-1/s3/aws4_request",
    "Signature = deadbeef; awsaccesskeyid=AKIDEXAMPLE",
    "x-amz-security-token%3DFQoGZXIvYXdzE",
    "Authorization: AWS AKIDEXAMPLE:c2lnbmF0dXJlc2lnbmF0dXJl",
    "Authorization: Bearer abc.def.ghi",
    # Not ASCII: the case-insensitive regex also matches these as the names it looks for.
    "key ſignature=secret1 and \u212aEY",
    "x-amz-\u017fecurity-token=secret2",
    "ключ signature=secret3",
    "",
])
def test_redaction_is_the_full_regex_whatever_the_prefilter(text):
    """redact skips the slow case-insensitive search only where it cannot match."""
    from encproxy import logjson
    expected = logjson._AUTH_HEADER.sub(
        lambda m: m.group(1) + " " + logjson.REDACTED
        if m.group(1) == "Bearer" or m.group(2) else m.group(0), text)
    expected = logjson._SECRET_PARAMS.sub(
        lambda m: m.group(1) + m.group(2) + logjson.REDACTED, expected)
    assert redact(text) == expected


def test_formatters_redact_and_stay_json():
    record = logging.LogRecord("encproxy.x", logging.WARNING, __file__, 1,
                               "bad request %s", ("?X-Amz-Signature=deadbeef",), None)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and "deadbeef" not in doc["message"]
    assert "deadbeef" not in TextFormatter().format(record)


# -- settings -----------------------------------------------------------------------------

def settings(text):
    return load("[credentials]\nabc = 12345678\n" + text, Path("/etc/encproxy"), environ={})


def test_new_server_options_and_defaults():
    s = settings("")
    assert s.get("server", "max_request_body") == 5 * 1024**3
    assert s.get("server", "log_format") == "json" and s.get("server", "access_log") is True
    assert s.get("server", "metrics_allow") == () and s.get("server", "metrics_token") == ""
    assert s.get("server", "ready_timeout") == 2
    s = settings("[server]\nmax_request_body = 100M\nmetrics_allow = 10.0.0.0/8, ::1\n")
    assert s.get("server", "max_request_body") == 100 * 1024**2
    assert len(s.get("server", "metrics_allow")) == 2


@pytest.mark.parametrize("text, option", [
    ("[server]\nmax_request_body = 6GiB\n", "max_request_body"),
    ("[server]\nmax_request_body = lots\n", "max_request_body"),
    ("[server]\nmetrics_allow = not-an-ip\n", "metrics_allow"),
    ("[server]\ncertfile = a.pem\n", "keyfile"),
    ("[server]\nkeyfile = a.key\n", "certfile"),
    ("[server]\nlog_format = xml\n", "log_format"),
])
def test_bad_server_options(text, option):
    with pytest.raises(ConfigError) as exc:
        settings(text)
    assert exc.value.option == option


def test_progress_is_thread_safe():
    from encproxy.progress import Progress
    bar = Progress("x", enabled=False)
    threads = [threading.Thread(target=lambda: [bar.advance() for _ in range(1000)])
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bar.done == 4000


def test_every_option_is_documented_in_the_reference_ini():
    """conf/encproxy.ini documents every option; the [server] ones in their section,
    and docs/OPERATIONS.md names every [server] option too."""
    import re

    from encproxy.settings import OPTIONS
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "conf" / "encproxy.ini").read_text()
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    operations = (repo / "docs" / "OPERATIONS.md").read_text()
    for option in OPTIONS:
        pattern = rf"^;?\s*{option.name}\s*="
        assert re.search(pattern, text, re.M), (option.section, option.name)
        if option.section == "server":
            assert re.search(pattern, sections["server"], re.M), option.name
            assert f"`{option.name}`" in operations, option.name
