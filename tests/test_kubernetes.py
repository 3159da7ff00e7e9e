"""The Kubernetes manifests, validated offline: no cluster runs here.

The base and every overlay are rendered with kustomize (``kubectl kustomize`` when kubectl is
installed, else kustomize built once from the Go module proxy into ``.cache/kustomize``), and every
rendered object is validated against the JSON schemas of a pinned Kubernetes version, strictly
(unknown fields refused). KEDA's objects have no bundled schema and are checked field by field.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES = "1.33.0"
KUSTOMIZE = "v5.5.0"
PARTITIONS = 4  # SCOREPIPE_TOPIC_PARTITIONS' default: the features topic scorepipe creates
CUSTOM = {"keda.sh/v1alpha1"}


def kustomize() -> list[str]:
    """The command that renders a kustomization folder."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    binary = ROOT / ".cache" / "kustomize" / KUSTOMIZE / "kustomize"
    if not binary.exists():
        if shutil.which("go") is None:
            pytest.fail("rendering the manifests needs kubectl or Go (to build kustomize)")
        env = {**os.environ, "GOBIN": str(binary.parent), "GOFLAGS": "-mod=mod"}
        subprocess.run(
            ["go", "install", f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE}"], env=env, check=True, timeout=900
        )
    return [str(binary), "build"]


def render(folder: Path) -> list[dict]:
    result = subprocess.run([*kustomize(), str(folder)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered():
    folders = [DEPLOY / "base", *sorted((DEPLOY / "overlays").iterdir())]
    return {folder.name: render(folder) for folder in folders}


def by_kind(objects: list[dict], kind: str, name: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(rendered):
    for where, objects in rendered.items():
        assert objects, where
        for manifest in objects:
            if manifest["apiVersion"] in CUSTOM:
                continue
            try:
                kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {manifest['kind']} {manifest['metadata']['name']}: {exc.message} at {exc.path}")


def test_the_consumer_is_probed_drains_its_acknowledgements_and_never_outnumbers_the_partitions(rendered):
    settings = by_kind(rendered["base"], "ConfigMap", "scorepipe-settings")["data"]
    for objects in rendered.values():
        consumer = by_kind(objects, "Deployment", "scorepipe-consumer")
        pod = consumer["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert consumer["spec"]["replicas"] <= PARTITIONS
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        acknowledgement_wait = int(settings.get("SCOREPIPE_STREAM_DELIVERY_TIMEOUT_MS", 120_000)) / 1000
        assert pod["terminationGracePeriodSeconds"] > acknowledgement_wait
        assert "$(POD_NAME)" in container["args"]  # a transactional id of its own per member
        assert by_kind(objects, "PodDisruptionBudget", "scorepipe-consumer")["spec"]["maxUnavailable"] == 1
    scaled = by_kind(rendered["production"], "ScaledObject", "scorepipe-consumer")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "scorepipe-consumer"
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= PARTITIONS
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == settings["SCOREPIPE_CONSUMER_GROUP"]
    auth = by_kind(rendered["production"], "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {t["name"] for t in auth["spec"]["secretTargetRef"]} == {"scorepipe-kafka"}


def test_the_server_is_probed_and_autoscaled(rendered):
    for objects in rendered.values():
        server = by_kind(objects, "Deployment", "scorepipe-server")
        [container] = server["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        hpa = by_kind(objects, "HorizontalPodAutoscaler", "scorepipe-server")
        assert hpa["spec"]["scaleTargetRef"]["name"] == "scorepipe-server" and hpa["spec"]["minReplicas"] >= 2
        assert by_kind(objects, "Service", "scorepipe-server")["spec"]["ports"][0]["targetPort"] == "http"


def test_pods_run_non_root_without_privileges_and_take_secrets_only_from_secrets(rendered):
    production = rendered["production"]
    namespace = by_kind(production, "Namespace", "scorepipe")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployments = [o for o in production if o["kind"] == "Deployment"]
    names = {d["metadata"]["name"] for d in deployments}
    assert names == {"scorepipe-consumer", "scorepipe-server", "scorepipe-worker"}
    assert not [o for o in production if o["kind"] == "Secret"]  # created by the operator, never shipped
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["image"].startswith("registry.example.com/scorepipe:")
            for variable in container.get("env", []):
                secret = any(w in variable["name"] for w in ("PASSWORD", "SECRET", "API_KEY"))
                if secret:
                    assert "secretKeyRef" in variable["valueFrom"], variable["name"]
    settings = by_kind(production, "ConfigMap", "scorepipe-settings")["data"]
    assert not [k for k in settings if any(w in k for w in ("PASSWORD", "SECRET", "API_KEY"))]
    assert settings["SCOREPIPE_STREAM_GUARANTEE"] == "exactly-once"  # the overlay's patch applied
