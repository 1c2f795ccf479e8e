"""Ready queues wake idle runners one at a time, chained, and never strand a waiting lane."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from worker.ready import DeadlineReady, FifoReady, ReadyQueue

pytestmark = pytest.mark.timeout(30)


async def _settle() -> None:
    """Let every runnable task run until nothing changes (no sleeps: checkpoints only)."""
    for _ in range(50):
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("make", [FifoReady, DeadlineReady])
def test_a_burst_wakes_one_runner_and_each_taker_wakes_the_next(
    make: type[FifoReady] | type[DeadlineReady],
) -> None:
    """I/O-bound runners: every idle runner gets a lane, at one wake-up each, and a burst of
    100 lanes costs one wake-up up front instead of one per lane."""

    async def main() -> tuple[int, int, list[object], int]:
        queue: ReadyQueue = make()
        taken: list[object] = []

        async def runner() -> None:
            key = await queue.get()
            taken.append(key)
            await anyio.sleep_forever()  # its handler waits on I/O

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(runner)
            await _settle()  # all eight idle, waiting
            for key in range(100):
                queue.put(key, None)
            woken_by_the_burst = make_wakeups(queue)
            await _settle()
            result = (woken_by_the_burst, make_wakeups(queue), list(taken), len(queue))
            tg.cancel_scope.cancel()
        return result

    burst, total, taken, left = anyio.run(main)
    assert burst == 1
    assert total == 8
    assert taken == list(range(8))  # FIFO and (all deadlines equal) arrival order
    assert left == 92


def test_a_runner_cancelled_as_it_is_woken_passes_the_baton_on() -> None:
    async def main() -> list[tuple[int, object]]:
        queue = FifoReady()
        taken: list[tuple[int, object]] = []

        async def runner(index: int, scope_out: list[anyio.CancelScope]) -> None:
            with anyio.CancelScope() as scope:
                scope_out.append(scope)
                taken.append((index, await queue.get()))
                await anyio.sleep_forever()

        scopes: list[anyio.CancelScope] = []
        async with anyio.create_task_group() as tg:
            for index in range(2):
                tg.start_soon(runner, index, scopes)
            await _settle()
            scopes[0].cancel()  # the first runner is being cancelled (it has not run yet)...
            queue.put("a", None)  # ...and is still first in line: the put wakes it
            await _settle()
            result = list(taken)
            tg.cancel_scope.cancel()
        return result

    assert anyio.run(main) == [(1, "a")]  # the second runner took it


def test_close_wakes_every_waiting_runner_with_none() -> None:
    async def main() -> list[object]:
        queue = FifoReady()
        got: list[object] = []

        async def runner() -> None:
            got.append(await queue.get())

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(runner)
            await _settle()
            queue.close()
        return got

    assert anyio.run(main) == [None, None, None]


def make_wakeups(queue: ReadyQueue) -> int:
    assert isinstance(queue, FifoReady | DeadlineReady)
    return queue.wakeups
