"""Group commit: the rows of many callers in one transaction, each caller resumed after COMMIT.

A handler that stages a row per event would otherwise pay one round trip and one commit per
event. :class:`GroupCommitWriter` gathers the rows handed to :meth:`~GroupCommitWriter.write`
by every lane and partition — up to ``max_rows``, or for ``max_wait`` seconds after the first
row of a batch — and writes them in **one transaction**: rows of one :class:`Statement` go in
one round trip (:class:`CopyInsert`: binary ``COPY`` into a temporary table, then one
``INSERT … SELECT``; :class:`Executemany`: asyncpg's pipelined ``executemany``). Every caller's
``write`` returns only after the COMMIT, so an offset completed after it is still completed
only once its row is durable: the commit watermark rule is unchanged.

Rows of different statements share a batch (one commit for all of them; each statement is one
round trip inside it). Rows in one batch must be independent of each other: a caller whose
second row depends on its first awaits the first ``write`` before the second.

Failures, per caller:

- an **infrastructure** error (connection lost, PostgreSQL shutting down, a timeout — see
  :func:`worker.errors.is_infrastructure`) fails every caller of the batch with that error; the
  engine waits it out as a dependency outage (not an attempt). The COMMIT may have happened
  before the connection broke, so statements must be idempotent (e.g. ``ON CONFLICT``): the
  redo then changes nothing.
- an error **caused by a row** (SQLSTATE classes 21, 22 and 23: a constraint, a value the
  column cannot hold, one row updated twice; or a value asyncpg cannot encode: a TypeError,
  ValueError or OverflowError while sending the rows) splits the
  batch in halves, each retried on its own, until the bad rows stand alone: only their callers
  get :class:`RowRefused`, their neighbours are written.
- a transaction conflict (class 40: serialization failure, deadlock) is split the same way
  (which retries every row); a single row still in conflict gets the error itself (a retry
  counted by the engine).
- anything else (a broken statement) fails every caller of the batch with the error.

A caller that is cancelled while waiting stops waiting; its row stays in the batch and may be
written (harmless for an idempotent statement: the redelivered event writes it again).

Bounded: ``max_rows`` per batch, ``max_queued`` rows waiting (``write`` waits when full:
backpressure, never unbounded memory), ``max_batches`` transactions in flight (each on its own
pool connection). The writer keeps those connections from batch to batch (no pool acquire and
reset round trip per batch; each statement's :meth:`~Statement.setup` once per connection) and
gives a connection back to the pool when a batch broke it (or was cancelled mid-way) and when
it stops. :meth:`~GroupCommitWriter.run` owns the batches; on cancellation it lets the
batches in flight finish and flushes what is queued within ``shutdown_seconds``, then fails the
callers still waiting with an :class:`~worker.errors.InfrastructureError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import asyncpg
from anyio.abc import TaskStatus
from opentelemetry import metrics

from worker.errors import InfrastructureError, SkuflowError, is_infrastructure

log = logging.getLogger("skuflow.groupcommit")

#: Rows per batch: from one to a full batch (``skuflow_db_batch_rows``).
ROW_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
#: Commit duration: 0.5 ms … 10 s (``skuflow_db_batch_duration_seconds``).
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0)
#: SQLSTATE classes whose errors a row causes: cardinality (one row updated twice), data
#: exception (a value the column cannot hold), integrity constraint violation.
_ROW_CLASSES = frozenset({"21", "22", "23"})
#: Transaction rollback: serialization failure, deadlock. Splitting retries every row.
_CONFLICT_CLASS = "40"


class BatchFailed(SkuflowError):
    """The batch this row was in failed for a reason no row caused (e.g. a broken statement);
    ``cause`` is the database's error. Every caller of the batch gets its own."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"group commit failed: {type(cause).__name__}: {cause}")
        self.cause = cause


class RowRefused(SkuflowError):
    """PostgreSQL refused this row itself (retrying it cannot help); its neighbours in the
    batch were written. ``cause`` is the database's error."""

    def __init__(self, statement: str, cause: BaseException) -> None:
        super().__init__(f"{statement}: {type(cause).__name__}: {cause}")
        self.statement = statement
        self.cause = cause


