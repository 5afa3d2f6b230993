"""The cloud deliverables as files: Kubernetes manifests, container files, the compose file."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.cloud.config import CloudSettings
from bridge.runtime.config import ConfigError
from tests.deploy.podman import ROOT

K8S = ROOT / "deploy" / "k8s"
CLOUD = ROOT / "deploy" / "cloud"
KUBERNETES_VERSION = "1.33"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def rendered(overlay: Path) -> list[dict[str, Any]]:
    """What ``kubectl apply -k`` applies, for what these manifests use: resources, namespace,
    images and strategic-merge patches by kind and name."""
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (overlay / entry).resolve()
        resources.extend(rendered(target) if target.is_dir() else documents(target))
    for patch in kustomization.get("patches", []):
        (change,) = documents(overlay / patch["path"])
        matches = [
            r for r in resources
            if r["kind"] == change["kind"] and r["metadata"]["name"] == change["metadata"]["name"]
        ]  # fmt: skip
        assert len(matches) == 1, f"patch {patch['path']} matches {len(matches)} resources"
        merge(matches[0], change)
    images = {i["name"]: i for i in kustomization.get("images", [])}
    for resource in resources:
        if "namespace" in kustomization and resource["kind"] != "Namespace":
            resource["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(resource):
            name = container["image"].rsplit(":", 1)[0]
            if name in images:
                container["image"] = f"{images[name]['newName']}:{images[name]['newTag']}"
    return resources


def merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    if resource["kind"] in ("Deployment", "StatefulSet"):
        spec: dict[str, Any] = resource["spec"]["template"]["spec"]
        return spec
    return None


def containers(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(resource)
    if spec is not None:
        yield from spec["containers"]


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    return rendered(K8S / "overlays" / "example")


def test_every_manifest_is_valid_kubernetes_in_strict_mode(example: list[dict[str, Any]]) -> None:
    assert len(example) >= 15
    for resource in example:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    (deployment,) = documents(K8S / "base" / "gateway-deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_pods_meet_the_restricted_pod_security_standard(example: list[dict[str, Any]]) -> None:
    (namespace,) = [r for r in example if r["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    workloads = [r for r in example if pod_spec(r) is not None]
    assert {r["metadata"]["name"] for r in workloads} == {
        "rbridge-gateway",
        "rbridge-agents",
        "nats",
    }
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert "memory" in container["resources"]["limits"]
            assert container["image"].startswith("registry.example.com/rbridge/")


def test_the_gateway_is_probed_over_grpc_and_kept_available(example: list[dict[str, Any]]) -> None:
    by_kind = {(r["kind"], r["metadata"]["name"]): r for r in example}
    gateway = by_kind[("Deployment", "rbridge-gateway")]
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 9466}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/rbridge/tls"]["readOnly"] is True
    assert gateway["spec"]["replicas"] >= 2
    assert by_kind[("PodDisruptionBudget", "rbridge-gateway")]["spec"]["minAvailable"] == 1
    hpa = by_kind[("HorizontalPodAutoscaler", "rbridge-gateway")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rbridge-gateway"
    assert by_kind[("Service", "rbridge-gateway")]["spec"]["type"] == "LoadBalancer"
    assert by_kind[("StatefulSet", "nats")]["spec"]["replicas"] == 3
    assert by_kind[("NetworkPolicy", "default-deny")]["spec"]["podSelector"] == {}


def image_environment(containerfile: Path) -> dict[str, str]:
    """The ENV of a container file (``KEY=value`` pairs, with line continuations)."""
    text = containerfile.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"(\w+)=(\S+)", line))
    return found


def test_the_gateway_configuration_by_environment_alone_is_valid(
    example: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Image ENV + the ConfigMap + the pod's env make complete, valid gateway settings."""
    (config,) = [
        r
        for r in example
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "rbridge-gateway"
    ]
    environment = {
        **image_environment(CLOUD / "gateway.Containerfile"),
        **config["data"],
        "RBRIDGE_NAME": "gateway-0",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = CloudSettings.load(None)
    assert set(settings.sites) == {"plant-a", "plant-b"}
    assert settings.health_listen == "0.0.0.0:9466"
    assert str(settings.tls.key) == "/etc/rbridge/tls/tls.key"
    assert settings.min_policy_revision == 7
    monkeypatch.setenv("RBRIDGE_SITES", json.dumps({"plant-a": {"capabilities": []}}))
    with pytest.raises(ConfigError, match="capabilities"):
        CloudSettings.load(None)


@pytest.mark.servers
def test_container_files_pass_hadolint_and_carry_labels_and_a_health_check() -> None:
    files = sorted(CLOUD.glob("*.Containerfile"))
    assert [f.name for f in files] == [
        "agents.Containerfile",
        "gateway.Containerfile",
        "nats.Containerfile",
    ]
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "hadolint"), *map(str, files)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        text = path.read_text()
        assert "org.opencontainers.image.title" in text
        assert "HEALTHCHECK" in text
        assert re.search(r"^USER 10001:10001$", text, re.M), path
        assert text.count("FROM ") == 2, f"{path.name} is not multi-stage"


def test_the_compose_file_runs_the_cloud_side_from_our_images() -> None:
    """Checked statically here; test_images runs it with podman-compose."""
    compose = yaml.safe_load((CLOUD / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"nats", "gateway", "agents"}
    for service in services.values():
        assert service["image"].startswith("localhost/rbridge-")
        assert service["read_only"] is True
    # One network namespace (NATS's): no container DNS needed, NATS not published.
    for name in ("gateway", "agents"):
        assert services[name]["network_mode"] == "service:nats"
    assert not any("4222" in port for port in services["nats"]["ports"])
    gateway = services["gateway"]["environment"]
    assert gateway["RBRIDGE_NATS__URL"] == "nats://127.0.0.1:4222"
    assert json.loads(gateway["RBRIDGE_SITES"])["plant-a"]["capabilities"]
    assert services["agents"]["environment"]["RBRIDGE_AGENT_NATS_URL"] == "nats://127.0.0.1:4222"
    # Only the tls folder is mounted, and the guide never puts the CA key there.
    assert services["gateway"]["volumes"] == ["${RBRIDGE_TLS_DIR:-./tls}:/etc/rbridge/tls:ro"]
    assert "ca.key" not in (CLOUD / "compose.yaml").read_text()
