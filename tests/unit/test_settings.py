"""The configuration schema: defaults, validation, environment overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from encproxy.errors import ConfigError
from encproxy.settings import load

BASE = """
[server]
listen = 127.0.0.1:9000
[credentials]
AKIDEXAMPLE = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
[backend]
type = file
root = data
"""


def test_defaults_and_values(tmp_path: Path):
    s = load(BASE, tmp_path, environ={})
    assert s.get("server", "listen") == ("127.0.0.1", 9000)
    assert s.get("server", "workers") == 2
    assert s.credentials == {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    assert s.path("backend", "root") == (tmp_path / "data").resolve()


def test_environment_overrides(tmp_path: Path):
    s = load(BASE, tmp_path, environ={
        "ENCPROXY_SERVER_LISTEN": "0.0.0.0:81",
        "ENCPROXY_SERVER_GRACEFUL_TIMEOUT": "7",
        "ENCPROXY_CREDENTIALS_OtherKey": "another-secret",
        "ENCPROXY_CONFIG": "ignored.ini",
    })
    assert s.get("server", "listen") == ("0.0.0.0", 81)
    assert s.get("server", "graceful_timeout") == 7
    assert s.credentials["OtherKey"] == "another-secret"


@pytest.mark.parametrize("text,environ,section,option", [
    pytest.param(BASE.replace("127.0.0.1:9000", "nonsense"), {}, "server", "listen",
                 id="bad-listen"),
    pytest.param(BASE + "[server]\n", {}, "file", None, id="duplicate-section"),
    pytest.param(BASE.replace("type = file", "type = ftp"), {}, "backend", "type",
                 id="bad-backend"),
    pytest.param(BASE + "[nonsense]\na = b\n", {}, "nonsense", None, id="unknown-section"),
    pytest.param(BASE.replace("[backend]", "[backend]\ncolour = red"), {}, "backend", "colour",
                 id="unknown-option"),
    pytest.param(BASE, {"ENCPROXY_SERVER_WORKERS": "0"}, "server", "workers",
                 id="env-out-of-range"),
    pytest.param(BASE, {"ENCPROXY_NOPE_X": "1"}, "environment", "ENCPROXY_NOPE_X",
                 id="env-unknown-section"),
    pytest.param(BASE.replace("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "short"), {},
                 "credentials", "AKIDEXAMPLE", id="short-secret"),
    pytest.param(BASE.replace("AKIDEXAMPLE = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""), {},
                 "credentials", None, id="no-credentials"),
])
def test_bad_config_names_section_and_option(tmp_path, text, environ, section, option):
    with pytest.raises(ConfigError) as exc:
        load(text, tmp_path, environ=environ)
    assert exc.value.section == section
    assert exc.value.option == option
    assert "\n" not in str(exc.value)


S3_BASE = BASE.replace("type = file\nroot = data", """type = s3
endpoint = http://127.0.0.1:7480
access_key = encproxy-backend
secret_key = encproxy-backend-secret""")


def test_backend_credentials_map_clients_to_backend_users(tmp_path: Path):
    text = S3_BASE + "[backend_credentials]\nAKIDEXAMPLE = TEAMA-RGW  team-a-rgw/secret+0\n"
    s = load(text, tmp_path, environ={
        "ENCPROXY_CREDENTIALS_team-b": "team-b-client-secret",
        "ENCPROXY_BACKEND_CREDENTIALS_team-b": "TEAMB-RGW team-b-rgw-secret"})
    assert {k: (v.access_key, v.secret_key) for k, v in s.backend_credentials.items()} == {
        "AKIDEXAMPLE": ("TEAMA-RGW", "team-a-rgw/secret+0"),
        "team-b": ("TEAMB-RGW", "team-b-rgw-secret")}
    # The secret stays out of anything that prints the settings.
    assert "team-a-rgw/secret+0" not in repr(s.backend_credentials)
    assert load(S3_BASE, tmp_path, environ={}).backend_credentials == {}


@pytest.mark.parametrize("text,why", [
    pytest.param(S3_BASE + "[backend_credentials]\nnobody = A-RGW secret-0123\n",
                 "names no access key", id="unknown-client"),
    pytest.param(S3_BASE + "[backend_credentials]\nAKIDEXAMPLE = A-RGW\n",
                 "must be", id="no-secret"),
    pytest.param(S3_BASE + "[backend_credentials]\nAKIDEXAMPLE = A-RGW a b\n",
                 "must be", id="three-fields"),
    pytest.param(BASE + "[backend_credentials]\nAKIDEXAMPLE = A-RGW secret-0123\n",
                 "type = s3", id="file-store"),
])
def test_bad_backend_credentials_name_the_line_not_the_secret(tmp_path, text, why):
    with pytest.raises(ConfigError) as exc:
        load(text, tmp_path, environ={})
    assert (exc.value.section, exc.value.option) == ("backend_credentials",
                                                     text.rsplit("\n", 2)[-2].split(" = ")[0])
    assert why in str(exc.value)
    assert "secret" not in str(exc.value).replace("secret key", "")
