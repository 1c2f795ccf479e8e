"""Offset tracking: which offset of a partition is safe to commit, and what is done beyond it.

Invariant 2 (commit watermark) lives here and only here. A partition's committed offset is the
*contiguous watermark*: the lowest offset that was fetched but whose outcome is not yet durable,
or one past the last fetched offset when nothing is outstanding. The engine only calls
:meth:`PartitionOffsets.complete` after an outcome is durable, so committing the watermark can
never skip unfinished work.

Offsets completed *above* the watermark are carried in the commit metadata as an
:class:`OffsetMap` so that a restarted or newly assigned consumer skips them instead of redoing
thousands of finished events behind one slow event.
"""

from __future__ import annotations

import base64
import bisect
import zlib
from collections import deque
from collections.abc import Iterable, Iterator

_MAGIC = "sf1"


class OffsetMapError(ValueError):
    """Commit metadata that is not a valid offset map (ignored by the caller: safe fallback)."""


def _varint(value: int, out: bytearray) -> None:
    if value < 0:
        raise ValueError(f"varint of a negative value {value}")  # would never terminate
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _read_varints(data: bytes) -> Iterator[int]:
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                raise OffsetMapError("varint too long")
        else:
            yield value
            value = shift = 0
    if shift:
        raise OffsetMapError("truncated varint")


def _runs(offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted offsets as inclusive (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for offset in sorted(offsets):
        if runs and offset <= runs[-1][1] + 1:
            first, last = runs[-1]
            runs[-1] = (first, max(last, offset))
        else:
            runs.append((offset, offset))
    return runs


def _merge(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of two sorted run lists."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(a + b):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class OffsetMap:
    """Offsets completed above a watermark, as runs; encoded into Kafka commit metadata.

    Text form: ``sf1:<watermark>:<base64(zlib(varints))>`` where the varints alternate
    (gap since the previous run's end, run length). Compact for the common shapes
    (long completed runs behind a few slow events).
    """

    __slots__ = ("runs", "watermark")

    def __init__(self, watermark: int, runs: list[tuple[int, int]]) -> None:
        self.watermark = watermark
        self.runs = runs

    @classmethod
    def from_offsets(cls, watermark: int, offsets: Iterable[int]) -> OffsetMap:
        return cls(watermark, _runs(o for o in offsets if o > watermark))

    def __contains__(self, offset: int) -> bool:
        lo, hi = 0, len(self.runs)
        while lo < hi:
            mid = (lo + hi) // 2
            first, last = self.runs[mid]
            if offset < first:
                hi = mid
            elif offset > last:
                lo = mid + 1
            else:
                return True
        return False

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self.runs)

    def offsets(self) -> Iterator[int]:
        for first, last in self.runs:
            yield from range(first, last + 1)

    def encode(self) -> str:
        if not self.runs:
            return ""
        raw = bytearray()
        previous_end = self.watermark
        for first, last in self.runs:
            _varint(first - previous_end - 1, raw)
            _varint(last - first + 1, raw)
            previous_end = last
        packed = base64.b64encode(zlib.compress(bytes(raw), 9)).decode("ascii")
        return f"{_MAGIC}:{self.watermark}:{packed}"

    @classmethod
    def decode(cls, text: str) -> OffsetMap:
        if not text:
            raise OffsetMapError("empty metadata")
        try:
            magic, watermark_text, packed = text.split(":", 2)
            watermark = int(watermark_text)
            raw = zlib.decompress(base64.b64decode(packed, validate=True))
        except (ValueError, zlib.error) as exc:
            raise OffsetMapError(f"not an offset map: {exc}") from exc
        if magic != _MAGIC:
            raise OffsetMapError(f"unknown offset map version {magic!r}")
        values = list(_read_varints(raw))
        if len(values) % 2:
            raise OffsetMapError("odd number of varints")
        runs: list[tuple[int, int]] = []
        previous_end = watermark
        for gap, length in zip(values[::2], values[1::2], strict=True):
            if length < 1:
                raise OffsetMapError("empty run")
            first = previous_end + 1 + gap
            last = first + length - 1
            runs.append((first, last))
            previous_end = last
        return cls(watermark, runs)


class PartitionOffsets:
    """The outstanding and completed offsets of one partition owned by this process.

    ``track`` is called for every fetched record in fetch (ascending) order; ``complete`` when
    its outcome is durable. ``skip`` holds offsets a previous owner already completed (from the
    commit metadata); tracking one of them returns False and it counts as complete at once.
    """

    __slots__ = ("_done", "_last", "_pending", "_skip", "_start")

    def __init__(self, start: int | None, skip: OffsetMap | None = None) -> None:
        self._start = start
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._last: int | None = None
        self._skip = skip if skip is not None and skip.runs else None

    def track(self, offset: int) -> bool:
        """Register a fetched offset. False: it was completed by a previous owner, skip it."""
        if self._last is not None and offset <= self._last:
            raise ValueError(f"offset {offset} tracked out of order (last {self._last})")
        self._last = offset
        skip = self._skip
        if skip is not None and offset in skip:
            if offset >= skip.runs[-1][1]:
                self._skip = None  # every inherited offset has been seen again
            if self._pending:
                self._pending.append(offset)
                self._done.add(offset)
            return False
        self._pending.append(offset)
        return True

    def complete(self, offset: int) -> None:
        """Mark a tracked offset's outcome durable."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self._done
            while pending and pending[0] in done:
                done.discard(pending.popleft())
            if not pending:
                done.clear()
        else:
            self._done.add(offset)

    @property
    def outstanding(self) -> int:
        """Offsets fetched and not yet durable."""
        return len(self._pending) - len(self._done)

    @property
    def window(self) -> int:
        """Offsets tracked between the watermark and the last fetched one (done or not)."""
        return len(self._pending)

    def watermark(self) -> int | None:
        """The offset to commit: nothing below it is unfinished. None: nothing known yet.

        With nothing outstanding it is the next offset to fetch, moved past an inherited run
        that starts there (a previous owner finished those offsets; they need no re-fetch).
        """
        if self._pending:
            return self._pending[0]
        following = self._last + 1 if self._last is not None else self._start
        skip = self._skip
        if following is None or skip is None:
            return following
        index = bisect.bisect_left(skip.runs, (following + 1,)) - 1
        if index >= 0 and skip.runs[index][0] <= following <= skip.runs[index][1]:
            return skip.runs[index][1] + 1
        return following

    def offset_map(self) -> OffsetMap | None:
        """Completed offsets above the watermark (including inherited ones not yet re-fetched)."""
        watermark = self.watermark()
        if watermark is None:
            return None
        runs = _runs(self._done)
        if self._skip is not None:
            beyond = max(self._last if self._last is not None else watermark - 1, watermark)
            inherited = [(max(f, beyond + 1), last) for f, last in self._skip.runs if last > beyond]
            runs = _merge(runs, inherited)
        return OffsetMap(watermark, runs) if runs else None
