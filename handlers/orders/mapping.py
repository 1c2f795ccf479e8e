"""A marketplace order → the ERP sales order to create, or every reason it cannot be.

Nothing goes to the ERP that it would refuse for a reason known up front: the marketplace
needs a default customer, every SKU an ERP item that is active and sold from stock, the
shipping location an ERP warehouse, every line's tax classification an ERP tax code. All the
problems of one order are named together in one exception record (``order_unmapped`` for a
mapping that is missing, ``unknown_sku`` / ``inactive_item`` / ``unknown_warehouse`` for the
ERP's master data), so one fix of the configuration or the master data and one retry are
enough; other orders are not affected.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from config.settings import OrdersSettings
from handlers.common.mappings import Mappings
from handlers.common.masterdata import MasterData
from handlers.orders.events import OrderReceived
from handlers.ports.erp import SalesLine, SalesOrder
from worker.outcomes import Reject

#: The tax_codes entry for lines without a tax classification.
ANY = "*"


class OrderMapper:
    def __init__(self, settings: OrdersSettings, mappings: Mappings, master: MasterData) -> None:
        self._settings = settings
        self._mappings = mappings
        self._master = master

    def location(self, event: OrderReceived) -> str | None:
        return event.warehouse or self._settings.default_warehouse or None

    async def sales_order(self, event: OrderReceived) -> SalesOrder | Reject:
        """The ERP order of ``event``; or a :class:`Reject` naming every problem found."""
        unmapped: list[str] = []
        master: list[tuple[str, str]] = []  # (kind, reason) from the ERP's master data
        customer = self._settings.customer_for(event.marketplace_id)
        if customer is None:
            unmapped.append(
                f"marketplace {event.marketplace_id!r} has no default customer "
                "([orders.default_customers])"
            )
        location = self.location(event)
        warehouse_code: str | None = None
        if location is None:
            unmapped.append("the order names no warehouse and [orders] default_warehouse is unset")
        else:
            warehouse_code = self._mappings.warehouse_code(location)
            if warehouse_code is None:
                unmapped.append(f"location {location!r} has no ERP warehouse")
            elif await self._master.warehouse(warehouse_code) is None:
                master.append(
                    ("unknown_warehouse", f"ERP warehouse {warehouse_code!r} does not exist")
                )
        lines: list[SalesLine] = []
        for line in event.lines:
            item_code = self._mappings.item_code(line.sku)
            tax_code = self._tax_code(line.tax_code)
            if tax_code is None:
                unmapped.append(
                    f"line {line.order_item_id}: tax classification {line.tax_code!r} has no "
                    "ERP tax code ([orders.tax_codes])"
                )
            if item_code is None:
                unmapped.append(
                    f"line {line.order_item_id}: SKU {line.sku!r} is not in the SKU map"
                )
                continue
            item = await self._master.item(item_code)
            if item is None:
                master.append(
                    ("unknown_sku", f"line {line.order_item_id}: item {item_code!r} not in the ERP")
                )
                continue
            if not item.valid or item.frozen:
                state = "frozen" if item.frozen else "inactive"
                master.append(
                    ("inactive_item", f"line {line.order_item_id}: item {item_code!r} is {state}")
                )
                continue
            unit_price = line.unit_price
            lines.append(
                SalesLine(
                    line_id=line.order_item_id,
                    item_code=item_code,
                    quantity=line.quantity,
                    warehouse_code=warehouse_code or "",
                    unit_price=unit_price,
                    discount=line.promotion_discount or Decimal(0),
                    tax_code=tax_code or None,
                )
            )
        if unmapped:
            return Reject("order_unmapped", f"order {event.order_id}: " + "; ".join(unmapped))
        if master:
            kind = master[0][0]
            reasons = "; ".join(reason for _, reason in master)
            return Reject(kind, f"order {event.order_id}: {reasons}")
        assert customer is not None
        purchased = event.purchased_at.astimezone(UTC).date()
        due = event.ship_by.astimezone(UTC).date() if event.ship_by else purchased
        return SalesOrder(
            reference=event.order_id,
            customer_code=customer,
            order_date=purchased,
            due_date=max(due, purchased),
            lines=tuple(lines),
            currency=event.currency,
            remarks=f"{event.channel} order {event.order_id} ({event.marketplace_id})",
        )

    def _tax_code(self, classification: str | None) -> str | None:
        """The ERP tax code of a line ("" when none is configured at all: the ERP's own
        default applies), or None when a classification is not mapped."""
        codes = self._settings.tax_codes
        if not codes:
            return ""
        if classification is None:
            return codes.get(ANY, "")
        return codes.get(classification)
