"""The ERP under test of the order-to-cash stories: SAP Business One or SAP ECC seeded with items,
locations and customers, configured through the real wiring (``erp.kind``), with each story's
ERP-side actions and checks in neutral words. It builds on the stock stories' ERP
(:mod:`tests.support.erps`: the simulator, its start and stop, ``erp.kind`` and the ERP's
settings section, items and their stock per location) and adds the sales documents:

======================  ===================================  ==================================
neutral                 SAP Business One                     SAP ECC
======================  ===================================  ==================================
hold a customer's new   the customer on credit hold          a credit limit of 0: new orders
orders / release them   (``Confirmed`` reads ``tNO``)        credit blocked (VBUK-CMGST B);
                                                             released as VKM3 does (CMGST D)
put a released order    its "Approved" checkbox cleared      delivery block 01 (VBAK-LIFSK)
on hold / lift it       (``not approved``)                   (``delivery block 01``)
require approval /      an approval procedure above an       every new order starts with
approve one             amount: a draft, ``approve_draft``   delivery block 01, lifted by hand
                                                             (no amount: the nearest ECC has)
the ERP orders of a     ``Orders`` by ``NumAtCard``          VBAK by the customer PO number
marketplace order id
cancelled / closed      ``Cancelled`` / ``DocumentStatus``   every item rejected (ABGRU) /
                                                             VBUK-GBSTK C
deliveries, invoices,   ``DeliveryNotes``, ``Invoices``,     deliveries (LIKP J), invoices
credits                 ``CreditNotes``                      (VBRK M), credit memos (VBRK O)
returned goods          restocked into the warehouse: its    the return movement type: 651 into
                        stock                                blocked returns stock (MARD-RETME),
                                                             653 into unrestricted stock
======================  ===================================  ==================================

The locations are the IMS's; each maps to a B1 warehouse (``01``, ``02``, ...) or an ECC storage
location of plant 1000 (``1000/0001``, ...), the damaged-goods location among them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from config.settings import Settings
from devstack.sims.ecc.sales import CREDIT_MEMO, DELIVERY, INVOICE, SalesOrder
from handlers.connectors.ecc.idoc import material_number
from handlers.connectors.ecc.orders import customer_number
from tests.support.erps import (
    ECC_PARTNER,
    ECC_PORT,
    B1UnderTest,
    EccUnderTest,
    ErpUnderTest,
)

#: The ECC simulator's IDoc job: an ORDERS IDoc stays in process (64) this long — the connector
#: follows it over several polls, a redelivery or a revision arrives while it is in flight —
#: and the job runs this often. Enough to be asynchronous, short enough for a story's time.
ECC_PROCESSING_DELAY_MS, ECC_TICK_MS = 250, 10
#: How long a sales order follows its ORDERS IDoc before it is ambiguous
#: (``ecc.sales_order_wait_seconds``): far above the delay, so no story times out on it.
ECC_ORDER_WAIT_SECONDS = 10.0
#: The sales area (VKORG/VTWEG/SPART) ORDERS05 names and the customers are maintained in.
ECC_SALES_AREA = ("1000", "10", "00")


@dataclass(frozen=True)
class ErpOrder:
    """An ERP sales order as a story checks it; ``number`` as ``order.released`` names it."""

    number: str
    cancelled: bool
    closed: bool


class OrderErp(ABC):
    """One ERP simulator seeded for an order story (see the module)."""

    kind: ClassVar[str]
    #: The hold of a released order put on hold (:meth:`put_on_hold`).
    order_hold: ClassVar[str]
    #: The hold of a new order of a customer whose orders are held (:meth:`hold_new_orders`).
    customer_hold: ClassVar[str]
    #: The hold of an order awaiting approval (:meth:`require_approval`).
    approval_hold: ClassVar[str]
    #: A return of invoiced goods credits them itself (B1: a credit note based on the
    #: invoice); otherwise a credit note follows the return.
    return_credits: ClassVar[bool]

    def __init__(
        self,
        base: ErpUnderTest,
        items: Mapping[str, Mapping[str, int]],
        customers: Iterable[str],
    ) -> None:
        self.base = base
        self.warehouses = base.warehouses
        for item, stock in items.items():
            base.add_item(item, stock)
        for customer in customers:
            self._add_customer(customer)

    async def start(self) -> None:
        await self.base.start()

    async def stop(self) -> None:
        await self.base.stop()

    def configure(self, settings: Settings, *, timeout: float) -> Settings:
        """``settings`` with ``erp.kind``, the ERP's section and the warehouse mapping."""
        return self.base.configure(settings, timeout=timeout)

    @abstractmethod
    def _add_customer(self, code: str) -> None: ...

    # --- holds ---

    @abstractmethod
    def hold_new_orders(self, customer: str) -> None:
        """The ERP holds every new order of ``customer`` (a credit hold)."""

    @abstractmethod
    def release_orders(self, customer: str) -> None:
        """The hold on ``customer``'s orders is lifted, for its orders held so far too."""

    @abstractmethod
    def put_on_hold(self, order_id: str) -> None:
        """Someone in the ERP stops the order of ``order_id`` from being picked."""

    @abstractmethod
    def lift_hold(self, order_id: str) -> None: ...

    @abstractmethod
    def refuse_orders(self, customer: str) -> None:
        """The ERP refuses the customer's new orders (a business refusal, not a hold)."""

    @abstractmethod
    def accept_orders(self, customer: str) -> None: ...

    @abstractmethod
    def require_approval(self, above: Decimal) -> None:
        """New orders worth more than ``above`` wait for an approval."""

    @abstractmethod
    def awaiting_approval(self, order_id: str) -> int:
        """How many ERP documents of ``order_id`` wait for an approval."""

    @abstractmethod
    def approve(self, order_id: str) -> None: ...

    # --- documents ---

    @abstractmethod
    def orders(self, order_id: str) -> list[ErpOrder]:
        """The ERP's sales orders of the marketplace order ``order_id``."""

    @abstractmethod
    def deliveries(self) -> list[list[tuple[str, Decimal]]]:
        """Every delivery the ERP holds, as its (item, quantity) lines."""

    @abstractmethod
    def invoices(self) -> int: ...

    @abstractmethod
    def credits(self) -> int:
        """Documents crediting returned goods (B1 credit notes, ECC credit memos)."""

    # --- stock ---

    def stock(self, item: str, location: str) -> Decimal:
        """Unrestricted stock: what can be picked."""
        return self.base.stock(item, location)

    @abstractmethod
    def blocked_returns(self, item: str, location: str) -> Decimal:
        """Returned goods at ``location`` not yet unrestricted (B1 has none)."""

    @property
    @abstractmethod
    def returns_unrestricted(self) -> bool:
        """Returned goods come back as unrestricted stock (else as blocked returns stock)."""


