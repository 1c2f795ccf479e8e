"""Rendering, linting and validating the Helm chart offline.

The chart is rendered by Helm's own engine (``helm-python-sdk``: the Helm v4 Go SDK behind a C
ABI, no ``helm`` binary, no cluster). Built-in kinds are validated by ``kubernetes-validate``
against the Kubernetes OpenAPI schemas (strict: unknown fields fail). The custom resources
(KEDA ``ScaledObject`` / ``TriggerAuthentication``, Prometheus Operator ``ServiceMonitor``) have
no schema there: ``CRD_SCHEMAS`` below describes the fields the chart uses, closed with
``additionalProperties: false`` and pointing at the Kubernetes definitions (ObjectMeta,
LabelSelector, HPA behaviour) where the CRDs embed them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "skuflow"
VALUES_DIR = Path(__file__).resolve().parent / "values"
#: The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema set.
KUBE_VERSIONS = ("1.27.0", str(kubernetes_validate.utils.latest_version()))
RELEASE = "prod"
NAMESPACE = "warehouse"

Doc = dict[str, Any]


class Rendered:
    """One offline render: the manifests by template, parsed, and NOTES.txt."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)
        self.notes = self.files.pop("skuflow/templates/NOTES.txt", "")
        self.docs: list[Doc] = [
            doc
            for text in self.files.values()
            for doc in yaml.safe_load_all(text)
            if isinstance(doc, dict)
        ]

    def kinds(self) -> list[str]:
        return sorted(doc["kind"] for doc in self.docs)

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Doc:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def deployments(self) -> dict[str, Doc]:
        """Deployment by worker class (the app.kubernetes.io/component label)."""
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in self.of_kind("Deployment")
        }

    def settings_toml(self) -> str:
        data: dict[str, str] = self.one("ConfigMap")["data"]
        return data["skuflow.toml"]


def values_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / name).read_text())
    return loaded


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge (override wins), for small variations of a values file."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values: Mapping[str, Any] | None = None, *, name: str = RELEASE) -> Rendered:
    """Render the chart like ``helm template`` (the values schema is enforced)."""
    with helm.Chart.load(CHART) as chart:
        return Rendered(
            chart.render(
                dict(values) if values is not None else None, name=name, namespace=NAMESPACE
            )
        )


@functools.cache
def render_file(name: str | None) -> Rendered:
    """A cached render of a values file under tests/deploy/values (None: the chart's defaults)."""
    return render(values_file(name) if name else None)


def lint(values: Mapping[str, Any] | None, kube_version: str) -> dict[str, Any]:
    return helm.lint(
        CHART,
        dict(values) if values is not None else None,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{kube_version}",
    )


def chart_defaults() -> dict[str, Any]:
    defaults: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return defaults


def env_of(container: Doc) -> dict[str, Doc]:
    """A container's env entries by name (each duplicated name would be a bug)."""
    entries: list[Doc] = container.get("env", [])
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"duplicate env vars: {names}"
    return {e["name"]: e for e in entries}


def container(deployment: Doc) -> Doc:
    """The worker container of a Deployment (the pod has exactly one)."""
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


#: What an operator's Secret would hold, to build a pod's environment in the tests.
FAKE_SECRET = {
    "database-url": "postgresql://skuflow:pw@postgres:5432/skuflow",
    "database-password": "pw",
    "kafka-sasl-username": "skuflow",
    "kafka-sasl-password": "kafka-pw",
    "b1-password": "b1-pw",
    "ecc-password": "ecc-pw",
    "lwa-client-id": "amzn1.application-oa2-client.test",
    "lwa-client-secret": "lwa-secret",
    "lwa-refresh-token": "Atzr|token",
    "otel-exporter-otlp-headers": "api-key=k",
}


def secret_values(values: Mapping[str, Any] | None) -> dict[str, str]:
    """The Secret's contents for a render: the chart-made data, else FAKE_SECRET."""
    data: dict[str, str] = ((values or {}).get("credentials") or {}).get("data") or {}
    return data or FAKE_SECRET


