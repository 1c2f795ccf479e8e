"""Windows close by time (staggered per group) or by size; flushes are bounded."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from worker.windows import WindowScheduler

pytestmark = pytest.mark.timeout(10)


def test_phases_are_stable_spread_and_inside_the_window() -> None:
    scheduler = WindowScheduler(
        groups=_none, size=_zero, flush=_nothing, window_seconds=60, max_items=10
    )
    phases = [scheduler.phase(f"WH{i:02d}") for i in range(20)]
    assert phases == [scheduler.phase(f"WH{i:02d}") for i in range(20)]
    assert all(0 <= p < 60 for p in phases)
    assert len({round(p) for p in phases}) > 10


def test_a_group_flushes_at_its_phase_and_early_when_full() -> None:
    now = [0.0]
    sizes = {"A": 0, "B": 0}
    flushed: list[tuple[str, float]] = []

    async def groups() -> list[str]:
        return list(sizes)

    async def size(group: str) -> int:
        return sizes[group]

    async def flush(group: str) -> None:
        flushed.append((group, now[0]))
        sizes[group] = 0

    scheduler = WindowScheduler(
        groups=groups, size=size, flush=flush, window_seconds=60, max_items=100,
        poll_seconds=0, clock=lambda: now[0],
    )  # fmt: skip

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            for second in range(0, 130):
                now[0] = float(second)
                if second == 10:
                    sizes["B"] = 500  # a burst: B's window closes at once
                for _ in range(5):
                    await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()

    anyio.run(main)
    a_times = [t for g, t in flushed if g == "A"]
    b_times = [t for g, t in flushed if g == "B"]
    phase_a = scheduler.phase("A")
    assert a_times == [float(int(phase_a) + (1 if phase_a % 1 else 0)),
                       float(int(phase_a + 60) + (1 if phase_a % 1 else 0))]  # fmt: skip
    assert 10.0 in b_times


async def _none() -> list[str]:
    return []


async def _zero(_group: str) -> int:
    return 0


async def _nothing(_group: str) -> None:
    return None
