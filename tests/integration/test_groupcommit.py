"""The group-commit writer on a real PostgreSQL: batching, durability before resumption, row
isolation, infrastructure failures, bounds and the final flush."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pytest

from worker.errors import is_infrastructure
from worker.groupcommit import (
    BatchFailed,
    CopyInsert,
    Executemany,
    GroupCommitWriter,
    RowRefused,
    Statement,
)
from worker.store import create_pool

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TABLE = """CREATE TABLE gc_rows (
    id    TEXT PRIMARY KEY,
    qty   INTEGER NOT NULL CHECK (qty > 0),
    note  TEXT NOT NULL,
    added TIMESTAMPTZ NOT NULL DEFAULT now())"""

COPY = CopyInsert("gc copy", "gc_rows", ("id", "qty", "note"), "ON CONFLICT (id) DO NOTHING")
MANY = Executemany(
    "gc executemany",
    "INSERT INTO gc_rows (id, qty, note) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
)
STATEMENTS = [pytest.param(COPY, id="copy"), pytest.param(MANY, id="executemany")]


class Gated:
    """A statement that waits for ``gate`` inside its transaction, then inserts like COPY."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.entered = 0

    async def setup(self, conn: asyncpg.Connection) -> None:
        await COPY.setup(conn)

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None:
        self.entered += 1
        await self.gate.wait()
        await COPY.apply(conn, rows)


class KillsItsConnection:
    """Inserts, then the backend of its own connection is terminated before COMMIT."""

    name = "killer"

    async def setup(self, conn: asyncpg.Connection) -> None:
        await COPY.setup(conn)

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None:
        await COPY.apply(conn, rows)
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


class Recorded:
    """Inserts like COPY; records each batch's backend pid and every setup call."""

    name = "recorded"

    def __init__(self) -> None:
        self.setups: list[int] = []
        self.backends: list[int] = []

    async def setup(self, conn: asyncpg.Connection) -> None:
        self.setups.append(await conn.fetchval("SELECT pg_backend_pid()"))
        await COPY.setup(conn)

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None:
        self.backends.append(await conn.fetchval("SELECT pg_backend_pid()"))
        await COPY.apply(conn, rows)


Running = tuple[GroupCommitWriter, asyncpg.Pool]


@asynccontextmanager
async def running(database_url: str, **options: Any) -> AsyncIterator[Running]:
    pool = await create_pool(database_url, min_size=1, max_size=6)
    try:
        await pool.execute(TABLE)
        writer = GroupCommitWriter(pool, **options)
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            yield writer, pool
            tg.cancel_scope.cancel()
    finally:
        await pool.close()


async def ids(pool: asyncpg.Pool) -> set[str]:
    return {r["id"] for r in await pool.fetch("SELECT id FROM gc_rows")}


async def gather(calls: list[Callable[[], Awaitable[object]]]) -> list[object]:
    """Run every call concurrently; each result or the exception it raised, in order."""
    results: list[object] = [None] * len(calls)

    async def one(n: int) -> None:
        try:
            results[n] = await calls[n]()
        except Exception as exc:
            results[n] = exc

    async with anyio.create_task_group() as tg:
        for n in range(len(calls)):
            tg.start_soon(one, n)
    return results


def write(writer: GroupCommitWriter, statement: Statement, *args: Any) -> Callable[[], Any]:
    return lambda: writer.write(statement, args)


@pytest.mark.parametrize("statement", STATEMENTS)
def test_concurrent_writers_share_few_transactions_and_see_their_row_when_resumed(
    database_url: str, statement: Statement
) -> None:
    async def main() -> None:
        async with running(database_url, max_rows=200, max_wait=0.005) as (writer, pool):
            observer = await asyncpg.connect(database_url)
            seen_at_resume: list[bool] = []
            try:
                lock = anyio.Lock()  # (one observer connection: one query at a time)

                async def checked(n: int) -> None:
                    await writer.write(statement, (f"r{n}", 1, "x" * 300))
                    async with lock:
                        found = await observer.fetchval(
                            "SELECT count(*) FROM gc_rows WHERE id = $1", f"r{n}"
                        )
                    seen_at_resume.append(found == 1)

                await gather([functools.partial(checked, n) for n in range(1000)])
            finally:
                await observer.close()
            assert seen_at_resume == [True] * 1000
            assert await ids(pool) == {f"r{n}" for n in range(1000)}
            assert writer.rows_written == 1000
            assert writer.transactions <= 20  # ≪ 1,000 (5 full batches when nothing waits)

    anyio.run(main)


