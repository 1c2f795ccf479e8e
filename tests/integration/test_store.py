"""Migrations: versioned, idempotent, safe with several replicas starting at once."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from worker.errors import InfrastructureError
from worker.store import Migration, create_pool, migrate, package_migrations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_replicas_starting_together_apply_each_migration_exactly_once(database_url: str) -> None:
    async def main() -> list[list[str]]:
        pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(5)]
        results: list[list[str]] = []
        try:

            async def start(pool: asyncpg.Pool) -> None:
                results.append(await migrate(pool, package_migrations("worker", "engine")))

            async with anyio.create_task_group() as tg:
                for pool in pools:
                    tg.start_soon(start, pool)
            again = await migrate(pools[0], package_migrations("worker", "engine"))
            assert again == []
            rows = await pools[0].fetch("SELECT component, version FROM skuflow_schema")
            assert sorted((r["component"], r["version"]) for r in rows) == [
                ("engine", "0001_engine"),
                ("engine", "0002_alerts"),
                ("engine", "0003_outbox"),
            ]
        finally:
            for pool in pools:
                await pool.close()
        return results

    results = anyio.run(main)
    assert sorted(map(len, results)) == [0, 0, 0, 0, 3]


def test_an_edited_migration_is_refused_instead_of_silently_skipped(database_url: str) -> None:
    async def main() -> None:
        pool = await create_pool(database_url)
        try:
            await migrate(pool, [Migration("t", "0001", "CREATE TABLE t1 (id INT)")])
            with pytest.raises(InfrastructureError, match="changed after it was applied"):
                await migrate(pool, [Migration("t", "0001", "CREATE TABLE t1 (id BIGINT)")])
        finally:
            await pool.close()

    anyio.run(main)


def test_an_unreachable_database_error_never_shows_the_url() -> None:
    url = "postgresql://skuflow:hunter2-secret@127.0.0.1:1/skuflow"

    async def main() -> None:
        with pytest.raises(InfrastructureError) as caught:
            await create_pool(url)
        assert "hunter2" not in str(caught.value)
        assert caught.value.__cause__ is None

    anyio.run(main)
