"""Handler outcomes are values, not control flow by exception.

A handler returns exactly one of these for every event it is given:

- ``Done``      the effect is durable (applied, or staged durably); the offset may commit.
- ``Retry``     try again after ``after`` seconds; the key stays blocked so ordering holds.
- ``Park``      hand the event to the durable retry store; the key moves on.
- ``Reject``    the event cannot be applied; it becomes an exception record.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class Done(msgspec.Struct, frozen=True):
    """The event's effect is durable."""


class Retry(msgspec.Struct, frozen=True):
    """Run the same event again after ``after`` seconds (None: the engine's backoff).

    ``dependency``: a system the handler needs is down (the ERP, PostgreSQL) — not the event's
    fault, so the attempt does not count toward ``max_attempts``: the key waits for as long as
    the outage lasts instead of turning valid events into exceptions.
    """

    reason: str
    after: float | None = None
    dependency: bool = False


class Park(msgspec.Struct, frozen=True):
    """Store the event durably for a later attempt; later events of the key may proceed."""

    reason: str
    next_attempt_at: datetime
    deadline: datetime | None = None


class Reject(msgspec.Struct, frozen=True):
    """The event cannot be applied as it is; it becomes an exception record of ``kind``."""

    kind: str
    reason: str


Outcome = Done | Retry | Park | Reject

DONE = Done()
