"""TokenBucket on virtual time: a fake clock and a fake sleep, never a real wait."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.connectors.ratelimit import TokenBucket

EPSILON = 1e-9


class VirtualTime:
    """A discrete-event clock: ``sleep`` parks on a timer; ``run`` fires timers in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, delay), next(self._sequence), future))
        await future

    async def run(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Let every task run until blocked, fire the earliest timer, repeat until all done."""
        while True:
            for _ in range(5):
                await asyncio.sleep(0)
            if all(task.done() for task in tasks):
                return
            while self._timers and self._timers[0][2].cancelled():
                heapq.heappop(self._timers)
            if not self._timers:
                raise AssertionError("tasks blocked with no timer pending")
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            future.set_result(None)


def run_virtual(scenario: Callable[[VirtualTime], Coroutine[Any, Any, None]]) -> VirtualTime:
    time = VirtualTime()
    asyncio.run(scenario(time))
    return time


def grant_times(
    time: VirtualTime, bucket: TokenBucket, arrivals: list[float]
) -> Callable[[], Awaitable[list[float]]]:
    """A coroutine factory: one task per arrival time; returns when each was granted."""

    async def go() -> list[float]:
        granted: list[float] = []

        async def arrive(at: float) -> None:
            await time.sleep(at)
            await bucket.acquire()
            granted.append(time.now)

        tasks = [asyncio.create_task(arrive(at)) for at in arrivals]
        await time.run(tasks)
        return granted

    return go


def test_a_full_bucket_grants_burst_immediately_without_sleeping() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(2, 10, clock=time.clock, sleep=time.sleep)
        waits = [await bucket.acquire() for _ in range(10)]
        assert waits == [0.0] * 10
        assert time.sleeps == []

    run_virtual(scenario)


def test_the_call_after_the_burst_waits_one_token_interval() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(2, 10, clock=time.clock, sleep=time.sleep)
        granted = await grant_times(time, bucket, [0.0] * 11)()
        assert granted[:10] == [0.0] * 10
        assert granted[10] == pytest.approx(0.5)

    run_virtual(scenario)


def test_waiters_are_released_in_arrival_order_one_interval_apart() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(4, 1, clock=time.clock, sleep=time.sleep)
        order: list[int] = []

        async def waiter(index: int) -> None:
            await bucket.acquire()
            order.append(index)

        tasks = [asyncio.create_task(waiter(i)) for i in range(6)]
        await time.run(tasks)
        assert order == list(range(6))
        assert time.now == pytest.approx(5 * 0.25)

    run_virtual(scenario)


def test_each_waiter_sleeps_exactly_once() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(2, 1, clock=time.clock, sleep=time.sleep)
        await grant_times(time, bucket, [0.0] * 5)()
        assert len(time.sleeps) == 5 + 4  # five arrivals + one timer per waiter, no polling

    run_virtual(scenario)


def test_idle_time_refills_up_to_burst_and_no_further() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(2, 3, clock=time.clock, sleep=time.sleep)
        for _ in range(3):
            assert bucket.try_acquire()
        assert not bucket.try_acquire()
        time.now += 100.0
        assert bucket.statistics().tokens == 3.0
        assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]

    run_virtual(scenario)


def test_statistics_show_the_debt_of_queued_waiters() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(1, 1, clock=time.clock, sleep=time.sleep)
        await bucket.acquire()
        tasks = [asyncio.create_task(bucket.acquire()) for _ in range(3)]
        await asyncio.sleep(0)
        stats = bucket.statistics()
        assert (stats.tokens, stats.waiting) == (-3.0, 3)
        await time.run(tasks)
        assert bucket.statistics().waiting == 0

    run_virtual(scenario)


def test_a_cancelled_last_waiter_hands_its_token_back() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(1, 1, clock=time.clock, sleep=time.sleep)
        await bucket.acquire()
        waiter = asyncio.create_task(bucket.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bucket.statistics().tokens == 0.0  # the debt is gone
        next_in_line = asyncio.create_task(bucket.acquire())
        await time.run([next_in_line])
        assert time.now == pytest.approx(1.0)

    run_virtual(scenario)


def test_a_cancelled_waiter_with_others_behind_does_not_let_newcomers_overtake() -> None:
    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(1, 1, clock=time.clock, sleep=time.sleep)
        await bucket.acquire()
        order: list[str] = []

        async def waiter(name: str) -> None:
            await bucket.acquire()
            order.append(name)

        first = asyncio.create_task(waiter("first"))
        second = asyncio.create_task(waiter("second"))
        await asyncio.sleep(0)
        first.cancel()
        late = asyncio.create_task(waiter("late"))
        await time.run([first, second, late])
        assert order == ["second", "late"]

    run_virtual(scenario)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_rejects_a_rate_or_burst_that_is_not_a_bucket(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        TokenBucket(rate, burst)


def test_repr_names_the_usage_plan() -> None:
    assert repr(TokenBucket(2, 10)) == "TokenBucket(rate=2, burst=10)"


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.0, 7.5]),
    burst=st.integers(min_value=1, max_value=12),
    gaps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=3.0), st.integers(min_value=1, max_value=8)),
        min_size=1,
        max_size=12,
    ),
)
def test_grants_in_any_window_never_exceed_burst_plus_rate_times_length(
    rate: float, burst: int, gaps: list[tuple[float, int]]
) -> None:
    arrivals: list[float] = []
    at = 0.0
    for gap, count in gaps:
        at += gap
        arrivals.extend([at] * count)
    result: list[float] = []

    async def scenario(time: VirtualTime) -> None:
        bucket = TokenBucket(rate, burst, clock=time.clock, sleep=time.sleep)
        result.extend(await grant_times(time, bucket, arrivals)())

    run_virtual(scenario)
    granted = sorted(result)
    assert len(granted) == len(arrivals)
    # The densest windows start and end on grants: check every such pair.
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            assert j - i + 1 <= burst + rate * (granted[j] - start) + EPSILON
