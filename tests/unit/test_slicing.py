"""LoopSlice: background work takes a bounded share of each event-loop iteration.

A fake clock says how much of the iteration the work used; ``asyncio.sleep(0)`` lets the loop
run its next iteration (no timed sleeps).
"""

from __future__ import annotations

import asyncio

import pytest

from worker.slicing import LoopSlice

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def iterations(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_work_within_the_slice_never_suspends() -> None:
    async def main() -> int:
        clock = Clock()
        loop_slice = LoopSlice(0.002, clock=clock)
        for _ in range(100):
            clock.now += 0.00001  # 100 pieces of 10 µs: 1 ms of the 2 ms slice
            await loop_slice.turn()
        return loop_slice.deferred

    assert asyncio.run(main()) == 0


def test_work_past_the_slice_waits_for_a_later_iteration_in_order() -> None:
    async def main() -> tuple[list[int], list[int], int]:
        clock = Clock()
        loop_slice = LoopSlice(0.002, clock=clock)
        loop_slice.fit = 3
        went: list[int] = []

        async def piece(index: int) -> None:
            await loop_slice.turn()
            went.append(index)
            clock.now += 0.001  # each piece: 1 ms

        tasks = [asyncio.create_task(piece(i)) for i in range(8)]
        await iterations(1)  # the first iteration: two pieces fill the 2 ms slice
        first_iteration = list(went)
        await iterations(20)
        await asyncio.gather(*tasks)
        return first_iteration, went, loop_slice.deferred

    first, went, deferred = asyncio.run(main())
    assert first == [0, 1]
    assert went == list(range(8))  # the rest later, in the order they came
    assert deferred == 6


def test_the_share_let_go_per_iteration_follows_how_long_iterations_run() -> None:
    """While pieces wait, ``fit`` shrinks when an iteration ran past the slice and grows when
    it did not: the background class adapts to what else the loop carries."""

    async def main() -> tuple[int, int, int]:
        clock = Clock()
        loop_slice = LoopSlice(0.002, clock=clock)
        loop_slice.fit = 16

        async def spender() -> None:
            await loop_slice.turn()  # opens the iteration's slice ...
            clock.now += 0.003  # ... and spends it: the 400 behind it wait

        tasks = [asyncio.create_task(spender())]
        waiting = [asyncio.create_task(loop_slice.turn()) for _ in range(400)]
        await iterations(2)
        start = loop_slice.fit
        for _ in range(4):  # long iterations: 10 ms each
            clock.now += 0.010
            await iterations(1)
        shrunk = loop_slice.fit
        for _ in range(6):  # short ones: 0.5 ms each
            clock.now += 0.0005
            await iterations(1)
        grown = loop_slice.fit
        for task in waiting:
            task.cancel()
        await asyncio.gather(*tasks, *waiting, return_exceptions=True)
        return start, shrunk, grown

    start, shrunk, grown = asyncio.run(main())
    assert shrunk < start
    assert grown > shrunk


def test_a_cancelled_piece_leaves_the_queue_without_holding_up_the_rest() -> None:
    async def main() -> list[str]:
        clock = Clock()
        loop_slice = LoopSlice(0.002, clock=clock)
        loop_slice.fit = 1
        went: list[str] = []

        async def piece(name: str) -> None:
            await loop_slice.turn()
            went.append(name)

        async def spender() -> None:
            await loop_slice.turn()
            clock.now += 0.003

        first = asyncio.create_task(spender())
        doomed = asyncio.create_task(piece("doomed"))
        after = asyncio.create_task(piece("after"))
        await asyncio.sleep(0)  # all three looked: the spender went, the two others wait
        doomed.cancel()
        await iterations(10)
        await first
        await after
        return went

    assert asyncio.run(main()) == ["after"]


def test_a_slice_must_be_positive() -> None:
    with pytest.raises(ValueError, match="seconds"):
        LoopSlice(0)
