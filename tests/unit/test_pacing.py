"""DeadlinePacer + PacedReady: the token goes to the most urgent work ready when it is free.

No real time: tokens come from a source the test hands out one by one, and the only sleeps
(Retry-After) run on a fake clock.
"""

from __future__ import annotations

import math

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskGroup
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.pacing import DeadlinePacer, PacerStopped
from worker.ready import PacedReady

pytestmark = pytest.mark.timeout(30)


class HandedTokens:
    """A token source whose tokens the test hands out: ``reserve`` waits for the next one."""

    rate = 1.0

    def __init__(self) -> None:
        self._handed = anyio.Semaphore(0)
        self.reserved = 0
        self.refunds = 0
        self.drains = 0

    def hand(self, count: int = 1) -> None:
        for _ in range(count):
            self._handed.release()

    async def reserve(self) -> float:
        await self._handed.acquire()
        self.reserved += 1
        return 0.0

    async def refund(self) -> None:
        self.refunds += 1
        self._handed.release()  # back in the bucket: the next reserve gets it at once

    async def drain(self) -> None:
        self.drains += 1


async def settle() -> None:
    for _ in range(50):
        await anyio.lowlevel.checkpoint()


class Runner:
    """One urgent runner: takes a lane from the queue, then spends its token on the call."""

    def __init__(self, ready: PacedReady, pacer: DeadlinePacer, *, spend: bool = True) -> None:
        self.ready, self.pacer, self.spend = ready, pacer, spend
        self.picked: list[object] = []

    async def run(self) -> None:
        while True:
            key = await self.ready.get()
            if key is None:
                return
            self.picked.append(key)
            if self.spend:
                assert await self.pacer.acquire() == 0.0  # the held token: no wait
            self.pacer.release()


async def started(tg: TaskGroup, source: HandedTokens) -> tuple[DeadlinePacer, PacedReady]:
    pacer = DeadlinePacer(source)
    await tg.start(pacer.run)
    return pacer, PacedReady(pacer)


def test_the_lane_is_chosen_when_the_token_is_free_not_before() -> None:
    async def main() -> list[object]:
        source = HandedTokens()
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            runner = Runner(ready, pacer)
            tg.start_soon(runner.run)
            ready.put("due-in-50", 50.0)
            ready.put("due-in-30", 30.0)
            await settle()  # the runner waits for a token, the head then being due-in-30
            ready.put("due-in-10", 10.0)  # arrives later, is due sooner
            for _ in range(3):
                source.hand()
                await settle()
            tg.cancel_scope.cancel()
        return runner.picked

    assert anyio.run(main) == ["due-in-10", "due-in-30", "due-in-50"]


def test_equal_deadlines_go_in_arrival_order() -> None:
    async def main() -> list[object]:
        source = HandedTokens()
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            runner = Runner(ready, pacer)
            for key in ("a", "b", "c"):
                ready.put(key, 20.0)
            ready.put("undated", None)
            tg.start_soon(runner.run)
            source.hand(4)
            await settle()
            tg.cancel_scope.cancel()
        return runner.picked

    assert anyio.run(main) == ["a", "b", "c", "undated"]


def test_a_retry_waits_by_its_deadline_not_at_the_back() -> None:
    """Work due at 10 gets a 429 and asks again: the next token is its own, before a lane due
    at 20 that waited all along; a lane due at 5 arriving meanwhile still goes before it."""

    async def main() -> list[str]:
        source = HandedTokens()
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)

            async def first() -> None:
                key = await ready.get()
                await pacer.acquire()  # spends the picked token: the call is sent
                order.append(f"{key}:call")
                pacer.throttled(0.0)  # 429: ask again
                await pacer.acquire()
                order.append(f"{key}:retry")
                pacer.release()

            ready.put("due-10", 10.0)
            tg.start_soon(first)
            source.hand()
            await settle()
            ready.put("due-20", 20.0)
            second = Runner(ready, pacer)
            tg.start_soon(second.run)
            await settle()  # the retry (rank 10) and the pick (head due-20) both wait
            source.hand()
            await settle()
            ready.put("due-5", 5.0)
            await settle()
            source.hand(2)
            await settle()
            order.extend(f"{key}:call" for key in second.picked)
            tg.cancel_scope.cancel()
        return order

    assert anyio.run(main) == ["due-10:call", "due-10:retry", "due-5:call", "due-20:call"]


def test_a_token_the_work_did_not_spend_goes_to_the_next_pick() -> None:
    async def main() -> tuple[list[object], int, int]:
        source = HandedTokens()
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            runner = Runner(ready, pacer, spend=False)  # e.g. duplicates: no call to make
            for index in range(3):
                ready.put(f"duplicate-{index}", float(index))
            tg.start_soon(runner.run)
            source.hand()  # one token for all three
            await settle()
            await settle()
            tg.cancel_scope.cancel()
        return runner.picked, source.reserved, source.refunds

    picked, reserved, refunds = anyio.run(main)
    assert picked == ["duplicate-0", "duplicate-1", "duplicate-2"]
    # Nobody else waited each time, so the token went back to the source and came out again.
    assert (reserved, refunds) == (3, 3)