def pod_environment(deployment: Doc, secrets: Mapping[str, str]) -> dict[str, str]:
    """The environment Kubernetes would give the container: plain values with `$(VAR)`
    expanded, Secret keys from ``secrets``, a placeholder for downward-API fields."""
    env: dict[str, str] = {}
    for name, entry in env_of(container(deployment)).items():
        if "value" in entry:
            value = str(entry["value"])
            for known, known_value in env.items():
                value = value.replace(f"$({known})", known_value)
            env[name] = value
        elif "secretKeyRef" in entry["valueFrom"]:
            env[name] = secrets[entry["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[name] = f"{name.lower()}-from-the-downward-api"
    return env


# --- schemas -----------------------------------------------------------------------------------

_K8S_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"


def _ref(definition: str) -> Doc:
    return {"$ref": _K8S_DEFS + definition}


def _closed(properties: Doc, required: list[str] | None = None) -> Doc:
    schema: Doc = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema


_STR = {"type": "string", "minLength": 1}
_INT = {"type": "integer"}
_META = _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def _resource(api_version: str, kind: str, spec: Doc) -> Doc:
    return _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


#: The custom resources' fields the chart uses (KEDA v2 keda.sh/v1alpha1 and Prometheus
#: Operator monitoring.coreos.com/v1 API references). Kafka scaler metadata values are strings.
CRD_SCHEMAS: dict[tuple[str, str], Doc] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        _closed(
            {
                "scaleTargetRef": _closed(
                    {"apiVersion": _STR, "kind": _STR, "name": _STR}, ["name"]
                ),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": _closed(
                    {
                        "horizontalPodAutoscalerConfig": _closed(
                            {
                                "name": _STR,
                                "behavior": _ref(
                                    "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
                                ),
                            }
                        ),
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                    }
                ),
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "type": {"const": "kafka"},
                            "name": _STR,
                            "metadata": _closed(
                                {
                                    key: {"type": "string", "minLength": 1}
                                    for key in (
                                        "bootstrapServers",
                                        "consumerGroup",
                                        "topic",
                                        "lagThreshold",
                                        "activationLagThreshold",
                                        "offsetResetPolicy",
                                        "allowIdleConsumers",
                                        "sasl",
                                        "tls",
                                    )
                                },
                                ["bootstrapServers", "consumerGroup", "topic", "lagThreshold"],
                            ),
                            "authenticationRef": _closed(
                                {"name": _STR, "kind": {"enum": ["TriggerAuthentication"]}},
                                ["name"],
                            ),
                        },
                        ["type", "metadata"],
                    ),
                },
            },
            ["scaleTargetRef", "triggers"],
        ),
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _resource(
        "keda.sh/v1alpha1",
        "TriggerAuthentication",
        _closed(
            {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {"parameter": _STR, "name": _STR, "key": _STR},
                        ["parameter", "name", "key"],
                    ),
                }
            },
            ["secretTargetRef"],
        ),
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        _closed(
            {
                "selector": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
                "namespaceSelector": _closed(
                    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}}
                ),
                "podTargetLabels": {"type": "array", "items": _STR},
                "targetLabels": {"type": "array", "items": _STR},
                "jobLabel": _STR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": _closed(
                        {
                            "port": _STR,
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "honorLabels": {"type": "boolean"},
                        },
                        ["port"],
                    ),
                },
            },
            ["selector", "endpoints"],
        ),
    ),
}


@functools.cache
def _crd_validator(
    api_version: str, kind: str, kube_version: str
) -> jsonschema.Draft202012Validator:
    definitions = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{_schema_version(kube_version)}-local-strict/_definitions.json",
        kube_version,
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json",
        referencing.Resource.from_contents(definitions),
    )
    return jsonschema.Draft202012Validator(CRD_SCHEMAS[api_version, kind], registry=registry)


def _schema_version(kube_version: str) -> str:
    """The newest schema set not newer than ``kube_version`` (as kubernetes-validate picks)."""

    def minor(version: str) -> tuple[int, int]:
        major, minor, *_ = version.split(".")
        return int(major), int(minor)

    available = [str(v) for v in kv_utils.all_versions() if minor(str(v)) <= minor(kube_version)]
    return available[-1]


def validate_manifest(doc: Doc, kube_version: str) -> None:
    """Raise if ``doc`` is not a valid object of its kind for ``kube_version``."""
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        _crd_validator(*key, kube_version).validate(doc)
    else:
        kubernetes_validate.validate(doc, kube_version, strict=True)
