"""The order pipeline of ``skuflow dev``'s live view: what the database says and what the order
traffic did.

:func:`read_pipeline` reads a :class:`Pipeline` in a few grouped counts (the view polls every
2 s): ``skuflow_orders`` by state — ``received`` (and ``creating``), ``in ERP`` (created, no
hold), ``held`` (``in_erp`` with a hold, and ``held``: put on hold after release), ``released``,
``closed`` (shipped in full, or closed in the ERP), ``cancelled`` (and ``cancelling``),
``failed`` — and the holds of those waiting; ``skuflow_order_documents`` per kind as posted /
waiting (staged or posting) / failed; the open exception records of the order flow (its own
topics', and those of the dispatch topic the dispatch flow does not make); the poller's cursor
and the two outboxes (captured orders not yet on ``topics.orders``, announcements not yet on
``topics.released``). :func:`pipeline_rows` draws them with the order traffic's
:class:`~devstack.order_traffic.OrderTrafficStats`; :func:`pipeline_status` is the ``--no-view``
part of the status line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

from config.settings import TopicsSettings
from devstack.order_traffic import OrderTrafficStats

__all__ = [
    "DOCUMENT_KINDS",
    "LEDGER_STATES",
    "Pipeline",
    "pipeline_rows",
    "pipeline_status",
    "pipeline_summary",
    "read_pipeline",
]

_ORDERS_SQL = """SELECT state, cardinality(holds) > 0 AS on_hold, count(*) AS n
                 FROM skuflow_orders GROUP BY 1, 2"""
_HOLDS_SQL = """SELECT hold, count(*) AS n FROM skuflow_orders, unnest(holds) AS hold
                WHERE state IN ('in_erp', 'held') GROUP BY hold"""
_DOCUMENTS_SQL = "SELECT kind, state, count(*) AS n FROM skuflow_order_documents GROUP BY 1, 2"
#: Open records of the order flow: its own topics', and the dispatch topic's but the dispatch
#: flow's own kinds (a delivery or invoice the ERP refused is recorded on its dispatch).
_EXCEPTIONS_SQL = """SELECT kind, count(*) AS n FROM skuflow_exceptions
    WHERE status = 'open' AND (topic = ANY($1::text[]) OR (topic = $2 AND kind <> ALL($3::text[])))
    GROUP BY kind"""
_DISPATCH_KINDS = [
    "deadline_at_risk", "deadline_missed", "marketplace_rejected", "unsupported_channel",
]  # fmt: skip
_CAPTURE_SQL = """SELECT
    (SELECT extract(epoch FROM now() - min(reached))::float8 FROM skuflow_order_capture) AS behind,
    (SELECT count(*) FROM skuflow_order_outbox) AS captured,
    (SELECT count(*) FROM skuflow_outbox WHERE topic = $1) AS announced"""

LEDGER_STATES = ("received", "in_erp", "held", "released", "closed", "cancelled", "failed")
_LABELS = {"in_erp": "in ERP"}
_STATE_OF = {"creating": "received", "cancelling": "cancelled"}
DOCUMENT_KINDS = ("delivery", "invoice", "return", "credit_note")
_DOCUMENT_STATE = {"staged": "waiting", "posting": "waiting"}


@dataclass(slots=True)
class Pipeline:
    """The order flow as the database has it."""

    ledger: dict[str, int] = field(default_factory=dict)  # by LEDGER_STATES
    holds: dict[str, int] = field(default_factory=dict)  # orders waiting, by hold
    documents: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state)
    exceptions: dict[str, int] = field(default_factory=dict)  # open, by kind
    behind: float | None = None  # seconds from the poller's cursor to now
    captured: int = 0  # in the capture outbox, not yet on topics.orders
    announced: int = 0  # order.released/held in the outbox, not yet on topics.released

    def document(self, kind: str, state: str) -> int:
        return self.documents.get((kind, state), 0)


async def read_pipeline(conn: Any, topics: TopicsSettings) -> Pipeline:
    """One read of the order pipeline on ``conn`` (an asyncpg connection)."""
    pipeline = Pipeline()
    for row in await conn.fetch(_ORDERS_SQL, timeout=2):
        state = _STATE_OF.get(row["state"], row["state"])
        if state == "in_erp" and row["on_hold"]:
            state = "held"
        pipeline.ledger[state] = pipeline.ledger.get(state, 0) + int(row["n"])
    pipeline.holds = {row["hold"]: int(row["n"]) for row in await conn.fetch(_HOLDS_SQL, timeout=2)}
    for row in await conn.fetch(_DOCUMENTS_SQL, timeout=2):
        key = (row["kind"], _DOCUMENT_STATE.get(row["state"], row["state"]))
        pipeline.documents[key] = pipeline.documents.get(key, 0) + int(row["n"])
    own = [topics.orders, topics.returns]
    rows = await conn.fetch(_EXCEPTIONS_SQL, own, topics.dispatch, _DISPATCH_KINDS, timeout=2)
    pipeline.exceptions = {row["kind"]: int(row["n"]) for row in rows}
    capture = await conn.fetchrow(_CAPTURE_SQL, topics.released, timeout=2)
    behind = capture["behind"]
    pipeline.behind = None if behind is None else float(behind)
    pipeline.captured, pipeline.announced = int(capture["captured"]), int(capture["announced"])
    return pipeline


def _pairs(counts: Mapping[str, int], sep: str = ",") -> str:
    return sep.join(f"{kind}={n}" for kind, n in sorted(counts.items()))


def _documents(p: Pipeline, kind: str) -> str:
    return "/".join(str(p.document(kind, state)) for state in ("posted", "waiting", "failed"))


def pipeline_status(p: Pipeline, t: OrderTrafficStats | None) -> str:
    """``| orders ...`` of the ``--no-view`` status line."""
    if t is not None and t.off is not None:
        return f" | orders off ({t.off})"
    line = (
        " | orders "
        + ",".join(f"{state}={p.ledger.get(state, 0)}" for state in LEDGER_STATES)
        + " documents "
        + ",".join(f"{kind}={_documents(p, kind)}" for kind in DOCUMENT_KINDS)
        + f" open_exceptions {_pairs(p.exceptions) or '-'}"
    )
    if t is not None:
        returns = ",".join(f"{c}={t.returns[c]}" for c in ("sellable", "damaged", "unmatched"))
        line += (
            f" | amazon orders {t.created} cancelled {t.cancelled} | warehouse released "
            f"{t.released} held {t.held} packages {t.packages} two_packages {t.two_packages} "
            f"shipped {t.shipped} returns {returns} | back_office holds "
            f"placed={t.holds_placed},lifted={t.holds_lifted} approvals {t.approvals}"
        )
    return line


def pipeline_summary(p: Pipeline, t: OrderTrafficStats | None) -> str:
    """The closing line of the order flow."""
    if t is not None and t.off is not None:
        return f"\n  orders: {t.off} (no order traffic)"
    ledger = " ".join(f"{s}={p.ledger[s]}" for s in LEDGER_STATES if p.ledger.get(s))
    documents = " ".join(f"{kind}={_documents(p, kind)}" for kind in DOCUMENT_KINDS)
    line = f"\n  orders: ledger {ledger or 'empty'}; documents (posted/waiting/failed) {documents}"
    if t is not None:
        line += (
            f"; Amazon made {t.created}, warehouse told released {t.released} / held {t.held}, "
            f"shipped {t.shipped}, returns {sum(t.returns.values())}"
        )
    return line


def pipeline_rows(grid: Table, p: Pipeline, t: OrderTrafficStats | None) -> None:
    """The order rows of the live panel."""
    if t is not None and t.off is not None:
        grid.add_row(
            "orders", f"[yellow]{escape(t.off)}[/] [dim](no order traffic: dispatches as before)[/]"
        )
        return
    behind = "—" if p.behind is None else f"{p.behind / 60:.0f} min {p.behind % 60:02.0f} s"
    made = f"made {t.created:,} · cancelled {t.cancelled:,}" if t is not None else "—"
    grid.add_row(
        "orders",
        f"amazon    {made} · poller read up to {behind} ago · to publish {p.captured:,}",
    )
    styles = {"held": "yellow", "released": "green", "closed": "green", "failed": "red"}
    ledger = " · ".join(
        f"[{styles[s]}]{_LABELS.get(s, s)} {p.ledger.get(s, 0):,}[/]"
        if s in styles and p.ledger.get(s)
        else f"{_LABELS.get(s, s)} {p.ledger.get(s, 0):,}"
        for s in LEDGER_STATES
    )
    grid.add_row("", f"ledger    {ledger}")
    waiting = sorted(p.holds.items(), key=lambda item: -item[1])
    holds = " · ".join(f"{escape(hold)} {n:,}" for hold, n in waiting)
    grid.add_row("", f"holds     {holds or 'none waiting'}")
    documents = " · ".join(
        f"{kind.replace('_', ' ')} [green]{p.document(kind, 'posted'):,}[/]"
        f"/{p.document(kind, 'waiting'):,}/"
        + (f"[red]{p.document(kind, 'failed'):,}[/]" if p.document(kind, "failed") else "0")
        for kind in DOCUMENT_KINDS
    )
    grid.add_row("", f"documents {documents} [dim](posted/waiting/failed)[/]")
    if t is not None:
        returns = " · ".join(f"{c} {t.returns[c]:,}" for c in ("sellable", "damaged"))
        grid.add_row(
            "",
            f"warehouse told released {t.released:,} · held {t.held:,} "
            f"[dim](to publish {p.announced:,})[/] · shipped {t.shipped:,} "
            f"({t.two_packages:,} in two packages)",
        )
        grid.add_row("", f"returns   {returns} · matching no order {t.returns['unmatched']:,}")
        grid.add_row("", f"erp users {_office(t)}")
    kinds = sorted(p.exceptions.items(), key=lambda item: -item[1])
    listed = " · ".join(f"{k} {n:,}" for k, n in kinds)
    grid.add_row("", f"exceptions {listed} [dim](open)[/]" if listed else "exceptions none open")


def _office(t: OrderTrafficStats) -> str:
    now = ""
    if t.hold:
        now = f"[yellow]{escape(t.hold)} {t.hold_phase}[/] · "
    return (
        f"{now}credit holds placed {t.holds_placed:,}, lifted {t.holds_lifted:,} · "
        f"approvals {t.approvals:,}   [dim]{escape(t.erp)}[/]"
    )