def test_an_unspent_token_goes_straight_to_a_waiting_retry() -> None:
    async def main() -> tuple[list[str], int, int]:
        source = HandedTokens()
        order: list[str] = []
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            runner = Runner(ready, pacer, spend=False)

            async def retry() -> None:  # a call outside any pick: ranked after every dated one
                await pacer.acquire()
                order.extend([*map(str, runner.picked), "retry"])

            tg.start_soon(retry)
            ready.put("duplicate", 1.0)
            tg.start_soon(runner.run)
            await settle()  # both wait: the pick (due at 1) and the retry (undated)
            source.hand()  # one token: the pick gets it, spends nothing, hands it on
            await settle()
            tg.cancel_scope.cancel()
        return order, source.reserved, source.refunds

    assert anyio.run(main) == (["duplicate", "retry"], 1, 0)


def test_a_429_holds_every_grant_until_retry_after_and_drains_the_source() -> None:
    async def main() -> tuple[list[float], int, list[object]]:
        source = HandedTokens()
        now = [100.0]
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            now[0] += seconds
            await anyio.lowlevel.checkpoint()

        pacer = DeadlinePacer(source, clock=lambda: now[0], sleep=sleep)
        ready = PacedReady(pacer)
        runner = Runner(ready, pacer)
        async with anyio.create_task_group() as tg:
            await tg.start(pacer.run)
            pacer.throttled(7.5)
            ready.put("after-the-429", 1.0)
            tg.start_soon(runner.run)
            source.hand()
            await settle()
            tg.cancel_scope.cancel()
        return sleeps, source.drains, runner.picked

    sleeps, drains, picked = anyio.run(main)
    assert sleeps == [7.5]
    assert drains == 1
    assert picked == ["after-the-429"]


def test_a_pick_cancelled_as_it_is_granted_passes_the_token_on() -> None:
    async def main() -> tuple[list[object], int]:
        source = HandedTokens()
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            waiter_scope = anyio.CancelScope()

            async def doomed() -> None:
                with waiter_scope:
                    await pacer.acquire()

            tg.start_soon(doomed)
            await settle()
            source.hand()  # the only token: the driver grants it to the waiter ...
            waiter_scope.cancel()  # ... which is cancelled before it can resume
            await settle()
            ready.put("next", 1.0)
            runner = Runner(ready, pacer)
            tg.start_soon(runner.run)
            await settle()
            tg.cancel_scope.cancel()
        return runner.picked, source.reserved

    picked, _reserved = anyio.run(main)
    assert picked == ["next"]  # with the one token handed out: it was passed on, not lost


def test_closing_the_queue_wakes_a_runner_waiting_for_a_token() -> None:
    async def main() -> list[object | None]:
        source = HandedTokens()
        got: list[object | None] = []
        async with anyio.create_task_group() as tg:
            _pacer, ready = await started(tg, source)
            ready.put("never-granted", 1.0)

            async def runner() -> None:
                got.append(await ready.get())

            tg.start_soon(runner)
            tg.start_soon(runner)
            await settle()
            ready.close()
            await settle()
            tg.cancel_scope.cancel()
        return got

    assert anyio.run(main) == [None, None]


def test_asking_a_pacer_that_is_not_running_fails_loudly() -> None:
    async def main() -> None:
        await DeadlinePacer(HandedTokens()).acquire()

    with pytest.raises(PacerStopped):
        anyio.run(main)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from([0, 1, 2, 3, 5, 8]).map(float), st.just(math.nan)),
        min_size=1,
        max_size=40,
    )
)
def test_every_token_goes_to_the_earliest_deadline_waiting_at_that_moment(
    steps: list[float],
) -> None:
    """A random interleaving of arrivals (a deadline) and tokens (nan): each token's pick is
    the minimum (deadline, arrival) of the lanes present when it is granted."""

    async def main() -> tuple[list[object], list[object]]:
        source = HandedTokens()
        expected: list[object] = []
        present: list[tuple[float, int]] = []
        async with anyio.create_task_group() as tg:
            pacer, ready = await started(tg, source)
            runner = Runner(ready, pacer)
            tg.start_soon(runner.run)
            for arrival, step in enumerate(steps):
                if math.isnan(step):
                    if present:
                        present.sort()
                        expected.append(present.pop(0))
                        source.hand()
                else:
                    present.append((step, arrival))
                    ready.put((step, arrival), step)
                await settle()
            tg.cancel_scope.cancel()
        return runner.picked, expected

    picked, expected = anyio.run(main)
    assert picked == expected
