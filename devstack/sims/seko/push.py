"""iHub's push scheduler: messages per service, batched POSTs to the webhook, retries, faults.

A message [DOC] carries ``IntegrationId``, ``SequenceNumber`` (one counter per service, +1 a
message — a dropped one keeps its number, so the gap shows), ``MessageGroupId``, and
``MessagePart``/``MessageTotal`` when one event is several parts (each dispatch of an order, the
overnight summary ``summary_part_size`` lines a part). A scheduler run (``push_interval_seconds``,
~15 minutes in reality [DOC]) sends everything due: one POST per (service, DC) — DCs never
mixed [DOC] — of at most ``push_batch_size`` messages, as
``{"Responses": [{"Response": {<Entity>: {...}, "List": {<Line>: [...]}}}, ...]}`` [DOC
sample; names per service in :data:`~devstack.sims.seko.model.PUSH_ENTITIES`]. A POST answered
2xx is delivered; 400 is never retried [DOC]; anything else (another status, a timeout, no
connection) is retried ``retries`` times ``retry_interval_seconds`` apart [DOC: 3 at 15 min],
then given up — until ``resend`` (iHub's Activity report) sends the same body again.

Faults: ``push_drop_next``/``push_drop_rate`` (a message never sent: only the retrieve APIs
have it), ``push_duplicate_next``/``push_duplicate_rate`` (a batch sent twice),
``push_reorder`` (a run's messages and POSTs shuffled), ``push_latency_ms`` (a slow sender).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from devstack.sims.seko import model
from devstack.sims.seko.model import Knobs, Service
from devstack.sims.seko.records import stamp
from devstack.sims.seko.wire import encode_push, shaped


@dataclass
class PushMessage:
    service: Service
    dc: str
    sequence: int
    group_id: str
    part: int
    total: int
    entity: dict[str, Any]
    lines: list[dict[str, Any]]
    created_at: datetime
    state: str = "pending"  # pending | sent (in a batch) | dropped

    def response(self, integration_id: str) -> dict[str, Any]:
        entity_key, line_key = model.PUSH_ENTITIES[self.service]
        header = {
            "IntegrationId": integration_id,
            "MessagePart": self.part,
            "MessageTotal": self.total,
            "MessageGroupId": self.group_id,
            "SequenceNumber": str(self.sequence),  # a string in the JSON sample [DOC]
        }
        return {"Response": {entity_key: header | self.entity, "List": {line_key: self.lines}}}

    def wire(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "dc": self.dc,
            "sequence": self.sequence,
            "group": self.group_id,
            "part": self.part,
            "total": self.total,
            "state": self.state,
            "entity": self.entity,
            "lines": self.lines,
        }


@dataclass
class Attempt:
    at: datetime
    status: int | None  # None: no answer (timeout, connection refused or dropped)
    error: str = ""


@dataclass
class PushBatch:
    id: int
    service: Service
    dc: str
    url: str
    messages: list[PushMessage]
    body: bytes
    content_type: str
    next_at: datetime
    state: str = "due"  # due | retrying | delivered | failed
    copy_of: int | None = None  # a duplicate (fault) or a resend of that batch
    attempts: list[Attempt] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "dc": self.dc,
            "url": self.url,
            "state": self.state,
            "copy_of": self.copy_of,
            "sequences": [m.sequence for m in self.messages],
            "attempts": [[stamp(a.at), a.status, a.error] for a in self.attempts],
            "next_at": stamp(self.next_at),
        }


class Pusher:
    def __init__(
        self,
        knobs: Callable[[], Knobs],
        set_knobs: Callable[..., Knobs],
        now: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self._knobs, self._set_knobs, self._now, self._random = knobs, set_knobs, now, rng
        self.sequences: dict[Service, int] = dict.fromkeys(model.SERVICES, model.FIRST_SEQUENCE)
        self.messages: list[PushMessage] = []
        self.batches: list[PushBatch] = []
        self.last_run: datetime | None = None

    def emit(
        self, service: Service, dc: str, parts: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    ) -> None:
        """One message of ``len(parts)`` parts, each its own SequenceNumber."""
        if not parts:
            return
        now = self._now()
        group = _summary_group(dc, parts[0][0]) if service == "StockOvernightSummary" else None
        group = group or str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        for index, (entity, lines) in enumerate(parts):
            sequence = self.sequences[service]
            self.sequences[service] += 1
            part = PushMessage(
                service,
                dc,
                sequence,
                group,
                model.FIRST_PART + index,
                len(parts),
                entity,
                lines,
                now,
            )
            self.messages.append(part)

    @property
    def pending(self) -> list[PushMessage]:
        return [m for m in self.messages if m.state == "pending"]

    # --- the scheduler ---

    async def run(self, session: aiohttp.ClientSession) -> list[PushBatch]:
        """One scheduler run: everything pending sent in batches; retries that are due."""
        knobs, now = self._knobs(), self._now()
        self.last_run = now
        sent = await self.retry_due(session)
        if not knobs.webhook_url:
            return sent
        fresh, twins = self._batches(knobs, now), []
        for batch in fresh:
            await self._deliver(session, batch)
            if batch.state == "delivered" and self._duplicate(knobs):
                twin = self._copy(batch)
                await self._deliver(session, twin)
                twins.append(twin)
        return sent + fresh + twins

    async def retry_due(self, session: aiohttp.ClientSession) -> list[PushBatch]:
        now = self._now()
        due = [b for b in self.batches if b.state == "retrying" and b.next_at <= now]
        for batch in due:
            await self._deliver(session, batch)
        return due

    async def resend(self, session: aiohttp.ClientSession, batch_id: int) -> PushBatch:
        """The Activity report's manual resend: the same messages, the same body."""
        batch = self._copy(self.batches[batch_id - 1])
        await self._deliver(session, batch)
        return batch

    def _batches(self, knobs: Knobs, now: datetime) -> list[PushBatch]:
        groups: dict[tuple[Service, str], list[PushMessage]] = {}
        for message in self.pending:
            if self._drop(knobs):
                message.state = "dropped"
                continue
            message.state = "sent"
            groups.setdefault((message.service, message.dc), []).append(message)
        made = []
        for (service, dc), messages in groups.items():
            if knobs.push_reorder:
                self._random.shuffle(messages)
            for start in range(0, len(messages), knobs.push_batch_size):
                chunk = messages[start : start + knobs.push_batch_size]
                made.append(self._batch(knobs, service, dc, chunk, now))
        if knobs.push_reorder:
            self._random.shuffle(made)
        return made

    def _batch(
        self, knobs: Knobs, service: Service, dc: str, messages: list[PushMessage], now: datetime
    ) -> PushBatch:
        body = {"Responses": [m.response(knobs.integration_id) for m in messages]}
        shown = shaped(
            body, single_as_object=knobs.single_as_object, empty_as_object=knobs.empty_as_object
        )
        url = knobs.webhook_url + (f"/Push{service}" if knobs.push_path_suffix else "")
        content_type = "application/xml" if knobs.push_format == "xml" else "application/json"
        batch = PushBatch(
            len(self.batches) + 1,
            service,
            dc,
            url,
            messages,
            encode_push(shown, knobs.push_format),
            content_type,
            now,
        )
        self.batches.append(batch)
        return batch

    def _copy(self, batch: PushBatch) -> PushBatch:
        twin = PushBatch(
            len(self.batches) + 1,
            batch.service,
            batch.dc,
            batch.url,
            batch.messages,
            batch.body,
            batch.content_type,
            self._now(),
            copy_of=batch.id,
        )
        self.batches.append(twin)
        return twin

    def _drop(self, knobs: Knobs) -> bool:
        return self._one_shot("push_drop_next") or self._random.random() < knobs.push_drop_rate

    def _duplicate(self, knobs: Knobs) -> bool:
        return (
            self._one_shot("push_duplicate_next")
            or self._random.random() < knobs.push_duplicate_rate
        )

    def _one_shot(self, counter: str) -> bool:
        """A countdown knob (``push_drop_next``...): true, one less, while it is above 0."""
        left: int = getattr(self._knobs(), counter)
        if left > 0:
            self._set_knobs(**{counter: left - 1})
        return left > 0

    async def _deliver(self, session: aiohttp.ClientSession, batch: PushBatch) -> None:
        knobs = self._knobs()
        if knobs.push_latency_ms > 0:
            await asyncio.sleep(knobs.push_latency_ms / 1000)
        headers = {"Content-Type": batch.content_type, **knobs.webhook_headers}
        status, error = None, ""
        try:
            async with (
                asyncio.timeout(knobs.push_timeout_seconds),
                session.post(batch.url, data=batch.body, headers=headers) as response,
            ):
                await response.read()
                status = response.status
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        now = self._now()
        batch.attempts.append(Attempt(now, status, error))
        if status is not None and 200 <= status < 300:
            batch.state = "delivered"
        elif status == 400 or len(batch.attempts) > knobs.retries:  # never retried after 400
            batch.state = "failed"
        else:
            batch.state = "retrying"
            batch.next_at = now + timedelta(seconds=knobs.retry_interval_seconds)


def _summary_group(dc: str, header: dict[str, Any]) -> str:
    """``DCCL01-4/8/2020 11:59:59 PM``: the DC and the end of the day summarised [DOC]."""
    at = datetime.strptime(str(header["AtEndOfDate"]), "%Y-%m-%dT%H:%M:%SZ")
    hour = at.hour % 12 or 12
    return f"{dc}-{at.month}/{at.day}/{at.year} {hour}:{at:%M:%S} {'AM' if at.hour < 12 else 'PM'}"
