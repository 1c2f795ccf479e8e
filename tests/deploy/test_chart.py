"""The Helm chart (helm/skuflow), rendered offline by Helm's engine, linted, validated against
the Kubernetes schemas, and checked against the worker it deploys: its probes, its settings
(the rendered ConfigMap + environment load in the real settings loader), its consumer groups,
its drain timeout and its image's user.

Values sets: the chart's defaults, ``values/full.yaml`` (every option on) and
``values/all-in-one.yaml`` (both classes per pod, KEDA on two groups).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import tomllib
import typing
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import dockerfile
import helm_python as helm
import jsonschema
import msgspec
import pytest

from config.settings import Secret, Settings, load_settings
from handlers.domain import b1_configured, ecc_configured
from skuflow.app import engine_options, urgent_options
from tests.deploy.chart import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Doc,
    Rendered,
    chart_defaults,
    container,
    env_of,
    lint,
    merged,
    pod_environment,
    pod_spec,
    render,
    render_file,
    secret_values,
    validate_manifest,
    values_file,
)
from worker.health import HealthServer
from worker.tracing import resource as tracing_resource

VALUE_SETS = [None, "full.yaml", "all-in-one.yaml", "ecc.yaml"]
SECRET_ENV = {
    "PGPASSWORD",
    "SKUFLOW_DATABASE_URL",
    "SKUFLOW_KAFKA_SASL_USERNAME",
    "SKUFLOW_KAFKA_SASL_PASSWORD",
    "SKUFLOW_B1_PASSWORD",
    "SKUFLOW_ECC__PASSWORD",
    "SKUFLOW_LWA_CLIENT_ID",
    "SKUFLOW_LWA_CLIENT_SECRET",
    "SKUFLOW_LWA_REFRESH_TOKEN",
    "OTEL_EXPORTER_OTLP_HEADERS",
}


def _load_pod_settings(
    rendered: Rendered, deployment: Doc, secrets: dict[str, str], tmp: Path
) -> Settings:
    """The worker's settings exactly as a pod would load them (ConfigMap file + environment)."""
    env = pod_environment(deployment, secrets)
    mount = next(m for m in container(deployment)["volumeMounts"] if m["name"] == "config")[
        "mountPath"
    ]
    config_path = Path(env["SKUFLOW_CONFIG"])
    assert config_path.parent == Path(mount), "SKUFLOW_CONFIG must point into the ConfigMap mount"
    local = tmp / config_path.name
    local.write_text(rendered.settings_toml())
    env["SKUFLOW_CONFIG"] = str(local)
    return load_settings(None, env)


# --- render, lint, validate -----------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_lints_clean(values: str | None, kube_version: str) -> None:
    result = lint(values_file(values) if values else None, kube_version)
    assert result["errors"] == []
    # Severity 1 is INFO (e.g. "icon is recommended"); warnings and errors are 2 and up.
    assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", VALUE_SETS)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(values: str | None, kube_version: str) -> None:
    rendered = render_file(values)
    assert rendered.docs
    for doc in rendered.docs:
        validate_manifest(doc, kube_version)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("Deployment", lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriod=60)),
        ("Deployment", lambda d: container(d)["livenessProbe"].update(periodSeconds="10")),
        ("PodDisruptionBudget", lambda d: d["spec"].update(unhealthyPodEvictionPolicy=True)),
        ("ScaledObject", lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=20)),
        ("ScaledObject", lambda d: d["spec"].update(maxReplicas=3)),
        ("ServiceMonitor", lambda d: d["spec"]["endpoints"][0].update(interval=15)),
        ("TriggerAuthentication", lambda d: d["spec"]["secretTargetRef"][0].pop("key")),
    ],
)
def test_the_validators_catch_a_broken_manifest(kind: str, mutate: Any) -> None:
    """Not vacuous: one wrong field or type in a rendered object fails its validation."""
    doc = copy.deepcopy(render_file("full.yaml").of_kind(kind)[0])
    validate_manifest(doc, KUBE_VERSIONS[0])
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(doc, KUBE_VERSIONS[0])