@pytest.mark.parametrize("statement", STATEMENTS)
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        pytest.param(("bad", 0, "x"), {"CheckViolationError"}, id="check constraint"),
        pytest.param(("bad", 1, "nul\x00byte"), {"CharacterNotInRepertoireError"}, id="NUL byte"),
        # (executemany: asyncpg's DataError; COPY: the codec's TypeError)
        pytest.param(("bad", "NaN", "x"), {"DataError", "TypeError"}, id="unencodable value"),
    ],
)
def test_one_bad_row_fails_only_its_own_writer(
    database_url: str, statement: Statement, bad: tuple[Any, ...], error: set[str]
) -> None:
    async def main() -> None:
        async with running(database_url, max_rows=100, max_wait=0.05) as (writer, pool):
            calls = [write(writer, statement, f"ok{n}", 1, "fine") for n in range(40)]
            calls.insert(17, lambda: writer.write(statement, bad))
            results = await gather(calls)
            refused = results.pop(17)
            assert isinstance(refused, RowRefused), refused
            assert type(refused.cause).__name__ in error
            assert not is_infrastructure(refused)
            assert results == [None] * 40
            assert await ids(pool) == {f"ok{n}" for n in range(40)}
            assert writer.rows_refused == 1
            # Bisected: a handful of transactions, not one per row.
            assert writer.transactions < 20

    anyio.run(main)


def test_a_connection_lost_before_commit_fails_every_writer_as_infrastructure(
    database_url: str,
) -> None:
    async def main() -> None:
        async with running(database_url, max_rows=100, max_wait=0.05) as (writer, pool):
            killer = KillsItsConnection()
            results = await gather([write(writer, killer, f"k{n}", 1, "x") for n in range(30)])
            assert all(is_infrastructure(r) for r in results if isinstance(r, BaseException))
            assert all(isinstance(r, BaseException) for r in results), results
            assert len({id(r) for r in results}) == 30  # each writer its own error
            assert await ids(pool) == set()  # rolled back: never committed
            # The writer goes on: the pool replaced the connection.
            await writer.write(COPY, ("after", 1, "x"))
            assert await ids(pool) == {"after"}

    anyio.run(main)


def test_a_broken_statement_fails_every_writer_without_splitting(database_url: str) -> None:
    async def main() -> None:
        broken = Executemany("broken", "INSERT INTO gc_nowhere (id) VALUES ($1)")
        async with running(database_url, max_rows=100, max_wait=0.05) as (writer, _pool):
            results = await gather([write(writer, broken, f"b{n}") for n in range(16)])
            assert all(isinstance(r, BatchFailed) for r in results), results
            assert not any(is_infrastructure(r) for r in results if isinstance(r, BaseException))
            assert writer.transactions == 0  # (a split would have tried 31 transactions)

    anyio.run(main)


def test_batches_in_flight_and_queued_rows_are_bounded(database_url: str) -> None:
    async def main() -> None:
        gated = Gated()
        options = {"max_rows": 4, "max_wait": 0.0, "max_batches": 2, "max_queued": 4}
        async with running(database_url, **options) as (writer, pool):
            done: list[int] = []

            async def one(n: int) -> None:
                await writer.write(gated, (f"g{n}", 1, "x"))
                done.append(n)

            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(one, n)
                with anyio.fail_after(10):
                    while gated.entered < 2 or writer.queued < 4:
                        await anyio.sleep(0.005)
                await anyio.wait_all_tasks_blocked()
                # Two transactions hold their rows; four rows wait; the rest wait for room.
                assert writer.in_flight == 2
                assert writer.queued == 4
                assert done == []
                gated.gate.set()
            assert sorted(done) == list(range(20))
            assert writer.peak_in_flight == 2
            assert await ids(pool) == {f"g{n}" for n in range(20)}

    anyio.run(main)


