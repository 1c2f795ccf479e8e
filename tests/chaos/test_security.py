"""Security: no secret value anywhere the worker writes, and insecure settings are refused.

A real ``skuflow run`` (child process, JSON logs at DEBUG, every span exported to its stdout by
``OTEL_TRACES_EXPORTER=console``) runs with distinctive canary values in every secret setting —
the database password inside the URL, the B1 password, the LWA client secret and refresh token
(the Kafka SASL password is checked through ``config check``: the test broker has no SASL).
The simulators first *refuse* the logins and echo the credentials they got in their error bodies
(the B1 login body as JSON, the LWA form's fields), so
stock events end as ``retries_exhausted`` exceptions and dispatches are parked with the
connectors' error text; then they accept, and everything posts and confirms. Scanned for every
canary (raw, percent-encoded, base64 at any alignment, hex): the process's whole output (logs
and spans), every row of every table in PostgreSQL, every dead letter (value and headers),
``skuflow config check``, ``skuflow exceptions list --json`` / ``show --json``.

The insecure combination the README warns against — SASL ``PLAIN`` over ``SASL_PLAINTEXT`` —
is refused by ``skuflow config check`` and ``skuflow run`` (exit 2, one line naming
``kafka.security_protocol`` and the way out) unless ``kafka.allow_insecure_sasl = true``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import asyncpg
import msgspec
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from config.settings import Secret
from devstack.postgres import run_sync
from devstack.sims.b1 import model as b1_model
from devstack.sims.b1.server import B1Simulator
from devstack.sims.spapi.server import SpApiSimulator
from handlers.connectors.spapi.client import SpApiAuthError
from handlers.connectors.spapi.lwa import LwaTokenProvider
from handlers.stock.events import StockAdjusted
from tests.chaos.harness import OPENING, WAREHOUSES, Simulators, WorkerProcess, wait_until
from tests.support.events import dispatch_payload
from tests.support.stack import produce

pytestmark = [pytest.mark.scenario]

CreateTopics = Callable[..., None]
ROOT = Path(__file__).resolve().parents[2]
SKUFLOW = [sys.executable, "-m", "skuflow.cli"]
CLIENT_ID = "amzn1.application-oa2-client.canary"
ITEMS = [f"SEC{i:02d}" for i in range(5)]
README = ROOT / "README.md"


def canary(name: str) -> str:
    """Distinctive, and with characters that URLs and forms encode (``+/=``)."""
    return f"cnry-{name}-{secrets.token_hex(6)}+/="


SECRETS = {
    "database password": canary("pg"),
    "b1 password": canary("b1"),
    "lwa client secret": canary("lwa"),
    "lwa refresh token": "Atzr|" + canary("refresh"),
    "kafka sasl password": canary("sasl"),
}


def forms(secret: str) -> list[str]:
    """The ways a secret can show up in text: as is, percent-encoded (URLs, forms), the core of
    its base64 at each of the three alignments, and hex (PostgreSQL ``bytea`` as JSON)."""
    raw = secret.encode()
    found = {secret, quote(secret, safe=""), quote(secret), quote(secret, safe="").lower()}
    found.add(quote(secret, safe="").replace("%20", "+"))
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        found.add(encoded[4:-4])
    found.add(raw.hex())
    return sorted(found)


def leaks(text: str, where: str) -> list[str]:
    return [
        f"{name} in {where} as {form!r}"
        for name, secret in SECRETS.items()
        for form in forms(secret)
        if form and form in text
    ]


# --- simulators that refuse the logins and echo what they were sent -----------------------------


class EchoingB1(B1Simulator):
    """Refuses logins while ``refusing``, echoing the request body in the error message."""

    refusing = True

    async def _login(self, request: web.Request) -> web.Response:
        if self.refusing:
            body = (await request.read()).decode("utf-8", "replace")
            raise b1_model.SLError(401, -304, f"Fail to get DB Credentials for request {body}")
        return await super()._login(request)


class EchoingSpApi(SpApiSimulator):
    """Refuses the refresh-token grant while ``refusing``, echoing the form's fields (decoded),
    or with ``echo_encoded`` the form exactly as received (``application/x-www-form-urlencoded``:
    ``+/=`` arrive as ``%2B%2F%3D``)."""

    refusing = True
    echo_encoded = False

    async def _lwa(self, request: web.Request) -> web.Response:
        if self.refusing:
            if self.echo_encoded:
                body = (await request.read()).decode("utf-8", "replace")
            else:
                form = await request.post()
                body = " ".join(f"{k}={v!s}" for k, v in form.items() if isinstance(v, str))
            description = f"Client authentication failed for request: {body}"
            return web.json_response(
                {"error": "invalid_client", "error_description": description}, status=401
            )
        return await super()._lwa(request)


def echoing_simulators() -> tuple[Simulators, EchoingB1, EchoingSpApi]:
    sims = Simulators(ITEMS)
    b1 = EchoingB1(password=SECRETS["b1 password"], seed=7)
    spapi = EchoingSpApi(
        client_id=CLIENT_ID,
        client_secret=SECRETS["lwa client secret"],
        refresh_token=SECRETS["lwa refresh token"],
        seed=7,
    )
    sims.b1, sims.spapi = b1, spapi
    return sims, b1, spapi


# --- settings ------------------------------------------------------------------------------------


def with_password(database_url: str) -> str:
    """The test database's URL with the canary as its password (the server trusts local users,
    so the worker connects while the password travels through every layer)."""
    scheme, rest = database_url.split("://", 1)
    userinfo, host = rest.split("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:{quote(SECRETS['database password'], safe='')}@{host}"


def toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def secret_env(database_url: str) -> dict[str, str]:
    """Every secret through the contract's environment variables."""
    return {
        "SKUFLOW_DATABASE_URL": with_password(database_url),
        "SKUFLOW_B1_PASSWORD": SECRETS["b1 password"],
        "SKUFLOW_LWA_CLIENT_ID": CLIENT_ID,
        "SKUFLOW_LWA_CLIENT_SECRET": SECRETS["lwa client secret"],
        "SKUFLOW_LWA_REFRESH_TOKEN": SECRETS["lwa refresh token"],
    }


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SKUFLOW_")}
    return subprocess.run(
        [*SKUFLOW, *args],
        cwd=ROOT,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- what the worker wrote -----------------------------------------------------------------------


async def _dump_tables(database_url: str) -> dict[str, list[str]]:
    conn = await asyncpg.connect(database_url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return {
            table: [
                r["row"]
                for r in await conn.fetch(f'SELECT row_to_json(t)::text AS row FROM "{table}" t')
            ]
            for table in tables
        }
    finally:
        await conn.close()


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('skuflow_stock_lines') IS NOT NULL")
        return int(await conn.fetchval(sql)) if exists else 0
    finally:
        await conn.close()


def count(database_url: str, sql: str) -> int:
    return run_sync(lambda: _count(database_url, sql))


async def _dead_letters(bootstrap: str, topic: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    texts: list[str] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                parts = [record.value or b"", record.key or b""]
                parts += [k.encode() + b"=" + (v or b"") for k, v in record.headers]
                texts.append(b"\n".join(parts).decode("utf-8", "replace"))
    finally:
        await consumer.stop()
    return texts


def _adjustment(n: int, sku: str) -> tuple[bytes, bytes]:
    event = StockAdjusted(
        event_id=f"sec-adj-{n}", occurred_at=datetime.now(UTC), source="ims",
        source_ref=f"IMS-{n}", sku=sku, warehouse="LOC-01", quantity=Decimal(-1), reason="count",
    )  # fmt: skip
    return sku.encode(), msgspec.json.encode(event)


def _dispatch(order_id: str) -> tuple[bytes, bytes]:
    ship_by = datetime.now(UTC) + timedelta(days=2)
    return order_id.encode(), dispatch_payload(
        order_id, ship_by, event_id=f"sec-dsp-{order_id}", sku="SKU"
    )


@pytest.fixture
def sims() -> Iterator[tuple[Simulators, EchoingB1, EchoingSpApi]]:
    found = echoing_simulators()
    found[0].start()
    try:
        yield found
    finally:
        found[0].stop()


@pytest.mark.timeout(180)
def test_no_secret_reaches_logs_spans_state_dead_letters_or_the_cli(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    tmp_path: Path,
    sims: tuple[Simulators, EchoingB1, EchoingSpApi],
) -> None:
    simulators, b1, spapi = sims
    topics = {"stock": f"{unique}.stock", "dispatch": f"{unique}.dispatch"}
    dead_letter = f"{unique}.dlq"
    create_topics(topics["stock"], topics["dispatch"])
    create_topics(dead_letter, partitions=1)
    orders = [f"171-{i:07d}-7777777" for i in range(3)]
    simulators.add_orders([(o, datetime.now(UTC) + timedelta(days=2)) for o in orders])
    config = tmp_path / "security.toml"
    config.write_text(
        toml(
            {
                "kafka": {"bootstrap": kafka_bootstrap, "group": f"{unique}.group",
                          "session_timeout_ms": 6000},
                "topics": {**topics, "dead_letter": dead_letter},
                "b1": {"url": b1.url, "timeout_seconds": 5.0},
                "spapi": {"endpoint": spapi.endpoint, "lwa_endpoint": spapi.lwa_endpoint,
                          "rate_per_second": 50.0},
                "stock": {"window_seconds": 1.0, "retry_max_seconds": 2.0},
                "health": {"port": 0, "host": "127.0.0.1"},
                "log": {"format": "json", "level": "DEBUG"},
                "engine": {"commit_interval_seconds": 0.5, "max_attempts": 3,
                           "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2,
                           "drain_timeout_seconds": 10.0},
            }
        )
        + '[mappings.warehouses]\n"LOC-01" = "01"\n"LOC-02" = "02"\n'
    )  # fmt: skip
    env = {
        **secret_env(database_url),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    worker = WorkerProcess("security", config, env).start()
    found: list[str] = []
    try:
        worker.wait_ready(90)
        # Phase 1: the ERP and LWA refuse the logins and echo the credentials they were sent.
        invalid = [(b"k", b'{"type": "stock.adjusted", "event_id": 7'), (None, b"\xff\xfe")]
        stock = [_adjustment(n, ITEMS[n % len(ITEMS)]) for n in range(5)]
        run_sync(lambda: produce(kafka_bootstrap, topics["stock"], [*stock, *invalid]))
        run_sync(
            lambda: produce(kafka_bootstrap, topics["dispatch"], [_dispatch(o) for o in orders])
        )
        exhausted = "SELECT count(*) FROM skuflow_exceptions WHERE kind = 'retries_exhausted'"
        parked = "SELECT count(*) FROM skuflow_parked"
        wait_until(
            lambda: (
                count(database_url, exhausted) >= len(stock)
                and count(database_url, parked) >= len(orders)
            ),
            60,
            "stock exhausted and dispatches parked on refused logins",
        )
        refused_b1 = [r for r in simulators.b1_requests() if r["operation"] == "Login"]
        refused_lwa = [r for r in simulators.spapi_requests() if r["operation"] == "lwa"]
        assert refused_b1
        assert refused_lwa
        assert all(r["status"] == 401 for r in [*refused_b1, *refused_lwa])
        dump = run_sync(lambda: _dump_tables(database_url))
        failing = "\n".join(row for rows in dump.values() for row in rows)
        found += leaks(failing, "PostgreSQL while failing")
        # the echoed credentials did reach the state, redacted (so the scan saw real material)
        assert "client_secret=***" in failing
        assert '\\"Password\\":\\"***\\"' in failing or '"Password":"***"' in failing

        # Phase 2: the logins work; the stock posts and the parked confirmations go out.
        b1.refusing = spapi.refusing = False
        more = [_adjustment(n, ITEMS[n % len(ITEMS)]) for n in range(100, 105)]
        run_sync(lambda: produce(kafka_bootstrap, topics["stock"], more))
        posted = "SELECT count(*) FROM skuflow_stock_lines WHERE state IN ('posted', 'settled')"
        wait_until(
            lambda: (
                count(database_url, posted) >= len(more)
                and len(simulators.confirmations()) >= len(orders)
            ),
            60,
            "stock posted and dispatches confirmed once the logins work",
        )
        assert simulators.b1_stock()[(ITEMS[0], "01")] == OPENING - 1
        assert WAREHOUSES["LOC-01"] == "01"

        # The operator's view of the exception records.
        listing = cli(
            "exceptions", "list", "--status", "all", "--json", env=secret_env(database_url)
        )
        assert listing.returncode == 0, listing.stderr
        records = json.loads(listing.stdout)
        kinds = {r["kind"] for r in records}
        assert {"retries_exhausted", "undecodable", "schema_violation"} <= kinds, kinds
        found += leaks(listing.stdout + listing.stderr, "exceptions list --json")
        for record in records[:3]:
            shown = cli("exceptions", "show", str(record["id"]), "--json",
                        env=secret_env(database_url))  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            found += leaks(shown.stdout + shown.stderr, "exceptions show --json")
        assert worker.terminate() == 0
    finally:
        worker.kill()

    output = worker.log.read_text(errors="replace")
    found += leaks(output, "the worker's logs and spans")
    dump = run_sync(lambda: _dump_tables(database_url))
    found += leaks("\n".join(row for rows in dump.values() for row in rows), "PostgreSQL")
    letters = run_sync(lambda: _dead_letters(kafka_bootstrap, dead_letter))
    found += leaks("\n".join(letters), "dead letters")
    # The scan looked at real material: debug logs as JSON, spans, failing-login errors.
    log_lines = [
        json.loads(line) for line in output.splitlines() if line.startswith('{"timestamp"')
    ]
    assert len(log_lines) > 10  # (at DEBUG: nothing in skuflow logs secrets at any level)
    assert any("Fail to get DB Credentials" in json.dumps(line) for line in log_lines)
    assert letters, "no dead letter was written"
    assert not found, "\n".join(found)


# --- config check and the insecure combination ---------------------------------------------------


def _insecure_kafka(**extra: Any) -> dict[str, Any]:
    return {
        "bootstrap": "127.0.0.1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "skuflow",
        "sasl_password": SECRETS["kafka sasl password"],
        **extra,
    }


def _all_secrets_toml(database_url: str, kafka: dict[str, Any]) -> str:
    return toml(
        {
            "kafka": kafka,
            "database": {"url": with_password(database_url)},
            "b1": {"password": SECRETS["b1 password"]},
            "spapi": {
                "client_id": CLIENT_ID,
                "client_secret": SECRETS["lwa client secret"],
                "refresh_token": SECRETS["lwa refresh token"],
            },
        }
    )


@pytest.mark.timeout(60)
def test_config_check_prints_every_secret_redacted(tmp_path: Path) -> None:
    url = "postgresql://skuflow@db.internal:5432/skuflow"
    path = tmp_path / "secrets.toml"
    kafka = {**_insecure_kafka(), "security_protocol": "SASL_SSL"}
    path.write_text(_all_secrets_toml(url, kafka))
    for env in ({}, secret_env(url)):  # from the file, then from the contract's variables
        checked = cli("config", "check", "--config", str(path), env=env)
        assert checked.returncode == 0, checked.stderr
        shown = json.loads(checked.stdout)
        assert shown["kafka"]["sasl_password"] == "***"
        assert shown["b1"]["password"] == "***"
        assert shown["spapi"]["client_secret"] == shown["spapi"]["refresh_token"] == "***"
        assert shown["database"]["url"] == "***"
        assert not leaks(checked.stdout + checked.stderr, "config check"), checked.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["file", "environment"])
def test_sasl_plain_without_tls_is_refused_by_config_check_and_run(
    tmp_path: Path, how: str
) -> None:
    url = "postgresql://skuflow@127.0.0.1:1/skuflow"
    path = tmp_path / "insecure.toml"
    env = secret_env(url)
    if how == "file":
        path.write_text(_all_secrets_toml(url, _insecure_kafka()))
    else:
        path.write_text("")
        env |= {
            "SKUFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SKUFLOW_KAFKA_SASL_MECHANISM": "PLAIN",
            "SKUFLOW_KAFKA_SASL_USERNAME": "skuflow",
            "SKUFLOW_KAFKA_SASL_PASSWORD": SECRETS["kafka sasl password"],
        }
    for command in (["config", "check"], ["run"]):
        started = time.monotonic()
        refused = cli(*command, "--config", str(path), env=env)
        assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
        assert time.monotonic() - started < 30  # refused at once, before connecting anywhere
        message = refused.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert message.startswith("skuflow: error: kafka.security_protocol")
        assert "cleartext" in message
        assert "allow_insecure_sasl" in message
        assert refused.stdout == ""
        assert not leaks(refused.stdout + refused.stderr, f"{command} refusal"), message


@pytest.mark.timeout(60)
def test_the_insecure_combination_is_accepted_only_when_explicitly_allowed(
    tmp_path: Path,
) -> None:
    url = "postgresql://skuflow@127.0.0.1:1/skuflow"
    path = tmp_path / "allowed.toml"
    path.write_text(_all_secrets_toml(url, _insecure_kafka(allow_insecure_sasl=True)))
    checked = cli("config", "check", "--config", str(path))
    assert checked.returncode == 0, checked.stderr
    shown = json.loads(checked.stdout)
    assert shown["kafka"]["allow_insecure_sasl"] is True
    assert shown["kafka"]["sasl_password"] == "***"
    assert not leaks(checked.stdout + checked.stderr, "config check")


@pytest.mark.timeout(60)
def test_the_readme_warns_about_sasl_plain_without_tls() -> None:
    text = README.read_text()
    section = text[text.index("\n## Configuration") : text.index("\n## Command line")]
    [paragraph] = [p for p in section.split("\n\n") if "SASL_PLAINTEXT" in p]
    for needed in ("Warning", "PLAIN", "allow_insecure_sasl", "refuse", "TLS", "SASL_SSL"):
        assert needed in paragraph, needed


@pytest.mark.timeout(90)
def test_an_unreachable_database_does_not_leak_its_password(tmp_path: Path) -> None:
    url = f"postgresql://skuflow:{quote(SECRETS['database password'], safe='')}@127.0.0.1:1/x"
    path = tmp_path / "nodb.toml"
    path.write_text(toml({"log": {"format": "json", "level": "DEBUG"},
                          "health": {"port": 0, "host": "127.0.0.1"}}))  # fmt: skip
    worker = WorkerProcess("nodb", path, {"SKUFLOW_DATABASE_URL": url}).start()
    try:
        wait_until(lambda: worker.count("PostgreSQL not reachable") >= 2, 30, "retries logged")
        assert worker.terminate(20) == 0
    finally:
        worker.kill()
    assert not leaks(worker.log.read_text(errors="replace"), "logs without a database")


@pytest.mark.timeout(30)
def test_lwa_errors_echoing_the_urlencoded_form_are_redacted() -> None:
    async def refused() -> str:
        sim = EchoingSpApi(
            client_id=CLIENT_ID,
            client_secret=SECRETS["lwa client secret"],
            refresh_token=SECRETS["lwa refresh token"],
        )
        sim.echo_encoded = True
        await sim.start()
        try:
            async with aiohttp.ClientSession() as session:
                tokens = LwaTokenProvider(
                    sim.lwa_endpoint,
                    CLIENT_ID,
                    Secret(SECRETS["lwa client secret"]),
                    Secret(SECRETS["lwa refresh token"]),
                    session,
                )
                with pytest.raises(SpApiAuthError) as caught:
                    await tokens.token()
                return str(caught.value)
        finally:
            await sim.stop()

    text = anyio.run(refused)
    assert "Client authentication failed" in text
    assert not leaks(text, "the LWA error"), text