class B1OrderErp(OrderErp):
    kind = "b1"
    order_hold = "not approved"
    customer_hold = "not approved"  # a credit hold reads as Confirmed tNO (the simulator's model)
    approval_hold = "not approved (draft awaiting approval)"
    return_credits = True

    def __init__(
        self,
        locations: Iterable[str],
        items: Mapping[str, Mapping[str, int]],
        customers: Iterable[str],
    ) -> None:
        self.b1 = B1UnderTest(locations)
        self.sales = self.b1.sim.sales
        super().__init__(self.b1, items, customers)

    def _add_customer(self, code: str) -> None:
        self.sales.add_customer(code)

    def refuse_orders(self, customer: str) -> None:
        self.sales.update_customer(customer, frozen=True)  # -10: an inactive business partner

    def accept_orders(self, customer: str) -> None:
        self.sales.update_customer(customer, frozen=False)

    def _rows(self, entity: str) -> list[dict[str, Any]]:
        return list(self.sales.rows(entity, [[]]))

    def _order_rows(self, order_id: str) -> list[dict[str, Any]]:
        return [doc for doc in self._rows("Orders") if doc.get("NumAtCard") == order_id]

    def hold_new_orders(self, customer: str) -> None:
        self.sales.set_credit_hold(customer)

    def release_orders(self, customer: str) -> None:
        self.sales.set_credit_hold(customer, False)

    def put_on_hold(self, order_id: str) -> None:
        (order,) = self._order_rows(order_id)
        self.sales.set_confirmed(order["DocEntry"], False)

    def lift_hold(self, order_id: str) -> None:
        (order,) = self._order_rows(order_id)
        self.sales.set_confirmed(order["DocEntry"], True)

    def require_approval(self, above: Decimal) -> None:
        self.sales.set_rules(approval_above_amount=above)

    def _drafts(self, order_id: str) -> list[dict[str, Any]]:
        return [d for d in self._rows("Drafts") if d.get("NumAtCard") == order_id]

    def awaiting_approval(self, order_id: str) -> int:
        return sum(1 for d in self._drafts(order_id) if d["AuthorizationStatus"] == "dasPending")

    def approve(self, order_id: str) -> None:
        (draft,) = self._drafts(order_id)
        self.sales.approve_draft(draft["DocEntry"])

    def orders(self, order_id: str) -> list[ErpOrder]:
        return [
            ErpOrder(
                number=str(doc["DocNum"]),
                cancelled=doc["Cancelled"] == "tYES",
                closed=doc["DocumentStatus"] == "bost_Close",
            )
            for doc in self._order_rows(order_id)
        ]

    def deliveries(self) -> list[list[tuple[str, Decimal]]]:
        return [
            [(line["ItemCode"], Decimal(str(line["Quantity"]))) for line in doc["DocumentLines"]]
            for doc in self._rows("DeliveryNotes")
        ]

    def invoices(self) -> int:
        return len(self._rows("Invoices"))

    def credits(self) -> int:
        return len(self._rows("CreditNotes"))

    def blocked_returns(self, item: str, location: str) -> Decimal:
        return Decimal(0)

    @property
    def returns_unrestricted(self) -> bool:
        return True


