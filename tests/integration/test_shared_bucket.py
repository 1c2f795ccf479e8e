"""Replicas draw from one SP-API usage plan kept in PostgreSQL (the real database)."""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

from handlers.connectors.shared_bucket import SharedTokenBucket, bucket_name
from handlers.flows import migrations as domain_migrations
from worker.pacing import DeadlinePacer
from worker.store import create_pool, migrate

pytestmark = [pytest.mark.integration]

RATE, BURST, CALLS = 20.0, 5, 45


@pytest.mark.timeout(60)
def test_two_replicas_together_never_exceed_the_plan_and_are_served_in_turn(
    database_url: str,
) -> None:
    name = bucket_name("confirmShipment", "amzn1.application-oa2-client.x", "Atzr|seller")
    assert "Atzr" not in name  # the credentials are hashed, never stored

    async def main() -> list[float]:
        pools = [await create_pool(database_url, min_size=1, max_size=4) for _ in range(2)]
        try:
            await migrate(pools[0], domain_migrations())
            replicas = [SharedTokenBucket(pool, name, RATE, BURST) for pool in pools]
            granted: list[float] = []

            async def call(bucket: SharedTokenBucket) -> None:
                await bucket.acquire()
                granted.append(time.monotonic())

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for n in range(CALLS):
                    tg.start_soon(call, replicas[n % 2])
            return [t - started for t in sorted(granted)]
        finally:
            for pool in pools:
                await pool.close()

    grants = anyio.run(main)
    assert len(grants) == CALLS
    # Over any window of length T the grants number at most burst + rate * T (+ one for the
    # clocks: the database's decides, this process measures).
    for i, first in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= BURST + RATE * (grants[j] - first) + 1, (i, j, grants[j] - first)
    # ... and the plan is used, not wasted: all in about (calls - burst) / rate.
    assert grants[-1] < (CALLS - BURST) / RATE + 1.0


@pytest.mark.timeout(60)
def test_replicas_pacing_by_deadline_share_the_plan_and_each_serves_its_earliest_first(
    database_url: str,
) -> None:
    """Two replicas' deadline pacers on one shared bucket: together within the plan, each
    granting its own waiters earliest deadline first, each holding at most one reservation —
    and a refunded or drained token is seen by both."""
    name = bucket_name("confirmShipment", "amzn1.application-oa2-client.y", "Atzr|seller-2")

    async def main() -> tuple[list[float], list[list[float]], float, float]:
        pools = [await create_pool(database_url, min_size=1, max_size=4) for _ in range(2)]
        try:
            await migrate(pools[0], domain_migrations())
            sources = [SharedTokenBucket(pool, name, RATE, BURST) for pool in pools]
            pacers = [DeadlinePacer(source) for source in sources]
            grants: list[float] = []
            served: list[list[float]] = [[], []]

            async def call(replica: int, deadline: float) -> None:
                await pacers[replica].pick(lambda: (deadline, 0.0))
                grants.append(time.monotonic())
                served[replica].append(deadline)
                assert await pacers[replica].acquire() == 0.0  # spends the picked token

            started = time.monotonic()
            async with anyio.create_task_group() as tg:
                for pacer in pacers:
                    await tg.start(pacer.run)
                async with anyio.create_task_group() as calls:
                    for n in range(CALLS):
                        calls.start_soon(call, n % 2, float((n * 7919) % CALLS))
                await sources[0].drain()
                level_after_drain = await _level(pools[0], name)
                await sources[1].refund()
                level_after_refund = await _level(pools[0], name)
                tg.cancel_scope.cancel()
            return (
                [t - started for t in sorted(grants)],
                served,
                level_after_drain,
                (level_after_refund - level_after_drain),
            )
        finally:
            for pool in pools:
                await pool.close()

    grants, served, drained, refunded = anyio.run(main)
    assert len(grants) == CALLS
    for i, first in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= BURST + RATE * (grants[j] - first) + 1, (i, j, grants[j] - first)
    # Each replica's calls were all waiting together after the burst: served by deadline.
    for deadlines in served:
        assert deadlines[1:] == sorted(deadlines[1:])  # (the first may go before all wait)
    assert drained <= 0.0
    assert refunded == pytest.approx(1.0, abs=0.5)


async def _level(pool: asyncpg.Pool, name: str) -> float:
    """The row as stored (not brought up to date)."""
    return float(
        await pool.fetchval("SELECT tokens FROM skuflow_rate_buckets WHERE name = $1", name)
    )
