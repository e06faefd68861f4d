"""The Helm chart conf/helm/encproxy (docs/OPERATIONS.md §7 "Helm"), rendered for both modes.

No `helm` binary can be installed from the registries this project uses (PyPI, Debian, npm),
so the chart is rendered and linted by Helm's own Go SDK (v4) through helm-python-sdk, which
ships it as a shared library (`helm_python.Chart.render` is `helm template`, `helm_python.lint`
is `helm lint`): the same template engine and Sprig functions as the helm CLI. Every rendered
manifest is validated against the Kubernetes JSON schemas (kubernetes-validate, strict: no
unknown field) except the ServiceMonitor, a Prometheus Operator CRD that has no schema there
and is checked field by field. Then, as tests/unit/test_deploy_examples.py does for
conf/k8s/*.yaml, the ini in the ConfigMap is loaded with encproxy.settings.load with the
environment the Secret gives, and ports, probes, mounts and paths are checked against it.

Both tools come with the test extra (setup.cfg); a missing one fails at import, never skips.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from encproxy.settings import Settings, load
from encproxy.wsgi.edge.operations import HEALTH, METRICS, READY

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "conf" / "helm" / "encproxy"
#: The newest Kubernetes whose schemas kubernetes-validate bundles (1.37 at 1.37.0).
KUBE_VERSION = kubernetes_validate.latest_version()
#: Worker peak RSS measured while transferring 1 GiB (docs/PERFORMANCE.md): 84-89 MiB.
MEASURED_WORKER_RSS_MIB = 89

SECRET_ENV = {
    "ENCPROXY_CREDENTIALS_team": "team-secret-0123456789",
    "ENCPROXY_BACKEND_ACCESS_KEY": "backend-access",
    "ENCPROXY_BACKEND_SECRET_KEY": "backend-secret",
    "ENCPROXY_KEYS_ACCESS_KEY": "kms-access",
    "ENCPROXY_KEYS_SECRET_KEY": "kms-secret",
}


def values_file(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "ci" / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


#: Values for each case, and the Secret's environment a case's pods get when the chart does
#: not create the Secret (``existingSecret``).
CASES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "gateway-example": (values_file("gateway-values.yaml"), {}),
    "sidecar-example": (values_file("sidecar-values.yaml"), {}),
    "gateway-defaults": ({"secrets": {"env": SECRET_ENV}}, {}),
    "sidecar-defaults": ({"mode": "sidecar", "secrets": {"env": SECRET_ENV}}, {}),
    # A Secret managed outside the chart, also mounted as files for a `file:` credential;
    # no HPA (fixed replicas); a ServiceMonitor with the metrics token of that Secret.
    "gateway-existing-secret": ({
        "secrets": {"existingSecret": "team-secrets", "filesMountPath": "/etc/encproxy/secrets"},
        "config": {"credentials": {"filer": "file:/etc/encproxy/secrets/filer"},
                   "server": {"workers": 6}},
        "autoscaling": {"enabled": False},
        "replicaCount": 5,
        "serviceMonitor": {"enabled": True},
    }, {**SECRET_ENV, "ENCPROXY_SERVER_METRICS_TOKEN": "token-0123456789"}),
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm_python.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="s3", namespace="storage")
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert doc.get("apiVersion") and doc.get("kind") and \
                    doc["metadata"].get("name"), (path, doc)
                docs.append(doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str, **where: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and all(
        d["metadata"].get(k) == v for k, v in where.items())]
    assert len(found) == 1, (kind, where, [(d["kind"], d["metadata"]["name"]) for d in docs])
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def encproxy_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    found = [c for c in containers if c["name"] == "encproxy"]
    assert len(found) == 1
    return found[0]


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    factor = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "": 1 / 2**20, "M": 1e6 / 2**20,
              "G": 1e9 / 2**20}[unit]
    return float(number) * factor


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], list[dict[str, Any]],
                                                   dict[str, str]]:
    values, external_env = CASES[request.param]
    return request.param, values, render(values), external_env


def test_the_renderer_is_helm_v4():
    assert helm_python.helm_sdk_version().startswith("v4.")


@pytest.mark.parametrize("name", sorted(CASES))
def test_helm_lint_is_clean(name):
    report = helm_python.lint(CHART, CASES[name][0], strict=True, namespace="storage")
    assert report["errors"] == [] and report["total_charts_linted"] == 1, report
    # Severity 1 is information ("icon is recommended"); 2 and 3 are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_manifests_validate_against_the_kubernetes_schemas(case):
    name, values, docs, _ = case
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc, docs)
            continue
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True), \
            (doc["kind"], doc["metadata"]["name"])


def check_service_monitor(monitor: dict[str, Any], docs: list[dict[str, Any]]) -> None:
    """monitoring.coreos.com/v1: no schema in kubernetes-validate, so the fields it uses."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    service = one(docs, "Service")
    # It selects the Service by the Service's own labels.
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "tlsConfig", "authorization"}
    assert endpoint["path"] == METRICS
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["scheme"] in ("http", "https")
    assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint["interval"])
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer" and set(auth["credentials"]) == {"name", "key"}


