"""A topic created after the worker started is named at start, shown on /readyz and consumed
within the metadata refresh, without a restart (on the real broker)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import aiohttp
import anyio
import msgspec
import pytest

from tests.support.recording import Recorder, encode
from tests.support.stack import produce, running_worker, settings_for, wait_for

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]


async def _readyz(port: int) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, json.loads(await response.text())


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The topics named by the log records whose message contains ``text``."""
    return [
        str(getattr(record, "messaging.destination.name", ""))
        for record in caplog.records
        if text in record.getMessage()
    ]


@pytest.mark.timeout(120)
def test_a_topic_created_after_start_is_reported_then_consumed_without_a_restart(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="skuflow.kafka")
    stock = f"{unique}.stock"
    dispatch = f"{stock}.dispatch"  # the urgent class's topic (settings_for)
    settings = settings_for(kafka_bootstrap, database_url, f"{unique}.group", stock)
    settings = msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, metadata_refresh_seconds=2.0)
    )
    recorder = Recorder()

    async def main() -> None:
        async with running_worker(settings, recorder.router()) as worker:
            assert worker.health is not None
            assert worker.urgent is not None
            port = worker.health.port
            # Neither topic exists: both consumers join their groups with nothing assigned,
            # and the worker is ready (a healthy process), naming what it waits for.
            waiting = {"ready": True, "detail": "ready", "missing_topics": [stock, dispatch]}
            with anyio.fail_after(30):
                while await _readyz(port) != (200, waiting):
                    await anyio.sleep(0.2)
            assert worker.urgent.assignment() == []

            # The producer creates the dispatch topic a moment later and sends one event.
            create_topics(dispatch, partitions=2)
            await produce(kafka_bootstrap, dispatch, [(b"ORDER-1", encode("ORDER-1", 0))])
            await wait_for(lambda: recorder.handled, 60, "the event on the new topic")
            assert [(sku, seq) for sku, seq, *_ in recorder.handled] == [("ORDER-1", 0)]
            assert {tp.topic for tp in worker.urgent.assignment()} == {dispatch}
            await wait_for(lambda: worker.topic_watches[0].missing == [], 10, "the watch")
            status, body = await _readyz(port)
            assert (status, body["missing_topics"]) == (200, [stock])

            metrics = await _metrics(port)
            gauge = [
                line for line in metrics.splitlines() if line.startswith("skuflow_topics_missing{")
            ]
            assert len(gauge) == 1, gauge
            assert f'messaging_destination_name="{stock}"' in gauge[0]
            assert gauge[0].endswith(" 1.0")

        # Each missing topic was named once at start, and the created one once when it came.
        assert sorted(_logged(caplog, "does not exist (yet)")) == [stock, dispatch]
        assert _logged(caplog, "now exists") == [dispatch]

    anyio.run(main)


async def _metrics(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()
