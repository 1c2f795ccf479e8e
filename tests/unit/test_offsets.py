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