def test_each_mode_renders_its_objects(case):
    name, values, docs, _ = case
    if name.startswith("gateway"):
        expected = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
        expected |= {"HorizontalPodAutoscaler"} if values.get("autoscaling", {}).get(
            "enabled", True) else set()
        expected |= {"Ingress"} if values.get("ingress", {}).get("enabled") else set()
        expected |= {"ServiceMonitor"} if values.get("serviceMonitor", {}).get(
            "enabled") else set()
    else:
        # No Service, HPA or Ingress: the pod is the application's.
        expected = {"ConfigMap", "Deployment"}
    expected |= {"Secret"} if not values.get("secrets", {}).get("existingSecret") else set()
    assert set(kinds(docs)) == expected, kinds(docs)


def test_manifests_agree_with_their_ini(case):
    name, values, docs, external_env = case
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = encproxy_container(pod)
    if name.startswith("sidecar"):
        # A native sidecar: an init container that keeps running.
        assert container in pod["initContainers"] and container["restartPolicy"] == "Always"
    else:
        assert container in pod["containers"]

    # The ini comes from the ConfigMap mounted where --config points.
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = one(docs, "ConfigMap", name=volume["configMap"]["name"])
    ini = configmap["data"][config_path[len(mount["mountPath"]):].strip("/")]

    # The Secret's environment (rendered, or the one the user manages) completes it; a
    # `file:` secret must lie under a mounted Secret volume.
    mounted = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    environ = dict(external_env)
    for source in container["envFrom"]:
        secret_name = source["secretRef"]["name"]
        if values.get("secrets", {}).get("existingSecret") == secret_name:
            assert not [d for d in docs if d["kind"] == "Secret"
                        and d["metadata"]["name"] == secret_name]
            continue
        environ.update(one(docs, "Secret", name=secret_name)["stringData"])
    read: list[str] = []

    def read_secret(path: str) -> str:
        directory = str(Path(path).parent)
        volume = next(v for v in pod["volumes"] if v["name"] == mounted[directory])
        assert volume["secret"]["secretName"] in [s["secretRef"]["name"]
                                                  for s in container["envFrom"]]
        read.append(path)
        return "file-secret-0123456789"

    settings = load(ini, Path(config_path).parent, environ=environ, read_secret=read_secret)
    assert settings.credentials, "no client credential once the Secret is applied"
    file_secrets = [v for v in values.get("config", {}).get("credentials", {}).values()
                    if str(v).startswith("file:")]
    assert read == [v[len("file:"):] for v in file_secrets]
    check_pod(settings, deployment, container, docs)


