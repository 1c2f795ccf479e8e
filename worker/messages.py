"""What the engine knows about one consumed message, and the router that gives it meaning.

The engine is generic: it never imports a domain event. A :class:`Router` (supplied by
``handlers/``) turns bytes into a typed event, names its ordering key and its handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import msgspec

from worker.outcomes import Outcome

Headers = Sequence[tuple[str, bytes]]


class Message(msgspec.Struct, kw_only=True, gc=False):
    """One consumed Kafka record as the engine tracks it (mutable: attempts are counted)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int
    attempts: int = 0
    #: Set when the message is a retry of a parked event (its ``skuflow_parked`` row).
    parked_id: int | None = None
    #: The deadline alert already raised for this message ("deadline_at_risk"/"..._missed").
    alert: str | None = None

    @property
    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0)

    def where(self) -> dict[str, Any]:
        """Log fields naming the message (OpenTelemetry messaging attribute names)."""
        fields: dict[str, Any] = {
            "messaging.destination.name": self.topic,
            "messaging.destination.partition.id": self.partition,
            "messaging.kafka.offset": self.offset,
        }
        if self.key is not None:
            fields["messaging.kafka.message.key"] = self.key.decode("utf-8", "replace")
        return fields

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class DecodeFailure(msgspec.Struct, frozen=True, gc=False):
    """Why a payload could not become an event (becomes an exception record)."""

    kind: str  # e.g. "undecodable", "schema_violation", "unknown_type"
    reason: str


class EventInfo(msgspec.Struct, frozen=True, gc=False):
    """What the engine needs to know about a decoded event, whatever its type."""

    event_type: str
    event_id: str | None = None
    sku: str | None = None
    order_id: str | None = None
    ordering_key: str | None = None
    priority: str = "normal"
    #: When the event's effect is due (epoch seconds), e.g. a ship-by date; None: no deadline.
    deadline: float | None = None


Handler = Callable[[Any, Message], Awaitable[Outcome]]


class Router(Protocol):
    """Gives meaning to a topic's bytes. Implemented by ``handlers``; must not raise."""

    def decode(self, message: Message) -> Any | DecodeFailure:
        """The typed event of a message, or why there is none."""
        ...

    def describe(self, event: Any) -> EventInfo:
        """Type, id, SKU and ordering key of a decoded event."""
        ...

    def handler_for(self, event: Any) -> Handler | None:
        """The handler of the event's type; None: no handler in this build (explicit state)."""
        ...