class Statement(Protocol):
    """One kind of row: how a list of them is written inside the batch's transaction.

    ``setup`` runs once per connection before the statement's first ``apply`` on it, outside
    any transaction (so no rollback undoes it): e.g. :class:`CopyInsert` creates its temporary
    table there. The writer holds its connections from batch to batch, so that is once per
    connection's life, not once per batch.
    """

    name: str

    async def setup(self, conn: asyncpg.Connection) -> None: ...

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None: ...


class Executemany:
    """``sql`` (with ``$1 … $n``) once per row, pipelined in one round trip."""

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        self.sql = sql

    async def setup(self, conn: asyncpg.Connection) -> None:
        """Nothing to prepare (asyncpg caches the prepared statement per connection)."""

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None:
        await conn.executemany(self.sql, rows)


class CopyInsert:
    """Rows of ``columns`` into ``table``: binary ``COPY`` into a temporary table of those
    columns (per connection, emptied at every commit), then one ``INSERT … SELECT`` followed by
    ``tail`` (e.g. ``ON CONFLICT (id) DO NOTHING``; ``EXCLUDED`` works as in a plain INSERT).
    The temporary table is created by :meth:`setup` (once per connection: one round trip less
    per batch than creating it ``IF NOT EXISTS`` in every batch).

    The temporary table has the columns' types and no constraints: the target's constraints
    apply at the INSERT. ``table`` and ``columns`` are trusted identifiers (constants).
    """

    def __init__(self, name: str, table: str, columns: Sequence[str], tail: str = "") -> None:
        self.name = name
        self.columns = tuple(columns)
        self._staging = f"skuflow_gc_{table}"
        quoted = ", ".join(f'"{c}"' for c in self.columns)
        self._create = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._staging} ON COMMIT DELETE ROWS AS "
            f"SELECT {quoted} FROM {table} WITH NO DATA"
        )
        self._insert = f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM {self._staging} {tail}"

    async def setup(self, conn: asyncpg.Connection) -> None:
        """Create the temporary table (outside a transaction: a rollback cannot undo it)."""
        await conn.execute(self._create)

    async def apply(self, conn: asyncpg.Connection, rows: list[Sequence[Any]]) -> None:
        await conn.copy_records_to_table(self._staging, records=rows, columns=self.columns)
        await conn.execute(self._insert)


class _Row:
    __slots__ = ("args", "future", "statement")

    def __init__(
        self, statement: Statement, args: Sequence[Any], future: asyncio.Future[None]
    ) -> None:
        self.statement = statement
        self.args = args
        self.future = future


class _Held:
    """A pool connection the writer keeps between batches, and the statements set up on it."""

    __slots__ = ("conn", "ready")

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.ready: set[Statement] = set()