def test_cancelling_the_writer_flushes_queued_and_in_flight_rows(database_url: str) -> None:
    async def main() -> None:
        pool = await create_pool(database_url, min_size=1, max_size=4)
        try:
            await pool.execute(TABLE)
            # A long wait: the queued rows would sit for a minute without the final flush.
            writer = GroupCommitWriter(pool, max_rows=1000, max_wait=60.0, max_batches=1)
            outcomes: list[object] = []

            async def one(statement: Statement, key: str) -> None:
                try:
                    await writer.write(statement, (key, 1, "x"))
                    outcomes.append(key)
                except Exception as exc:
                    outcomes.append(exc)

            async with (
                anyio.create_task_group() as writers,
                anyio.create_task_group() as owner,
            ):
                await owner.start(writer.run)
                for n in range(10):
                    writers.start_soon(one, COPY, f"q{n}")
                with anyio.fail_after(10):
                    while writer.queued < 10:
                        await anyio.sleep(0.005)
                owner.cancel_scope.cancel()  # shutdown while all ten are queued
            assert sorted(map(str, outcomes)) == sorted(f"q{n}" for n in range(10))
            assert await ids(pool) == {f"q{n}" for n in range(10)}
            with pytest.raises(Exception, match="stopped"):
                await writer.write(COPY, ("late", 1, "x"))
        finally:
            await pool.close()

    anyio.run(main)


def test_a_cancelled_writer_does_not_cancel_its_batch(database_url: str) -> None:
    async def main() -> None:
        gated = Gated()
        async with running(database_url, max_rows=10, max_wait=0.05) as (writer, pool):
            waiting = anyio.CancelScope()

            async def give_up() -> None:
                with waiting:
                    await writer.write(gated, ("b", 1, "x"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(give_up)
                tg.start_soon(writer.write, gated, ("c", 1, "x"))
                with anyio.fail_after(10):
                    while gated.entered < 1:
                        await anyio.sleep(0.005)
                assert writer.queued == 0  # both rows are in the batch in flight
                waiting.cancel()  # one of its callers stops waiting
                await anyio.wait_all_tasks_blocked()
                gated.gate.set()
            # The batch went on for the other caller; the cancelled caller's row was written
            # too (harmless for an idempotent statement).
            assert waiting.cancelled_caught
            assert await ids(pool) == {"b", "c"}
            assert writer.transactions == 1

    anyio.run(main)


def test_the_writer_keeps_its_connection_between_batches_and_sets_a_statement_up_once(
    database_url: str,
) -> None:
    async def main() -> None:
        recorded = Recorded()
        pool = await create_pool(database_url, min_size=3, max_size=3)
        try:
            await pool.execute(TABLE)
            writer = GroupCommitWriter(pool, max_rows=10, max_wait=0.0, max_batches=1)
            async with anyio.create_task_group() as tg:
                await tg.start(writer.run)
                for n in range(5):  # one row at a time: five batches, one after the other
                    await writer.write(recorded, (f"s{n}", 1, "x"))
                # Held between batches: the pool lends it to nobody else meanwhile.
                assert pool.get_idle_size() == pool.get_size() - 1
                # A row refused: its batch rolled back; the setup (outside it) still stands.
                with pytest.raises(RowRefused):
                    await writer.write(recorded, ("bad", 0, "x"))
                await writer.write(recorded, ("after", 1, "x"))
                tg.cancel_scope.cancel()
            assert writer.transactions == 6
            assert len(set(recorded.backends)) == 1  # one connection for every batch
            assert recorded.setups == recorded.backends[:1]  # set up once, on that connection
            # Stopped: the connection is back in the pool.
            assert pool.get_idle_size() == pool.get_size()
            assert await ids(pool) == {f"s{n}" for n in range(5)} | {"after"}
        finally:
            await pool.close()

    anyio.run(main)
