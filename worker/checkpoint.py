"""Checkpoint: the one place that decides which offsets are committed, and with what map.

Invariant 2 (commit watermark) is kept by :class:`~worker.offsets.PartitionOffsets`; this room
owns *when* and *what* is committed: the watermark of every owned partition plus the offset
map of completions above it in the commit metadata, serialised by one lock so a periodic
commit can never overtake the final commit of a revocation. It also reads the map back when
partitions are assigned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from worker.offsets import OffsetMap, OffsetMapError, PartitionOffsets
from worker.telemetry import EngineMetrics

log = logging.getLogger("skuflow.checkpoint")


class PartitionState:
    """Engine-side state of one owned partition."""

    __slots__ = ("in_flight", "last_commit", "map_full", "offsets", "revoked", "tp")

    def __init__(self, tp: TopicPartition, offsets: PartitionOffsets) -> None:
        self.tp = tp
        self.offsets = offsets
        self.revoked = False
        self.in_flight = 0
        self.map_full = False
        self.last_commit: tuple[int, str] | None = None


class Checkpoint:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        metrics: EngineMetrics,
        *,
        map_budget: int,
        group: str = "",
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._map_budget = map_budget
        self._group = group
        self._tracer = tracer
        self._lock = anyio.Lock()

    async def commit(self, parts: Iterable[PartitionState]) -> None:
        """Commit the watermark (and offset map) of every owned partition that moved."""
        async with self._lock:
            offsets: dict[TopicPartition, OffsetAndMetadata] = {}
            owned = self._consumer.assignment()
            changed = []
            for part in parts:
                if part.tp not in owned:
                    continue  # never commit for a partition this member no longer owns
                watermark = part.offsets.watermark()
                if watermark is None:
                    continue
                offset_map = part.offsets.offset_map()
                metadata = offset_map.encode() if offset_map is not None else ""
                part.map_full = len(metadata) > self._map_budget
                if part.map_full:
                    metadata = ""  # the watermark alone is always safe; the engine pauses
                if part.last_commit == (watermark, metadata):
                    continue
                offsets[part.tp] = OffsetAndMetadata(watermark, metadata)
                changed.append(part)
            if not offsets:
                return
            span = self._span(offsets)
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                self._metrics.commits.add(1, {"result": "failed"})
                log.warning("commit failed", extra={"error": repr(exc)})
                if span is not None:
                    span.set_attribute("error.type", type(exc).__name__)
                    span.set_status(Status(StatusCode.ERROR, repr(exc)))
                    span.end()
                return
            if span is not None:
                span.end()
            self._metrics.commits.add(1, {"result": "ok"})
            for part in changed:
                committed = offsets[part.tp]
                part.last_commit = (committed.offset, committed.metadata)

    def _span(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> trace.Span | None:
        """A ``commit <topic>`` span (CLIENT) for one offset commit, or None: tracing off."""
        if self._tracer is None:
            return None
        topics = sorted({tp.topic for tp in offsets})
        span = self._tracer.start_span(
            f"commit {topics[0]}" if len(topics) == 1 else "commit",
            context=Context(),  # a commit covers many messages: its own trace
            kind=SpanKind.CLIENT,
        )
        if span.is_recording():
            attributes: dict[str, Any] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "settle",
                "messaging.operation.name": "commit",
                "messaging.consumer.group.name": self._group,
                "skuflow.partitions": len(offsets),
            }
            if len(topics) == 1:
                attributes["messaging.destination.name"] = topics[0]
            if len(offsets) == 1:
                (tp,) = offsets
                attributes["messaging.destination.partition.id"] = str(tp.partition)
                attributes["messaging.kafka.offset"] = offsets[tp].offset
            span.set_attributes(attributes)
        return span

    async def restore(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, PartitionState]:
        """Fresh state for newly assigned partitions, with the offset maps their commits carry."""
        committed: dict[TopicPartition, Any] = {}
        if partitions:
            # aiokafka exposes the commit metadata only on its coordinator.
            coordinator = self._consumer._coordinator
            try:
                committed = await coordinator.fetch_committed_offsets(partitions)
            except KafkaError as exc:
                log.warning("could not read commit metadata", extra={"error": repr(exc)})
        states = {}
        for tp in partitions:
            offset_map = None
            start = None
            entry = committed.get(tp)
            if entry is not None and entry.offset >= 0:
                start = entry.offset
                offset_map = read_offset_map(tp, entry.offset, entry.metadata)
            states[tp] = PartitionState(tp, PartitionOffsets(start, offset_map))
        return states


def read_offset_map(tp: TopicPartition, committed: int, metadata: str) -> OffsetMap | None:
    if not metadata:
        return None
    try:
        offset_map = OffsetMap.decode(metadata)
    except OffsetMapError as exc:
        log.warning("ignoring commit metadata", extra={"partition": str(tp), "error": str(exc)})
        return None
    if offset_map.watermark != committed:
        # Someone moved the group's offset (e.g. a reset): the map describes another position.
        return None
    return offset_map