def test_default_values_render_the_split_layout() -> None:
    rendered = render_file(None)
    assert rendered.kinds() == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    deployments = rendered.deployments()
    assert set(deployments) == {"urgent", "normal"}
    for worker_class, deployment in deployments.items():
        assert container(deployment)["args"] == ["--class", worker_class]
        assert deployment["spec"]["replicas"] == 2


def test_every_option_renders_every_object() -> None:
    rendered = render_file("full.yaml")
    assert rendered.kinds() == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "PodDisruptionBudget",
            "ScaledObject",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "TriggerAuthentication",
        ]
    )
    image = container(rendered.deployments()["urgent"])["image"]
    assert image == (
        "registry.example.com/fulfilment/skuflow@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


def test_standard_labels_and_selectors() -> None:
    rendered = render_file("full.yaml")
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "skuflow", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "skuflow-0.1.0"
        assert labels["team"] == "fulfilment"  # commonLabels
        assert doc["metadata"]["namespace"] == NAMESPACE
    service = rendered.one("Service")
    for deployment in rendered.of_kind("Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()
        assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = rendered.one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert service["spec"]["publishNotReadyAddresses"] is True


# --- probes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_probes_use_the_health_endpoints_on_the_health_port(
    values: str | None, tmp_path: Path
) -> None:
    rendered = render_file(values)
    for deployment in rendered.of_kind("Deployment"):
        worker = container(deployment)
        (port,) = worker["ports"]
        assert port["name"] == "http"
        for probe in ("startupProbe", "livenessProbe"):
            assert worker[probe]["httpGet"] == {"path": "/livez", "port": "http"}
        assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            # A blocked event loop never answers: only a timeout turns that into a failure.
            assert worker[probe]["timeoutSeconds"] >= 1
            assert worker[probe]["failureThreshold"] >= 1
        # The port the worker binds is the port the probes call.
        settings = _load_pod_settings(rendered, deployment, secret_values(None), tmp_path)
        assert settings.health.port == port["containerPort"]
        assert settings.health.host == "0.0.0.0"


def test_liveness_does_not_depend_on_kafka_postgres_or_the_erp() -> None:
    """What the liveness probe calls answers 200 while readiness reports PostgreSQL and the
    consumer group unreachable; only a stalled fetch loop fails it."""
    last_beat = [time.monotonic()]

    async def unreachable() -> tuple[bool, str]:
        return False, "PostgreSQL unreachable"

    async def main() -> tuple[int, int, int]:
        server = HealthServer(
            heartbeat=lambda: last_beat[0], readiness=unreachable, stall_seconds=30
        )
        await server.start("127.0.0.1", 0)
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/livez") as live, http.get(f"{base}/readyz") as ready:
                    alive, readiness = live.status, ready.status
                last_beat[0] -= 31  # the fetch loop stops beating
                async with http.get(f"{base}/livez") as stalled:
                    return alive, readiness, stalled.status
        finally:
            await server.stop()

    assert anyio.run(main) == (200, 503, 503)
    probes = container(render_file(None).deployments()["normal"])
    assert probes["livenessProbe"]["httpGet"]["path"] == "/livez"


# --- security -------------------------------------------------------------------------------------


def _dockerfile_user() -> tuple[int, int]:
    users = [
        c.value[0]
        for c in dockerfile.parse_file(str(CHART.parents[1] / "Dockerfile"))
        if c.cmd == "USER"
    ]
    uid, gid = users[-1].split(":")
    return int(uid), int(gid)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_pods_are_locked_down(values: str | None) -> None:
    uid, gid = _dockerfile_user()
    for deployment in render_file(values).of_kind("Deployment"):
        pod = pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid  # the image's fixed UID/GID
        assert pod["securityContext"]["runAsGroup"] == gid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        context = container(deployment)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["privileged"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        # The only writable path is /tmp, an emptyDir.
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        writable = [path for path, m in mounts.items() if not m.get("readOnly")]
        assert writable == ["/tmp"]
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        (
            {"securityContext": {"readOnlyRootFilesystem": False}},
            "/securityContext/readOnlyRootFilesystem",
        ),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "/securityContext/allowPrivilegeEscalation",
        ),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        (
            {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
            "/securityContext/capabilities/drop",
        ),
    ],
)
def test_the_schema_refuses_to_weaken_the_security_context(
    override: dict[str, Any], path: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=path):
        render(override)


