"""Seko's rules for what skuflow sends, checked before anything is sent (pure: no I/O).

iHub refuses a whole upload on its first error [DOC], so an order with one bad SKU would bounce
every time; the flow checks here first and raises an exception naming the item and the rule.
Each :class:`Violation` has a ``rule`` (the exception kind's detail, listed in :data:`RULES`).

Product codes (:class:`ProductCodeRules`): at most ``max_length`` characters (100 [OBS v4
client]; one manual page shows 200), none of ``forbidden`` (``"`` breaks iHub's JSON [DOC];
``|`` its CSV/FTP flows [OBS: the v1 client strips it]; ``,`` separates the codes of a stock
query, so such a code cannot be read back), no control characters or surrounding whitespace
[UNCONF], optionally ASCII only (nvarchar is accepted [DOC], carriers want ASCII). Codes are
not case sensitive at Seko [DOC]: two SKUs differing only in case are one product there.

Orders: a number (at most 50 [DOC], no ``"``; none of ``/ ? # % \\`` as it is a path segment of
the cancellation URL [UNCONF]), a DC, at least one line, whole quantities above 0, one line per
product code [DOC], distinct line numbers; and tracking — the ERP item's batch and serial
management must match the Seko product's ``LotControlled``/``SerialNumberControlled`` (else
the lots and serials Seko reports cannot be booked, and traceability breaks), and a line that
asks for a lot needs a lot-controlled product.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from handlers.connectors.seko.protocol import SalesOrder

ORDER_NUMBER_MAX = 50  # [DOC]
PATH_UNSAFE = '/?#%\\"'

#: rule -> what it means (the README lists them as the exception's detail).
RULES = {
    "product_code.empty": "the product code is empty",
    "product_code.too_long": "the product code is longer than Seko accepts",
    "product_code.character": "the product code holds a character Seko refuses",
    "product_code.whitespace": "the product code starts or ends with whitespace",
    "product_code.non_ascii": "the product code is not ASCII (product_rules.ascii_only)",
    "order.number": "the order number is empty, too long or holds a refused character",
    "order.facility": "the order has no Seko DC",
    "order.no_lines": "the order has no lines",
    "order.duplicate_product": "two lines have the same product code (Seko: one line each)",
    "order.duplicate_line": "two lines have the same line number",
    "order.quantity": "a line's quantity is not a whole number above 0",
    "product.unknown": "the product is not loaded at Seko",
    "tracking.batches": "the ERP manages batches for the item and Seko does not, or the reverse",
    "tracking.serials": "the ERP manages serials for the item and Seko does not, or the reverse",
    "tracking.lot_requested": "a line asks for a lot of a product Seko does not lot-control",
}


class ProductCodeRules(msgspec.Struct, frozen=True, kw_only=True):
    max_length: int = 100
    forbidden: str = '"|,'
    ascii_only: bool = False


class Violation(msgspec.Struct, frozen=True):
    item: str  # the product code, or the order number for order-level rules
    rule: str  # a key of RULES
    detail: str


class SekoTracking(msgspec.Struct, frozen=True, kw_only=True):
    """A product's tracking flags as loaded at Seko (its ProductMaster)."""

    lot_controlled: bool = False
    serial_controlled: bool = False


class ItemTracking(msgspec.Struct, frozen=True, kw_only=True):
    """What the ERP item master needs: batches and/or serial numbers."""

    batches: bool = False
    serials: bool = False


DEFAULT_RULES = ProductCodeRules()


def product_code_violations(code: str, rules: ProductCodeRules = DEFAULT_RULES) -> list[Violation]:
    """Every rule ``code`` breaks (none: Seko will take it)."""
    found: list[Violation] = []

    def broken(rule: str, detail: str) -> None:
        found.append(Violation(code, rule, detail))

    if not code:
        broken("product_code.empty", RULES["product_code.empty"])
        return found
    if len(code) > rules.max_length:
        broken("product_code.too_long", f"{len(code)} characters, at most {rules.max_length}")
    bad = sorted({c for c in code if c in rules.forbidden or not c.isprintable()})
    if bad:
        broken("product_code.character", "refused: " + " ".join(repr(c) for c in bad))
    if code != code.strip():
        broken("product_code.whitespace", RULES["product_code.whitespace"])
    if rules.ascii_only and not code.isascii():
        broken("product_code.non_ascii", RULES["product_code.non_ascii"])
    return found


def order_violations(
    order: SalesOrder,
    *,
    rules: ProductCodeRules = DEFAULT_RULES,
    products: Mapping[str, SekoTracking] | None = None,
    items: Mapping[str, ItemTracking] | None = None,
) -> list[Violation]:
    """Every rule ``order`` breaks. ``products``: Seko's products by code (any case) — when
    given, a product missing from it is ``product.unknown``; ``items``: the ERP's tracking by
    product code; both together check the tracking flags line by line."""
    found: list[Violation] = []
    number = order.number
    if (
        not number
        or len(number) > ORDER_NUMBER_MAX
        or any(c in PATH_UNSAFE or not c.isprintable() for c in number)
        or number != number.strip()
    ):
        detail = f"at most {ORDER_NUMBER_MAX} printable characters, none of {PATH_UNSAFE}"
        found.append(Violation(number, "order.number", detail))
    if not order.dc.strip():
        found.append(Violation(number, "order.facility", RULES["order.facility"]))
    if not order.lines:
        found.append(Violation(number, "order.no_lines", RULES["order.no_lines"]))
    seen_codes: set[str] = set()
    seen_numbers: set[int] = set()
    known = {code.upper(): flags for code, flags in (products or {}).items()}
    needs = {code.upper(): flags for code, flags in (items or {}).items()}
    for line in order.lines:
        code, key = line.product_code, line.product_code.upper()
        found += product_code_violations(code, rules)
        if key in seen_codes:
            found.append(
                Violation(code, "order.duplicate_product", RULES["order.duplicate_product"])
            )
        if line.line_number in seen_numbers:
            detail = f"line number {line.line_number} twice"
            found.append(Violation(code, "order.duplicate_line", detail))
        seen_codes.add(key)
        seen_numbers.add(line.line_number)
        if line.quantity <= 0:
            found.append(Violation(code, "order.quantity", f"quantity {line.quantity}"))
        found += _tracking_violations(code, line.lot_no, known, needs, listed=products is not None)
    return found


def _tracking_violations(
    code: str,
    lot_no: str | None,
    known: Mapping[str, SekoTracking],
    needs: Mapping[str, ItemTracking],
    *,
    listed: bool,
) -> list[Violation]:
    seko = known.get(code.upper())
    if seko is None:
        return [Violation(code, "product.unknown", RULES["product.unknown"])] if listed else []
    found = []
    erp = needs.get(code.upper())
    if erp is not None:
        if erp.batches != seko.lot_controlled:
            detail = _mismatch("batches", erp.batches, "LotControlled", seko.lot_controlled)
            found.append(Violation(code, "tracking.batches", detail))
        if erp.serials != seko.serial_controlled:
            detail = _mismatch(
                "serial numbers", erp.serials, "SerialNumberControlled", seko.serial_controlled
            )
            found.append(Violation(code, "tracking.serials", detail))
    if lot_no and not seko.lot_controlled:
        found.append(Violation(code, "tracking.lot_requested", f"lot {lot_no} requested"))
    return found


def _mismatch(erp_name: str, erp: bool, seko_name: str, seko: bool) -> str:
    managed = "manages" if erp else "does not manage"
    return f"the ERP {managed} {erp_name}; Seko's {seko_name} is {str(seko).lower()}"
