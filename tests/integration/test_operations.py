"""Operating the worker: health probes, metrics, and the exceptions workflow of the CLI."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread
import asyncpg
import pytest

from skuflow.app import Worker
from skuflow.cli import main as cli
from tests.support.recording import Recorder, TestEvent, encode
from tests.support.stack import produce, running_worker, settings_for, wait_for
from worker.messages import Message
from worker.outcomes import Outcome, Reject

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]


async def _get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


@pytest.mark.timeout(120)
def test_probes_report_ready_live_stalled_and_draining(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=2)
    recorder = Recorder(latency=lambda _e: 1.0)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)

    async def main() -> None:
        async with running_worker(settings, recorder.router()) as worker:
            assert worker.health is not None
            assert worker.engine is not None
            port = worker.health.port
            await wait_for(lambda: worker.engine is not None and worker.engine.joined, 30, "join")
            assert (await _get(port, "/readyz"))[0] == 200
            assert (await _get(port, "/livez"))[0] == 200
            await produce(kafka_bootstrap, topic, [(b"A", encode("A", 0))])
            await wait_for(lambda: worker.engine is not None and worker.engine.processed, 30, "1")
            status, body = await _get(port, "/metrics")
            assert status == 200
            assert "messaging_client_consumed_messages" in body
            assert "messaging_process_duration_seconds_bucket" in body

            # Stall the fetch loop (its consumer call hangs): liveness fails after stall_seconds.
            engine: Any = worker.engine
            real_getmany = engine._consumer.getmany
            hang = anyio.Event()

            async def hanging_getmany(*args: Any, **kwargs: Any) -> Any:
                await hang.wait()
                return await real_getmany(*args, **kwargs)

            engine._consumer.getmany = hanging_getmany
            with anyio.fail_after(20):
                while (await _get(port, "/livez"))[0] != 503:
                    await anyio.sleep(0.2)
            hang.set()
            engine._consumer.getmany = real_getmany
            with anyio.fail_after(20):
                while (await _get(port, "/livez"))[0] != 200:
                    await anyio.sleep(0.2)

            # Draining: readiness drops at once while in-flight work finishes.
            await produce(kafka_bootstrap, topic, [(b"B", encode("B", 0))])
            await wait_for(lambda: worker.engine is not None and worker.engine.in_flight, 30, "B")
            worker.request_stop()
            status, body = await _get(port, "/readyz")
            assert status == 503
            # (the urgent class's topic was never created: a detail, not a reason)
            missing = [f"{topic}.dispatch"]
            assert json.loads(body) == {
                "ready": False,
                "detail": "draining",
                "missing_topics": missing,
            }
        assert [h[0] for h in recorder.handled] == ["A", "B"]

    anyio.run(main)


@pytest.mark.timeout(120)
def test_an_operator_lists_shows_retries_and_resolves_exceptions(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, f"{topic}.dlq", partitions=1)
    config = tmp_path / "skuflow.toml"
    config.write_text(
        f'[kafka]\nbootstrap = "{kafka_bootstrap}"\ngroup = "{group}"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[topics]\nstock = "{topic}"\ndispatch = "{topic}.dispatch"\ndead_letter = "{topic}.dlq"\n'
    )
    master_data_fixed = False

    async def validate(event: TestEvent, _message: Message) -> Outcome | None:
        if event.sku == "NEW-1" and not master_data_fixed:
            return Reject("unknown_sku", "SKU NEW-1 is not an item in the ERP")
        return None

    recorder = Recorder(before=validate)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)

    async def run_until(condition: Callable[[], bool]) -> None:
        async with running_worker(settings, recorder.router()):
            await wait_for(condition, 60, "worker effect")

    async def exception_count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM skuflow_exceptions"))
        finally:
            await conn.close()

    anyio.run(produce, kafka_bootstrap, topic, [(b"NEW-1", encode("NEW-1", 0)), (b"X", b"{")])
    counted = {"n": 0}

    async def first_run() -> None:
        async with running_worker(settings, recorder.router()):
            with anyio.fail_after(60):
                while counted["n"] < 2:
                    counted["n"] = await exception_count()
                    await anyio.sleep(0.1)

    anyio.run(first_run)

    def run_cli(*args: str) -> str:
        capsys.readouterr()
        assert cli([*args, "--config", str(config)]) == 0
        return capsys.readouterr().out

    records = json.loads(run_cli("exceptions", "list", "--json"))
    assert [(r["kind"], r["status"]) for r in records] == [
        ("unknown_sku", "open"),
        ("undecodable", "open"),
    ]
    unknown, broken = records
    assert unknown["sku"] == "NEW-1"
    assert unknown["event_id"] == "NEW-1-0"
    assert json.loads(run_cli("exceptions", "show", str(unknown["id"]), "--json"))["reason"] == (
        "SKU NEW-1 is not an item in the ERP"
    )
    listing = run_cli("exceptions", "list", "--status", "open")
    assert listing.splitlines()[-1] == "2 of 2 exception(s) with status open"

    # The ERP master data is fixed; the operator retries and the event is applied.
    master_data_fixed = True
    run_cli("exceptions", "retry", str(unknown["id"]))
    assert json.loads(run_cli("exceptions", "show", str(unknown["id"]), "--json"))["status"] == (
        "retrying"
    )
    anyio.run(run_until, lambda: any(h[0] == "NEW-1" for h in recorder.handled))
    shown = json.loads(run_cli("exceptions", "show", str(unknown["id"]), "--json"))
    assert shown["status"] == "resolved"
    assert shown["resolution"].startswith("retried: applied from")

    run_cli("exceptions", "resolve", str(broken["id"]), "--note", "producer bug fixed upstream")
    assert json.loads(run_cli("exceptions", "list", "--json")) == []
    assert len(json.loads(run_cli("exceptions", "list", "--status", "resolved", "--json"))) == 2
    assert cli(["exceptions", "show", "999999", "--config", str(config)]) == 2


@pytest.mark.timeout(60)
def test_a_blocked_event_loop_fails_the_liveness_probe_by_not_answering(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    """A probe with a timeout (as Kubernetes sends it) fails while the loop is stuck."""
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)
    outcomes: list[str] = []

    def probe(port: int) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=1.0) as reply:
                outcomes.append(str(reply.status))
        except TimeoutError:
            outcomes.append("timeout")

    async def main() -> None:
        async with running_worker(settings, Recorder().router()) as worker:
            assert worker.health is not None
            port = worker.health.port
            await anyio.to_thread.run_sync(probe, port)
            prober = threading.Thread(target=probe, args=(port,))
            prober.start()
            time.sleep(2.5)  # noqa: ASYNC251  # the point: a handler that blocks the loop
            await anyio.to_thread.run_sync(prober.join)
            await anyio.to_thread.run_sync(probe, port)

    anyio.run(main)
    assert outcomes == ["200", "timeout", "200"]


@pytest.mark.timeout(60)
def test_a_worker_can_run_only_the_urgent_class_for_a_deployment_of_its_own(
    kafka_bootstrap: str, database_url: str, unique: str, create_topics: CreateTopics
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, f"{topic}.dispatch", partitions=2)
    settings = settings_for(kafka_bootstrap, database_url, group, topic)
    recorder = Recorder()

    async def main() -> tuple[list[str], int]:
        worker = Worker(settings, router=recorder.router(), classes=frozenset({"urgent"}))
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: bool(worker.engines) and worker.engines[0].joined, 30, "join")
            await produce(kafka_bootstrap, f"{topic}.dispatch", [(b"O1", encode("O1", 0))])
            await produce(kafka_bootstrap, topic, [(b"S1", encode("S1", 0))])
            await wait_for(lambda: len(recorder.handled) == 1, 30, "the dispatch topic's event")
            assert worker.health is not None
            status = (await _get(worker.health.port, "/readyz"))[0]
            topics = [t for e in worker.engines for t in e.topics]
            worker.request_stop()
        return topics, status

    topics, ready = anyio.run(main)
    assert topics == [f"{topic}.dispatch"]
    assert ready == 200
    assert [h[0] for h in recorder.handled] == ["O1"]
