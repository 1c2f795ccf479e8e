"""The commit watermark never passes unfinished work; the offset map round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.offsets import OffsetMap, OffsetMapError, PartitionOffsets

pytestmark = pytest.mark.timeout(60)


@st.composite
def fetched_and_completion_order(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    start = draw(st.integers(min_value=0, max_value=10_000))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200))
    offsets = []
    current = start
    for gap in gaps:
        offsets.append(current)
        current += gap
    order = draw(st.permutations(offsets))
    return offsets, list(order)


@settings(max_examples=300, deadline=None)
@given(fetched_and_completion_order())
def test_watermark_never_passes_an_incomplete_offset(case: tuple[list[int], list[int]]) -> None:
    fetched, completion = case
    tracker = PartitionOffsets(fetched[0])
    for offset in fetched:
        assert tracker.track(offset)
    done: set[int] = set()
    for offset in completion:
        tracker.complete(offset)
        done.add(offset)
        watermark = tracker.watermark()
        assert watermark is not None
        assert all(o in done for o in fetched if o < watermark)
        if watermark <= fetched[-1]:
            assert watermark in fetched
            assert watermark not in done
    assert tracker.watermark() == fetched[-1] + 1
    assert tracker.outstanding == 0
    assert tracker.offset_map() is None


@settings(max_examples=300, deadline=None)
@given(fetched_and_completion_order(), st.data())
def test_offset_map_lists_exactly_the_completed_offsets_above_the_watermark(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    fetched, completion = case
    cut = data.draw(st.integers(min_value=0, max_value=len(completion)))
    tracker = PartitionOffsets(fetched[0])
    for offset in fetched:
        tracker.track(offset)
    for offset in completion[:cut]:
        tracker.complete(offset)
    watermark = tracker.watermark()
    assert watermark is not None
    expected = {o for o in completion[:cut] if o > watermark}
    offset_map = tracker.offset_map()
    listed = set(offset_map.offsets()) if offset_map else set()
    assert listed == expected
    if offset_map is not None:
        decoded = OffsetMap.decode(offset_map.encode())
        assert decoded.watermark == watermark
        assert set(decoded.offsets()) == expected


@settings(max_examples=200, deadline=None)
@given(fetched_and_completion_order(), st.data())
def test_restart_with_offset_map_redoes_only_unfinished_work(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    fetched, completion = case
    cut = data.draw(st.integers(min_value=0, max_value=len(completion)))
    first = PartitionOffsets(fetched[0])
    for offset in fetched:
        first.track(offset)
    for offset in completion[:cut]:
        first.complete(offset)
    watermark = first.watermark()
    assert watermark is not None
    offset_map = first.offset_map()
    carried = OffsetMap.decode(offset_map.encode()) if offset_map else None

    # A new owner starts at the committed watermark with the map.
    second = PartitionOffsets(watermark, carried)
    redone = [o for o in fetched if o >= watermark and second.track(o)]
    assert set(redone) == {o for o in fetched if o >= watermark} - set(completion[:cut])
    for offset in redone:
        second.complete(offset)
    assert second.watermark() == fetched[-1] + 1


@settings(max_examples=300, deadline=None)
@given(fetched_and_completion_order(), st.data())
def test_an_inheriting_owner_commits_a_valid_map_at_every_step(
    case: tuple[list[int], list[int]], data: st.DataObject
) -> None:
    """A new owner fetching and finishing work in any interleaving never commits a map that
    lists an offset at or below its watermark (such a map cannot be encoded) and never lets the
    watermark pass unfinished work or forget an inherited offset."""
    fetched, _ = case
    inherited = set(data.draw(st.sets(st.sampled_from(fetched[1:]))) if fetched[1:] else set())
    carried = OffsetMap.from_offsets(fetched[0], inherited) if inherited else None
    tracker = PartitionOffsets(fetched[0], carried)
    unfinished: list[int] = []
    finished = set(inherited)
    queue = list(fetched)
    while queue or unfinished:
        if unfinished and (not queue or data.draw(st.booleans())):
            offset = unfinished.pop(data.draw(st.integers(0, len(unfinished) - 1)))
            tracker.complete(offset)
            finished.add(offset)
        else:
            offset = queue.pop(0)
            if tracker.track(offset):
                unfinished.append(offset)
        watermark = tracker.watermark()
        assert watermark is not None
        assert all(o in finished for o in fetched if o < watermark)
        offset_map = tracker.offset_map()
        if offset_map is not None:
            assert all(first > watermark for first, _ in offset_map.runs)
            decoded = OffsetMap.decode(offset_map.encode())
            assert set(decoded.offsets()) == {o for o in finished if o > watermark}
        else:
            assert not {o for o in finished if o > watermark}


def test_a_finished_offset_just_before_an_inherited_run_moves_the_watermark_past_it() -> None:
    # Found by a process test: the new owner finished offset 0 before fetching 1, which the
    # previous owner had finished; committing watermark 1 with a map starting at 1 sent the
    # encoder into an endless loop (a negative gap), and the worker stopped answering signals.
    tracker = PartitionOffsets(0, OffsetMap(0, [(1, 3000)]))
    assert tracker.track(0)
    tracker.complete(0)
    assert tracker.watermark() == 3001
    assert tracker.offset_map() is None
    assert not tracker.track(1)
    assert tracker.watermark() == 3001


def test_an_encoder_asked_for_a_negative_gap_refuses_instead_of_looping() -> None:
    with pytest.raises(ValueError, match="negative"):
        OffsetMap(5, [(5, 6)]).encode()


def test_map_is_carried_forward_before_the_new_owner_refetches_it() -> None:
    carried = OffsetMap(10, [(12, 500)])
    tracker = PartitionOffsets(10, carried)
    assert tracker.track(10)
    assert tracker.track(11)
    assert not tracker.track(12)
    offset_map = tracker.offset_map()
    assert offset_map is not None
    assert offset_map.watermark == 10
    assert offset_map.runs == [(12, 500)]


def test_long_runs_encode_compactly() -> None:
    offset_map = OffsetMap.from_offsets(1000, range(1001, 1_001_000))
    assert len(offset_map.encode()) < 40


def test_scattered_completions_stay_within_kafka_metadata_limits_for_thousands_of_runs() -> None:
    offset_map = OffsetMap.from_offsets(0, range(2, 6000, 3))
    assert len(offset_map.encode()) < 4096


@pytest.mark.parametrize("text", ["", "sf1:x:AAAA", "sf2:1:eJwDAAAAAAE=", "sf1:5:not base64!"])
def test_garbage_metadata_is_rejected_not_trusted(text: str) -> None:
    with pytest.raises(OffsetMapError):
        OffsetMap.decode(text)


def test_tracking_out_of_order_is_a_bug() -> None:
    tracker = PartitionOffsets(None)
    tracker.track(5)
    with pytest.raises(ValueError, match="out of order"):
        tracker.track(5)


def test_without_fetches_the_watermark_is_the_committed_start() -> None:
    assert PartitionOffsets(42).watermark() == 42
    assert PartitionOffsets(None).watermark() is None