class GroupCommitWriter:
    """Batches rows of many callers into few transactions; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_rows: int = 500,
        max_wait: float = 0.002,
        max_batches: int = 2,
        max_queued: int | None = None,
        shutdown_seconds: float = 10.0,
        acquire_timeout: float = 10.0,
        meter: metrics.Meter | None = None,
    ) -> None:
        if max_rows < 1 or max_batches < 1 or max_wait < 0:
            raise ValueError("max_rows and max_batches must be ≥ 1, max_wait ≥ 0")
        self._pool = pool
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.max_batches = max_batches
        self.max_queued = max_queued if max_queued is not None else 4 * max_rows
        if self.max_queued < max_rows:
            raise ValueError("max_queued must be ≥ max_rows")
        self._shutdown_seconds = shutdown_seconds
        self._acquire_timeout = acquire_timeout
        self._queue: deque[_Row] = deque()
        #: Set when the queue gains its first row or reaches max_rows (the gatherer waits).
        self._arrived = anyio.Event()
        self._first_at = 0.0  # when the oldest queued row arrived
        self._space = anyio.Event()  # set when the queue has room again (writers wait)
        self._slots = anyio.Semaphore(max_batches)
        self._stopped = False
        self._scopes: set[anyio.CancelScope] = set()  # the batches in flight
        #: Connections kept between batches (at most max_batches): no pool acquire and reset
        #: round trip per batch, and each statement's setup once per connection.
        self._idle: list[_Held] = []
        #: Transactions committed (splits count each half), rows written, callers refused.
        self.transactions = 0
        self.rows_written = 0
        self.rows_refused = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        meter = meter or metrics.get_meter("skuflow.worker")
        self._rows_histogram = meter.create_histogram(
            "skuflow.db.batch.rows",
            unit="{row}",
            description="Rows per group-commit transaction.",
            explicit_bucket_boundaries_advisory=ROW_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "skuflow.db.batch.duration",
            unit="s",
            description="One group-commit batch: first statement to COMMIT (splits included).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def write(self, statement: Statement, args: Sequence[Any]) -> None:
        """Return once ``args`` is committed as a row of ``statement``.

        Raises :class:`RowRefused` when the database refused this row, an infrastructure error
        when the batch could not be written (retry later), or the statement's other errors.
        """
        if self._stopped:
            raise InfrastructureError("group-commit writer stopped")
        while len(self._queue) >= self.max_queued:  # backpressure: wait for room
            if self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()
            if self._stopped:
                raise InfrastructureError("group-commit writer stopped")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queue
        queue.append(_Row(statement, args, future))
        count = len(queue)
        if count == 1:  # the first row of a batch: its max_wait starts now
            self._first_at = anyio.current_time()
            self._arrived.set()
        elif count == self.max_rows:
            self._arrived.set()
        await future

    # -- the batches -------------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Gather and commit batches until cancelled; then finish and flush within a bound."""
        try:
            async with anyio.create_task_group() as batches:
                task_status.started()
                try:
                    while True:
                        await self._slots.acquire()
                        try:
                            batch = await self._gather()
                        except BaseException:
                            self._slots.release()
                            raise
                        batches.start_soon(self._commit, batch)
                finally:
                    # Cancelled: the batches in flight and what is queued get a bounded time.
                    deadline = anyio.current_time() + self._shutdown_seconds
                    for scope in self._scopes:
                        scope.deadline = min(scope.deadline, deadline)
                    with anyio.CancelScope(shield=True, deadline=deadline):
                        await self._flush()
        finally:
            self._stopped = True
            self._fail_queued("group-commit writer stopped")
            with anyio.move_on_after(self._shutdown_seconds, shield=True):
                await self._release_idle()

    async def _release_idle(self) -> None:
        while self._idle:
            held = self._idle.pop()
            try:
                await self._pool.release(held.conn)
            except Exception as exc:  # (e.g. the pool closed first): the connection goes
                log.warning("group-commit connection not released", extra={"error": f"{exc}"})
                held.conn.terminate()

    async def _gather(self) -> list[_Row]:
        """Wait for a first row; then up to ``max_rows`` or until ``max_wait`` after it."""
        queue = self._queue
        while not queue:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        if len(queue) < self.max_rows:
            with anyio.CancelScope(deadline=self._first_at + self.max_wait):
                while len(queue) < self.max_rows:
                    self._arrived = anyio.Event()
                    await self._arrived.wait()
        return self._take()

    def _take(self) -> list[_Row]:
        queue = self._queue
        count = min(len(queue), self.max_rows)
        batch = [queue.popleft() for _ in range(count)]
        if queue:
            self._first_at = anyio.current_time()  # (the rest waited already: go soon)
        if not self._space.is_set() and len(queue) < self.max_queued:
            self._space.set()
        return batch

    async def _flush(self) -> None:
        """Shutdown: wait for the batches in flight (they hold slots), then write the rest."""
        for _ in range(self.max_batches):
            await self._slots.acquire()
        try:
            while self._queue:
                await self._commit_rows(self._take())
        finally:
            for _ in range(self.max_batches):
                self._slots.release()

    async def _commit(self, batch: list[_Row]) -> None:
        # Shielded: cancelling the run lets a batch in flight finish (its callers are told the
        # truth); at shutdown run() sets the scope's deadline to its own bound.
        scope = anyio.CancelScope(shield=True)
        self._scopes.add(scope)
        try:
            with scope:
                await self._commit_rows(batch)
            if scope.cancelled_caught:
                _fail(batch, InfrastructureError("group-commit writer stopped mid-batch"))
        finally:
            self._scopes.discard(scope)
            self._slots.release()

    async def _commit_rows(self, batch: list[_Row]) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        started = time.perf_counter()
        try:
            await self._write(batch)
        finally:
            self.in_flight -= 1
            self._duration.record(time.perf_counter() - started)

    async def _write(self, batch: list[_Row]) -> None:
        """One transaction for ``batch``; on a row-caused error, each half on its own."""
        try:
            await self._transaction(batch)
        except Exception as exc:
            kind = _classify(exc)
            if kind == "row" and len(batch) == 1:
                self.rows_refused += 1
                log.warning(
                    "row refused by the database",
                    extra={"statement": batch[0].statement.name, "error": f"{exc}"},
                )
                _fail(batch, RowRefused(batch[0].statement.name, exc))
            elif kind in ("row", "conflict") and len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
            elif kind == "conflict":  # one row still in conflict: retried by its caller
                _fail(batch, exc)
            elif kind == "infrastructure":  # each caller its own error (tracebacks differ)
                for row in batch:
                    error = InfrastructureError(f"group commit: {type(exc).__name__}: {exc}")
                    error.__cause__ = exc
                    _fail([row], error)
            else:
                for row in batch:
                    _fail([row], BatchFailed(exc))
            return
        self.transactions += 1
        self.rows_written += len(batch)
        self._rows_histogram.record(len(batch))
        for row in batch:
            if not row.future.done():  # (a cancelled caller stopped waiting)
                row.future.set_result(None)

    async def _transaction(self, batch: list[_Row]) -> None:
        groups: dict[int, tuple[Statement, list[Sequence[Any]]]] = {}
        for row in batch:  # per statement, in order of first appearance
            group = groups.get(id(row.statement))
            if group is None:
                groups[id(row.statement)] = (row.statement, [row.args])
            else:
                group[1].append(row.args)
        if self._idle:
            held = self._idle.pop()
        else:
            held = _Held(await self._pool.acquire(timeout=self._acquire_timeout))
        conn = held.conn
        try:
            for statement, _rows in groups.values():
                if statement not in held.ready:
                    await statement.setup(conn)  # (autocommit: before the transaction)
                    held.ready.add(statement)
            async with conn.transaction():
                for statement, rows in groups.values():
                    await statement.apply(conn, rows)
        except BaseException as exc:
            healthy = isinstance(exc, Exception) and _classify(exc) != "infrastructure"
            if healthy and not conn.is_closed():
                self._idle.append(held)  # rolled back; the connection is fine
                raise
            # Broken, timed out or cancelled mid-way: back to the pool, which resets the
            # connection or replaces it; the next batch takes another.
            await self._pool.release(conn)
            raise
        self._idle.append(held)

    def _fail_queued(self, reason: str) -> None:
        rows = list(self._queue)
        self._queue.clear()
        for row in rows:
            _fail([row], InfrastructureError(reason))
        self._space.set()  # writers waiting for room see the writer stopped


def _classify(exc: BaseException) -> str:
    """``row`` (a row caused it), ``conflict`` (transaction rollback), ``infrastructure`` or
    ``statement`` (anything else: every row would fail)."""
    if isinstance(exc, TypeError | ValueError | OverflowError):
        # A value asyncpg cannot encode, client side (``asyncpg.DataError`` is a ValueError;
        # COPY raises the codec's TypeError / ValueError as they are).
        return "row"
    if is_infrastructure(exc):
        return "infrastructure"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and isinstance(sqlstate, str):
        if sqlstate[:2] in _ROW_CLASSES:
            return "row"
        if sqlstate[:2] == _CONFLICT_CLASS:
            return "conflict"
    return "statement"


def _fail(rows: list[_Row], exc: BaseException) -> None:
    for row in rows:
        if not row.future.done():
            row.future.set_exception(exc)
            # Retrieved here: a cancelled caller never awaits it ("exception never retrieved").
            row.future.exception()


__all__ = [
    "BatchFailed",
    "CopyInsert",
    "Executemany",
    "GroupCommitWriter",
    "RowRefused",
    "Statement",
]