def test_topology_spread_and_disruption_budget_cover_each_class() -> None:
    rendered = render_file("full.yaml")
    budgets = {
        b["metadata"]["labels"]["app.kubernetes.io/component"]: b
        for b in rendered.of_kind("PodDisruptionBudget")
    }
    for worker_class, deployment in rendered.deployments().items():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
            assert (
                constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"]
                == worker_class
            )
            assert constraint["whenUnsatisfiable"] == "DoNotSchedule"
        budget = budgets[worker_class]["spec"]
        assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert budget["maxUnavailable"] == 1
        assert budget["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


# --- drain: grace period vs drain timeout ---------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_grace_period_outlasts_the_drain(values: str | None, tmp_path: Path) -> None:
    rendered = render_file(values)
    for deployment in rendered.of_kind("Deployment"):
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        settings = _load_pod_settings(rendered, deployment, secret_values(None), tmp_path)
        assert grace >= settings.engine.drain_timeout_seconds + 10
        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize(
    "override",
    [
        {"terminationGracePeriodSeconds": 35},  # default drain 30 s
        {"config": {"engine": {"drain_timeout_seconds": 55}}},  # default grace 60 s
        {
            "terminationGracePeriodSeconds": 90,
            "config": {"engine": {"drain_timeout_seconds": 80.5}},
        },
    ],
)
def test_a_grace_period_shorter_than_the_drain_fails_rendering(override: dict[str, Any]) -> None:
    with pytest.raises(
        helm.HelmRenderError,
        match=r"terminationGracePeriodSeconds \(\d+\) must be at least "
        r"config\.engine\.drain_timeout_seconds \([\d.]+\) \+ 10",
    ):
        render(override)


def test_a_grace_period_shorter_than_the_drain_is_refused_by_the_schema_too() -> None:
    with pytest.raises(helm.HelmValuesError, match="/terminationGracePeriodSeconds"):
        render({"terminationGracePeriodSeconds": 5})


# --- config: ConfigMap, checksum, the worker's own loader -----------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_settings_load_in_the_worker(values: str | None, tmp_path: Path) -> None:
    rendered = render_file(values)
    chosen = values_file(values) if values else {}
    expected = merged(chart_defaults(), chosen)
    secrets = secret_values(chosen)
    for worker_class, deployment in rendered.deployments().items():
        settings = _load_pod_settings(rendered, deployment, secrets, tmp_path)
        kafka = expected["kafka"]
        assert settings.kafka.bootstrap == kafka["bootstrap"]
        assert settings.kafka.group == kafka["group"]
        assert settings.kafka.security_protocol == kafka["securityProtocol"]
        assert settings.topics.dispatch == kafka["topics"]["dispatch"]["name"]
        assert settings.topics.stock == kafka["topics"]["stock"]["name"]
        assert settings.topics.dead_letter == kafka["topics"]["deadLetter"]["name"]
        assert (
            settings.engine.drain_timeout_seconds
            == expected["config"]["engine"]["drain_timeout_seconds"]
        )
        assert settings.log.format == "json"
        if kafka["securityProtocol"].startswith("SASL_"):
            assert settings.kafka.sasl_mechanism == kafka["saslMechanism"]
            assert settings.kafka.sasl_password is not None
        assert b1_configured(settings) is expected["b1"]["enabled"]
        assert ecc_configured(settings) is expected["ecc"]["enabled"]
        assert settings.erp.kind == ("ecc" if expected["ecc"]["enabled"] else "b1")
        if expected["ecc"]["enabled"]:
            assert (settings.ecc.url, settings.ecc.sid) == (
                expected["ecc"]["url"],
                expected["ecc"]["sid"],
            )
        sp = settings.spapi
        assert (
            bool(sp.client_id and sp.client_secret and sp.refresh_token)
            is expected["spapi"]["enabled"]
        )
        assert container(deployment)["args"] == ["--class", worker_class]
        # Static membership: the pod's name (downward API) is the group instance id.
        instance = env_of(container(deployment)).get("SKUFLOW_KAFKA__GROUP_INSTANCE_ID")
        if kafka["staticMembership"]:
            assert instance is not None
            assert instance["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            assert (
                settings.kafka.group_instance_id
                == "skuflow_kafka__group_instance_id-from-the-downward-api"
            )
        else:
            assert instance is None
            assert settings.kafka.group_instance_id == ""


def test_every_setting_of_the_full_values_reaches_the_worker(tmp_path: Path) -> None:
    rendered = render_file("full.yaml")
    values = values_file("full.yaml")
    settings = _load_pod_settings(
        rendered, rendered.deployments()["urgent"], secret_values(values), tmp_path
    )
    # config.* tables, key by key, as the worker sees them.
    for table, keys in values["config"].items():
        for key, value in keys.items():
            assert msgspec.to_builtins(getattr(getattr(settings, table), key)) == value, (
                f"{table}.{key}"
            )
    assert settings.kafka.ssl_cafile == Path("/etc/skuflow/kafka-ca/ca.crt")
    deployment = rendered.deployments()["urgent"]
    mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
    assert mounts["kafka-ca"] == "/etc/skuflow/kafka-ca"
    ca_volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "kafka-ca")
    assert ca_volume["secret"] == {
        "secretName": "kafka-cluster-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    # The database URL has no password; it comes from the Secret as PGPASSWORD (asyncpg's and
    # libpq's variable), so no URL escaping is needed.
    assert settings.database.url.reveal() == (
        "postgresql://skuflow_app@postgres.db.svc:5432/skuflow?"
        "sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fcerts%2Fca-certificates.crt"
    )
    assert settings.b1.url == "https://b1.erp.svc:50000/b1s/v1"
    assert settings.b1.password == Secret("b1-password-not-in-configmap")
    assert settings.mappings.sku_map == Path("/etc/skuflow/config/sku-map.csv")
    assert rendered.one("ConfigMap")["data"]["sku-map.csv"] == values["skuMapCsv"]
    env = pod_environment(deployment, secret_values(values))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "api-key=otel-key-not-in-configmap"
    attributes = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attributes["deployment.environment.name"] == "production"
    assert attributes["skuflow.class"] == "urgent"
    # The downward API reaches the worker's OpenTelemetry resource (the pod UID is the instance).
    resource = tracing_resource("0.1.0", env).attributes
    assert resource["k8s.pod.name"] == "k8s_pod_name-from-the-downward-api"
    assert resource["service.instance.id"] == "k8s_pod_uid-from-the-downward-api"
    assert resource["k8s.namespace.name"] == "k8s_namespace_name-from-the-downward-api"
    assert resource["k8s.node.name"] == "k8s_node_name-from-the-downward-api"
    assert str(resource["k8s.deployment.name"]).endswith("urgent")
    assert env["TZ"] == "UTC"  # extraEnv


def test_the_settings_file_is_toml_with_integers_kept_integers() -> None:
    # Helm hands numbers to templates as float64; the worker's strict loader refuses 256.0 for
    # an int. The chart's own TOML writer keeps whole numbers whole.
    parsed = tomllib.loads(render_file("full.yaml").settings_toml())
    assert parsed["engine"]["max_in_flight"] == 512
    assert parsed["engine"]["max_buffered_bytes"] == 134217728
    assert parsed["b1"]["timeout_seconds"] == 20.5
    assert parsed["mappings"]["warehouses"] == {"LOC-01": "01", "LOC-02": "02", "Dock 3": "03"}


def test_config_checksum_rolls_pods_on_config_changes_only() -> None:
    base = values_file("full.yaml")
    rendered = render(base)
    config_map = rendered.files["skuflow/templates/configmap.yaml"]
    secret = rendered.files["skuflow/templates/secret.yaml"]

    def checksums(r: Rendered) -> set[tuple[str, str]]:
        return {
            (
                d["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
                d["spec"]["template"]["metadata"]["annotations"]["checksum/credentials"],
            )
            for d in r.of_kind("Deployment")
        }

    assert checksums(rendered) == {
        (
            hashlib.sha256(config_map.encode()).hexdigest(),
            hashlib.sha256(secret.encode()).hexdigest(),
        )
    }
    changed_config = render(merged(base, {"config": {"engine": {"max_in_flight": 128}}}))
    changed_secret = render(merged(base, {"credentials": {"data": {"b1-password": "rotated"}}}))
    changed_replicas = render(merged(base, {"workers": {"urgent": {"replicas": 5}}}))
    (before,) = checksums(rendered)
    (after_config,) = checksums(changed_config)
    (after_secret,) = checksums(changed_secret)
    assert after_config[0] != before[0]
    assert after_config[1] == before[1]
    assert after_secret[0] == before[0]
    assert after_secret[1] != before[1]
    assert checksums(changed_replicas) == {before}


# --- credentials ----------------------------------------------------------------------------------


def test_credentials_never_reach_the_config_map_or_thepod_spec() -> None:
    values = values_file("full.yaml")
    rendered = render(values)
    secret_values = values["credentials"]["data"]
    secret = rendered.one("Secret")
    assert secret["type"] == "Opaque"
    assert set(secret["data"]) == set(secret_values)
    for doc in rendered.docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for key, value in secret_values.items():
            if key not in {"kafka-sasl-username", "lwa-client-id"}:  # not secret, still only there
                assert value not in text, f"{key} leaked into {doc['kind']}"
    for deployment in rendered.of_kind("Deployment"):
        env = env_of(container(deployment))
        # database.host is set: the URL (no password) is in the ConfigMap, PGPASSWORD secret.
        assert "SKUFLOW_DATABASE_URL" not in env
        for name in SECRET_ENV - {"SKUFLOW_DATABASE_URL", "SKUFLOW_ECC__PASSWORD"}:  # (B1 here)
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["data"]
        for name, entry in env.items():
            if any(
                word in name for word in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL", "HEADERS")
            ):
                assert "value" not in entry, f"{name} must come from a Secret"


def test_with_sap_ecc_its_password_comes_from_the_secret_and_b1s_is_not_asked_for() -> None:
    rendered = render_file("ecc.yaml")
    for deployment in rendered.of_kind("Deployment"):
        env = env_of(container(deployment))
        ref = env["SKUFLOW_ECC__PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "ecc-password"
        assert "SKUFLOW_B1_PASSWORD" not in env
    config = rendered.one("ConfigMap")
    assert "ecc-pw" not in json.dumps(config)


def test_one_erp_at_a_time() -> None:
    with pytest.raises(helm.HelmRenderError, match="enable b1 or ecc"):
        render({
            "b1": {"enabled": True, "url": "https://b1:50000/b1s/v1"},
            "ecc": {"enabled": True, "url": "https://ecc:44300"},
        })  # fmt: skip


def test_an_existing_secret_is_referenced_and_no_secret_is_made() -> None:
    rendered = render_file(None)
    assert rendered.of_kind("Secret") == []
    for deployment in rendered.of_kind("Deployment"):
        env = env_of(container(deployment))
        assert env["SKUFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "skuflow-credentials",
            "key": "database-url",
        }
    assert "database-url (SKUFLOW_DATABASE_URL)" in rendered.notes


def test_a_chart_made_secret_must_hold_every_key_the_connectors_need() -> None:
    values = merged(values_file("full.yaml"), {})
    del values["credentials"]["data"]["b1-password"]
    del values["credentials"]["data"]["lwa-refresh-token"]
    with pytest.raises(
        helm.HelmRenderError,
        match=re.escape("credentials.data lacks b1-password, lwa-refresh-token"),
    ):
        render(values)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"config": {"database": {"url": "postgresql://u:pw@h/db"}}},
            "at '/config/database': additional properties 'url' not allowed",
        ),
        (
            {"config": {"b1": {"password": "pw"}}},
            "at '/config/b1': additional properties 'password' not allowed",
        ),
        (
            {"config": {"spapi": {"client_secret": "s"}}},
            "at '/config/spapi': additional properties 'client_secret' not allowed",
        ),
        (
            {"config": {"kafka": {"sasl_password": "pw"}}},
            "at '/config/kafka': additional properties 'sasl_password' not allowed",
        ),
        (
            {"credentials": {"create": True, "data": {"b1_password": "pw"}}},
            "at '/credentials/data': additional properties 'b1_password' not allowed",
        ),
    ],
)
def test_credentials_in_values_are_refused_by_the_schema(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(override)


# --- scaling on lag -------------------------------------------------------------------------------


def test_keda_scales_each_class_on_its_own_consumer_group_lag(tmp_path: Path) -> None:
    rendered = render_file("full.yaml")
    values = values_file("full.yaml")
    scaled = rendered.one("ScaledObject")
    assert scaled["metadata"]["labels"]["app.kubernetes.io/component"] == "urgent"
    deployment = rendered.deployments()["urgent"]
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    assert "replicas" not in rendered.deployments()["normal"]["spec"]  # (HPA)
    # Asked for 50, capped at the dispatch topic's 12 partitions: more would sit idle.
    assert scaled["spec"]["maxReplicaCount"] == 12
    assert scaled["spec"]["minReplicaCount"] == 2
    (trigger,) = scaled["spec"]["triggers"]
    settings = _load_pod_settings(rendered, deployment, secret_values(values), tmp_path)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == urgent_options(settings).group
    assert trigger["metadata"]["topic"] == settings.topics.dispatch
    assert trigger["metadata"]["bootstrapServers"] == settings.kafka.bootstrap
    assert trigger["metadata"]["lagThreshold"] == "20"
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    auth = rendered.one("TriggerAuthentication")
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    secret_name = rendered.one("Secret")["metadata"]["name"]
    assert refs == {
        "username": (secret_name, "kafka-sasl-username"),
        "password": (secret_name, "kafka-sasl-password"),
        "ca": ("kafka-cluster-ca", "ca.crt"),
    }


def test_keda_for_the_all_class_watches_both_groups(tmp_path: Path) -> None:
    rendered = render_file("all-in-one.yaml")
    (deployment,) = rendered.of_kind("Deployment")
    assert container(deployment)["args"] == ["--class", "all"]
    settings = _load_pod_settings(rendered, deployment, secret_values(None), tmp_path)
    scaled = rendered.one("ScaledObject")
    watched = {
        (t["metadata"]["topic"], t["metadata"]["consumerGroup"]) for t in scaled["spec"]["triggers"]
    }
    normal = engine_options(settings).group
    assert watched == {
        (settings.topics.dispatch, urgent_options(settings).group),
        (settings.topics.stock, normal),
        (settings.topics.orders, normal),  # the order flow's topics, in the normal group
        (settings.topics.returns, normal),
    }
    assert urgent_options(settings).group == "wh-eu.urgent"
    assert scaled["spec"]["maxReplicaCount"] == 8  # max(3, 8) partitions
    assert "tls" not in scaled["spec"]["triggers"][0]["metadata"]
    assert rendered.of_kind("PodDisruptionBudget") == []
    assert pod_spec(deployment)["serviceAccountName"] == "default"


def test_hpa_is_capped_at_the_partition_count() -> None:
    hpa = render_file("full.yaml").one("HorizontalPodAutoscaler")
    assert hpa["metadata"]["labels"]["app.kubernetes.io/component"] == "normal"
    assert hpa["spec"]["maxReplicas"] == 24  # asked for 40; the stock topic has 24 partitions
    assert (
        hpa["spec"]["scaleTargetRef"]["name"]
        == render_file("full.yaml").deployments()["normal"]["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"workers": {"urgent": {"hpa": {"enabled": True}, "keda": {"enabled": True}}}},
            "workers.urgent: hpa and keda cannot both be enabled",
        ),
        (
            {"workers": {"urgent": {"keda": {"enabled": True, "minReplicas": 7}}}},
            r"workers.urgent.keda.minReplicas \(7\) exceeds the partition count \(6\)",
        ),
        (
            {
                "workers": {
                    "normal": {"hpa": {"enabled": True, "minReplicas": 9, "maxReplicas": 12}}
                }
            },
            r"workers.normal.hpa.minReplicas \(9\) exceeds the partition count \(6\)",
        ),
        ({"workers": {"all": {"enabled": True}}}, "workers.all runs both classes in every pod"),
        (
            {"workers": {"urgent": {"enabled": False}, "normal": {"enabled": False}}},
            "workers: enable",
        ),
        (
            {"kafka": {"tls": {"caSecret": "ca"}}},
            "kafka.securityProtocol PLAINTEXT does not use TLS",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(override)


def test_notes_warn_about_idle_replicas() -> None:
    rendered = render({"workers": {"urgent": {"replicas": 8}}})
    assert "more replicas than partitions (6): 2 pod(s) will sit idle" in rendered.notes
    assert "b1.enabled is false" in rendered.notes


# --- the values schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicaCount": 3}, "at '': additional properties 'replicaCount' not allowed"),
        (
            {"workers": {"urgent": {"replica": 3}}},
            "at '/workers/urgent': additional properties 'replica' not allowed",
        ),
        (
            {"config": {"engine": {"drain_timeout": 10}}},
            "at '/config/engine': additional properties 'drain_timeout' not allowed",
        ),
        ({"config": {"engnie": {}}}, "at '/config': additional properties 'engnie' not allowed"),
        ({"kafka": {"securityProtocol": "SASL"}}, "at '/kafka/securityProtocol'"),
        ({"kafka": {"bootstrap": "kafka"}}, "at '/kafka/bootstrap'"),
        ({"b1": {"enabled": True}}, "at '/b1/url'"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ],
)
def test_a_bad_values_file_is_rejected_by_the_schema(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
        render(override)


def test_a_bad_values_file_names_every_mistake() -> None:
    with pytest.raises(helm.HelmValuesError) as refused:
        render(values_file("bad.yaml"))
    message = str(refused.value)
    assert "at '/workers/urgent': additional properties 'replica' not allowed" in message
    assert "at '/config/engine': additional properties 'drain_timeout' not allowed" in message
    assert "at '/config/b1': additional properties 'password' not allowed" in message
    linted = lint(values_file("bad.yaml"), KUBE_VERSIONS[0])  # `helm lint -f bad.yaml` fails
    assert any("additional properties 'replica' not allowed" in e for e in linted["errors"])
    assert "hunter2" not in message + json.dumps(linted)  # the refused value is not echoed


def test_the_values_schema_closes_every_object() -> None:
    """A typo anywhere fails: every object schema says what else it accepts, if anything."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects: list[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_objects.append(path)
            for key, value in node.items():
                visit(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, f"{path}/{index}")

    visit(schema, "#")
    assert open_objects == []
    assert schema["additionalProperties"] is False


def test_the_config_schema_follows_the_worker_settings() -> None:
    """Every key `config` accepts is a real, non-secret setting; every setting is either
    accepted there or set by the chart (so a new setting cannot be forgotten)."""
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    chart_owned = {
        "kafka": {
            "bootstrap",
            "group",
            "security_protocol",
            "sasl_mechanism",
            "ssl_cafile",
            "group_instance_id",
        },
        "database": {"url"},
        "topics": {"dispatch", "stock", "dead_letter", "orders", "returns", "released"},
        "mappings": {"sku_map"},
        "b1": {"url", "company", "user"},
        "ecc": {"url", "client", "sid", "user"},
        "erp": {"kind"},
        "spapi": {"endpoint", "lwa_endpoint"},
        "health": {"port", "host"},
    }
    for table in msgspec.structs.fields(Settings):
        accepted = set(schema["properties"].get(table.name, {}).get("properties", {}))
        for field in msgspec.structs.fields(table.type):
            dotted = f"{table.name}.{field.name}"
            secret = Secret in (field.type, *typing.get_args(field.type)) or dotted in {
                "kafka.sasl_username",
                "spapi.client_id",
            }
            if secret:
                assert field.name not in accepted, f"{table.name}.{field.name} is a credential"
            else:
                assert (field.name in accepted) != (
                    field.name in chart_owned.get(table.name, set())
                ), f"{table.name}.{field.name}: accepted by config xor set by the chart"
        assert accepted <= {f.name for f in msgspec.structs.fields(table.type)}
    assert set(schema["properties"]) <= {t.name for t in msgspec.structs.fields(Settings)}
