"""One harness per key provider, each backed by the real thing (docs/KEYS.md §8).

* local  -- a keyring directory;
* pkcs11 -- a SoftHSM2 token (``softhsm2-util --init-token``) through python-pkcs11;
* kmip   -- a PyKMIP server over mutual TLS (``scripts/services/pykmip``);
* awskms -- moto's KMS (``moto_server``).

Every provider is built the way ``encproxy serve`` builds it: from an ini ``[keys]``
section, through ``settings.load`` and ``keys.factory.build_provider``. A service
that cannot start fails the session loudly; nothing is skipped.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from encproxy.keys.factory import build_provider
from encproxy.keys.provider import KeyAdmin, KeyProvider
from encproxy.settings import Settings, load
from support.keys_services import (
    Blackhole,
    KmipServer,
    MotoServer,
    SoftHsmToken,
    free_port,
    start_moto,
    start_pykmip,
    start_softhsm,
)

PROVIDERS = ("local", "pkcs11", "kmip", "awskms")
AWS_ACCESS_KEY = "AKIAENCPROXYTEST0001"
AWS_SECRET_KEY = "encproxy-kms-test-secret-0123456789"


@dataclass
class Harness:
    """Builds providers of one kind, makes keys, and breaks the provider on purpose."""

    name: str
    directory: Path
    options: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    kms: object | None = None  # boto3 KMS client (awskms)

    def ini(self, **overrides: object) -> str:
        opts = {"provider": self.name, **self.options,
                **{k: str(v) for k, v in overrides.items()}}
        lines = "\n".join(f"{k} = {v}" for k, v in opts.items())
        return f"[credentials]\ntest-access = test-secret-123\n\n[keys]\n{lines}\n"

    def settings(self, **overrides: object) -> Settings:
        return load(self.ini(**overrides), self.directory, environ={})

    def provider(self, **overrides: object) -> KeyProvider:
        return build_provider(self.settings(**overrides))

    def new_key(self) -> str:
        """A fresh master key (version 1); returns the id to wrap with."""
        name = "k-" + uuid.uuid4().hex[:12]
        if self.name == "awskms":
            arn = self.kms.create_key()["KeyMetadata"]["Arn"]  # type: ignore[attr-defined]
            self.kms.create_alias(AliasName=f"alias/{name}",  # type: ignore[attr-defined]
                                  TargetKeyId=arn)
            return f"alias/{name}"
        admin = self.provider()
        assert isinstance(admin, KeyAdmin)
        admin.create_key(name)
        admin.close()
        return name

    def rotate(self, provider: KeyProvider, key_id: str) -> None:
        if isinstance(provider, KeyAdmin):
            provider.rotate_key(key_id)
        else:
            arn = provider.describe(key_id).key_id
            self.kms.rotate_key_on_demand(KeyId=arn)  # type: ignore[attr-defined]

    def down(self) -> KeyProvider:
        """A provider whose backend cannot be reached."""
        if self.name == "local":
            keyring = self.directory / ("gone-" + uuid.uuid4().hex[:8])
            keyring.mkdir(mode=0o700)
            provider = self.provider(keyring=keyring)
            keyring.rmdir()  # the keyring volume went away
            return provider
        if self.name == "pkcs11":
            return self.provider(pkcs11_token_label="no-such-token")
        if self.name == "kmip":
            return self.provider(kmip_port=free_port(), connect_timeout=1, timeout=1)
        return self.provider(endpoint=f"http://127.0.0.1:{free_port()}", connect_timeout=1,
                             timeout=1)

    def unresponsive(self, hole: Blackhole) -> KeyProvider:
        """A provider whose server accepts connections and never answers (kmip, awskms)."""
        if self.name == "kmip":
            return self.provider(kmip_port=hole.port, connect_timeout=0.5, timeout=0.5)
        assert self.name == "awskms"
        return self.provider(endpoint=f"http://127.0.0.1:{hole.port}", connect_timeout=0.5,
                             timeout=0.5)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsmToken]:
    token = start_softhsm(tmp_path_factory.mktemp("softhsm"))
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)  # read by the module at C_Initialize
    yield token
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture(scope="session")
def pykmip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KmipServer]:
    server = start_pykmip(tmp_path_factory.mktemp("pykmip"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def _harness(name: str, request: pytest.FixtureRequest, directory: Path) -> Harness:
    if name == "local":
        return Harness(name, directory, {"keyring": str(directory / "keys")})
    if name == "pkcs11":
        token: SoftHsmToken = request.getfixturevalue("softhsm")
        return Harness(name, directory, {"pkcs11_module": token.module,
                                         "pkcs11_token_label": token.label,
                                         "pkcs11_pin": token.pin},
                       env=token.env, secrets=[token.pin])
    if name == "kmip":
        server: KmipServer = request.getfixturevalue("pykmip")
        return Harness(name, directory, {"kmip_host": server.host, "kmip_port": str(server.port),
                                         "kmip_certfile": server.cert,
                                         "kmip_keyfile": server.key, "kmip_ca": server.ca})
    assert name == "awskms"
    moto_server: MotoServer = request.getfixturevalue("moto")
    kms = boto3.client("kms", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                       aws_access_key_id=AWS_ACCESS_KEY, aws_secret_access_key=AWS_SECRET_KEY)
    return Harness(name, directory, {"endpoint": moto_server.endpoint, "region": "us-east-1",
                                     "access_key": AWS_ACCESS_KEY,
                                     "secret_key": AWS_SECRET_KEY},
                   secrets=[AWS_SECRET_KEY], kms=kms)


@pytest.fixture(scope="session", params=PROVIDERS)
def harness(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Harness:
    return _harness(request.param, request, tmp_path_factory.mktemp(f"keys-{request.param}"))


@pytest.fixture(scope="session")
def harnesses(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Harness]:
    return {name: _harness(name, request, tmp_path_factory.mktemp(f"keys-{name}-x"))
            for name in PROVIDERS}
