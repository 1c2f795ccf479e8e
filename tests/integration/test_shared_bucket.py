"""Replicas draw from one SP-API usage plan kept in PostgreSQL (the real database)."""

from __future__ import annotations

import time

import anyio
import pytest

from handlers.connectors.shared_bucket import SharedTokenBucket, bucket_name
from worker.store import create_pool, migrate, package_migrations

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
            await migrate(pools[0], package_migrations("handlers", "handlers"))
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
