"""Per-key order and exclusivity hold under any interleaving; concurrency is bounded."""

from __future__ import annotations

import random
from collections import defaultdict

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.lanes import KeyLanes
from worker.ready import DeadlineReady

pytestmark = pytest.mark.timeout(60)


async def _yield_randomly(rng: random.Random) -> None:
    for _ in range(rng.randrange(0, 6)):
        await anyio.lowlevel.checkpoint()


def _run_lanes(
    items: list[tuple[int, int]], max_in_flight: int, seed: int
) -> tuple[dict[int, list[int]], int]:
    rng = random.Random(seed)
    seen: dict[int, list[int]] = defaultdict(list)
    running: set[int] = set()
    peak = 0

    async def process(item: tuple[int, int]) -> None:
        nonlocal peak
        key, seq = item
        assert key not in running, "two events of one key ran at once"
        running.add(key)
        peak = max(peak, len(running))
        await _yield_randomly(rng)
        seen[key].append(seq)
        running.discard(key)

    async def main() -> None:
        lanes: KeyLanes[tuple[int, int]] = KeyLanes(
            process, max_in_flight=max_in_flight, max_lanes=len(items) + 1
        )
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            for key, seq in items:
                lanes.submit(key, (key, seq))
                if rng.random() < 0.3:
                    await _yield_randomly(rng)
            while lanes.queued or lanes.in_flight:
                await anyio.lowlevel.checkpoint()
            lanes.close()

    anyio.run(main)
    return seen, peak


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=300),
    st.integers(min_value=1, max_value=16),
    st.integers(),
)
def test_each_key_runs_alone_and_in_submission_order(
    keys: list[int], max_in_flight: int, seed: int
) -> None:
    items = [(key, seq) for seq, key in enumerate(keys)]
    seen, peak = _run_lanes(items, max_in_flight, seed)
    for key in set(keys):
        assert seen[key] == [seq for k, seq in items if k == key]
    assert peak <= max_in_flight


def test_different_keys_run_concurrently_up_to_the_limit() -> None:
    items = [(key, 0) for key in range(64)]
    _, peak = _run_lanes(items, max_in_flight=8, seed=1)
    assert peak == 8


def test_discard_removes_queued_items_but_never_the_running_one() -> None:
    started = anyio.Event()
    release = anyio.Event()
    processed: list[int] = []

    async def process(item: int) -> None:
        if item == 0:
            started.set()
            await release.wait()
        processed.append(item)

    async def main() -> None:
        lanes: KeyLanes[int] = KeyLanes(process, max_in_flight=2, max_lanes=10)
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            for item in range(5):
                lanes.submit("k", item)
            await started.wait()
            removed = lanes.discard(lambda item: item % 2 == 0)
            assert removed == [2, 4]
            assert lanes.queued == 2
            release.set()
            while lanes.queued or lanes.in_flight:
                await anyio.lowlevel.checkpoint()
            lanes.close()

    anyio.run(main)
    assert processed == [0, 1, 3]


def test_close_stops_starting_queued_items_but_lets_the_running_ones_finish() -> None:
    started = anyio.Event()
    release = anyio.Event()
    processed: list[int] = []

    async def process(item: int) -> None:
        if item == 0:
            started.set()
            await release.wait()
        processed.append(item)

    async def main() -> None:
        lanes: KeyLanes[int] = KeyLanes(process, max_in_flight=1, max_lanes=10)
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            for item in range(4):
                lanes.submit(item, item)
            await started.wait()
            lanes.close()
            release.set()
        assert lanes.queued == 3

    anyio.run(main)
    assert processed == [0]


def test_with_a_deadline_queue_the_earliest_deadline_runs_first_ties_by_arrival() -> None:
    started = anyio.Event()
    release = anyio.Event()
    order: list[str] = []

    async def process(item: tuple[str, float | None]) -> None:
        if item[0] == "busy":
            started.set()
            await release.wait()
        order.append(item[0])

    async def main() -> None:
        lanes: KeyLanes[tuple[str, float | None]] = KeyLanes(
            process,
            max_in_flight=1,
            max_lanes=10,
            ready=DeadlineReady(),
            deadline=lambda item: item[1],
        )
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            lanes.submit("busy", ("busy", 0.0))
            await started.wait()
            for name, deadline in [
                ("late", 300.0),
                ("none", None),
                ("soon", 100.0),
                ("soon-too", 100.0),
                ("sooner", 50.0),
            ]:
                lanes.submit(name, (name, deadline))
            assert lanes.earliest_waiting_deadline() == 50.0
            release.set()
            while lanes.queued or lanes.in_flight:
                await anyio.lowlevel.checkpoint()
            lanes.close()

    anyio.run(main)
    assert order == ["busy", "sooner", "soon", "soon-too", "late", "none"]


def test_cancelling_a_running_item_abandons_it_and_its_lane_goes_on() -> None:
    started = anyio.Event()
    processed: list[int] = []

    async def process(item: int) -> None:
        if item == 0:
            started.set()
            await anyio.sleep_forever()
        processed.append(item)

    async def main() -> None:
        lanes: KeyLanes[int] = KeyLanes(process, max_in_flight=1, max_lanes=10)
        async with anyio.create_task_group() as tg:
            await tg.start(lanes.run)
            for item in range(3):
                lanes.submit("k", item)
            await started.wait()
            assert lanes.cancel_running(lambda item: item == 0) == 1
            while lanes.queued or lanes.in_flight:
                await anyio.lowlevel.checkpoint()
            lanes.close()

    anyio.run(main)
    assert processed == [1, 2]