class EccOrderErp(OrderErp):
    """ECC taking ORDERS IDocs asynchronously (each in process for a few polls) and making the
    other sales documents through the customer's wrapper function modules."""

    kind = "ecc"
    order_hold = "delivery block 01"
    customer_hold = "credit block"
    approval_hold = "delivery block 01"
    return_credits = False

    def __init__(
        self,
        locations: Iterable[str],
        items: Mapping[str, Mapping[str, int]],
        customers: Iterable[str],
        *,
        return_movement_type: str = "651",
    ) -> None:
        self.ecc = EccUnderTest(locations)
        self.sim = self.ecc.sim
        self.sales = self.sim.sales
        self.return_movement_type = return_movement_type
        self._away: dict[str, Any] = {}  # customers taken away by refuse_orders
        # The partner profile takes sales orders (ORDERS) beside goods movements.
        self.sim.add_partner(ECC_PARTNER, ECC_PORT, message_types=("MBGMCR", "ORDERS"))
        self.sim.set_processing(delay_ms=ECC_PROCESSING_DELAY_MS, tick_ms=ECC_TICK_MS)
        super().__init__(self.ecc, items, customers)

    def configure(self, settings: Settings, *, timeout: float) -> Settings:
        settings = super().configure(settings, timeout=timeout)
        sales_org, channel, division = ECC_SALES_AREA
        ecc = msgspec.structs.replace(
            settings.ecc, sales_org=sales_org, distribution_channel=channel, division=division,
            order_type="OR", sales_order_wait_seconds=ECC_ORDER_WAIT_SECONDS,
            return_movement_type=self.return_movement_type,
        )  # fmt: skip
        return msgspec.structs.replace(settings, ecc=ecc)

    def _add_customer(self, code: str) -> None:
        self.sales.add_customer(customer_number(code), sales_areas=("/".join(ECC_SALES_AREA),))

    def refuse_orders(self, customer: str) -> None:
        # the sold-to party unknown (not yet created in KNA1): ORDERS05 ends in 51
        self._away[customer] = self.sales.customers.pop(customer_number(customer))

    def accept_orders(self, customer: str) -> None:
        self.sales.customers[customer_number(customer)] = self._away.pop(customer)

    def _order(self, order_id: str) -> SalesOrder:
        (order,) = self.sales.orders_by_reference(order_id)
        return order

    def hold_new_orders(self, customer: str) -> None:
        self.sales.update_customer(customer_number(customer), credit_limit=0)

    def release_orders(self, customer: str) -> None:
        kunnr = customer_number(customer)
        self.sales.update_customer(kunnr, credit_limit=None)
        for order in list(self.sales.orders.values()):
            if order.kunnr == kunnr:
                self.sales.release_credit(order.vbeln)

    def put_on_hold(self, order_id: str) -> None:
        self.sales.set_delivery_block(self._order(order_id).vbeln, "01")

    def lift_hold(self, order_id: str) -> None:
        self.sales.set_delivery_block(self._order(order_id).vbeln, "")

    def require_approval(self, above: Decimal) -> None:
        """ECC has no approval of a sales order by its value: every new order starts with
        delivery block 01 until someone lifts it, the nearest equivalent (``above`` is not
        modelled)."""
        self.sales.set_rules(new_order_delivery_block="01")

    def awaiting_approval(self, order_id: str) -> int:
        return sum(1 for o in self.sales.orders_by_reference(order_id) if o.lifsk == "01")

    def approve(self, order_id: str) -> None:
        self.lift_hold(order_id)

    def orders(self, order_id: str) -> list[ErpOrder]:
        return [
            ErpOrder(
                number=order.vbeln.lstrip("0"),
                cancelled=all(item.rejected for item in order.items),
                closed=self.sales.header_status(order)["GBSTK"] == "C",
            )
            for order in self.sales.orders_by_reference(order_id)
        ]

    def deliveries(self) -> list[list[tuple[str, Decimal]]]:
        return [
            [(_item_code(item.matnr), item.lfimg) for item in delivery.items]
            for delivery in self.sales.deliveries.values()
            if delivery.vbtyp == DELIVERY
        ]

    def _billings(self, category: str) -> int:
        return sum(1 for billing in self.sales.billings.values() if billing.vbtyp == category)

    def invoices(self) -> int:
        return self._billings(INVOICE)

    def credits(self) -> int:
        return self._billings(CREDIT_MEMO)

    def blocked_returns(self, item: str, location: str) -> Decimal:
        plant, sloc = self.warehouses[location].split("/")
        return self.sim.book.returns.get((material_number(item)[1], plant, sloc), Decimal(0))

    @property
    def returns_unrestricted(self) -> bool:
        """651 receives into blocked returns stock, 653 into unrestricted stock."""
        return self.return_movement_type == "653"


def _item_code(matnr: str) -> str:
    """The ERP item code of a material (numeric ones without their leading zeros)."""
    return (matnr.lstrip("0") or "0") if matnr.isdigit() else matnr


def order_erp(
    kind: str,
    locations: Iterable[str],
    items: Mapping[str, Mapping[str, int]],
    customers: Iterable[str],
) -> OrderErp:
    """The ERP of ``kind`` (``b1``, ``ecc``, or ``ecc-653``: ECC receiving returns into
    unrestricted stock) seeded with ``items`` (stock per location) and ``customers``."""
    if kind == "b1":
        return B1OrderErp(locations, items, customers)
    if kind == "ecc":
        return EccOrderErp(locations, items, customers)
    if kind == "ecc-653":
        return EccOrderErp(locations, items, customers, return_movement_type="653")
    raise ValueError(f"no order ERP {kind!r}")