def check_pod(settings: Settings, deployment: dict[str, Any], container: dict[str, Any],
              docs: list[dict[str, Any]]) -> None:
    pod = deployment["spec"]["template"]["spec"]
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
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == METRICS
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/scheme"] == ("https" if tls else "http")

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pod["terminationGracePeriodSeconds"] > \
        settings.get("server", "graceful_timeout") + int(pre_stop[-1])

    # Memory for every worker at its measured peak; non-root; read-only root, writable /tmp.
    requests = container["resources"]["requests"]
    assert requests["cpu"]
    assert mebibytes(requests["memory"]) >= \
        settings.get("server", "workers") * MEASURED_WORKER_RSS_MIB, requests
    assert mebibytes(container["resources"]["limits"]["memory"]) > mebibytes(requests["memory"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    for each in pod["containers"] + pod.get("initContainers", []):
        assert each["securityContext"]["readOnlyRootFilesystem"] is True, each["name"]
        assert each["securityContext"]["allowPrivilegeEscalation"] is False, each["name"]
    assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])

    # Every file the ini names is mounted, from a volume of the pod.
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    named = [settings.get("server", "certfile"), settings.get("server", "keyfile")]
    if settings.get("keys", "provider") == "local":
        named.append(str(settings.path("keys", "keyring")))
        keyring_secret = next(v for v in pod["volumes"] if v["name"] == "keyring-secret")
        name = keyring_secret["secret"]["secretName"]
        assert any(k.endswith(".key") for k in one(docs, "Secret", name=name)["stringData"])
    for file in filter(None, named):
        assert any(file.startswith(m + "/") for m in mounts), file
    volume_names = {v["name"] for v in pod["volumes"]}
    for each in pod["containers"] + pod.get("initContainers", []):
        assert {m["name"] for m in each.get("volumeMounts", [])} <= volume_names

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for sp in service["spec"]["ports"]:
            assert ports.get(sp["targetPort"], sp["targetPort"]) == port
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert "replicas" not in deployment["spec"]  # the HPA owns the count
    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for ingress in (d for d in docs if d["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = one(docs, "Service", name=backend["name"])
                assert backend["port"]["name"] in [p["name"] for p in service["spec"]["ports"]]
    for monitor in (d for d in docs if d["kind"] == "ServiceMonitor"):
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["scheme"] == ("https" if tls else "http")
        token = endpoint["authorization"]["credentials"]
        assert token["name"] in [s["secretRef"]["name"] for s in container["envFrom"]]
        assert token["key"] == "ENCPROXY_SERVER_METRICS_TOKEN"
        assert settings.get("server", "metrics_token"), "the ServiceMonitor sends a token"


def ini_of_example(path: Path) -> dict[str, dict[str, str]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return parse_ini(one(docs, "ConfigMap")["data"]["encproxy.ini"])


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return {s: dict(parser[s]) for s in parser.sections()}


@pytest.mark.parametrize("example", ["gateway", "sidecar"])
def test_the_chart_produces_the_conf_k8s_examples(example):
    """ci/<example>-values.yaml renders conf/k8s/<example>.yaml's configuration: the same
    ini, option for option, the same Secret keys, probes and security settings."""
    docs = render(values_file(f"{example}-values.yaml"))
    reference = [d for d in yaml.safe_load_all(
        (REPO / "conf" / "k8s" / f"{example}.yaml").read_text()) if d]
    assert parse_ini(one(docs, "ConfigMap")["data"]["encproxy.ini"]) == \
        ini_of_example(REPO / "conf" / "k8s" / f"{example}.yaml")

    def secret_keys(documents: list[dict[str, Any]]) -> set[str]:
        return {k for d in documents if d["kind"] == "Secret" and d["type"] == "Opaque"
                for k in d["stringData"]}
    assert secret_keys(docs) == secret_keys(reference)

    ours = one(docs, "Deployment")["spec"]["template"]["spec"]
    theirs = one(reference, "Deployment")["spec"]["template"]["spec"]
    mine, reference_container = encproxy_container(ours), encproxy_container(theirs)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert mine[probe]["httpGet"]["path"] == reference_container[probe]["httpGet"]["path"]
        assert mine[probe]["httpGet"].get("scheme", "HTTP") == \
            reference_container[probe]["httpGet"].get("scheme", "HTTP")
        assert {k: v for k, v in mine[probe].items() if k != "httpGet"} == \
            {k: v for k, v in reference_container[probe].items() if k != "httpGet"}
    assert mine["securityContext"] == reference_container["securityContext"]
    assert ours["securityContext"] == theirs["securityContext"]
    assert ours["terminationGracePeriodSeconds"] == theirs["terminationGracePeriodSeconds"]
    assert mine["lifecycle"] == reference_container["lifecycle"]
    if example == "sidecar":
        assert [c["name"] for c in ours["initContainers"]] == \
            [c["name"] for c in theirs["initContainers"]]
        app = next(c for c in ours["containers"] if c["name"] == "app")
        reference_app = next(c for c in theirs["containers"] if c["name"] == "app")

        def without_secret_name(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # The Secret's name is the release's; the key in it is the same.
            return [{**e, "valueFrom": {"secretKeyRef": {
                "key": e["valueFrom"]["secretKeyRef"]["key"]}}} if "valueFrom" in e else e
                for e in env]
        assert without_secret_name(app["env"]) == without_secret_name(reference_app["env"])


def test_the_sidecar_app_talks_to_encproxy_with_its_own_credential():
    docs = render(CASES["sidecar-example"][0])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    port = encproxy_container(pod)["ports"][0]["containerPort"]
    app = next(c for c in pod["containers"] if c["name"] == "app")
    env = {e["name"]: e for e in app["env"]}
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == f"http://127.0.0.1:{port}"
    ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "ENCPROXY_CREDENTIALS_" + env["AWS_ACCESS_KEY_ID"]["value"]
    assert ref["key"] in one(docs, "Secret", name=ref["name"])["stringData"]


def test_the_sidecar_without_its_example_deployment_is_config_and_secrets():
    """For a pod of the user's own: the ConfigMap and Secrets the copied container needs."""
    values = {**CASES["sidecar-example"][0], "sidecar": {"exampleDeployment": False}}
    docs = render(values)
    assert kinds(docs) == ["ConfigMap", "Secret", "Secret"]
    for doc in docs:
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_ini_numbers_are_written_as_encproxy_reads_them():
    docs = render({"secrets": {"env": SECRET_ENV},
                   "config": {"server": {"max_request_body": 5 * 2**30, "timeout": 120},
                              "backend": {"read_timeout": 60.5}}})
    ini = parse_ini(one(docs, "ConfigMap")["data"]["encproxy.ini"])
    assert ini["server"]["max_request_body"] == "5368709120"
    assert ini["server"]["timeout"] == "120"
    assert ini["backend"]["read_timeout"] == "60.5"
    settings = load(one(docs, "ConfigMap")["data"]["encproxy.ini"], Path("/"), environ=SECRET_ENV)
    assert settings.get("server", "max_request_body") == 5 * 2**30


def test_the_memory_request_follows_the_workers():
    for workers in (1, 4, 9):
        docs = render({"secrets": {"env": SECRET_ENV}, "config": {"server": {"workers": workers}}})
        container = encproxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
        assert container["resources"]["requests"]["memory"] == f"{workers * 100 + 64}Mi"
    docs = render({"secrets": {"env": SECRET_ENV},
                   "resources": {"requests": {"memory": "3Gi"}, "limits": {"memory": "4Gi"}}})
    container = encproxy_container(one(docs, "Deployment")["spec"]["template"]["spec"])
    assert container["resources"]["requests"]["memory"] == "3Gi"


@pytest.mark.parametrize("values, message", [
    ({"mode": "daemon"}, "mode must be gateway or sidecar"),
    ({"config": {"server": {"listen": "0.0.0.0:9000"}}},
     "config.server.listen is set by the chart"),
    ({"tls": {"enabled": True}}, "tls.secretName is required"),
    ({"config": {"server": {"certfile": "/x.crt"}}}, "config.server.certfile is set by the chart"),
    ({"config": {"keys": {"provider": "local"}}}, "needs keyring.files or keyring.existingSecret"),
])
def test_values_that_cannot_work_fail_to_render(values, message):
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render(values)
