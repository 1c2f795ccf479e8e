"""iHub and its DCs: the product master, stock per DC, sales orders moving through their statuses,
dispatches, receipts and adjustments — everything the REST API and the pushes show.

Rules of a sales order load ([DOC] unless marked; only the first error is answered [DOC]):
fields (required ``SalesOrderNumber``, lengths, no ``"`` in any text), then the order number
unique ([DOC]; compared case-insensitively [UNCONF]), then the lines (at least one; whole
quantities above 0 [UNCONF]; each product known [OBS] and its code acceptable under
``product_rules`` [UNCONF]; one line per ProductCode [DOC]), then free stock: **the whole order
is refused when any line lacks free stock** in its DC ("free" = on hand less what open orders
hold). ``duplicate_before_stock`` false moves the uniqueness check after the stock check.
An accepted order holds its stock, starts "In Production" and moves on after
``status_delays`` — unless ``OnHold`` (until released) or not pushed to the DC
(``DoNotPushToDC``, or ``push_to_dc`` off: then no stock check either [UNCONF]). At
"Dispatched" it ships: lots first in, first out, one dispatch line per lot and per serial, in
one or more dispatches (``plan``, ``split_rate``), a line not shipped shown with quantity 0
(``short_ship_rate``) [DOC]; then it is closed.

Stock moves by GRN (``receive``: an ASN loaded through iHub, or a manual receipt), stock
adjustment (``adjust``: increases and decreases in separate messages [DOC]) and dispatch;
``add_stock`` is silent set-up. Each event hands its push entities to ``emit``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from devstack.sims.seko import model
from devstack.sims.seko.model import Knobs, Service
from devstack.sims.seko.records import (
    Adjustment,
    AdjustmentLine,
    Dispatch,
    DispatchLine,
    Grn,
    GrnLine,
    Line,
    Order,
    Product,
    Receipt,
    stamp,
)
from devstack.sims.seko.wire import flag, many, text

#: ``emit(service, dc, parts)``: one push message; each part is (entity header, lines).
Emit = Callable[[Service, str, list[tuple[dict[str, Any], list[dict[str, Any]]]]], None]


class Refused(Exception):
    """A load iHub refuses: answered ``Success: false`` with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StockBook:
    """Units per (DC, product key, lot) — lot ``""`` when none — serials per (DC, key), and
    what each open order holds (with when it took it, for the stock read's lag)."""

    def __init__(self) -> None:
        self.lots: dict[tuple[str, str, str], int] = defaultdict(int)
        self.serials: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.held: dict[str, list[tuple[str, str, int, datetime]]] = {}  # order key -> holds

    def on_hand(self, dc: str, key: str) -> int:
        return sum(q for (d, k, _), q in self.lots.items() if d == dc and k == key)

    def allocated(self, dc: str, key: str, before: datetime | None = None) -> int:
        return sum(
            quantity
            for holds in self.held.values()
            for d, k, quantity, at in holds
            if d == dc and k == key and (before is None or at <= before)
        )

    def free(self, dc: str, key: str) -> int:
        return self.on_hand(dc, key) - self.allocated(dc, key)

    def put(
        self, dc: str, key: str, quantity: int, lot: str = "", serials: Iterable[str] = ()
    ) -> None:
        self.lots[dc, key, lot] += quantity
        self.serials[dc, key].extend(serials)

    def take(self, dc: str, key: str, quantity: int, lot: str = "") -> list[tuple[str, int, str]]:
        """Up to ``quantity`` units, lots first in first out (or the one ``lot``), serials
        first in first out: (lot, units, serial) pieces."""
        pieces: list[tuple[str, int, str]] = []
        for d, k, name in list(self.lots):
            if quantity <= 0:
                break
            if d != dc or k != key or (lot and name != lot) or self.lots[d, k, name] <= 0:
                continue
            units = min(quantity, self.lots[d, k, name])
            self.lots[d, k, name] -= units
            quantity -= units
            pool = self.serials[dc, key]
            if pool:
                pieces += [(name, 1, pool.pop(0)) for _ in range(min(units, len(pool)))]
            else:
                pieces.append((name, units, ""))
        return pieces


