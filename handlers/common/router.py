"""The domain router: bytes → typed event, its ordering key, its handler.

Implements the engine's ``Router`` protocol. A payload that cannot become an event is a
:class:`DecodeFailure` whose reason carries msgspec's error path (``$.lines[0].quantity``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Union

import msgspec

from handlers.common.events import event_type_name, nul_paths
from worker.messages import DecodeFailure, EventInfo, Handler, Message

#: Payloads above this size are refused before decoding (a data error, not an event).
MAX_PAYLOAD_BYTES = 1024 * 1024


class _Unroutable(msgspec.Struct, frozen=True, tag="skuflow.unroutable", tag_field="type"):
    """Never produced: keeps the decoder a *union*, so a missing ``type`` is always an error
    (msgspec accepts an untagged object when a single tagged Struct is decoded alone)."""


class Family(msgspec.Struct, frozen=True, kw_only=True):
    """One event family: its type, how it is ordered, who handles it, and its class."""

    event: type[Any]  # a tagged msgspec Struct, normally a handlers.events.Event
    ordering_key: Callable[[Any], str]
    handler: Handler | None = None
    priority: str = "normal"
    sku: Callable[[Any], str | None] = lambda _event: None
    order_id: Callable[[Any], str | None] = lambda _event: None
    deadline: Callable[[Any], datetime | None] = lambda _event: None


class DomainRouter:
    """Decodes every registered family with one tagged-union decoder built once."""

    def __init__(self, families: Sequence[Family], *, max_payload_bytes: int = MAX_PAYLOAD_BYTES):
        if not families:
            raise ValueError("at least one event family is required")
        self._families = {family.event: family for family in families}
        members = (*self._families, _Unroutable)
        union: Any = Union[members]  # noqa: UP007  # runtime union of the families
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(union)
        self._max_payload_bytes = max_payload_bytes
        self.types = tuple(event_type_name(cls) for cls in self._families)

    def decode(self, message: Message) -> Any | DecodeFailure:
        value = message.value
        if len(value) > self._max_payload_bytes:
            return DecodeFailure(
                "payload_too_large",
                f"payload is {len(value)} bytes; the limit is {self._max_payload_bytes}",
            )
        try:
            event = self._decoder.decode(value)
        except msgspec.ValidationError as exc:
            text = str(exc)
            if text.endswith("at `$.type`") or "missing required field `type`" in text:
                return DecodeFailure(
                    "unknown_type", f"{text}; known types: {', '.join(self.types)}"
                )
            return DecodeFailure("schema_violation", text)
        except msgspec.DecodeError as exc:
            return DecodeFailure("undecodable", f"not a UTF-8 JSON object: {exc}")
        except UnicodeDecodeError as exc:  # raw invalid UTF-8 inside a string: not a DecodeError
            return DecodeFailure("undecodable", f"not UTF-8: {exc}")
        except RecursionError:  # e.g. 100k nested arrays in an ignored extra field
            return DecodeFailure("undecodable", "JSON nested too deeply")
        if isinstance(event, _Unroutable):
            return DecodeFailure("unknown_type", "reserved type skuflow.unroutable")
        problems = event.problems()
        if b"\\u0000" in value:  # rare: only then walk the strings (U+0000 can't be stored)
            problems += [(path, "must not contain U+0000") for path in nul_paths(event)]
        if problems:
            reason = "; ".join(f"{message_} - at `{path}`" for path, message_ in problems)
            return DecodeFailure("schema_violation", reason)
        return event

    def describe(self, event: Any) -> EventInfo:
        family = self._families[type(event)]
        due = family.deadline(event)
        return EventInfo(
            event_type=event_type_name(family.event),
            event_id=event.event_id,
            sku=family.sku(event),
            order_id=family.order_id(event),
            ordering_key=family.ordering_key(event),
            priority=family.priority,
            deadline=due.timestamp() if due is not None else None,
        )

    def handler_for(self, event: Any) -> Handler | None:
        return self._families[type(event)].handler
