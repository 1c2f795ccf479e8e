"""Deadline watch for the urgent class: slack measured, at-risk and missed events flagged.

Every attempt of an event with a deadline records its slack. Below the at-risk threshold the
event is flagged once (warning log, metric, exception record ``deadline_at_risk``); past the
deadline it is escalated as ``deadline_missed`` — and still applied. When it is applied the
alert gets a note: an at-risk one is resolved, a missed one stays open for a person.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from worker.messages import EventInfo, Message
from worker.sinks import OutcomeSinks
from worker.telemetry import EngineMetrics

log = logging.getLogger("skuflow.deadlines")

AT_RISK = "deadline_at_risk"
MISSED = "deadline_missed"

Durably = Callable[..., Awaitable[None]]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class DeadlineWatch:
    def __init__(
        self,
        sinks: OutcomeSinks,
        metrics: EngineMetrics,
        durably: Durably,
        *,
        at_risk_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sinks = sinks
        self._metrics = metrics
        self._durably = durably
        self._at_risk = at_risk_seconds
        self._clock = clock

    async def check(self, message: Message, info: EventInfo) -> None:
        """Before an attempt: measure the slack, flag the event once per level."""
        assert info.deadline is not None
        slack = info.deadline - self._clock()
        where = {"messaging.destination.name": message.topic}
        if slack >= 0:
            self._metrics.deadline_slack.record(slack, where)
        else:
            self._metrics.deadline_lateness.record(-slack, where)
        if slack < 0:
            level = MISSED
            reason = (
                f"deadline {iso(info.deadline)} passed {-slack / 60:.0f} min ago; "
                "still being applied (escalated)"
            )
        elif slack < self._at_risk:
            level = AT_RISK
            reason = (
                f"deadline {iso(info.deadline)} in {slack / 60:.0f} min, below the "
                f"{self._at_risk / 3600:g} h threshold; attempt {message.attempts + 1}"
            )
        else:
            return
        if message.alert in (level, MISSED):
            return
        message.alert = level
        self._metrics.deadline_alerts.add(1, {"skuflow.alert": level})
        trace.get_current_span().add_event(
            level, {"skuflow.deadline_slack_s": round(slack, 1), "skuflow.reason": reason}
        )
        fields: dict[str, Any] = {**message.where(), "event_id": info.event_id}
        log.warning(
            level.replace("_", " "), extra={**fields, "slack_s": round(slack, 1), "reason": reason}
        )
        await self._durably("alert", self._sinks.alert, message, level, reason, info)

    async def applied(self, message: Message, info: EventInfo) -> None:
        """The event was applied: note it on its alert (resolving an at-risk one)."""
        assert message.alert is not None
        assert info.deadline is not None
        slack = info.deadline - self._clock()
        if message.alert == MISSED or slack < 0:
            note = f"applied {-slack / 60:.0f} min after the deadline {iso(info.deadline)}"
            resolve = False
        else:
            note = f"applied with {slack / 60:.0f} min to spare"
            resolve = True
        await self._durably(
            "alert", self._sinks.close_alert, message, message.alert, note, resolve=resolve
        )
