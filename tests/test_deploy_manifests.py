"""The Kubernetes manifests validate against the Kubernetes schemas and run every service the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31.0"
SECRET_SUFFIXES = ("_SECRET", "_PASSWORD", "_KEY", "_DATABASE_URL")


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found.append((path.name, document))
    return found


def services() -> list[str]:
    return sorted(path.parent.name for path in (ROOT / "services").glob("*/pyproject.toml"))


@pytest.mark.parametrize(("filename", "document"), documents(), ids=lambda value: str(value)[:40])
def test_every_resource_validates_strictly(filename: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize("service", services())
def test_each_service_is_deployed_with_migrations_probes_and_production_settings(service: str) -> None:
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _name, doc in documents()}
    deployment = by_kind.get(("Deployment", service))
    assert deployment is not None, f"deploy/k8s has no Deployment for services/{service}"
    pod = deployment["spec"]["template"]["spec"]
    assert [c["command"][-1] for c in pod["initContainers"]] == ["migrate"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    config = by_kind[("ConfigMap", f"{service}-config")]["data"]
    assert config[f"{service.upper()}_ENVIRONMENT"] == "production"
    assert config[f"{service.upper()}_NATS_URL"].startswith("nats://")
    leaked = [key for key in config if key.endswith(SECRET_SUFFIXES)]
    assert leaked == [], "secrets belong in the Secret, not the ConfigMap"
    assert by_kind.get(("Service", service)) is not None


def test_the_gateway_is_the_public_entry_with_a_spool_volume_per_replica() -> None:
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _name, doc in documents()}
    gateway = by_kind[("StatefulSet", "gateway")]
    pod = gateway["spec"]["template"]["spec"]
    assert [c["command"][-1] for c in pod["initContainers"]] == ["migrate"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = by_kind[("ConfigMap", "gateway-config")]["data"]
    assert config["GATEWAY_ENVIRONMENT"] == "production"
    spool = config["GATEWAY_USAGE_SPOOL_DIR"]
    assert [mount["mountPath"] for mount in container["volumeMounts"]] == [spool]
    assert [claim["metadata"]["name"] for claim in gateway["spec"]["volumeClaimTemplates"]] == ["usage-spool"]
    upstreams = json.loads(config["GATEWAY_UPSTREAMS"])
    assert set(upstreams) == set(services())
    ingress = by_kind[("Ingress", "edu-platform")]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "gateway"
    # Every service issues and accepts tokens under the one public issuer.
    issuers = {
        doc["data"][key] for (kind, _name), doc in by_kind.items() if kind == "ConfigMap"
        for key in doc["data"] if key.endswith("_TOKEN_ISSUER")
    }  # fmt: skip
    assert issuers == {config["GATEWAY_TOKEN_ISSUER"]}
