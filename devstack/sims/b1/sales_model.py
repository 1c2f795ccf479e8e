"""The records of the simulator's sales side (:mod:`devstack.sims.b1.sales`): customers,
documents and their lines, the company's sales knobs (:class:`SalesRules`) and refusal texts
(:data:`MESSAGES`), and the JSON Service Layer answers for them (totals, balances)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import msgspec

from devstack.sims.b1 import model
from devstack.sims.b1.model import Item, SLError, rejected, yes_no

SalesKind = Literal["order", "draft", "delivery", "invoice", "return", "credit_note"]
ENTITIES: dict[str, SalesKind] = {
    "Orders": "order",
    "Drafts": "draft",
    "DeliveryNotes": "delivery",
    "Invoices": "invoice",
    "Returns": "return",
    "CreditNotes": "credit_note",
}
POSTABLE = ("Orders", "DeliveryNotes", "Invoices", "Returns", "CreditNotes")
#: The DocObjectCode (BoObjectTypes name) of each document entity.
OBJECT_CODES = {"Orders": "oOrders", "DeliveryNotes": "oDeliveryNotes", "Invoices": "oInvoices"}
OBJECT_CODES |= {"Returns": "oReturns", "CreditNotes": "oCreditNotes"}
#: Header and line tables, as B1's error texts name them.
TABLES = {"Orders": ("ORDR", "RDR1"), "Drafts": ("ODRF", "DRF1")}
TABLES |= {"DeliveryNotes": ("ODLN", "DLN1"), "Invoices": ("OINV", "INV1")}
TABLES |= {"Returns": ("ORDN", "RDN1"), "CreditNotes": ("ORIN", "RIN1")}
#: What each document is based on: (entity, BaseType).
#: The documents each entity may be based on, by ``BaseType``. A credit note based on an invoice
#: is B1's way back for goods already invoiced (their delivery is closed): it takes the goods
#: back into stock and credits them in one document.
BASES: dict[str, dict[int, str]] = {
    "DeliveryNotes": {17: "Orders"}, "Invoices": {15: "DeliveryNotes"},
    "Returns": {15: "DeliveryNotes"}, "CreditNotes": {16: "Returns", 13: "Invoices"},
}  # fmt: skip
#: B1's JournalMemo when none is given ("Deliveries - C001" as the B1 client writes it).
DEFAULT_MEMO = {"Orders": "Sales Orders", "DeliveryNotes": "Deliveries", "Invoices": "A/R Invoices"}
DEFAULT_MEMO |= {"Returns": "Returns", "CreditNotes": "A/R Credit Memos"}

HEADER_FIELDS = frozenset({"CardCode", "NumAtCard", "DocDate", "DocDueDate", "TaxDate"})
HEADER_FIELDS |= {"DocCurrency", "Comments", "JournalMemo", "Reference2", "DocumentLines"}
LENGTHS = {**model.FIELD_LENGTHS, "NumAtCard": 100}
ORDER_LINE_FIELDS = frozenset({"LineNum", "ItemCode", "Quantity", "UnitPrice", "DiscountPercent"})
ORDER_LINE_FIELDS |= {"TaxCode", "WarehouseCode", "FreeText"}
BASED_LINE_FIELDS = ORDER_LINE_FIELDS | {"BaseType", "BaseEntry", "BaseLine", "BatchNumbers"}
BASED_LINE_FIELDS |= {"SerialNumbers"}
FREE_TEXT_MAX = 100  # RDR1.FreeTxt
CENT = Decimal("0.01")
PRICE = Decimal("0.000001")

#: The texts of the refusals, by key; ``SalesRules.messages`` replaces any of them. All are
#: [UNCONF] (modelled on B1's style: text, then ``[TABLE.Field][line: row]``) except the
#: item's "is inactive" (10001069, verified), whose locator is ours.
MESSAGES = {
    "no_customer": "Enter a business partner code  [{head}.CardCode]",
    "unknown_customer": "Invalid BP code '{card}'  [{head}.CardCode]",
    "inactive_customer": "Business partner '{card}' is inactive  [{head}.CardCode]",
    "credit_limit": "Customer {card} has exceeded the credit limit  [{head}.CardCode]",
    "bad_date": "Invalid date value '{value}' in property '{name}'",
    "unknown_item": "Invalid item code '{item}'  [{table}.ItemCode][line: {row}]",
    "inactive_item": model.INACTIVE + "  [{table}.ItemCode][line: {row}]",
    "bad_quantity": "Quantity must be positive  [{table}.Quantity][line: {row}]",
    "unknown_warehouse": "Invalid warehouse code '{warehouse}'  [{table}.WhsCode][line: {row}]",
    "unknown_tax_code": "Invalid tax code '{tax}'  [{table}.TaxCode][line: {row}]",
    "bad_price": "Price must not be negative  [{table}.Price][line: {row}]",
    "bad_discount": "Discount must be between 0 and 100  [{table}.DiscPrcnt][line: {row}]",
    "free_text": model.TOO_LONG.replace("{entity}", "DocumentLine"),
    "base_type": "Document can be based on {base} (BaseType {type}) only  "
    "[{table}.BaseType][line: {row}]",
    "base_missing": "Base document does not exist  [{table}.BaseEntry][line: {row}]",
    "card_mismatch": "Base document card and target document card do not match  "
    "[{table}.BaseEntry][line: {row}]",
    "base_closed": "Base document is closed or cancelled  [{table}.BaseEntry][line: {row}]",
    "base_line_missing": "Base document line does not exist  [{table}.BaseLine][line: {row}]",
    "base_line_closed": "Base document line is closed  [{table}.BaseLine][line: {row}]",
    "not_approved": "Base document is not approved  [{table}.BaseEntry][line: {row}]",
    "item_mismatch": "Item {item} differs from the base document line's  "
    "[{table}.ItemCode][line: {row}]",
    "over_open": "Quantity exceeds the open quantity of the base document line  "
    "[{table}.Quantity][line: {row}]",
    "over_returnable": "Quantity exceeds the quantity delivered and not yet returned  "
    "[{table}.Quantity][line: {row}]",
    "cancel_copied": "Cannot cancel the document: it has been copied to a target document",
    "already_closed": "Document is already closed or cancelled",
    "draft_pending": "Document is pending approval",
    "draft_rejected": "Document was rejected in the approval process",
}


class SalesRules(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The company's sales settings, as knobs (see the module docstring)."""

    approval_above_amount: Decimal | None = None  # an order's DocTotal above it → a draft
    approval_on_credit_hold: bool = False  # an order of a customer on credit hold → a draft
    over_credit_limit: Literal["allow", "draft", "refuse"] = "allow"
    credit_hold_unconfirms: bool = True  # a credit hold reads as Confirmed tNO on its orders
    deliver_unconfirmed: bool = False  # deliveries of an order reading Confirmed tNO pass
    allow_over_delivery: bool = False  # deliveries above the open quantity pass
    return_from_closed_delivery: bool = False  # returns based on a closed delivery pass
    draft_answer_status: int = 400  # the HTTP status of the -2028 answer for a draft
    messages: dict[str, str] = {}

    def __post_init__(self) -> None:
        unknown = set(self.messages) - set(MESSAGES)
        if unknown:
            raise ValueError(f"unknown message keys {sorted(unknown)}")


