"""Staging throughput (issue 14): the real stock flow — validate against cached master data,
stage through the group-commit writer — against the no-op engine with metrics on.

Both cases run ``engine.max_in_flight`` runners (the default, as ``skuflow run``). The stock case
is the engine as ``skuflow run`` wires it (OTel SDK metrics) with the real
:class:`~handlers.stock.StockHandler`, :class:`~handlers.masterdata.MasterData` and
:class:`~worker.groupcommit.GroupCommitWriter` (``[database]`` defaults); the ERP port answers
master data from memory (every SKU an inventory item, every warehouse known), so the cache fills
on first sight without HTTP, and postings are off (nothing flushes windows). Timing: first record
delivered to the last one durable (``engine.processed``: a staged line's offset completes only
after its COMMIT). The backlog run does the same in a process of its own
(``python -m bench.staging '<BacklogSpec as JSON>'``) so its peak RSS is its own ``VmHWM``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from bench.cases import Measurement, Progress, engine
from bench.stack import Stack, engine_for, fresh_group, worker_metrics
from config.settings import DatabaseSettings, EngineSettings
from handlers.common.mappings import Mappings as StockMappings
from handlers.common.masterdata import MasterData
from handlers.flows import migrations as domain_migrations
from handlers.ports.erp import (
    DocumentKind,
    ItemMaster,
    PostedDocument,
    StockDocument,
    WarehouseMaster,
)
from handlers.stock.events import StockAdjusted
from handlers.stock.handler import StockHandler
from skuflow.app import tune_gc
from worker.groupcommit import GroupCommitWriter
from worker.messages import Message
from worker.outcomes import DONE, Outcome
from worker.store import create_pool, migrate, package_migrations

_REPO = Path(__file__).resolve().parents[1]


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class MemoryErp:
    """Master data from memory: every item an inventory item, every warehouse exists."""

    async def get_item(self, item_code: str) -> ItemMaster | None:
        return ItemMaster(
            item_code=item_code, valid=True, frozen=False, inventory_item=True,
            manages_batches=False, manages_serials=False,
        )  # fmt: skip

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        return WarehouseMaster(code=code)

    async def post_document(self, document: StockDocument) -> PostedDocument:
        raise NotImplementedError("postings are off in the staging bench")

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        return None


class StagingRun(msgspec.Struct, frozen=True):
    measurement: Measurement
    transactions: int
    rows: int
    peak_mb: float = 0.0


async def staging(stack: Stack, topic: str, total: int) -> StagingRun:
    """The engine (metrics on) with the real stock handler staging every event of ``topic``."""
    pool = await create_pool(stack.database_url, min_size=1, max_size=10)
    try:
        await migrate(pool, [*package_migrations("worker", "engine"), *domain_migrations()])
        # The topic's event ids repeat between runs: each run stages into an empty table.
        await pool.execute("TRUNCATE skuflow_stock_lines")
        db = DatabaseSettings()
        writer = GroupCommitWriter(
            pool,
            max_rows=db.batch_max_rows,
            max_wait=db.batch_max_wait_seconds,
            max_batches=db.batches_in_flight,
        )
        stock = StockHandler(pool, StockMappings(None, {}), MasterData(MemoryErp()), writer)
        progress = Progress(total)

        async def handle(event: StockAdjusted, message: Message) -> Outcome:
            progress.begin()
            outcome = await stock(event, message)
            if outcome is DONE:
                progress.add()
            return outcome

        async with (
            engine_for(
                stack,
                topic,
                handle,
                group=fresh_group("staging"),
                metrics=worker_metrics(),
                max_in_flight=EngineSettings().max_in_flight,
            ) as eng,
            anyio.create_task_group() as tg,
        ):
            await tg.start(writer.run)
            tg.start_soon(eng.run)
            await progress.finished.wait()
            measured = progress.whole_run()
            eng.request_stop()
            with anyio.fail_after(30):
                while eng.processed < total:  # noqa: ASYNC110  # not timed: a sanity check
                    await anyio.sleep(0.01)
            staged = await pool.fetchval("SELECT count(*) FROM skuflow_stock_lines")
            if staged != total:
                raise RuntimeError(f"{staged:,} lines staged of {total:,}")
            tg.cancel_scope.cancel()  # (after the engine: its commit, then the writer stops)
        return StagingRun(measured, writer.transactions, writer.rows_written)
    finally:
        await pool.close()


class BacklogSpec(msgspec.Struct, frozen=True):
    stack: Stack
    topic: str
    total: int


def backlog(spec: BacklogSpec, *, timeout: float = 900) -> StagingRun:
    """:func:`staging` over a backlog in a fresh process; its peak RSS is the process's."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.staging", msgspec.json.encode(spec).decode()],
        cwd=_REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"staging backlog run failed:\n{result.stderr.decode()[-4000:]}")
    return msgspec.json.decode(result.stdout.strip().splitlines()[-1], type=StagingRun)


