"""Posting staged stock movements to the ERP: one summarised document per warehouse window.

``StockPoster.flush(warehouse)`` is called by the window scheduler. Under a PostgreSQL advisory
lock for the warehouse (one flusher per warehouse across all replicas) it:

1. retries the warehouse's pending postings in id order — a later window never posts before
   an earlier one, so per-item order holds end to end; a posting that must wait stops the rest;
2. then claims the oldest staged lines (up to ``max_lines``), nets them
   (:func:`handlers.netting.net`) and records one posting per direction (plus a settled one for
   lines that net to zero) in one transaction — every document line keeps its source events;
3. posts each document holding advisory locks on every item it touches (sorted, so two
   documents touching one item are never in flight at once, across replicas too).

Errors: a lock or an outage → the posting waits (exponential backoff with jitter); an ambiguous
failure (timeout after send) → before posting again the ERP is searched for the posting's key,
so a document is never created twice; a rejection naming a line → that line's movements become
exception records and the rest posts; a rejection naming no line → bisection until the bad
line is found. "Entry already exists" (B1 -2035, :class:`ErpDuplicateEntry`) is not a bad line
and is never bisected: the ERP is searched for the document's key — found, it is this
posting's document and the posting is recorded as posted; not found, it was a collision and
the posting waits like a lock, at most ``collision_retries`` times in a row, after which the
document's movements are refused together under one ``erp_rejected`` exception record (B1's
code and text; retrying that record stages all of them again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import msgspec
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from handlers.common.telemetry import DomainTelemetry
from handlers.ports.erp import (
    DocumentKind,
    DocumentLine,
    ErpDuplicateEntry,
    ErpError,
    ErpLocked,
    ErpRejected,
    ErpUnavailable,
    PostedDocument,
    ReasonClasses,
    StockDocument,
    StockDocuments,
)
from handlers.stock.netting import StagedLine, net_by_class
from worker.backoff import Backoff
from worker.exceptions import ExceptionStore
from worker.messages import Message
from worker.store import advisory_lock_id
from worker.tracing import MAX_LINKS, link

log = logging.getLogger("skuflow.posting")

POSTING_BACKOFF = Backoff(initial=1.0, maximum=120.0, multiplier=2.0)


def _lines_json(lines: Sequence[DocumentLine]) -> str:
    return msgspec.json.encode(list(lines)).decode()


def _lines_from(raw: str) -> list[DocumentLine]:
    return msgspec.json.decode(raw, type=list[DocumentLine])


class _Plan:
    """How far a posting got: slices still to post, documents made, lines rejected."""

    def __init__(
        self,
        slices: list[list[int]],
        documents: list[dict[str, Any]],
        rejected: set[int],
        ambiguous: bool,
        line_count: int,
        collisions: int = 0,
    ) -> None:
        self.line_count = line_count
        self.slices = slices
        self.documents = documents
        self.rejected = rejected
        self.ambiguous = ambiguous
        #: "Entry already exists" answers in a row for the document in flight (not ours).
        self.collisions = collisions
        #: Why the ERP refused a whole document, for the posting's ``last_error``.
        self.refusal: str | None = None

    @classmethod
    def load(cls, posting: asyncpg.Record, line_count: int) -> _Plan:
        slices = json.loads(posting["slices"]) if posting["slices"] else [[0, line_count]]
        return cls(
            slices,
            json.loads(posting["documents"]),
            set(json.loads(posting["rejected_lines"])),
            posting["ambiguous"],
            line_count,
            posting["collisions"],
        )

    def key_for(self, key: str, start: int, end: int) -> str:
        """The whole posting keeps its key; a bisected slice is ``<key>.<first line>``."""
        return key if (start, end) == (0, self.line_count) else f"{key}.{start}"

    async def save(self, conn: asyncpg.Connection, posting_id: int) -> None:
        await conn.execute(
            """UPDATE skuflow_postings SET slices = $2::jsonb, documents = $3::jsonb,
                 rejected_lines = $4::jsonb, ambiguous = $5, collisions = $6 WHERE id = $1""",
            posting_id,
            json.dumps(self.slices),
            json.dumps(self.documents),
            json.dumps(sorted(self.rejected)),
            self.ambiguous,
            self.collisions,
        )


class StockPoster:
    def __init__(
        self,
        pool: asyncpg.Pool,
        erp: StockDocuments,
        *,
        max_lines: int = 500,
        backoff: Backoff = POSTING_BACKOFF,
        collision_retries: int = 8,
        telemetry: DomainTelemetry | None = None,
    ) -> None:
        self._telemetry = telemetry or DomainTelemetry()
        self._pool = pool
        self._erp = erp
        self._max_lines = max_lines
        self._backoff = backoff
        self._collision_retries = collision_retries
        self._exceptions = ExceptionStore(pool)

    async def warehouses_with_work(self) -> list[str]:
        rows = await self._pool.fetch(
            """SELECT DISTINCT warehouse_code FROM skuflow_stock_lines WHERE state = 'staged'
               UNION SELECT DISTINCT warehouse_code FROM skuflow_postings WHERE status = 'pending'
               ORDER BY 1"""
        )
        return [r[0] for r in rows]

    async def staged_count(self, warehouse: str) -> int:
        return int(
            await self._pool.fetchval(
                "SELECT count(*) FROM skuflow_stock_lines "
                "WHERE state = 'staged' AND warehouse_code = $1",
                warehouse,
            )
        )

    async def flush(self, warehouse: str) -> None:
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", advisory_lock_id("warehouse", warehouse)
            ):
                return  # another replica flushes this warehouse right now
            try:
                if not await self._post_pending(conn, warehouse):
                    return  # an earlier window still waits: later ones must not overtake it
                if await self._batch(conn, warehouse):
                    await self._post_pending(conn, warehouse)
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1)", advisory_lock_id("warehouse", warehouse)
                )

    async def _batch(self, conn: asyncpg.Connection, warehouse: str) -> bool:
        """Claim the oldest staged lines of the warehouse into postings; False if none."""
        async with conn.transaction():
            # A movement of an item waits while a transfer of that item *into* this warehouse,
            # staged before it, is not posted yet (the transfer posts in its source's window):
            # per-SKU order across the two warehouses a transfer touches.
            rows = await conn.fetch(
                """SELECT l.event_id, l.item_code, l.warehouse_code, l.quantity, l.batch_number,
                          l.serial_numbers, l.reason, l.to_warehouse_code
                   FROM skuflow_stock_lines l
                   WHERE l.state = 'staged' AND l.warehouse_code = $1
                     AND NOT EXISTS (
                       SELECT 1 FROM skuflow_stock_lines t
                       WHERE t.to_warehouse_code = l.warehouse_code
                         AND t.item_code = l.item_code AND t.seq < l.seq
                         AND t.state IN ('staged', 'batched'))
                   ORDER BY l.seq LIMIT $2 FOR UPDATE OF l SKIP LOCKED""",
                warehouse,
                self._max_lines,
            )
            if not rows:
                return False
            classify = self._erp.reason_class if isinstance(self._erp, ReasonClasses) else None
            by_class = net_by_class(
                StagedLine(
                    event_id=r["event_id"],
                    item_code=r["item_code"],
                    warehouse_code=r["warehouse_code"],
                    quantity=Decimal(r["quantity"]),
                    batch_number=r["batch_number"],
                    serial_numbers=tuple(r["serial_numbers"]),
                    reason_class=classify(r["reason"]) if classify is not None else "",
                    to_warehouse_code=r["to_warehouse_code"],
                )
                for r in rows
            )
            for reason_class, netted in by_class:
                for kind, lines in (
                    ("entry", netted.entries), ("exit", netted.exits),
                    ("transfer", netted.transfers),
                ):  # fmt: skip
                    if lines:
                        await self._create_posting(conn, warehouse, kind, lines, reason_class)
                if netted.settled:
                    posting_id = await self._create_posting(
                        conn, warehouse, "settled", (), reason_class
                    )
                    self._telemetry.postings.add(
                        1, {"skuflow.posting.kind": "settled", "result": "settled"}
                    )
                    await conn.execute(
                        "UPDATE skuflow_stock_lines SET state = 'settled', posting_id = $1 "
                        "WHERE event_id = ANY($2::text[])",
                        posting_id,
                        list(netted.settled),
                    )
            return True

    async def _create_posting(
        self,
        conn: asyncpg.Connection,
        warehouse: str,
        kind: str,
        lines: Sequence[DocumentLine],
        reason_class: str = "",
    ) -> int:
        posting_id = int(
            await conn.fetchval(
                """INSERT INTO skuflow_postings
                     (key, warehouse_code, kind, status, lines, reason_class)
                   VALUES ('pending-' || gen_random_uuid(), $1, $2, $3, $4::jsonb, $5)
                   RETURNING id""",
                warehouse,
                kind,
                "settled" if kind == "settled" else "pending",
                _lines_json(lines),
                reason_class,
            )
        )
        await conn.execute(
            "UPDATE skuflow_postings SET key = $2 WHERE id = $1", posting_id, f"SKF{posting_id}"
        )
        for line_no, line in enumerate(lines):
            await conn.execute(
                "UPDATE skuflow_stock_lines SET state = 'batched', posting_id = $1, line_no = $2 "
                "WHERE event_id = ANY($3::text[])",
                posting_id,
                line_no,
                list(line.sources),
            )
        return posting_id

    async def _post_pending(self, conn: asyncpg.Connection, warehouse: str) -> bool:
        """Post the warehouse's pending postings in order; False when one has to wait."""
        postings = await conn.fetch(
            """SELECT id, key, kind, warehouse_code, lines::text AS lines, ambiguous, attempts,
                      next_attempt_at, collisions, reason_class,
                      slices::text AS slices, documents::text AS documents,
                      rejected_lines::text AS rejected_lines
               FROM skuflow_postings WHERE status = 'pending' AND warehouse_code = $1
               ORDER BY id""",
            warehouse,
        )
        for posting in postings:
            if posting["next_attempt_at"] > datetime.now(UTC):
                return False
            if not await self._post(conn, posting):
                return False
        return True

    async def _post(self, conn: asyncpg.Connection, posting: asyncpg.Record) -> bool:
        """:meth:`_post_plan` inside a posting span linked to the events it summarises."""
        tracer = self._telemetry.tracer
        if tracer is None:
            return await self._post_plan(conn, posting)
        count, parents = await conn.fetchrow(
            """SELECT count(*), (array_agg(traceparent ORDER BY seq)
                                 FILTER (WHERE traceparent IS NOT NULL))[1:$2]
               FROM skuflow_stock_lines WHERE posting_id = $1""",
            posting["id"],
            MAX_LINKS,
        )
        links = [x for x in (link(p) for p in parents or ()) if x is not None]
        with tracer.start_as_current_span(
            f"post stock {posting['kind']}",
            context=Context(),  # a posting serves many traces: its own, linked to theirs
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "skuflow.posting.id": posting["id"],
                "skuflow.posting.key": posting["key"],
                "skuflow.posting.kind": posting["kind"],
                "skuflow.warehouse": posting["warehouse_code"],
                "skuflow.posting.events": int(count),
                "skuflow.posting.links": len(links),
                "skuflow.posting.attempt": posting["attempts"] + 1,
            },
        ):
            return await self._post_plan(conn, posting)

    async def _post_plan(self, conn: asyncpg.Connection, posting: asyncpg.Record) -> bool:
        """Post one posting as one ERP document — or, after a rejection naming no line, as
        bisected slices, each its own document under its own key ``<key>.<first line>``. The
        plan (slices to do, documents done, lines rejected) is saved before every call, so a
        crash in the middle resumes it instead of posting any line twice."""
        lines = _lines_from(posting["lines"])
        plan = _Plan.load(posting, len(lines))
        items = sorted({line.item_code for line in lines})
        for item in items:  # sorted: two flushers can never deadlock on each other's items
            await conn.execute("SELECT pg_advisory_lock($1)", advisory_lock_id("item", item))
        try:
            while plan.slices:
                start, end = plan.slices[0]
                indexes = [i for i in range(start, end) if i not in plan.rejected]
                if not indexes:
                    plan.slices.pop(0)
                    continue
                key = plan.key_for(posting["key"], start, end)
                # Saved as ambiguous before the call: a crash between the ERP's answer and the
                # next save leaves a document the plan does not know, so a restart must search
                # for the key before posting again (the chaos suite's SIGKILL after a post).
                searched, plan.ambiguous = plan.ambiguous, True
                await plan.save(conn, posting["id"])
                try:
                    document = await self._send(
                        posting["kind"], key, [lines[i] for i in indexes], searched,
                        posting["reason_class"],
                    )  # fmt: skip
                except ErpDuplicateEntry as exc:  # never bisected: ours already, or a collision
                    outcome = await self._collided(conn, posting, key, indexes, plan, exc)
                    if outcome == "wait":
                        return False
                    if outcome == "refused":
                        continue
                    document = outcome
                except ErpRejected as exc:
                    plan.ambiguous = searched
                    await self._split_or_reject(conn, posting["id"], lines, indexes, plan, exc)
                    await plan.save(conn, posting["id"])
                    continue
                except (ErpLocked, ErpUnavailable) as exc:
                    plan.ambiguous = searched or (isinstance(exc, ErpUnavailable) and exc.ambiguous)
                    await plan.save(conn, posting["id"])
                    await self._wait(conn, posting, exc)
                    return False
                plan.ambiguous, plan.collisions = False, 0
                plan.slices.pop(0)
                plan.documents.append(
                    {"key": key, "lines": indexes, "doc_entry": document.doc_entry,
                     "doc_num": document.doc_num}
                )  # fmt: skip
                await plan.save(conn, posting["id"])
                log.info("posting document created", extra={
                    "posting": posting["key"], "document_key": key, "doc_num": document.doc_num,
                    "lines": len(indexes)})  # fmt: skip
            await self._finish(conn, posting, lines, plan)
            return True
        finally:
            for item in reversed(items):
                await conn.execute("SELECT pg_advisory_unlock($1)", advisory_lock_id("item", item))

    async def _finish(
        self, conn: asyncpg.Connection, posting: asyncpg.Record, lines: list[DocumentLine],
        plan: _Plan,
    ) -> None:  # fmt: skip
        posting_id = posting["id"]
        first = plan.documents[0] if plan.documents else None
        result = "posted" if first is not None else "failed"
        self._telemetry.postings.add(1, {"skuflow.posting.kind": posting["kind"], "result": result})
        self._telemetry.batch_events.record(sum(len(line.sources) for line in lines))
        if first is None:
            trace.get_current_span().set_status(
                Status(StatusCode.ERROR, "every line was rejected by the ERP")
            )
        await conn.execute(
            """UPDATE skuflow_postings SET status = $2, doc_entry = $3, doc_num = $4,
                 posted_at = now(), attempts = attempts + 1, last_error = $5
               WHERE id = $1""",
            posting_id,
            "posted" if first is not None else "failed",
            first["doc_entry"] if first else None,
            first["doc_num"] if first else None,
            plan.refusal,
        )
        await conn.execute(
            "UPDATE skuflow_stock_lines SET state = 'posted' "
            "WHERE posting_id = $1 AND state = 'batched'",
            posting_id,
        )

    async def _split_or_reject(
        self,
        conn: asyncpg.Connection,
        posting_id: int,
        lines: list[DocumentLine],
        indexes: list[int],
        plan: _Plan,
        exc: ErpRejected,
    ) -> None:
        """The ERP rejected the slice: drop the line it names, or bisect until one line is left."""
        if exc.line is not None and 0 <= exc.line < len(indexes):
            bad = indexes[exc.line]
        elif len(indexes) == 1:
            bad = indexes[0]
        else:
            start, end = plan.slices.pop(0)
            middle = indexes[len(indexes) // 2]
            plan.slices[0:0] = [[start, middle], [middle, end]]
            log.info("bisecting a rejected document", extra={"error": str(exc)})
            trace.get_current_span().add_event(
                "erp.bisect", {"skuflow.reason": str(exc), "skuflow.lines": len(indexes)}
            )
            return
        plan.rejected.add(bad)
        await self._reject_sources(conn, posting_id, lines[bad], exc)

    async def _send(
        self,
        kind: DocumentKind,
        key: str,
        lines: list[DocumentLine],
        ambiguous: bool,
        reason_class: str = "",
    ) -> PostedDocument:
        if ambiguous:
            found = await self._erp.find_document(kind, key)
            if found is not None:
                return found  # the earlier, ambiguous attempt did reach the ERP
        document = StockDocument(
            kind=kind, key=key, lines=tuple(lines), remarks=f"skuflow posting {key}",
            reason_class=reason_class,
        )  # fmt: skip
        result = "ok"
        try:
            posted = await self._erp.post_document(document)
        except (ErpLocked, ErpUnavailable, ErpRejected, ErpDuplicateEntry) as exc:
            result = type(exc).__name__
            trace.get_current_span().add_event(
                "erp.write_failed",
                {"skuflow.document_key": key, "error.type": result, "skuflow.reason": str(exc)},
            )
            raise
        finally:
            self._telemetry.erp_writes.add(1, {"skuflow.posting.kind": kind, "result": result})
        self._telemetry.batch_lines.record(len(lines), {"skuflow.posting.kind": kind})
        return posted

    async def _collided(
        self,
        conn: asyncpg.Connection,
        posting: asyncpg.Record,
        key: str,
        indexes: list[int],
        plan: _Plan,
        exc: ErpDuplicateEntry,
    ) -> PostedDocument | Literal["wait", "refused"]:
        """The ERP said the entry already exists. If the document with this key is there, it is
        ours (an earlier attempt reached the ERP): return it. Otherwise it was a collision:
        wait like a lock, or, ``collision_retries`` answers later, refuse the document."""
        span = trace.get_current_span()
        try:
            found = await self._erp.find_document(posting["kind"], key)
        except ErpError as lookup:  # cannot tell whether ours exists: search before posting again
            plan.ambiguous = True
            await plan.save(conn, posting["id"])
            await self._wait(conn, posting, lookup)
            return "wait"
        if found is not None:
            span.add_event(
                "erp.own_document_found",
                {"skuflow.document_key": key, "skuflow.reason": str(exc)},
            )
            log.info(
                "entry already exists: it is this posting's document",
                extra={"posting": posting["key"], "document_key": key, "doc_num": found.doc_num},
            )
            return found
        plan.ambiguous = False  # searched just now: the document is not in the ERP
        if plan.collisions < self._collision_retries:
            plan.collisions += 1
            await plan.save(conn, posting["id"])
            await self._wait(conn, posting, exc)
            return "wait"
        await self._refuse(conn, posting, key, indexes, plan, exc)
        await plan.save(conn, posting["id"])
        return "refused"

    async def _refuse(
        self,
        conn: asyncpg.Connection,
        posting: asyncpg.Record,
        key: str,
        indexes: list[int],
        plan: _Plan,
        exc: ErpDuplicateEntry,
    ) -> None:
        """The document kept colliding: its movements are refused together, under one exception
        record (on the first of them) that names the posting and carries the ERP's code and
        text; each movement points at that record, and retrying it stages them all again."""
        rows = await conn.fetch(
            """SELECT event_id, sku, topic, partition, "offset", key, payload, traceparent
               FROM skuflow_stock_lines
               WHERE posting_id = $1 AND line_no = ANY($2::int[]) AND state = 'batched'
               ORDER BY seq""",
            posting["id"],
            indexes,
        )
        plan.rejected.update(indexes)
        plan.slices.pop(0)
        plan.collisions = 0
        reason = (
            f"{exc.message} (ERP code {exc.code}, {self._collision_retries} retries): "
            f"posting {key} ({posting['kind']}, warehouse {posting['warehouse_code']}, id "
            f"{posting['id']}) was not posted — {len(rows)} movement(s) in {len(indexes)} "
            "line(s); retrying this record stages all of them again"
        )
        plan.refusal = reason
        trace.get_current_span().add_event(
            "erp.refused", {"skuflow.reason": reason, "skuflow.lines": len(indexes)}
        )
        log.warning("posting refused after collisions", extra={
            "posting": posting["key"], "document_key": key, "error": str(exc),
            "events": len(rows)})  # fmt: skip
        if not rows:
            return
        exception_id = await self._record_rejection(conn, rows[0], reason)
        await conn.execute(
            """UPDATE skuflow_stock_lines SET state = 'rejected', exception_id = $3
               WHERE posting_id = $1 AND line_no = ANY($2::int[]) AND state = 'batched'""",
            posting["id"],
            indexes,
            exception_id,
        )
        self._telemetry.rejected_movements.add(len(rows), {"error.type": exc.code})

    async def _record_rejection(
        self, conn: asyncpg.Connection, row: asyncpg.Record, reason: str
    ) -> int:
        """The ``erp_rejected`` record of a staged movement (``row`` of skuflow_stock_lines).
        A record that an earlier retry resolved (the retried copy was staged again, then refused
        again) is the same problem: it is opened again, since ``record`` keeps a resolved record
        resolved."""
        exception_id = await self._exceptions.record(
            Message(
                topic=row["topic"],
                partition=row["partition"],
                offset=row["offset"],
                key=row["key"],
                value=row["payload"],
                headers=(),
                timestamp_ms=0,
            ),
            kind="erp_rejected",
            reason=reason,
            event_id=row["event_id"],
            sku=row["sku"],
            trace_id=row["traceparent"].split("-")[1] if row["traceparent"] else None,
        )
        await conn.execute(
            "UPDATE skuflow_exceptions SET status = 'open', resolution = NULL "
            "WHERE id = $1 AND status = 'resolved'",
            exception_id,
        )
        return exception_id

    async def _wait(self, conn: asyncpg.Connection, posting: asyncpg.Record, exc: ErpError) -> None:
        attempts = posting["attempts"] + 1
        delay = self._backoff.delay(attempts)
        self._telemetry.lock_retries.add(1, {"error.type": type(exc).__name__})
        trace.get_current_span().add_event(
            "erp.retry_scheduled",
            {"error.type": type(exc).__name__, "skuflow.reason": str(exc),
             "skuflow.retry_in_s": round(delay, 2), "skuflow.attempt": attempts},
        )  # fmt: skip
        await conn.execute(
            """UPDATE skuflow_postings SET attempts = $2, last_error = $3, next_attempt_at = $4
               WHERE id = $1""",
            posting["id"],
            attempts,
            str(exc),
            datetime.now(UTC) + timedelta(seconds=delay),
        )
        log.warning("posting waits", extra={"posting": posting["key"], "error": str(exc),
                                            "retry_in_s": round(delay, 2)})  # fmt: skip

    async def _reject_sources(
        self, conn: asyncpg.Connection, posting_id: int, line: DocumentLine, exc: ErpRejected
    ) -> None:
        rows = await conn.fetch(
            """UPDATE skuflow_stock_lines SET state = 'rejected'
               WHERE posting_id = $1 AND event_id = ANY($2::text[])
               RETURNING topic, partition, "offset", key, payload, event_id, sku, traceparent""",
            posting_id,
            list(line.sources),
        )
        reason = (
            f"{exc.message} (ERP code {exc.code}; item {line.item_code}, "
            f"warehouse {line.warehouse_code})"
        )
        for row in rows:
            await self._record_rejection(conn, row, reason)
        self._telemetry.rejected_movements.add(len(rows), {"error.type": exc.code})
        log.warning(
            "posting line rejected",
            extra={
                "item": line.item_code,
                "error": str(exc),
                "events": json.dumps(list(line.sources)),
            },
        )