@dataclass
class Customer:
    code: str
    name: str
    credit_limit: Decimal = Decimal(0)
    frozen: bool = False
    credit_hold: bool = False
    approval: bool = False  # every order of this customer needs approval
    approval_above: Decimal | None = None  # its orders above this DocTotal need approval


@dataclass
class SalesLine:
    num: int
    item: str
    quantity: Decimal
    warehouse: str
    unit_price: Decimal
    discount: Decimal  # percent
    tax_code: str | None
    free_text: str | None
    udf: dict[str, Any]
    base: tuple[int, int, int] | None = None  # (BaseType, BaseEntry, BaseLine)
    batches: dict[str, Decimal] = field(default_factory=dict)
    serials: list[str] = field(default_factory=list)
    open: Decimal = field(init=False)  # RemainingOpenQuantity: the quantity, at first
    closed: bool = False
    returned: Decimal = Decimal(0)  # a delivery line: taken back by returns
    returned_batches: defaultdict[str, Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )
    returned_serials: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.open = self.quantity

    @property
    def price(self) -> Decimal:
        return (self.unit_price * (1 - self.discount / 100)).quantize(PRICE).normalize()

    @property
    def total(self) -> Decimal:
        return (self.quantity * self.price).quantize(CENT)

    def take(self, quantity: Decimal) -> None:
        """``quantity`` of this line copied to a target document: less is open."""
        self.open = max(Decimal(0), self.open - quantity)
        self.closed = self.closed or self.open == 0


