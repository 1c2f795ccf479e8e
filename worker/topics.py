"""Subscribed topics the cluster does not have (yet): named once at start, watched until they
appear.

A consumer subscribed to a topic that does not exist joins its group with nothing assigned and
is otherwise healthy; it gets the topic's partitions when its cluster metadata next shows the
topic (aiokafka then rejoins the group), which ``kafka.metadata_refresh_seconds`` bounds
(aiokafka's default is 5 minutes). This watch makes that state visible: each missing topic is
logged once at WARNING by name, reported by :attr:`TopicWatch.missing` (``/readyz`` and the
``skuflow.topics.missing`` gauge), and logged once at INFO when the consumer's metadata shows
it, which is when the consumer picks it up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anyio
from aiokafka import AIOKafkaConsumer

log = logging.getLogger("skuflow.kafka")

#: Seconds between two looks at the consumer's cached metadata (no request is sent).
POLL_SECONDS = 0.5

#: aiokafka logs this at ERROR on every metadata refresh while a subscribed topic is missing
#: (``aiokafka/cluster.py``): every ``kafka.metadata_refresh_seconds``, per consumer, forever.
#: The watch names each missing topic once instead.
_AIOKAFKA_TOPIC_NOT_FOUND = "Topic %s not found in cluster metadata"


class _QuietMissingTopics(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _AIOKAFKA_TOPIC_NOT_FOUND


def quiet_aiokafka_missing_topics() -> None:
    """Drop aiokafka's repeated "not found in cluster metadata" lines (idempotent)."""
    cluster = logging.getLogger("aiokafka.cluster")
    if not any(isinstance(f, _QuietMissingTopics) for f in cluster.filters):
        cluster.addFilter(_QuietMissingTopics())


quiet_aiokafka_missing_topics()


class TopicWatch:
    """The subscribed topics of one consumer that are missing from the cluster."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Iterable[str],
        *,
        worker_class: str,
        refresh_seconds: float,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self._consumer = consumer
        self.topics = tuple(topics)
        self._class = worker_class
        self._refresh = refresh_seconds
        self._poll = poll_seconds
        self._missing: set[str] = set()
        #: True once the cluster's topic list has been read (before that nothing is known).
        self.checked = False

    @property
    def missing(self) -> list[str]:
        return sorted(self._missing)

    async def run(self) -> None:
        """Read the cluster's topics once (retrying while the broker is unreachable), name the
        missing ones, then follow the consumer's own metadata until each appears."""
        existing = await self._cluster_topics()
        self._missing = {topic for topic in self.topics if topic not in existing}
        self.checked = True
        for topic in self.missing:
            log.warning(
                "subscribed topic does not exist (yet); consuming it once it is created",
                extra={
                    "messaging.destination.name": topic,
                    "skuflow.class": self._class,
                    "metadata_refresh_s": self._refresh,
                },
            )
        while self._missing:
            await anyio.sleep(self._poll)
            for topic in self.missing:
                if self._consumer.partitions_for_topic(topic):
                    self._missing.discard(topic)
                    log.info(
                        "subscribed topic now exists; consuming it",
                        extra={"messaging.destination.name": topic, "skuflow.class": self._class},
                    )

    async def _cluster_topics(self) -> set[str]:
        attempt = 0
        while True:
            try:
                with anyio.fail_after(max(10.0, self._refresh)):
                    topics: set[str] = await self._consumer.topics()
                return topics
            except Exception as exc:  # the broker may be away at start; the consumer retries too
                attempt += 1
                log.debug("cluster metadata unavailable", extra={"error": repr(exc)})
                await anyio.sleep(min(self._refresh, 0.5 * 2**attempt))


__all__ = ["TopicWatch", "quiet_aiokafka_missing_topics"]
