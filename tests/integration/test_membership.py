"""Static group membership on the real broker (Kafka 4.3.1, classic protocol, aiokafka 0.14
with :mod:`worker.membership`): a duplicate instance id fences the older member, and a static
member leaves its group when stopped only when asked to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import KafkaSettings
from tests.support.stack import produce
from worker.kafka import build_consumer, stop_client
from worker.membership import InstanceFenced

pytestmark = [pytest.mark.integration]

CreateTopics = Callable[..., None]


def _settings(bootstrap: str, group: str, **options: Any) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap,
        group=group,
        group_instance_id="pod-0",
        session_timeout_ms=30_000,
        heartbeat_interval_ms=500,
        **options,
    )


async def _members(bootstrap: str, group: str) -> tuple[str, list[str]]:
    """The group's state and its members' ids, as the broker describes them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    described = response.to_object()["groups"][0]
    return described["state"], [m["member_id"] for m in described["members"]]


async def _fetch_forever(consumer: Any) -> None:
    while True:
        await consumer.getmany(timeout_ms=100)


async def _joined(consumer: Any) -> None:
    with anyio.fail_after(30):
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)


@pytest.mark.timeout(90)
def test_a_second_process_with_the_same_instance_id_fences_the_first(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics
) -> None:
    """Without the instance id in its heartbeats (aiokafka's Heartbeat v1) the first member
    would take the id back on its next heartbeat and both would consume every partition."""
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=2)
    settings = _settings(kafka_bootstrap, group)

    async def main() -> None:
        first = build_consumer(settings, instance_id="pod-0-normal")
        second = build_consumer(settings, instance_id="pod-0-normal")
        first.subscribe([topic])
        second.subscribe([topic])
        await first.start()
        try:
            await _joined(first)
            await second.start()
            await _joined(second)  # the broker hands it the id (and the partitions) at once
            with anyio.fail_after(20), pytest.raises(InstanceFenced) as fenced:
                await _fetch_forever(first)  # the first learns it on its next heartbeat
            assert fenced.value.group == group
            assert fenced.value.instance_id == "pod-0-normal"
            assert "FENCED_INSTANCE_ID" in str(fenced.value)
            # The second member stays, alone, and gets what is produced from now on.
            await produce(kafka_bootstrap, topic, [(b"A", b"after"), (b"B", b"after")])
            got: list[bytes] = []
            with anyio.fail_after(20):
                while len(got) < 2:
                    batch = await second.getmany(timeout_ms=200)
                    got += [r.value for records in batch.values() for r in records]
            assert got == [b"after", b"after"]
            await anyio.sleep(2.0)  # four heartbeat intervals: no taking the id back
            assert len(second.assignment()) == 2
            # Stopping the fenced member sends no LeaveGroup for the id: the survivor stays.
            await stop_client(first, 10)
            state, members = await _members(kafka_bootstrap, group)
            assert state == "Stable"
            assert len(members) == 1
            assert len(second.assignment()) == 2
        finally:
            await stop_client(first, 10)
            await stop_client(second, 10)

    anyio.run(main)


@pytest.mark.parametrize("leave", [True, False])
@pytest.mark.timeout(60)
def test_a_stopped_static_member_leaves_its_group_only_when_asked(
    kafka_bootstrap: str, unique: str, create_topics: CreateTopics, leave: bool
) -> None:
    topic, group = f"{unique}.stock", f"{unique}.group"
    create_topics(topic, partitions=1)
    settings = _settings(kafka_bootstrap, group, leave_group_on_shutdown=leave)

    async def main() -> None:
        consumer = build_consumer(settings, instance_id="pod-0-normal")
        consumer.subscribe([topic])
        await consumer.start()
        try:
            await _joined(consumer)
            assert len((await _members(kafka_bootstrap, group))[1]) == 1
        finally:
            await stop_client(consumer, 10)
        state, members = await _members(kafka_bootstrap, group)
        if leave:  # drained: the partitions are free at once, as with a dynamic member
            assert (state, members) == ("Empty", [])
        else:  # kept for its return within the session timeout (KIP-345's default)
            assert state == "Stable"
            assert len(members) == 1
            assert members[0].startswith("pod-0-normal-")

    anyio.run(main)