@dataclass
class SalesDoc:
    entity: str  # where it lives: Orders, Drafts, DeliveryNotes, ...
    object_code: str  # what it is (a draft: oOrders)
    card: str
    lines: list[SalesLine]
    header: dict[str, Any]  # NumAtCard, dates, Comments, JournalMemo, Reference2, U_*
    entry: int = 0
    closed: bool = False
    cancelled: bool = False
    confirmed: bool = True
    authorization: str = "dasWithout"

    @property
    def is_open(self) -> bool:
        return not (self.closed or self.cancelled)

    def close_if_done(self) -> None:
        if all(line.closed for line in self.lines):
            self.closed = True


class Fields(dict[str, Any]):
    """Format values; a placeholder not given stays as it is."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def refusal(rules: SalesRules, key: str, **values: Any) -> SLError:
    """The -10 refusal ``key`` (:data:`MESSAGES`, or the text ``rules`` replaces it with)."""
    text = rules.messages.get(key) or MESSAGES[key]
    return rejected(text.format_map(Fields(values)))


def vat(doc: SalesDoc, rates: dict[str, Decimal]) -> Decimal:
    """``VatSum``: each line's total at its tax code's rate."""
    tax = sum(
        (line.total * rates.get(line.tax_code or "", Decimal(0)) / 100 for line in doc.lines),
        Decimal(0),
    )
    return tax.quantize(CENT)


def total(doc: SalesDoc, rates: dict[str, Decimal]) -> Decimal:
    """``DocTotal``: the lines' totals and the VAT."""
    return sum((line.total for line in doc.lines), Decimal(0)) + vat(doc, rates)


def balances(
    docs: Iterable[SalesDoc], rates: dict[str, Decimal]
) -> tuple[Decimal, Decimal, Decimal]:
    """A customer's (CurrentAccountBalance, OpenDeliveryNotesBalance, OpenOrdersBalance) from
    its documents: invoices less credit notes; the net open amounts of open deliveries and
    orders."""
    account, deliveries, orders = Decimal(0), Decimal(0), Decimal(0)
    for doc in docs:
        if doc.cancelled:
            continue
        if doc.entity == "Invoices":
            account += total(doc, rates)
        elif doc.entity == "CreditNotes":
            account -= total(doc, rates)
        elif doc.entity in ("DeliveryNotes", "Orders") and not doc.closed:
            lines = doc.lines
            open_amount = sum(((ln.open * ln.price).quantize(CENT) for ln in lines), Decimal(0))
            if doc.entity == "Orders":
                orders += open_amount
            else:
                deliveries += open_amount
    return account, deliveries, orders


