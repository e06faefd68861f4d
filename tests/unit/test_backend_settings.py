"""[backend] type = s3: its options, their validation, and building the app from them."""
from __future__ import annotations

from pathlib import Path

import pytest

from encproxy.errors import ConfigError
from encproxy.settings import load
from encproxy.wsgi.apps.s3backend import S3BackendApp, build_s3_backend

BASE = """
[credentials]
AKIDEXAMPLE = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
[backend]
"""
S3 = BASE + """type = s3
endpoint = https://s3.example.com:9000/
access_key = backend-key
secret_key = backend-secret
"""


def test_file_is_the_default_and_needs_no_s3_options(tmp_path: Path):
    s = load(BASE, tmp_path, environ={})
    assert s.get("backend", "type") == "file"
    assert s.get("backend", "endpoint") == ""


def test_s3_options_and_defaults(tmp_path: Path):
    s = load(S3, tmp_path, environ={})
    assert s.get("backend", "endpoint") == "https://s3.example.com:9000"
    assert s.get("backend", "region") == "us-east-1"
    assert s.get("backend", "addressing") == "path"
    assert s.get("backend", "tls_verify") is True
    assert s.get("backend", "ca_bundle") == ""
    assert s.get("backend", "connect_timeout") == 5.0
    assert s.get("backend", "read_timeout") == 60.0
    assert s.get("backend", "pool_size") == 32
    app = build_s3_backend(s)
    assert isinstance(app, S3BackendApp)
    assert app.client.endpoint.base_url == "https://s3.example.com:9000"
    assert app.client.timeout == (5.0, 60.0)
    assert app.client.verify is True
    assert "backend-secret" not in repr(app.client.config)


def test_environment_supplies_the_secret(tmp_path: Path):
    text = S3.replace("secret_key = backend-secret\n", "")
    s = load(text, tmp_path, environ={"ENCPROXY_BACKEND_SECRET_KEY": "from-env"})
    assert s.get("backend", "secret_key") == "from-env"


@pytest.mark.parametrize("text,environ,option", [
    pytest.param(BASE + "type = s3\n", {}, "endpoint", id="no-endpoint"),
    pytest.param(S3.replace("access_key = backend-key\n", ""), {}, "access_key",
                 id="no-access-key"),
    pytest.param(S3.replace("secret_key = backend-secret\n", ""), {}, "secret_key",
                 id="no-secret-key"),
    pytest.param(S3.replace("https://s3.example.com:9000/", "s3.example.com"), {}, "endpoint",
                 id="no-scheme"),
    pytest.param(S3.replace(":9000/", "/bucket"), {}, "endpoint", id="path-in-endpoint"),
    pytest.param(S3, {"ENCPROXY_BACKEND_ADDRESSING": "dns"}, "addressing", id="addressing"),
    pytest.param(S3, {"ENCPROXY_BACKEND_TLS_VERIFY": "maybe"}, "tls_verify", id="tls-verify"),
    pytest.param(S3, {"ENCPROXY_BACKEND_CONNECT_TIMEOUT": "0"}, "connect_timeout",
                 id="timeout"),
    pytest.param(S3, {"ENCPROXY_BACKEND_POOL_SIZE": "0"}, "pool_size", id="pool-size"),
    pytest.param(S3, {"ENCPROXY_BACKEND_TYPE": "ftp"}, "type", id="type"),
])
def test_bad_s3_options_name_the_option(tmp_path: Path, text, environ, option):
    with pytest.raises(ConfigError) as exc:
        load(text, tmp_path, environ=environ)
    assert (exc.value.section, exc.value.option) == ("backend", option)


def test_ca_bundle_is_relative_to_the_config_and_must_exist(tmp_path: Path):
    s = load(S3 + "ca_bundle = certs/ca.pem\n", tmp_path, environ={})
    with pytest.raises(ConfigError) as exc:
        build_s3_backend(s)
    assert exc.value.option == "ca_bundle"
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    app = build_s3_backend(s)
    assert app.client.verify == str(tmp_path / "certs" / "ca.pem")


def test_tls_verify_off(tmp_path: Path):
    s = load(S3 + "tls_verify = false\nca_bundle = ignored.pem\n", tmp_path, environ={})
    with pytest.raises(ConfigError):
        build_s3_backend(s)  # a named bundle must exist even when unused: a typo is loud
    s = load(S3 + "tls_verify = false\n", tmp_path, environ={})
    assert build_s3_backend(s).client.verify is False
