"""The order flow's fault scenario: the traffic and what each event should become, and the
independent check read from the ERP simulator, ``topics.released`` and ``skuflow_exceptions``.

* :class:`OrderTraffic` — marketplace orders of six kinds (:data:`KINDS`), their dispatches
  (one to three packages each), returns (sellable and damaged, some of orders that never
  shipped: ``return_unmatched``) and cancellations, each event sent more than once (a
  redelivery; an older revision replayed after a newer one), as contract events.
* :func:`check_orders` — per ERP document kind (:data:`DOCUMENT_KINDS`): **lost** = expected
  documents the ERP does not hold, **duplicated** = documents beyond one per order / package /
  invoice / return (matched by what the ERP says they are based on and what they carry, not by
  skuflow's keys); ERP stock per item and warehouse; every order the marketplace cancelled
  before shipping cancelled in the ERP; what the warehouse was told (every release event id
  once, held orders never before their hold was lifted; copies of one event id are a relay's
  re-send, dropped by consumers, counted apart); each expected exception record exactly once
  and no other open record.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import msgspec

from handlers.dispatch.events import DispatchConfirmed, DispatchLine
from handlers.orders.events import (
    OrderCancelled,
    OrderChanged,
    OrderLine,
    OrderReceived,
    ReturnLine,
    ReturnReceived,
)

Kind = Literal["plain", "hold", "approval", "cancel", "cancel_held", "late_cancel"]
#: plain: released at once, shipped; hold: its customer on credit hold, released when the
#: hold is lifted, then shipped; approval: above the ERP's approval amount, released once
#: approved, then shipped; cancel: released, cancelled before shipping (the warehouse is told
#: to stop); cancel_held: cancelled while its customer's hold lasts (never released);
#: late_cancel: shipped, then cancelled (``order_cancel_after_ship``).
KINDS: tuple[Kind, ...] = ("plain", "hold", "approval", "cancel", "cancel_held", "late_cancel")
#: The kinds in the order they are dealt out (the short run still gets every kind twice).
PATTERN: tuple[Kind, ...] = (
    "plain", "hold", "approval", "cancel", "plain", "late_cancel", "hold", "plain",
    "approval", "cancel_held", "plain", "plain",
)  # fmt: skip
HELD: tuple[Kind, ...] = ("hold", "approval", "cancel_held")
SHIPPED: tuple[Kind, ...] = ("plain", "hold", "approval", "late_cancel")
DOCUMENT_KINDS = ("orders", "deliveries", "invoices", "returns / credit notes")

UK, DE, FR = "A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH"
#: The ERP customers of each marketplace's buyers: UK's orders pass, DE's customer is on
#: credit hold, FR's orders wait for an approval (B1: they are above its approval amount;
#: ECC: the customer's central delivery block).
CUSTOMERS = {UK: "C-OK", DE: "C-HOLD", FR: "C-APPR"}
HELD_CUSTOMER, APPROVAL_CUSTOMER = CUSTOMERS[DE], CUSTOMERS[FR]
SHIP_FROM, DAMAGED_TO = "LOC-01", "LOC-02"
#: Orders above this total need the ERP's approval (approval orders: 2 x 80.00).
APPROVAL_ABOVE = Decimal(100)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

Lines = tuple[tuple[str, int], ...]  # (item, quantity) of a document, sorted
ReturnLines = tuple[tuple[str, int, str], ...]  # (item, quantity, warehouse), sorted


@dataclass
class Return:
    ref: str
    order_id: str
    item: str
    quantity: int
    condition: Literal["sellable", "damaged"]
    order_item_id: str | None
    matched: bool  # a delivery of its order shipped the goods


@dataclass
class Order:
    order_id: str
    kind: Kind
    lines: list[tuple[str, str, int]]  # (order item id, item, quantity)
    price: Decimal
    packages: list[list[tuple[str, str, int]]] = field(default_factory=list)

    @property
    def marketplace(self) -> str:
        if self.kind == "approval":
            return FR
        return DE if self.kind in ("hold", "cancel_held") else UK


@dataclass
class OrderTraffic:
    """What a run produced, and what it should become."""

    items: list[str]
    warehouses: dict[str, str]  # location -> ERP warehouse code
    seed: int = 0
    orders: dict[str, Order] = field(default_factory=dict)
    returns: list[Return] = field(default_factory=list)
    events: int = 0
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def of(self, *kinds: Kind) -> list[Order]:
        return [order for order in self.orders.values() if order.kind in kinds]

    def _sent(self, records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        self.events += len(records)
        return records

    # --- orders ---

    def new_orders(self, count: int) -> list[Order]:
        """``count`` orders, the kinds dealt out by :data:`PATTERN`."""
        made = []
        for _ in range(count):
            n = len(self.orders) + 1
            kind = PATTERN[(n - 1) % len(PATTERN)]
            order_id = f"205-{n:07d}-{self.seed:07d}"
            if kind == "approval":
                lines = [(f"{order_id}-1", self.rng.choice(self.items), 2)]
                price = Decimal("80.00")
            else:
                chosen = self.rng.sample(self.items, self.rng.choice([1, 2]))
                lines = [
                    (f"{order_id}-{i}", item, self.rng.randint(1, 3))
                    for i, item in enumerate(chosen, 1)
                ]
                price = Decimal("10.00")
            self.orders[order_id] = Order(order_id, kind, lines, price)
            made.append(self.orders[order_id])
        return made

    def order_events(self, orders: list[Order]) -> list[tuple[bytes, bytes]]:
        """``order.received`` of each, sent twice; every fourth also gets a later revision
        (status only), after which its first revision is replayed."""
        records = []
        for order in orders:
            first = (order.order_id.encode(), _order_event(order, 0, OrderReceived))
            records += [first, first]
            if int(order.order_id.split("-")[1]) % 4 == 0:
                changed = (order.order_id.encode(), _order_event(order, 1, OrderChanged))
                records += [changed, first]
        return self._sent(records)

    def cancels(self, *kinds: Kind) -> list[tuple[bytes, bytes]]:
        """``order.cancelled`` of every order of ``kinds``, each sent twice."""
        records = []
        for order in self.of(*kinds):
            cancel = (order.order_id.encode(), _cancel_event(order))
            records += [cancel, cancel]
        return self._sent(records)

    # --- the warehouse ---

    def dispatches(self, orders: Iterable[Order]) -> list[tuple[bytes, bytes]]:
        """Every unit of ``orders`` shipped in one to three packages; a third of the packages
        sent twice."""
        records = []
        for order in orders:
            units = [(item_id, item) for item_id, item, quantity in order.lines
                     for _ in range(quantity)]  # fmt: skip
            count = min(len(units), self.rng.choice([1, 1, 2, 3]))
            cuts = sorted(self.rng.sample(range(1, len(units)), count - 1)) if count > 1 else []
            for start, end in zip([0, *cuts], [*cuts, len(units)], strict=True):
                package = Counter(units[start:end])
                order.packages.append([(i, item, q) for (i, item), q in package.items()])
            for number, package_lines in enumerate(order.packages, 1):
                record = (order.order_id.encode(), _dispatch_event(order, number, package_lines))
                records += [record, record] if self.rng.random() < 1 / 3 else [record]
        return self._sent(records)

    def new_returns(
        self, shipped: list[Order], unshipped: list[Order]
    ) -> list[tuple[bytes, bytes]]:
        """Returns of one unit for about half of ``shipped`` (sellable or damaged, named by
        order item id or by item only), returns for each of ``unshipped`` and for an order
        nobody knows (unmatched); a third of them sent twice."""
        made = []
        for order in shipped:
            if self.rng.random() < 0.5:
                item_id, item, _ = self.rng.choice(self.rng.choice(order.packages))
                named = item_id if self.rng.random() < 0.5 else None
                condition: Literal["sellable", "damaged"] = self.rng.choice(["sellable", "damaged"])
                made.append(Return(f"RMA-{order.order_id}", order.order_id, item, 1, condition,
                                   named, matched=True))  # fmt: skip
        for order in unshipped:
            item_id, item, _ = order.lines[0]
            made.append(Return(f"RMA-{order.order_id}", order.order_id, item, 1, "sellable",
                               item_id, matched=False))  # fmt: skip
        unknown = f"205-9999999-{self.seed:07d}"
        made.append(Return(f"RMA-{unknown}", unknown, self.items[0], 1, "sellable", None, False))
        self.returns += made
        records = []
        for made_return in made:
            record = (made_return.order_id.encode(), _return_event(made_return))
            records += [record, record] if self.rng.random() < 1 / 3 else [record]
        return self._sent(records)

    # --- what it should become ---

    def expected_deliveries(self) -> dict[str, Counter[Lines]]:
        return {
            order.order_id: Counter(_lines((item, q) for _, item, q in p) for p in order.packages)
            for order in self.orders.values()
            if order.packages
        }

    def expected_returns(self) -> dict[str, Counter[ReturnLines]]:
        expected: dict[str, Counter[ReturnLines]] = {}
        for made in self.returns:
            if made.matched:
                location = SHIP_FROM if made.condition == "sellable" else DAMAGED_TO
                lines = ((made.item, made.quantity, self.warehouses[location]),)
                expected.setdefault(made.order_id, Counter())[lines] += 1
        return expected

    def expected_credits(self) -> dict[str, Counter[Lines]]:
        """A credit of each return apart from it (where the ERP's return does not credit)."""
        expected: dict[str, Counter[Lines]] = {}
        for made in self.returns:
            if made.matched:
                lines = ((made.item, made.quantity),)
                expected.setdefault(made.order_id, Counter())[lines] += 1
        return expected

    def expected_stock(self, opening: int) -> dict[tuple[str, str], int]:
        stock = {(item, code): opening for item in self.items for code in self.warehouses.values()}
        ship_from = self.warehouses[SHIP_FROM]
        for order in self.orders.values():
            for package in order.packages:
                for _, item, quantity in package:
                    stock[item, ship_from] -= quantity
        for returns in self.expected_returns().values():
            for lines in returns.elements():
                for item, quantity, warehouse in lines:
                    stock[item, warehouse] += quantity
        return stock

    def expected_exceptions(self) -> Counter[tuple[str, str]]:
        """(kind, order id or return reference) of every exception record the run must leave."""
        expected: Counter[tuple[str, str]] = Counter()
        for made in self.returns:
            if not made.matched:
                expected["return_unmatched", made.ref] = 1
        for order in self.of("late_cancel"):
            expected["order_cancel_after_ship", order.order_id] = 1
        return expected


def _lines(lines: Iterable[tuple[str, int]]) -> Lines:
    merged: Counter[str] = Counter()
    for item, quantity in lines:
        merged[item] += quantity
    return tuple(sorted(merged.items()))


def _order_event(order: Order, revision: int, event: type[OrderReceived]) -> bytes:
    return msgspec.json.encode(
        event(
            event_id=f"ord-{order.order_id}-{revision}", occurred_at=T0, source="amazon",
            source_ref=order.order_id, channel="amazon", order_id=order.order_id,
            marketplace_id=order.marketplace, revision=T0 + timedelta(minutes=revision),
            purchased_at=T0, currency="GBP", warehouse=SHIP_FROM,
            ship_by=datetime.now(UTC) + timedelta(days=2),
            lines=[
                OrderLine(order_item_id=i, sku=item, quantity=Decimal(q), unit_price=order.price)
                for i, item, q in order.lines
            ],
        )
    )  # fmt: skip


def _cancel_event(order: Order) -> bytes:
    return msgspec.json.encode(
        OrderCancelled(
            event_id=f"cxl-{order.order_id}", occurred_at=datetime.now(UTC), source="amazon",
            source_ref=order.order_id, channel="amazon", order_id=order.order_id,
            marketplace_id=order.marketplace, revision=T0 + timedelta(minutes=10),
            reason="buyer cancelled",
        )
    )  # fmt: skip


def _dispatch_event(order: Order, number: int, lines: list[tuple[str, str, int]]) -> bytes:
    package = f"{order.order_id}-{number}"
    return msgspec.json.encode(
        DispatchConfirmed(
            event_id=f"dsp-{package}", occurred_at=datetime.now(UTC), source="seko",
            source_ref=f"SEKO-{package}", channel="amazon", order_id=order.order_id,
            marketplace_id=order.marketplace, ship_by=datetime.now(UTC) + timedelta(hours=8),
            ship_date=datetime.now(UTC), carrier_code="Royal Mail", shipping_method="Tracked 24",
            tracking_number=f"RM{zlib.crc32(package.encode()):010d}GB",
            package_reference_id=str(number), warehouse=SHIP_FROM,  # Amazon: numeric
            lines=[DispatchLine(order_item_id=i, sku=item, quantity=Decimal(q))
                   for i, item, q in lines],
        )
    )  # fmt: skip


def _return_event(made: Return) -> bytes:
    return msgspec.json.encode(
        ReturnReceived(
            event_id=f"ret-{made.ref}", occurred_at=datetime.now(UTC), source="wms",
            source_ref=made.ref, channel="amazon", order_id=made.order_id, warehouse=SHIP_FROM,
            return_ref=made.ref,
            lines=[ReturnLine(sku=made.item, quantity=Decimal(made.quantity),
                              condition=made.condition, order_item_id=made.order_item_id)],
        )
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# What the ERP holds, in neutral words
# --------------------------------------------------------------------------------------------


@dataclass
class ErpSales:
    """The sales documents an ERP holds, by the marketplace order they belong to (found from
    the ERP's own links: a delivery's base order, an invoice's base delivery, ...)."""

    orders: Counter[str] = field(default_factory=Counter)  # order id -> ERP sales orders
    #: order id -> documents waiting for (or past) an approval beside the order (B1 drafts)
    drafts: Counter[str] = field(default_factory=Counter)
    cancelled: set[str] = field(default_factory=set)
    deliveries: dict[str, Counter[Lines]] = field(default_factory=dict)
    invoices: dict[str, Counter[Lines]] = field(default_factory=dict)
    #: documents taking goods back (restocked: the warehouse of each line)
    returns: dict[str, Counter[ReturnLines]] = field(default_factory=dict)
    #: documents crediting returned goods apart from the return (B1: a credit note based on a
    #: ``Returns`` document; ECC: the credit memo of a returns order)
    credits: dict[str, Counter[Lines]] = field(default_factory=dict)
    stock: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def add(self, kind: str, order_id: str, lines: Any) -> None:
        table: dict[str, Counter[Any]] = getattr(self, kind)
        table.setdefault(order_id, Counter())[lines] += 1


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindCount:
    expected: int
    found: int
    lost: int
    duplicated: int


@dataclass
class OrderVerdict:
    kinds: dict[str, KindCount]
    stock_wrong: list[tuple[str, str, int, Decimal]]  # item, warehouse, want, have
    not_cancelled: list[str]  # cancelled before shipping, still open in the ERP
    wrongly_cancelled: list[str]  # cancelled in the ERP though it shipped
    early_releases: list[str]  # held orders the warehouse was told about before the release
    missing_releases: list[str]  # released (or announced held) fewer times than expected
    extra_releases: list[str]  # released (or held) under more event ids than expected
    republished: int  # copies of one release event id (a relay's re-send; consumers drop them)
    missing_exceptions: list[tuple[str, str]]
    doubled_exceptions: list[str]  # kind, subject and the records' messages
    unexpected_exceptions: list[tuple[str, str]]  # (kind, reason) of other open records
    exceptions: int  # the expected records found

    @property
    def lost(self) -> int:
        return (
            sum(count.lost for count in self.kinds.values())
            + len(self.stock_wrong)
            + len(self.not_cancelled)
            + len(self.missing_releases)
            + len(self.missing_exceptions)
            + len(self.unexpected_exceptions)
        )

    @property
    def duplicated(self) -> int:
        return (
            sum(count.duplicated for count in self.kinds.values())
            + len(self.extra_releases)
            + len(self.doubled_exceptions)
        )

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and not self.early_releases
            and not self.wrongly_cancelled
        )

    def table(self) -> str:
        """Per ERP document kind: expected, found, lost, duplicated (Markdown)."""
        rows = ["| document | expected | found | lost | duplicated |", "|---|---:|---:|---:|---:|"]
        rows += [
            f"| {kind} | {c.expected:,} | {c.found:,} | {c.lost} | {c.duplicated} |"
            for kind, c in self.kinds.items()
        ]
        return "\n".join(rows)

    def summary(self) -> str:
        kinds = "; ".join(f"{k}: {c.lost} lost, {c.duplicated} doubled"
                          for k, c in self.kinds.items())  # fmt: skip
        return (
            f"{kinds}; stock wrong at {len(self.stock_wrong)} places {self.stock_wrong[:3]}; "
            f"not cancelled {self.not_cancelled[:3]}; wrongly cancelled "
            f"{self.wrongly_cancelled[:3]}; released early {self.early_releases[:3]}; releases "
            f"missing {self.missing_releases[:3]} ({len(self.missing_releases)}), extra "
            f"{self.extra_releases[:3]}; {self.republished} re-sent; exceptions missing "
            f"{self.missing_exceptions[:3]}, doubled {self.doubled_exceptions[:3]}, unexpected "
            f"{self.unexpected_exceptions[:3]} ({len(self.unexpected_exceptions)})"
        )


def _compare(expected: dict[str, Counter[Any]], found: dict[str, Counter[Any]]) -> KindCount:
    lost = duplicated = 0
    for order_id in expected.keys() | found.keys():
        want, have = expected.get(order_id, Counter()), found.get(order_id, Counter())
        lost += sum((want - have).values())
        duplicated += sum((have - want).values())
    return KindCount(
        expected=sum(sum(c.values()) for c in expected.values()),
        found=sum(sum(c.values()) for c in found.values()),
        lost=lost,
        duplicated=duplicated,
    )


def _sum(*counts: KindCount) -> KindCount:
    return KindCount(*(sum(getattr(c, f) for c in counts)
                       for f in ("expected", "found", "lost", "duplicated")))  # fmt: skip


@dataclass(frozen=True)
class Announcement:
    """One record the warehouse read on ``topics.released``."""

    type: str
    event_id: str
    order_id: str
    occurred_at: datetime


def _announcements(
    traffic: OrderTraffic, released: list[Announcement], lifted_at: datetime | None
) -> tuple[list[str], list[str], list[str], int]:
    """Early, missing and extra announcements, and the re-sent copies."""
    early, missing, extra = [], [], []
    ids: dict[tuple[str, str], set[str]] = {}
    copies = 0
    seen: set[str] = set()
    for record in released:
        copies += record.event_id in seen
        seen.add(record.event_id)
        ids.setdefault((record.order_id, record.type), set()).add(record.event_id)
        order = traffic.orders.get(record.order_id)
        if (
            order is not None
            and order.kind in HELD
            and record.type == "order.released"
            and (lifted_at is None or record.occurred_at < lifted_at)
        ):
            early.append(record.order_id)
    for order in traffic.orders.values():
        want = {
            "order.released": 0 if order.kind == "cancel_held" else 1,
            "order.held": 1 if order.kind == "cancel" else 0,
        }
        for kind, count in want.items():
            have = len(ids.get((order.order_id, kind), ()))
            if have < count:
                missing.append(f"{order.order_id} {kind} {have}/{count}")
            elif have > count:
                extra.append(f"{order.order_id} {kind} {have}/{count}")
    return sorted(set(early)), missing, extra, copies


def _exception_subject(payload: bytes) -> str:
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return "?"
    if not isinstance(body, dict):
        return "?"
    return str(body.get("return_ref") or body.get("order_id") or "?")


def check_orders(
    traffic: OrderTraffic,
    erp: ErpSales,
    released: list[Announcement],
    exceptions: list[dict[str, Any]],
    *,
    lifted_at: datetime | None,
    opening: int,
    returns_credit: bool,
) -> OrderVerdict:
    """The independent check (see the module docstring); ``exceptions``: rows of
    ``skuflow_exceptions`` (kind, reason, payload, status); ``lifted_at``: when the holds were
    lifted in the ERP (None: not yet); ``returns_credit``: the ERP's return of invoiced goods
    credits them itself (B1's credit note based on the invoice), else a credit follows it."""
    # One ERP order per marketplace order; a second document awaiting approval is a second
    # order waiting to happen.
    orders = _compare(
        {order_id: Counter({"order": 1}) for order_id in traffic.orders},
        {order_id: Counter({"order": n}) for order_id, n in erp.orders.items()},
    )
    drafts_doubled = sum(count - 1 for count in erp.drafts.values())
    expected_deliveries = traffic.expected_deliveries()
    delivered = {o: c & erp.deliveries.get(o, Counter()) for o, c in expected_deliveries.items()}
    kinds = {
        "orders": KindCount(
            orders.expected, orders.found, orders.lost, orders.duplicated + drafts_doubled
        ),
        "deliveries": _compare(expected_deliveries, erp.deliveries),
        # One invoice per delivery the ERP holds (a lost delivery is counted once, above).
        "invoices": _compare(delivered, erp.invoices),
        "returns / credit notes": _sum(
            _compare(traffic.expected_returns(), erp.returns),
            _compare({} if returns_credit else traffic.expected_credits(), erp.credits),
        ),
    }
    wrong = [
        (item, code, want, erp.stock.get((item, code), Decimal(0)))
        for (item, code), want in sorted(traffic.expected_stock(opening).items())
        if erp.stock.get((item, code), Decimal(0)) != want
    ]
    cancelled = {o.order_id for o in traffic.of("cancel", "cancel_held")}
    early, missing, extra, copies = _announcements(traffic, released, lifted_at)
    expected_exceptions = traffic.expected_exceptions()
    found: dict[tuple[str, str], list[str]] = {}
    unexpected = []
    for row in exceptions:
        if row["status"] == "resolved" or row["kind"] in ("deadline_at_risk", "deadline_missed"):
            continue
        subject = (row["kind"], _exception_subject(bytes(row["payload"])))
        if subject in expected_exceptions:
            where = f"#{row['id']} {row['topic']}[{row['partition']}]@{row['offset']}"
            found.setdefault(subject, []).append(where)
        else:
            unexpected.append((row["kind"], row["reason"]))
    return OrderVerdict(
        kinds=kinds,
        stock_wrong=wrong,
        not_cancelled=sorted(cancelled - erp.cancelled),
        wrongly_cancelled=sorted(erp.cancelled - cancelled),
        early_releases=early,
        missing_releases=missing,
        extra_releases=extra,
        republished=copies,
        missing_exceptions=sorted(set(expected_exceptions) - set(found)),
        doubled_exceptions=[f"{s}: {', '.join(w)}" for s, w in found.items() if len(w) > 1],
        unexpected_exceptions=unexpected,
        exceptions=sum(len(w) for w in found.values()),
    )