def customer_json(customer: Customer, balance: tuple[Decimal, Decimal, Decimal]) -> dict[str, Any]:
    account, deliveries, orders = balance
    return {
        "CardCode": customer.code,
        "CardName": customer.name,
        "CardType": "cCustomer",
        "CreditLimit": customer.credit_limit,
        "CurrentAccountBalance": account,
        "OpenDeliveryNotesBalance": deliveries,
        "OpenOrdersBalance": orders,
        "Frozen": yes_no(customer.frozen),
        "Valid": yes_no(not customer.frozen),
        "U_CreditHold": "Y" if customer.credit_hold else "N",
    }


def doc_json(
    doc: SalesDoc,
    *,
    card_name: str,
    confirmed: bool,
    items: dict[str, Item],
    rates: dict[str, Decimal],
) -> dict[str, Any]:
    """A document as Service Layer answers it; ``confirmed``: ``Confirmed`` as it reads."""
    header = doc.header
    kind = "Orders" if doc.entity == "Drafts" else doc.entity  # drafts are of orders
    memo = header.get("JournalMemo") or f"{DEFAULT_MEMO[kind]} - {doc.card}"
    return {
        "DocEntry": doc.entry,
        "DocNum": doc.entry,
        "DocType": "dDocument_Items",
        "DocObjectCode": doc.object_code,
        "DocDate": header["DocDate"],
        "DocDueDate": header["DocDueDate"],
        "TaxDate": header["TaxDate"],
        "CardCode": doc.card,
        "CardName": card_name,
        "NumAtCard": header.get("NumAtCard"),
        "DocCurrency": header.get("DocCurrency"),
        "DocTotal": total(doc, rates),
        "VatSum": vat(doc, rates),
        "Comments": header.get("Comments"),
        "JournalMemo": memo[: model.FIELD_LENGTHS["JournalMemo"]],
        "Reference1": str(doc.entry),
        "Reference2": header.get("Reference2"),
        "DocumentStatus": "bost_Open" if doc.is_open else "bost_Close",
        "Cancelled": yes_no(doc.cancelled),
        "Confirmed": yes_no(confirmed),
        "AuthorizationStatus": doc.authorization,
        **{name: value for name, value in header.items() if name.startswith("U_")},
        "DocumentLines": [line_json(line, items.get(line.item)) for line in doc.lines],
    }


def line_json(line: SalesLine, item: Item | None) -> dict[str, Any]:
    base_type, base_entry, base_line = line.base or (-1, None, None)
    return {
        "LineNum": line.num,
        "ItemCode": line.item,
        "ItemDescription": item.name if item else line.item,
        "Quantity": line.quantity,
        "UnitPrice": line.unit_price,
        "Price": line.price,
        "DiscountPercent": line.discount,
        "LineTotal": line.total,
        "TaxCode": line.tax_code,
        "WarehouseCode": line.warehouse,
        "FreeText": line.free_text,
        "LineStatus": "bost_Close" if line.closed else "bost_Open",
        "RemainingOpenQuantity": line.open,
        "OpenAmount": (line.open * line.price).quantize(CENT),
        "BaseType": base_type,
        "BaseEntry": base_entry,
        "BaseLine": base_line,
        "BatchNumbers": [{"BatchNumber": b, "Quantity": q} for b, q in line.batches.items()],
        "SerialNumbers": [{"InternalSerialNumber": s, "Quantity": 1} for s in line.serials],
        **line.udf,
    }


def integer(value: Any) -> int | None:
    """An integer property sent as a number or a numeric string (B1 takes both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (str, Decimal)):
        try:
            number = Decimal(value)
        except ArithmeticError:
            return None
        return int(number) if number.is_finite() and number == number.to_integral_value() else None
    return None


def keys(where: model.Filter, name: str) -> set[str] | None:
    """The values of ``name eq '...'`` that every alternative of ``where`` names, or None when
    one names none (a scan is needed)."""
    keys: set[str] = set()
    for clauses in where:
        values = [v for n, v in clauses if n == name and isinstance(v, str)]
        if not values:
            return None
        keys.add(values[0])
    return keys
