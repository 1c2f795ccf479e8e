"""Sales documents in the SAP Business One simulator: customers, orders and the drafts approval
procedures make of them, and the documents based on each other. :class:`SalesBook` checks and
applies every write; its records, refusal texts and JSON are in
:mod:`devstack.sims.b1.sales_model`.

**Entities** (all under ``/b1s/v1``, GET by key, GET a collection with ``$filter`` / ``$select``
/ paging as the stock documents): ``BusinessPartners`` (key ``CardCode``: ``CardType``
``cCustomer``, ``CreditLimit``, ``CurrentAccountBalance`` (invoices less credit notes),
``OpenOrdersBalance``, ``OpenDeliveryNotesBalance`` (net open amounts), ``Frozen``/``Valid``,
and ``U_CreditHold`` ``Y``/``N`` — a user-defined field of our model [UNCONF: standard B1 has no
credit-hold flag; installations add one]); ``Orders`` (ORDR/RDR1, object 17), ``Drafts``
(ODRF/DRF1: an order an approval procedure stopped, ``DocObjectCode`` ``oOrders``,
``AuthorizationStatus`` ``dasPending`` → ``dasApproved`` / ``dasRejected``, ``dasGenerated``
once saved as an order), ``DeliveryNotes`` (ODLN/DLN1, 15) based on orders, ``Invoices``
(OINV/INV1, 13) and ``Returns`` (ORDN/RDN1, 16) based on deliveries, ``CreditNotes``
(ORIN/RIN1, 14) based on returns. Each is numbered on its own (``DocEntry`` = ``DocNum``).

**Orders** take ``CardCode`` (an existing customer, not frozen), ``NumAtCard`` (100),
``DocDate``, ``DocDueDate``, ``TaxDate``, ``DocCurrency``, ``Comments`` (254), ``JournalMemo``
(50), ``Reference2`` (11), ``U_*`` and ``DocumentLines`` of ``ItemCode`` (existing and active),
``Quantity`` (> 0), ``UnitPrice`` (≥ 0; absent: 0 [UNCONF: B1 takes the price list's]),
``DiscountPercent`` (0 to 100), ``TaxCode`` (one of :meth:`SalesBook.add_tax_code`'s; absent:
none), ``WarehouseCode`` (existing; absent: the first warehouse [UNCONF: B1 takes the item's
or user's default]), ``FreeText`` (100), ``U_*``. The answer has ``DocTotal`` (net + VAT at the
tax code's rate), ``DocumentStatus``, ``Cancelled``, ``Confirmed`` and per line ``LineNum``
(0-based, in the order posted), ``LineStatus``, ``RemainingOpenQuantity``, ``OpenAmount``,
``LineTotal``. Actions ``Orders(n)/Cancel`` (refused once any quantity was delivered) and
``Orders(n)/Close``.

**Approval procedures** (:class:`SalesRules` ``approval_above_amount``,
``approval_on_credit_hold``, ``over_credit_limit="draft"``, and a customer's ``approval`` /
``approval_above``): the order becomes a draft; Service Layer answers -2028 without
``Prefer: return-no-content`` and 204 with it [DOC-SLREF Orders POST]; the -2028 answer's HTTP
status (``draft_answer_status``, 400) and text (ODBC -2028's) are [UNCONF]; with 204,
``Location`` names ``Drafts(n)`` [UNCONF]. :meth:`SalesBook.approve_draft` (``save=True``: also
added as an order, as ``DraftsService_SaveDraftToDocument`` does — that endpoint is served too,
for a draft approved with ``save=False``) and :meth:`SalesBook.reject_draft`; ``DELETE
Drafts(n)`` removes a draft not yet added. ``over_credit_limit="refuse"`` answers -10 instead
(research E.2's "hard error" variant [UNCONF]). The credit check is B1's: account balance + open
deliveries + open orders + this order > ``CreditLimit`` (when > 0).

**Holds**: ``Confirmed`` is the order's "Approved" checkbox (:meth:`SalesBook.set_confirmed`).
A customer on credit hold (:meth:`SalesBook.set_credit_hold`) shows on its orders as
``Confirmed`` ``tNO`` for as long as the hold lasts (``credit_hold_unconfirms``; the order's own
flag is kept and shows again after) [UNCONF: our model of a credit hold] and on the customer as
``U_CreditHold`` ``Y``. Deliveries of an order whose ``Confirmed`` reads ``tNO`` are refused
(``deliver_unconfirmed=False``) [UNCONF: research G.7].

**Documents based on others** take ``CardCode`` (the base document's), the header fields above
and lines of ``BaseType``/``BaseEntry``/``BaseLine``, ``Quantity``, ``WarehouseCode`` (default:
the base line's), ``BatchNumbers``/``SerialNumbers``, ``FreeText``, ``UnitPrice``,
``DiscountPercent``, ``TaxCode`` (defaults: the base line's), ``ItemCode`` (if given, the base
line's). Refused with -10 and a text naming the row (``[DLN1.Quantity][line: 2]``): an unknown
base, a base of another customer, a base closed or cancelled, a base line closed, a quantity
above the base line's ``RemainingOpenQuantity`` (``allow_over_delivery`` lifts it for
deliveries [UNCONF]); batch/serial checks and no negative stock as the stock documents
(-4014, 480000112, "falls into negative inventory"). A delivery issues stock, reduces its order
lines' open quantities and closes the order when none is left; an invoice closes the delivery
quantities it invoices; a return restocks into its line's warehouse (its batches and serials
must be ones the delivery line issued and not yet returned; at most delivered - returned) and
closes the delivery quantities it takes back; a credit note closes its return's. A delivery
closed by its invoice cannot be the base of a return (``return_from_closed_delivery=False``:
[DOC-web] help.sap.com B1 9.1 "Closing Deliveries": once closed, no other sales document can
refer to it; the B1 path for invoiced goods is a credit note based on the invoice). Every text
but the verified stock ones is [UNCONF] and can be replaced (``messages``, by the keys of
:data:`MESSAGES`).

**Python hooks** (``sim.sales``): ``add_customer``, ``update_customer``, ``set_credit_hold``,
``add_tax_code``, ``set_rules`` / ``rules``, ``set_confirmed``, ``approve_draft``,
``reject_draft``, ``document(entity, entry)`` (the document as Service Layer returns it now).
Over HTTP (``devstack.sims.b1.server``): ``POST /_sim/customers`` (add or change:
``{"code", "name", "credit_limit", "frozen", "credit_hold", "approval", "approval_above"}``),
``POST /_sim/tax-codes`` (``{"code", "rate"}``), ``GET|POST /_sim/sales-rules``, ``POST
/_sim/orders/{n}/confirmed`` (``{"confirmed": false}``), ``POST
/_sim/drafts/{n}/approve|reject`` (``approve`` takes ``{"save": false}``; answers the order's
``DocEntry``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from devstack.sims.b1 import model
from devstack.sims.b1.model import Item, SLError, StockBook, Warehouse, decimal, rejected
from devstack.sims.b1.sales_model import (
    BASED_LINE_FIELDS,
    BASES,
    ENTITIES,
    FREE_TEXT_MAX,
    HEADER_FIELDS,
    LENGTHS,
    MESSAGES,
    OBJECT_CODES,
    ORDER_LINE_FIELDS,
    POSTABLE,
    TABLES,
    Customer,
    SalesDoc,
    SalesLine,
    SalesRules,
    balances,
    customer_json,
    doc_json,
    integer,
    keys,
    refusal,
    total,
)

__all__ = ["ENTITIES", "MESSAGES", "POSTABLE", "SalesBook", "SalesRules"]


@dataclass
class _Planned:
    """One line of a document based on another, checked: its base, itself, what was posted."""

    base_doc: SalesDoc
    base: SalesLine
    new: SalesLine
    posted: dict[str, Any]


class SalesBook:
    """The sales side of the company database; see the module docstring."""

    def __init__(
        self,
        items: dict[str, Item],
        warehouses: dict[str, Warehouse],
        book: StockBook,
        documents: list[model.SimDocument],
    ) -> None:
        self._items, self._warehouses, self._book = items, warehouses, book
        self._documents = documents  # the simulator's record of created documents
        self.customers: dict[str, Customer] = {}
        self.tax_codes: dict[str, Decimal] = {}  # code -> rate (percent)
        self._rules = SalesRules()
        self._docs: dict[str, dict[int, SalesDoc]] = {entity: {} for entity in ENTITIES}
        self._next = dict.fromkeys(ENTITIES, 1)
        self._index: defaultdict[tuple[str, str, str], list[SalesDoc]] = defaultdict(list)
        self._by_card: defaultdict[str, list[SalesDoc]] = defaultdict(list)

    # --- hooks ---

    def add_customer(
        self,
        code: str,
        *,
        name: str | None = None,
        credit_limit: int | Decimal = 0,
        frozen: bool = False,
        credit_hold: bool = False,
        approval: bool = False,
        approval_above: int | Decimal | None = None,
    ) -> None:
        above = None if approval_above is None else Decimal(approval_above)
        self.customers[code] = Customer(
            code, name or f"Customer {code}", Decimal(credit_limit), frozen, credit_hold, approval,
            above,
        )  # fmt: skip

    def update_customer(self, code: str, **changes: Any) -> None:
        """Change a customer's ``name``, ``credit_limit``, ``frozen``, ``credit_hold``,
        ``approval`` or ``approval_above``."""
        customer = self.customers[code]
        for name, value in changes.items():
            if not hasattr(customer, name) or name == "code":
                raise TypeError(f"unknown customer field {name!r}")
            numeric = name in ("credit_limit", "approval_above") and value is not None
            setattr(customer, name, Decimal(value) if numeric else value)

    def set_credit_hold(self, code: str, on: bool = True) -> None:
        self.update_customer(code, credit_hold=on)

    def add_tax_code(self, code: str, rate: int | Decimal = 0) -> None:
        self.tax_codes[code] = Decimal(rate)

    @property
    def rules(self) -> SalesRules:
        return self._rules

    def set_rules(self, **changes: Any) -> SalesRules:
        """Change some sales knobs, keep the others."""
        self._rules = model.with_changes(self._rules, changes)
        return self._rules

    def set_confirmed(self, entry: int, confirmed: bool) -> None:
        """Tick or clear an order's "Approved" checkbox (``Confirmed``)."""
        self._get("Orders", entry).confirmed = confirmed

    def approve_draft(self, entry: int, *, save: bool = True) -> int | None:
        """Approve a pending draft; with ``save`` it is also added as an order (a new
        ``DocEntry`` in ``Orders``, returned), as ``DraftsService_SaveDraftToDocument``."""
        draft = self._get("Drafts", entry)
        if draft.authorization != "dasPending":
            raise ValueError(f"draft {entry} is {draft.authorization}, not pending")
        draft.authorization = "dasApproved"
        return self._save_draft(draft).doc_entry if save else None

    def reject_draft(self, entry: int) -> None:
        draft = self._get("Drafts", entry)
        if draft.authorization != "dasPending":
            raise ValueError(f"draft {entry} is {draft.authorization}, not pending")
        draft.authorization = "dasRejected"

    def document(self, entity: str, entry: int) -> dict[str, Any] | None:
        """A document as Service Layer would return it now."""
        doc = self._docs[entity].get(entry)
        return None if doc is None else self._json(doc)

    def confirmed(self, doc: SalesDoc) -> bool:
        """``Confirmed`` as it reads: the order's flag, cleared while its customer is on
        credit hold (``credit_hold_unconfirms``)."""
        customer = self.customers.get(doc.card)
        held = customer is not None and customer.credit_hold and self._rules.credit_hold_unconfirms
        return doc.confirmed and not held

    # --- reads ---

    def rows(self, entity: str, where: model.Filter) -> Iterable[dict[str, Any]]:
        """The rows that may match ``where``: found by an indexed key when every alternative
        names one (``DocEntry``, ``NumAtCard``, ``JournalMemo``; ``CardCode`` of a customer)."""
        if entity == "BusinessPartners":
            codes = keys(where, "CardCode")
            found = self.customers.values() if codes is None else (
                self.customers[c] for c in sorted(codes) if c in self.customers
            )  # fmt: skip
            return (self._customer_json(customer) for customer in found)
        return (self._json(doc) for doc in self._candidates(entity, where))

    def _candidates(self, entity: str, where: model.Filter) -> Iterable[SalesDoc]:
        docs = self._docs[entity]
        found: dict[int, SalesDoc] = {}
        for clauses in where:
            picked: list[SalesDoc] | None = None
            for name, value in clauses:
                if name == "DocEntry" and isinstance(value, Decimal):
                    doc = docs.get(int(value)) if value == value.to_integral_value() else None
                    picked = [] if doc is None else [doc]
                elif name in ("NumAtCard", "JournalMemo") and isinstance(value, str):
                    picked = self._index.get((entity, name, value), [])
                if picked is not None:
                    break
            if picked is None:
                return docs.values()
            found.update((doc.entry, doc) for doc in picked)
        return [found[entry] for entry in sorted(found)]

    # --- writes: each checked now, applied by the plan's apply ---

    def item_codes(self, entity: str, body: Any) -> set[str]:
        """The items a write touches (the server's lock model), as far as the body tells."""
        lines = body.get("DocumentLines") if isinstance(body, dict) else None
        codes: set[str] = set()
        for line in lines if isinstance(lines, list) else []:
            if not isinstance(line, dict):
                continue
            base = self._base_line_of(entity, line)
            codes.add(base.item if base is not None else str(line.get("ItemCode")))
        return codes

    def order_items(self, entity: str, entry: int) -> set[str]:
        doc = self._docs[entity].get(entry)
        return set() if doc is None else {line.item for line in doc.lines}

    def plan_post(self, entity: str, body: Any) -> model.Plan:
        if entity == "Orders":
            return self._plan_order(body)
        return self._plan_based(entity, body)

    def plan_action(self, entry: int, action: str) -> model.Plan:
        """``Orders(entry)/Cancel`` or ``/Close``."""
        order = self._docs["Orders"].get(entry)
        if order is None:
            raise SLError.of(404, model.NOT_FOUND)
        if not order.is_open:
            raise self._refusal("already_closed")
        if action == "Cancel" and any(line.open < line.quantity for line in order.lines):
            raise self._refusal("cancel_copied")

        def apply() -> None:
            order.cancelled = order.cancelled or action == "Cancel"
            order.closed = True
            for line in order.lines:
                line.closed = True

        return model.Plan("Orders", {}, apply)

    def plan_delete_draft(self, entry: int) -> model.Plan:
        draft = self._docs["Drafts"].get(entry)
        if draft is None:
            raise SLError.of(404, model.NOT_FOUND)
        if draft.authorization == "dasGenerated":
            raise self._refusal("already_closed")

        def apply() -> None:
            del self._docs["Drafts"][entry]
            for name in ("NumAtCard", "JournalMemo"):
                value = draft.header.get(name)
                if isinstance(value, str):
                    self._index[("Drafts", name, value)].remove(draft)
            self._by_card[draft.card].remove(draft)

        return model.Plan("Drafts", {}, apply)

    def plan_save_draft(self, body: Any) -> model.Plan:
        """``DraftsService_SaveDraftToDocument`` with ``{"Document": {"DocEntry": n}}``."""
        document = body.get("Document") if isinstance(body, dict) else None
        key = document.get("DocEntry") if isinstance(document, dict) else None
        draft = self._docs["Drafts"].get(key) if isinstance(key, int) else None
        if draft is None or draft.authorization == "dasGenerated":
            raise SLError.of(404 if draft is None else 400, model.NOT_FOUND)
        if draft.authorization in ("dasPending", "dasRejected"):
            pending = draft.authorization == "dasPending"
            raise self._refusal("draft_pending" if pending else "draft_rejected")
        return model.Plan("Orders", body, lambda: self._save_draft(draft))

    # --- orders ---

    def _plan_order(self, body: Any) -> model.Plan:
        head, table = TABLES["Orders"]
        posted = model.check_header(body, "Orders", "Document", HEADER_FIELDS, lengths=LENGTHS)
        customer = self._customer(body, head)
        header = self._header(body)
        lines = []
        for index, line in enumerate(posted):
            row = index + 1
            model.check_properties(line, ORDER_LINE_FIELDS, "DocumentLine")
            code = str(line.get("ItemCode") or "")
            item = self._items.get(code)
            if item is None:
                raise self._refusal("unknown_item", item=code, table=table, row=row)
            if not item.valid or item.frozen:
                raise self._refusal("inactive_item", item=code, table=table, row=row)
            quantity = self._quantity(line, table, row)
            warehouse = self._warehouse(line.get("WarehouseCode"), table, row)
            price, discount, tax, text, udf = self._terms(line, table, row, None)
            lines.append(
                SalesLine(index, code, quantity, warehouse, price, discount, tax, text, udf)
            )
        order = SalesDoc("Orders", OBJECT_CODES["Orders"], customer.code, lines, header)
        if self._approval(customer, order):
            order.entity, order.authorization = "Drafts", "dasPending"
        return model.Plan(order.entity, body, lambda: self._add(order))

    def _approval(self, customer: Customer, order: SalesDoc) -> str:
        """Why an approval procedure stops ``order`` ("" if none does); raises for a credit
        limit enforced as an error."""
        rules, total = self._rules, self._total(order)
        limit = customer.credit_limit
        over = limit > 0 and sum(self._balances(customer.code), total) > limit
        if over and rules.over_credit_limit == "refuse":
            raise self._refusal("credit_limit", card=customer.code, head=TABLES["Orders"][0])
        reasons = [
            ("customer approval", customer.approval),
            ("customer amount", customer.approval_above is not None
             and total > customer.approval_above),
            ("amount", rules.approval_above_amount is not None
             and total > rules.approval_above_amount),
            ("credit hold", rules.approval_on_credit_hold and customer.credit_hold),
            ("credit limit", over and rules.over_credit_limit == "draft"),
        ]  # fmt: skip
        return ", ".join(reason for reason, applies in reasons if applies)

    def _save_draft(self, draft: SalesDoc) -> model.SimDocument:
        draft.authorization = "dasGenerated"
        draft.closed = True
        lines = [
            SalesLine(
                line.num, line.item, line.quantity, line.warehouse, line.unit_price,
                line.discount, line.tax_code, line.free_text, dict(line.udf),
            )
            for line in draft.lines
        ]  # fmt: skip
        order = SalesDoc("Orders", draft.object_code, draft.card, lines, dict(draft.header))
        return self._add(order)

    # --- documents based on others ---

    def _plan_based(self, entity: str, body: Any) -> model.Plan:
        head, table = TABLES[entity]
        posted = model.check_header(body, entity, "Document", HEADER_FIELDS, lengths=LENGTHS)
        customer = self._customer(body, head)
        planned: list[_Planned] = []
        taken: defaultdict[tuple[int, int], Decimal] = defaultdict(Decimal)
        for index, line in enumerate(posted):
            row = index + 1
            model.check_properties(line, BASED_LINE_FIELDS, "DocumentLine")
            base_doc, base = self._base(entity, line, customer, table, row)
            if line.get("ItemCode") not in (None, base.item):
                raise self._refusal("item_mismatch", item=line["ItemCode"], table=table, row=row)
            item = self._items[base.item]
            if not item.valid or item.frozen:
                raise self._refusal("inactive_item", item=item.code, table=table, row=row)
            quantity = self._quantity(line, table, row)
            taken[base_doc.entry, base.num] += quantity
            self._check_limit(entity, base, taken[base_doc.entry, base.num], table, row)
            warehouse = self._warehouse(line.get("WarehouseCode") or base.warehouse, table, row)
            price, discount, tax, text, udf = self._terms(line, table, row, base)
            new = SalesLine(
                index, base.item, quantity, warehouse, price, discount, tax, text, udf,
                (integer(line.get("BaseType")) or 0, base_doc.entry, base.num),
            )  # fmt: skip
            planned.append(_Planned(base_doc, base, new, line))
        moves = self._stock_moves(entity, planned, table)
        header = self._header(body)
        if header.get("NumAtCard") is None:  # copied from the first base [UNCONF]
            header["NumAtCard"] = planned[0].base_doc.header.get("NumAtCard")
        lines = [plan.new for plan in planned]
        doc = SalesDoc(entity, OBJECT_CODES[entity], customer.code, lines, header)

        def apply() -> model.SimDocument:
            for move in moves:
                move.apply(self._book)
            for plan in planned:
                base, new = plan.base, plan.new
                base.take(new.quantity)
                if entity == "Returns" or _restocks(entity, new):
                    base.returned += new.quantity
                    for batch, quantity in new.batches.items():
                        base.returned_batches[batch] += quantity
                    base.returned_serials.update(new.serials)
            for plan in planned:
                plan.base_doc.close_if_done()
            return self._add(doc)

        return model.Plan(entity, body, apply)

    def _base(
        self, entity: str, line: dict[str, Any], customer: Customer, table: str, row: int
    ) -> tuple[SalesDoc, SalesLine]:
        bases = BASES[entity]
        where = {"table": table, "row": row}
        base_type = integer(line.get("BaseType"))
        if base_type not in bases:
            names, codes = " or ".join(bases.values()), " or ".join(map(str, bases))
            raise self._refusal("base_type", base=names, type=codes, **where)
        base_entity = bases[base_type]
        base_doc = self._docs[base_entity].get(integer(line.get("BaseEntry")) or 0)
        if base_doc is None:
            raise self._refusal("base_missing", **where)
        if base_doc.card != customer.code:
            raise self._refusal("card_mismatch", **where)
        reopenable = entity == "Returns" and self._rules.return_from_closed_delivery
        if base_doc.cancelled or (base_doc.closed and not reopenable):
            raise self._refusal("base_closed", **where)
        number = integer(line.get("BaseLine"))
        if number is None or not 0 <= number < len(base_doc.lines):
            raise self._refusal("base_line_missing", **where)
        base = base_doc.lines[number]
        if base.closed and not reopenable:
            raise self._refusal("base_line_closed", **where)
        unconfirmed = entity == "DeliveryNotes" and not self.confirmed(base_doc)
        if unconfirmed and not self._rules.deliver_unconfirmed:
            raise self._refusal("not_approved", **where)
        return base_doc, base

    def _base_line_of(self, entity: str, line: dict[str, Any]) -> SalesLine | None:
        base_entity = BASES.get(entity, {}).get(integer(line.get("BaseType")) or 0)
        if base_entity is None:
            return None
        base_doc = self._docs[base_entity].get(integer(line.get("BaseEntry")) or 0)
        number = integer(line.get("BaseLine"))
        if base_doc is None or number is None or not 0 <= number < len(base_doc.lines):
            return None
        return base_doc.lines[number]

    def _check_limit(
        self, entity: str, base: SalesLine, quantity: Decimal, table: str, row: int
    ) -> None:
        """``quantity`` (this document's lines on ``base`` so far) against what is open."""
        where = {"table": table, "row": row}
        if entity in ("Returns", "CreditNotes") and quantity > base.quantity - base.returned:
            raise self._refusal("over_returnable", **where)
        reopened = entity == "Returns" and self._rules.return_from_closed_delivery
        over_allowed = entity == "DeliveryNotes" and self._rules.allow_over_delivery
        if quantity > base.open and not (reopened or over_allowed):
            raise self._refusal("over_open", **where)

    def _stock_moves(self, entity: str, planned: list[_Planned], table: str) -> list[model.Move]:
        """Deliveries issue stock, returns take it back (only batches and serials their
        delivery line issued and not yet returned), and so do credit notes based on invoices
        (the goods of a closed delivery); invoices and credit notes of returns move none."""
        if entity not in ("DeliveryNotes", "Returns", "CreditNotes"):
            return []
        stocked = [
            plan
            for plan in planned
            if self._items[plan.new.item].inventory
            and (entity != "CreditNotes" or _restocks(entity, plan.new))
        ]
        lines = [
            (plan.new.num + 1, self._items[plan.new.item], plan.new.warehouse, plan.posted)
            for plan in stocked
        ]
        moves = model.line_moves(-1 if entity == "DeliveryNotes" else 1, table, lines, self._book)
        batches: defaultdict[tuple[int, str], Decimal] = defaultdict(Decimal)
        serials: set[tuple[int, str]] = set()
        for plan, move in zip(stocked, moves, strict=True):
            base, row = plan.base, plan.new.num + 1
            plan.new.batches, plan.new.serials = move.batches, move.serials
            if entity != "Returns":
                continue
            for batch, quantity in move.batches.items():
                batches[id(base), batch] += quantity
                issued = base.batches.get(batch, Decimal(0)) - base.returned_batches[batch]
                if batches[id(base), batch] > issued:
                    raise rejected(model.NO_BATCH.format(number=batch, row=row))
            for number in move.serials:
                again = (id(base), number) in serials
                if number not in base.serials or number in base.returned_serials or again:
                    raise rejected(model.NO_BATCH.format(number=number, row=row))
                serials.add((id(base), number))
        return moves

    # --- shared checks ---

    def _customer(self, body: dict[str, Any], head: str) -> Customer:
        code = body.get("CardCode")
        if not code:
            raise self._refusal("no_customer", head=head)
        customer = self.customers.get(str(code))
        if customer is None:
            raise self._refusal("unknown_customer", card=code, head=head)
        if customer.frozen:
            raise self._refusal("inactive_customer", card=code, head=head)
        return customer

    def _header(self, body: dict[str, Any]) -> dict[str, Any]:
        header = {name: body.get(name) for name in HEADER_FIELDS - {"DocumentLines", "CardCode"}}
        today = date.today().isoformat()
        for name in ("DocDate", "DocDueDate", "TaxDate"):
            value = header[name]
            if value is None:
                continue
            try:
                date.fromisoformat(str(value)[:10])
            except ValueError:
                raise self._refusal("bad_date", value=value, name=name) from None
            header[name] = str(value)[:10]
        header["DocDate"] = header["DocDate"] or today
        header["DocDueDate"] = header["DocDueDate"] or header["DocDate"]
        header["TaxDate"] = header["TaxDate"] or header["DocDate"]
        return header | {name: value for name, value in body.items() if name.startswith("U_")}

    def _quantity(self, line: dict[str, Any], table: str, row: int) -> Decimal:
        quantity = decimal(line.get("Quantity", 0))
        if quantity <= 0:
            raise self._refusal("bad_quantity", table=table, row=row)
        return quantity

    def _warehouse(self, code: Any, table: str, row: int) -> str:
        if code is None and self._warehouses:
            return next(iter(self._warehouses))
        warehouse = self._warehouses.get(str(code))
        if warehouse is None or warehouse.inactive:
            raise self._refusal("unknown_warehouse", warehouse=code, table=table, row=row)
        return warehouse.code

    def _terms(
        self, line: dict[str, Any], table: str, row: int, base: SalesLine | None
    ) -> tuple[Decimal, Decimal, str | None, str | None, dict[str, Any]]:
        """A line's (unit price, discount percent, tax code, free text, UDFs), checked; what
        it does not give comes from its base line."""
        where = {"table": table, "row": row}
        default = base or SalesLine(0, "", Decimal(1), "", Decimal(0), Decimal(0), None, None, {})
        price = decimal(line.get("UnitPrice", default.unit_price))
        if price < 0:
            raise self._refusal("bad_price", **where)
        discount = decimal(line.get("DiscountPercent", default.discount))
        if not 0 <= discount <= 100:
            raise self._refusal("bad_discount", **where)
        tax = line.get("TaxCode", default.tax_code)
        if tax is not None and str(tax) not in self.tax_codes:
            raise self._refusal("unknown_tax_code", tax=tax, **where)
        text = line.get("FreeText", default.free_text)
        if text is not None and len(str(text)) > FREE_TEXT_MAX:
            raise rejected(MESSAGES["free_text"].format(name="FreeText"), -1000)
        udf = dict(default.udf) | {k: v for k, v in line.items() if k.startswith("U_")}
        return price, discount, None if tax is None else str(tax), text, udf

    def _refusal(self, key: str, **values: Any) -> SLError:
        return refusal(self._rules, key, **values)

    def _get(self, entity: str, entry: int) -> SalesDoc:
        doc = self._docs[entity].get(entry)
        if doc is None:
            raise KeyError(f"no {entity}({entry})")
        return doc

    # --- records and their JSON ---

    def _add(self, doc: SalesDoc) -> model.SimDocument:
        entity = doc.entity
        doc.entry = self._next[entity]
        self._next[entity] += 1
        self._docs[entity][doc.entry] = doc
        for name in ("NumAtCard", "JournalMemo"):
            value = doc.header.get(name)
            if isinstance(value, str):
                self._index[(entity, name, value)].append(doc)
        self._by_card[doc.card].append(doc)
        record = model.SimDocument(ENTITIES[entity], entity, doc.entry, doc.entry, self._json(doc))
        self._documents.append(record)
        return record

    def _total(self, doc: SalesDoc) -> Decimal:
        return total(doc, self.tax_codes)

    def _balances(self, card: str) -> tuple[Decimal, Decimal, Decimal]:
        return balances(self._by_card.get(card, []), self.tax_codes)

    def _customer_json(self, customer: Customer) -> dict[str, Any]:
        return customer_json(customer, self._balances(customer.code))

    def _json(self, doc: SalesDoc) -> dict[str, Any]:
        customer = self.customers.get(doc.card)
        return doc_json(
            doc,
            card_name=customer.name if customer else doc.card,
            confirmed=self.confirmed(doc),
            items=self._items,
            rates=self.tax_codes,
        )


def _restocks(entity: str, line: SalesLine) -> bool:
    """A credit note line based on an invoice line takes its goods back into stock."""
    return entity == "CreditNotes" and line.base is not None and line.base[0] == 13
