"""Regression (found by the bad-input scenario): a message too large for the dead-letter topic.

A ``payload_too_large`` message from a topic that allows records over the producer's
``max_request_size`` (1 MiB) could never be dead-lettered: ``MessageSizeTooLargeError`` on every
attempt, the engine's durable-write loop retried for ever and the partition never committed
past it. Now the letter goes with an empty value and ``skuflow.original.size``; the exception
record keeps the original bytes (``skuflow exceptions retry`` re-publishes them from there).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from worker.messages import DecodeFailure, Message
from worker.sinks import OutcomeSinks


class _Pool:
    def __init__(self) -> None:
        self.inserted: list[tuple[Any, ...]] = []

    async def fetchval(self, _sql: str, *args: Any) -> int:
        self.inserted.append(args)
        return len(self.inserted)

    async def execute(self, _sql: str, *_args: Any) -> str:
        return "UPDATE 0"


class _Producer:
    """Refuses values over ``limit`` bytes, as aiokafka or the broker does."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **record: Any) -> object:
        if len(record.get("value") or b"") > self.limit:
            raise MessageSizeTooLargeError()
        self.sent.append({"topic": topic, **record})
        return object()


@pytest.mark.timeout(10)
def test_a_payload_too_large_for_the_dead_letter_topic_is_lettered_without_its_value() -> None:
    pool, producer = _Pool(), _Producer(limit=1024 * 1024)
    sinks = OutcomeSinks(pool, producer, "dlq")  # type: ignore[arg-type]
    payload = b"x" * (2 * 1024 * 1024)
    message = Message(
        topic="in", partition=3, offset=42, key=None, value=payload, headers=(), timestamp_ms=0
    )
    failure = DecodeFailure("payload_too_large", "payload is 2097152 bytes; the limit is 1048576")
    anyio.run(sinks.reject, message, failure, None)
    [letter] = producer.sent
    headers = dict(letter["headers"])
    assert letter["value"] == b""
    assert headers["skuflow.original.size"] == str(len(payload)).encode()
    assert headers["skuflow.original.offset"] == b"42"
    assert headers["skuflow.error.kind"] == b"payload_too_large"
    [row] = pool.inserted
    assert payload in row  # the exception record keeps the original bytes


@pytest.mark.timeout(10)
def test_a_dead_letter_that_fits_keeps_its_value() -> None:
    pool, producer = _Pool(), _Producer(limit=1024 * 1024)
    sinks = OutcomeSinks(pool, producer, "dlq")  # type: ignore[arg-type]
    message = Message(
        topic="in", partition=0, offset=1, key=b"k", value=b"{", headers=(), timestamp_ms=0
    )
    anyio.run(sinks.reject, message, DecodeFailure("undecodable", "truncated"), None)
    assert producer.sent[0]["value"] == b"{"
    assert "skuflow.original.size" not in dict(producer.sent[0]["headers"])