class Warehouse:
    def __init__(
        self,
        knobs: Callable[[], Knobs],
        now: Callable[[], datetime],
        emit: Emit,
        rng: random.Random,
    ) -> None:
        self._knobs, self._now, self._emit, self._random = knobs, now, emit, rng
        self.products: dict[str, Product] = {}  # key (upper case) -> product
        self.dcs: set[str] = set()
        self.book = StockBook()
        self.orders: dict[str, Order] = {}  # key -> order
        self.receipts: dict[str, Receipt] = {}  # ASN number -> receipt
        self.grns: list[Grn] = []
        self.adjustments: list[Adjustment] = []
        self._dispatch_numbers = 0
        self._summary_dates: dict[str, date] = {}
        self._serials: dict[str, int] = defaultdict(int)  # serials made per product key

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    # --- master data and set-up ---

    def add_dc(self, dc: str) -> None:
        self.dcs.add(dc)

    def add_product(self, code: str, **fields: Any) -> Product:
        """A product as if loaded (no rules): ``lot_controlled``/``serial_controlled``/
        ``date_controlled`` flags, any other ProductMaster field by its wire name."""
        flags = {
            k: bool(fields.pop(k, False))
            for k in ("lot_controlled", "serial_controlled", "date_controlled")
        }
        product = Product(code, {"ProductCode": code, **fields}, **flags)
        self.products[code.upper()] = product
        return product

    def product(self, code: str) -> Product | None:
        return self.products.get(code.upper())

    def add_stock(
        self, dc: str, code: str, quantity: int, lot: str = "", serials: Sequence[str] = ()
    ) -> None:
        """Units on hand (no push). A serial-controlled product's units get serials
        ``<code>-S<n>`` unless given; a lot-controlled one's lot ``<code>-LOT1`` unless given."""
        product = self._known(code)
        self.dcs.add(dc)
        lot, serials = self._tracking(product, dc, quantity, lot, serials)
        self.book.put(dc, code.upper(), quantity, lot, serials)

    def _tracking(
        self, product: Product, dc: str, quantity: int, lot: str, serials: Sequence[str]
    ) -> tuple[str, list[str]]:
        if product.lot_controlled and not lot:
            lot = f"{product.code}-LOT1"
        if product.serial_controlled and not serials:
            start = self._serials[product.code.upper()]
            self._serials[product.code.upper()] += quantity
            serials = [f"{product.code}-S{n}" for n in range(start + 1, start + quantity + 1)]
        return lot, list(serials)

    def _known(self, code: str) -> Product:
        product = self.product(code)
        if product is None:
            raise KeyError(f"unknown product {code!r}")
        return product

    # --- product master loads ---

    def load_product(self, body: Mapping[str, Any], *, update: bool) -> None:
        master = body.get("ProductMaster")
        if not isinstance(master, dict):
            raise Refused(model.REQUIRED.format(field="ProductMaster"))
        code = text(master.get("ProductCode"))
        rules = self._knobs().product_rules
        if not code:
            raise Refused(model.REQUIRED.format(field="ProductCode"))
        if len(code) > rules.max_length:
            raise Refused(model.TOO_LONG.format(field="ProductCode", limit=rules.max_length))
        _no_quotes(master)
        if rules.refuses(code):
            raise Refused(model.BAD_PRODUCT_CODE.format(code=code))
        fields = {k: v for k, v in master.items() if v not in (None, {})}
        existing = self.product(code)
        if not update:
            if existing is not None:
                raise Refused(model.PRODUCT_EXISTS.format(code=code))
            self.add_product(
                code,
                lot_controlled=flag(master.get("LotControlled")),
                serial_controlled=flag(master.get("SerialNumberControlled")),
                date_controlled=flag(master.get("DateControlled")),
                **{k: v for k, v in fields.items() if k != "ProductCode"},
            )
            return
        if existing is None:
            raise Refused(model.UNKNOWN_PRODUCT.format(code=code))
        current: dict[str, bool | str] = {
            "LotControlled": existing.lot_controlled,
            "SerialNumberControlled": existing.serial_controlled,
            "DateControlled": existing.date_controlled,
            "SupplierCode": text(existing.fields.get("SupplierCode")),
        }
        for name, value in current.items():
            given = master.get(name)
            if given is None:
                continue
            if (flag(given) if isinstance(value, bool) else text(given)) != value:
                raise Refused(model.IMMUTABLE.format(field=name))
        kept = {k: existing.fields[k] for k in model.IMMUTABLE_FIELDS if k in existing.fields}
        existing.fields = {**fields, **kept}  # blank fields erase what was there [DOC]

    # --- sales orders ---

    def submit_order(self, body: Mapping[str, Any], *, web: bool) -> Order:
        """Accept a ``salesorders/v4/submit`` (or ``websubmit``) body, or raise
        :class:`Refused` with iHub's first error."""
        header = body.get("WebSalesOrder" if web else "SalesOrder")
        header = header if isinstance(header, dict) else {}
        number = text(header.get("SalesOrderNumber"))
        try:
            dc, lines, at_dc = self._admit(body, header, number)
        except Refused as refusal:
            detail = refusal.message
            raise Refused(model.SUBMIT_ERROR.format(number=number, detail=detail)) from None
        now = self._now()
        order = Order(
            number=number,
            guid=text(header.get("GUID")) or self.uuid(),
            dc=dc,
            lines=lines,
            submitted_at=now,
            reference=text(header.get("SalesOrderReference")),
            courier=text(header.get("CourierName")),
            service=text(header.get("CourierService")),
            web=web,
            on_hold=flag(header.get("OnHold")),
            at_dc=at_dc,
            since=now,
            history=[(model.STATUSES[0], now)],
        )
        self.orders[order.key] = order
        if at_dc:
            self.book.held[order.key] = [(dc, ln.code.upper(), ln.quantity, now) for ln in lines]
        return order

    def _admit(
        self, body: Mapping[str, Any], header: Mapping[str, Any], number: str
    ) -> tuple[str, list[Line], bool]:
        """The order's DC, lines and whether it goes to the DC; the first error raised."""
        knobs = self._knobs()
        self._check_fields(body, header, number)
        dc = text((body.get("SalesOrderHeader") or {}).get("DCCode")) or knobs.default_dc
        if not dc:
            raise Refused(model.REQUIRED.format(field="DCCode"))
        if dc not in self.dcs:
            raise Refused(model.UNKNOWN_DC.format(dc=dc))
        lines = self._lines(body)
        at_dc = knobs.push_to_dc and not flag(header.get("DoNotPushToDC"))
        if knobs.duplicate_before_stock:
            self._unique(number)
        if at_dc:
            self._stock_for(dc, lines)
        self._unique(number)
        return dc, lines, at_dc

    def _check_fields(
        self, body: Mapping[str, Any], header: Mapping[str, Any], number: str
    ) -> None:
        if not number:
            raise Refused(model.REQUIRED.format(field="SalesOrderNumber"))
        for name, limit in model.ORDER_LIMITS.items():
            if len(text(header.get(name))) > limit:
                raise Refused(model.TOO_LONG.format(field=name, limit=limit))
        _no_quotes(body)

    def _unique(self, number: str) -> None:
        if number.upper() in self.orders:
            raise Refused(model.DUPLICATE_ORDER.format(number=number))

    def _lines(self, body: Mapping[str, Any]) -> list[Line]:
        raw = many((body.get("List") or {}).get("SalesOrderLineItem"))
        if not raw:
            raise Refused(model.NO_LINES)
        rules, seen, lines = self._knobs().product_rules, set[str](), []
        for index, item in enumerate(raw, 1):
            item = item if isinstance(item, dict) else {}
            number = int(text(item.get("LineNumber")) or index)
            code = text(item.get("ProductCode"))
            if not code:
                raise Refused(model.REQUIRED.format(field="ProductCode"))
            if len(code) > rules.max_length:
                raise Refused(model.TOO_LONG.format(field="ProductCode", limit=rules.max_length))
            if rules.refuses(code):
                raise Refused(model.BAD_PRODUCT_CODE.format(code=code))
            product = self.product(code)
            if product is None:
                raise Refused(model.UNKNOWN_PRODUCT.format(code=code))
            if code.upper() in seen:
                raise Refused(model.DUPLICATE_LINE.format(code=code))
            seen.add(code.upper())
            quantity = _whole(item.get("Quantity"))
            if quantity is None or quantity <= 0:
                raise Refused(model.BAD_QUANTITY.format(line=number))
            lines.append(Line(number, product.code, quantity, text(item.get("LotNo"))))
        return lines

    def _stock_for(self, dc: str, lines: Sequence[Line]) -> None:
        for line in lines:
            key = line.code.upper()
            free = self.book.free(dc, key)
            if line.lot:
                free = min(free, self.book.lots.get((dc, key, line.lot), 0))
            if free < line.quantity:
                raise Refused(model.NO_FREE_STOCK.format(code=line.code))

    def order_by_guid(self, guid: str) -> Order | None:
        wanted = guid.lower()
        return next((o for o in self.orders.values() if o.guid.lower() == wanted), None)

    def cancel(self, number: str, reason: str) -> Order:
        order = self.orders.get(number.upper())
        if order is None:
            raise Refused(model.NO_RESULTS)
        detail = None
        if order.status == model.CANCELLED:
            detail = model.ALREADY_CANCELLED
        elif order.status not in self._knobs().cancellable:
            detail = model.NOT_CANCELLABLE.format(status=order.status)
        if detail is not None:
            raise Refused(model.CANCEL_ERROR.format(number=order.number, detail=detail))
        self.book.held.pop(order.key, None)
        order.cancel_reason = reason
        self._enter(order, model.CANCELLED, self._now())
        return order

    def hold(self, number: str, on_hold: bool) -> Order:
        order = self.orders[number.upper()]
        order.on_hold = on_hold
        if not on_hold:
            order.since = self._now()  # the DC picks it up from here
        return order

    def plan(self, number: str, shipments: Sequence[Mapping[str, int]]) -> Order:
        """Ship ``number`` in these dispatches (product code -> units each); what they leave
        out ships as a 0-quantity line."""
        order = self.orders[number.upper()]
        order.plan = [{code.upper(): units for code, units in s.items()} for s in shipments]
        return order

    # --- time ---

    def advance(self) -> None:
        """Move every open order on as far as its delays allow; summarise stock at midnight."""
        now, delays = self._now(), self._knobs().status_delays
        for order in list(self.orders.values()):
            if order.on_hold or not order.at_dc or order.status not in model.STATUSES[:-1]:
                continue
            assert order.since is not None
            while order.status in model.STATUSES[:-1]:
                due = order.since + timedelta(seconds=delays.get(order.status, 0.0))
                if due > now:
                    break
                following = model.STATUSES[model.STATUSES.index(order.status) + 1]
                self._enter(order, following, due)
                if following == model.DISPATCHED:
                    self._ship(order, due)
        if self._knobs().overnight_summary:
            self._midnight(now)

    def _enter(self, order: Order, status: str, at: datetime) -> None:
        order.status, order.since = status, at
        order.history.append((status, at))

    # --- shipping ---

    def _ship(self, order: Order, at: datetime) -> None:
        knobs, rng = self._knobs(), self._random
        left = {line.code.upper(): line.quantity for line in order.lines}
        if rng.random() < knobs.short_ship_rate:
            short = rng.choice(order.lines).code.upper()
            left[short] -= 1
        shipments = order.plan or self._default_plan(left, rng.random() < knobs.split_rate)
        shipped: dict[str, int] = defaultdict(int)
        for index, shipment in enumerate(shipments):
            lines: list[DispatchLine] = []
            for line in order.lines:
                key = line.code.upper()
                units = min(shipment.get(key, 0), line.quantity - shipped[key])
                for lot, count, serial in self.book.take(order.dc, key, units, line.lot):
                    ean = self._ean(line.code)
                    lines.append(DispatchLine(line.line_number, line.code, ean, count, lot, serial))
                    shipped[key] += count
            if index == len(shipments) - 1:  # unshipped lines show with quantity 0 [DOC]
                lines += [
                    DispatchLine(line.line_number, line.code, self._ean(line.code), 0)
                    for line in order.lines
                    if shipped[line.code.upper()] == 0
                ]
            if lines:
                order.dispatches.append(self._dispatch(order, at, lines))
        self.book.held.pop(order.key, None)
        parts = [(d.entity(), d.lines_wire()) for d in order.dispatches]
        self._emit("DispatchConfirmation", order.dc, parts)  # each dispatch a part [DOC]

    @staticmethod
    def _default_plan(left: dict[str, int], split: bool) -> list[dict[str, int]]:
        if not split or sum(left.values()) < 2:
            return [dict(left)]
        first = {key: math.ceil(units / 2) for key, units in left.items()}
        return [first, {key: units - first[key] for key, units in left.items()}]

    def _dispatch(self, order: Order, at: datetime, lines: list[DispatchLine]) -> Dispatch:
        self._dispatch_numbers += 1
        courier = order.courier or self._random.choice(self._knobs().carriers)
        tracking = f"{courier[:2].upper()}{self._random.randrange(10**11, 10**12)}GB"
        return Dispatch(
            self.uuid(),
            self._dispatch_numbers,
            order.number,
            order.reference,
            order.guid,
            order.dc,
            at,
            courier,
            order.service or "Standard",
            tracking,
            lines,
        )

    def _ean(self, code: str) -> str:
        product = self.product(code)
        return product.ean if product else ""

    # --- receipts, adjustments, summaries ---

    def load_receipt(self, body: Mapping[str, Any]) -> Receipt:
        """``receipts/v1/submit`` [OBS]: an ASN (``Request.Receipt``, ``.ReceiptHeader``,
        ``.List.ReceiptLineItem``) whose goods :meth:`receive` books later."""
        request = body.get("Request", body)
        receipt = request.get("Receipt") or {}
        asn = text(receipt.get("ASNNumber"))
        dc = text((request.get("ReceiptHeader") or {}).get("DCCode"))
        if not asn:
            raise Refused(model.REQUIRED.format(field="ASNNumber"))
        if dc not in self.dcs:
            raise Refused(model.UNKNOWN_DC.format(dc=dc))
        lines = []
        for index, item in enumerate(many((request.get("List") or {}).get("ReceiptLineItem")), 1):
            product = self.product(text(item.get("ProductCode")))
            if product is None:
                raise Refused(model.UNKNOWN_PRODUCT.format(code=text(item.get("ProductCode"))))
            number = int(text(item.get("LineNumber")) or index)
            lines.append(Line(number, product.code, _whole(item.get("Quantity")) or 0))
        found = Receipt(
            asn,
            self.uuid(),
            dc,
            text(receipt.get("HBReference")),
            flag(receipt.get("IsReturn")),
            lines,
        )
        self.receipts[asn] = found
        return found

    def receive(
        self,
        lines: Sequence[tuple[str, int] | tuple[str, int, str]] | None = None,
        *,
        asn_number: str = "",
        dc: str = "",
        hb_reference: str = "",
        is_return: bool = False,
    ) -> Grn:
        """Goods received: an ASN's (its lines unless ``lines`` says what really came: a line
        missing or 0 is left out, a new one added [DOC]) or a manual receipt in ``dc``."""
        receipt = self.receipts.get(asn_number)
        if receipt is not None:
            dc, hb_reference, is_return = receipt.dc, receipt.hb_reference, receipt.is_return
            receipt.received = True
        if not dc:
            raise KeyError("a receipt without a loaded ASN needs its dc")
        self.dcs.add(dc)
        expected = {ln.code.upper(): ln.line_number for ln in (receipt.lines if receipt else [])}
        if lines is None:
            lines = [(ln.code, ln.quantity) for ln in receipt.lines] if receipt else []
        now, grn_lines = self._now(), []
        for index, (code, quantity, *lot_given) in enumerate(lines, 1):
            product = self._known(code)
            if quantity <= 0:
                continue
            lot, serials = self._tracking(product, dc, quantity, "".join(lot_given), ())
            self.book.put(dc, product.code.upper(), quantity, lot, serials)
            number = expected.get(product.code.upper(), len(expected) + index)
            grn_lines.append(GrnLine(number, product.code, product.ean, quantity, lot, self.uuid()))
        grn = Grn(
            receipt.guid if receipt else self.uuid(),
            asn_number,
            dc,
            hb_reference,
            is_return,
            now,
            now,
            grn_lines,
            via_ihub=receipt is not None,
        )
        self.grns.append(grn)
        if grn.via_ihub or self._knobs().push_manual_records:
            self._emit("GoodsReceivedNotice", dc, [(grn.entity(), grn.lines_wire())])
        return grn

    def adjust(
        self, dc: str, changes: Sequence[tuple[str, int, str] | tuple[str, int, str, str]]
    ) -> list[Adjustment]:
        """(product, signed units, reason code[, lot]) changes to Available Stock: one
        Increase and one Decrease message at most [DOC]."""
        now, made = self._now(), []
        for kind, sign in (("Increase", 1), ("Decrease", -1)):
            lines: list[AdjustmentLine] = []
            for code, delta, reason, *lot_given in changes:
                if delta * sign <= 0:
                    continue
                product = self._known(code)
                lot = "".join(lot_given)
                if sign > 0:
                    lot, serials = self._tracking(product, dc, delta, lot, ())
                    self.book.put(dc, product.code.upper(), delta, lot, serials)
                else:
                    self.book.lots[dc, product.code.upper(), lot] -= -delta  # may go negative
                lines.append(
                    AdjustmentLine(
                        len(lines) + 1,
                        product.code,
                        product.ean,
                        abs(delta),
                        reason,
                        model.ADJUSTMENT_REASONS.get(reason, reason),
                        lot,
                    )
                )
            if lines:
                adjustment = Adjustment(self.uuid(), dc, kind, now, lines)
                self.adjustments.append(adjustment)
                made.append(adjustment)
                self._emit("StockAdjustment", dc, [(adjustment.entity(), adjustment.lines_wire())])
        return made

    def overnight_summary(self, dc: str | None = None, at: datetime | None = None) -> None:
        """Stock Overnight Summary of each DC (or ``dc``): only SKUs with a quantity above 0
        [DOC], ``summary_part_size`` lines a part; a DC holding nothing sends nothing."""
        at = at or self._now()
        for name in sorted({dc} if dc else self.dcs):
            keys = sorted({k for (d, k, _) in self.book.lots if d == name})
            rows = [(self.products[k].code, self.book.on_hand(name, k)) for k in keys]
            rows = [(code, units) for code, units in rows if units > 0]
            if not rows:
                continue
            size = self._knobs().summary_part_size
            parts = []
            for start in range(0, len(rows), size):
                header = {"DCCode": name, "AtEndOfDate": stamp(at)}
                lines = [
                    {
                        "SummaryStockHeaderId": f"{name}-{at:%Y%m%d}",
                        "ProductCode": code,
                        "EAN": self._ean(code),
                        "QuantityOnHand": units,
                        "QuantityInCrossDock": 0,
                        "QuantityInQuarantine": 0,
                        "QtyGRNPendingConfirmed": 0,
                    }
                    for code, units in rows[start : start + size]
                ]
                parts.append((header, lines))
            self._emit("StockOvernightSummary", name, parts)

    def _midnight(self, now: datetime) -> None:
        for dc in sorted(self.dcs):
            offset = timedelta(hours=self._knobs().dc_utc_offsets.get(dc, 0.0))
            today = (now + offset).date()
            last = self._summary_dates.setdefault(dc, today)
            if today > last:
                end = (
                    datetime.combine(last, datetime.max.time()).replace(
                        microsecond=0, tzinfo=now.tzinfo
                    )
                    - offset
                )
                self.overnight_summary(dc, at=end)
                self._summary_dates[dc] = today

    # --- reads ---

    def stock_rows(self, codes: Sequence[str], dc: str) -> list[dict[str, Any]]:
        """``stock/v3/quantity`` rows: free stock in Available Stock, lagging new orders by
        ``stock_lag_seconds`` [DOC]; zero and negative quantities left out [DOC]."""
        seen = self._now() - timedelta(seconds=self._knobs().stock_lag_seconds)
        keys = [c.upper() for c in codes] or sorted({k for (_, k, _) in self.book.lots})
        rows = []
        for name in sorted({dc} if dc else self.dcs):
            for key in keys:
                if key not in self.products:
                    continue
                units = self.book.on_hand(name, key) - self.book.allocated(name, key, seen)
                if units > 0:
                    rows.append(
                        {
                            "ProductCode": self.products[key].code,
                            "DCCode": name,
                            "LocationType": model.AVAILABLE,
                            "Quantity": units,
                        }
                    )
        return rows


def _whole(value: Any) -> int | None:
    try:
        number = float(text(value))
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _no_quotes(body: Any, field: str = "") -> None:
    """[DOC] a ``"`` in any text of a load makes it fail."""
    if isinstance(body, dict):
        for key, value in body.items():
            _no_quotes(value, key)
    elif isinstance(body, list):
        for value in body:
            _no_quotes(value, field)
    elif isinstance(body, str) and '"' in body:
        raise Refused(model.QUOTE_IN_TEXT.format(field=field))