def rounds(
    stack: Stack, topic: str, total: int, count: int, on_loop: Callable[[Any], Any]
) -> tuple[list[Measurement], list[StagingRun]]:
    """Alternating rounds: the no-op engine with metrics on, then the staging case."""
    noops: list[Measurement] = []
    runs: list[StagingRun] = []
    for round_ in range(1, count + 1):
        noops.append(
            on_loop(
                functools.partial(
                    engine,
                    stack,
                    topic,
                    total,
                    handler_seconds=0,
                    telemetry=True,
                    max_in_flight=EngineSettings().max_in_flight,
                )
            )
        )
        runs.append(on_loop(functools.partial(staging, stack, topic, total)))
        _note(
            f"staging round {round_}: no-op {noops[-1].rate:,.0f} msg/s, stock flow "
            f"{runs[-1].measurement.rate:,.0f} msg/s ({runs[-1].rows / runs[-1].transactions:,.0f} "
            "rows per transaction)"
        )
    return noops, runs


def table(noops: list[Measurement], runs: list[StagingRun], backlog: StagingRun) -> list[str]:
    ratios = [r.measurement.rate / n.rate for n, r in zip(noops, runs, strict=True)]
    ratio = sorted(ratios)[(len(ratios) - 1) // 2]
    noop = sorted(noops, key=lambda m: m.rate)[(len(noops) - 1) // 2]
    run = sorted(runs, key=lambda r: r.measurement.rate)[(len(runs) - 1) // 2]
    b = backlog.measurement
    per_tx = run.rows / max(1, run.transactions)
    met = "met" if ratio >= 0.5 else "**missed**"
    b_met = "met" if b.seconds < 90 else "**missed**"
    rss_met = "met" if backlog.peak_mb < 300 else "**missed**"
    return [
        "| staging (issue 14) | messages | seconds | msg/s | ratio / target |",
        "|---|---:|---:|---:|---|",
        f"| engine, no-op handler, OTel SDK metrics (reference) | {noop.messages:,} "
        f"| {noop.seconds:.1f} | {noop.rate:,.0f} | 1.00 |",
        f"| real stock flow: validate (cached master data) + stage (group commit), metrics on "
        f"| {run.measurement.messages:,} | {run.measurement.seconds:.1f} "
        f"| {run.measurement.rate:,.0f} | {ratio:.2f} x no-op (rounds "
        f"{'/'.join(f'{r:.2f}' for r in ratios)}; target ≥ 0.5: {met}); {per_tx:,.0f} rows "
        "per transaction |",
        f"| backlog staged, fresh process | {b.messages:,} | {b.seconds:.1f} | {b.rate:,.0f} "
        f"| target < 90 s: {b_met}; peak RSS {backlog.peak_mb:.0f} MB (target < 300 MB: "
        f"{rss_met}); {backlog.rows / max(1, backlog.transactions):,.0f} rows per transaction |",
    ]


def _note(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1], type=BacklogSpec)
    tune_gc()  # as `skuflow run` does

    async def run() -> StagingRun:
        return await staging(spec.stack, spec.topic, spec.total)

    measured = anyio.run(run, backend="asyncio", backend_options={"use_uvloop": True})
    report = StagingRun(measured.measurement, measured.transactions, measured.rows, _hwm_mb())
    print(msgspec.json.encode(report).decode())


if __name__ == "__main__":
    main()
