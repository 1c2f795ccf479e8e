"""The ERP's users in ``skuflow dev``: its customers, the credit department and the approvers.

Per ERP simulator: the customers the sample orders are sold to (one per marketplace, the
``[orders] default_customers`` of the dev stack), seeded by :func:`seed_b1_customers` /
:func:`seed_ecc_customers`, and a :class:`BackOffice` that puts a customer on credit hold and
lifts it, and approves an order that waits for approval — each through the simulator's own
hooks, as a clerk would in the ERP:

============  ==========================================  =====================================
              SAP Business One                            SAP ECC
============  ==========================================  =====================================
credit hold   the customer's ``U_CreditHold`` (its orders  the customer's credit limit cut to
              read ``Confirmed`` tNO: ``credit block``)    nothing: new orders credit-blocked
                                                          (VBUK-CMGST B); open ones blocked too
lifted        ``U_CreditHold`` off                        limit removed, blocked orders
                                                          released (CMGST D, as VKM3)
approval      Amazon.de orders above 50 (DocTotal)        every Amazon.de order starts with the
              become drafts; approved and saved as an     customer's delivery block 01; the
              order                                       approver removes it (VBAK-LIFSK)
============  ==========================================  =====================================
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal, Protocol

from devstack.sims.b1.server import B1Simulator
from devstack.sims.ecc.server import EccSimulator
from handlers.ports.erp import SalesDeliveries, SalesOrders

__all__ = [
    "APPROVAL_ABOVE",
    "APPROVAL_MARKETPLACE",
    "B1_CUSTOMERS",
    "ECC_CUSTOMERS",
    "HOLD_MARKETPLACES",
    "Approval",
    "B1BackOffice",
    "BackOffice",
    "EccBackOffice",
    "ecc_sales_missing",
    "seed_b1_customers",
    "seed_ecc_customers",
]

UK, DE, FR, IT = "A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH", "APJ6JRA9NG5V4"
#: What the ECC order traffic needs of the SAP ECC simulator's sales book.
_ECC_HOOKS = (
    "add_customer", "update_customer", "orders_by_reference", "set_credit_block",
    "release_credit", "set_delivery_block",
)  # fmt: skip
#: The customer of each marketplace's buyers ("*": any other marketplace).
B1_CUSTOMERS = {UK: "C-AMZ-UK", DE: "C-AMZ-DE", FR: "C-AMZ-FR", IT: "C-AMZ-IT", "*": "C-AMZ-EU"}
ECC_CUSTOMERS = {UK: "100001", DE: "100002", FR: "100003", IT: "100004", "*": "100005"}
APPROVAL_MARKETPLACE = DE  # its customer's orders wait for an approval
APPROVAL_ABOVE = Decimal(50)  # B1: orders above this DocTotal (a quarter of them)
HOLD_MARKETPLACES = (FR, IT)  # their customers go on credit hold now and then
_SALES_AREA = "1000/10/00"  # the ECC sales area of skuflow's ORDERS05 (ecc.sales_org ...)

Approval = Literal["approved", "waiting", "none"]


class BackOffice(Protocol):
    """What the ERP's users do to the sample orders (customers as in ``[orders]``)."""

    def hold(self, customer: str, open_orders: Iterable[str]) -> None:
        """Put the customer on credit hold (``open_orders``: its orders not shipped)."""

    def release(self, customer: str, open_orders: Iterable[str]) -> None:
        """Lift the hold."""

    def approve(self, order_id: str) -> Approval:
        """Approve the ERP order of ``order_id``: ``waiting`` while the ERP has no order of
        it yet, ``none`` when it has one that needs no approval."""


def ecc_sales_missing() -> str | None:
    """None when the SAP ECC sales connector is importable and ``EccErp`` has every method of
    the sales orders and sales deliveries ports (and the simulator its sales hooks); else the
    line the live view shows instead of the order traffic."""
    missing = "SAP ECC sales connector not available"
    try:
        port = importlib.import_module("handlers.connectors.ecc.port")
        importlib.import_module("handlers.connectors.ecc.sales")
        book = importlib.import_module("devstack.sims.ecc.sales").SalesBook
    except (ImportError, AttributeError):
        return missing
    methods = [
        name
        for protocol in (SalesOrders, SalesDeliveries)
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value)
    ]
    erp = getattr(port, "EccErp", None)
    if erp is None or not all(callable(getattr(erp, name, None)) for name in methods):
        return missing
    if not all(callable(getattr(book, hook, None)) for hook in _ECC_HOOKS):
        return f"{missing} (the ECC simulator lacks sales hooks)"
    return None


def seed_b1_customers(b1: B1Simulator) -> None:
    for marketplace, code in B1_CUSTOMERS.items():
        above = APPROVAL_ABOVE if marketplace == APPROVAL_MARKETPLACE else None
        b1.sales.add_customer(code, name=f"Amazon buyers {code[-2:]}", approval_above=above)


def seed_ecc_customers(ecc: EccSimulator) -> None:
    for marketplace, code in ECC_CUSTOMERS.items():
        block = "01" if marketplace == APPROVAL_MARKETPLACE else ""
        ecc.sales.add_customer(
            code.zfill(10),
            name=f"Amazon buyers {code}",
            sales_areas=(_SALES_AREA,),
            delivery_block=block,
        )


class B1BackOffice:
    def __init__(self, b1: B1Simulator) -> None:
        self._sales = b1.sales

    def hold(self, customer: str, open_orders: Iterable[str]) -> None:
        self._sales.set_credit_hold(customer, True)

    def release(self, customer: str, open_orders: Iterable[str]) -> None:
        self._sales.set_credit_hold(customer, False)

    def approve(self, order_id: str) -> Approval:
        where = [[("NumAtCard", order_id)]]
        for draft in self._sales.rows("Drafts", where):
            if draft.get("AuthorizationStatus") == "dasPending":
                self._sales.approve_draft(int(draft["DocEntry"]))
                return "approved"
        return "none" if any(True for _ in self._sales.rows("Orders", where)) else "waiting"


class EccBackOffice:
    def __init__(self, ecc: EccSimulator) -> None:
        self._sales = ecc.sales

    def hold(self, customer: str, open_orders: Iterable[str]) -> None:
        self._sales.update_customer(customer.zfill(10), credit_limit=0)
        for order_id in open_orders:
            for order in self._sales.orders_by_reference(order_id):
                self._sales.set_credit_block(order.vbeln)

    def release(self, customer: str, open_orders: Iterable[str]) -> None:
        self._sales.update_customer(customer.zfill(10), credit_limit=None)
        for order_id in open_orders:
            for order in self._sales.orders_by_reference(order_id):
                self._sales.release_credit(order.vbeln)

    def approve(self, order_id: str) -> Approval:
        orders = self._sales.orders_by_reference(order_id)
        if not orders:
            return "waiting"
        blocked = [order for order in orders if order.lifsk]
        for order in blocked:
            self._sales.set_delivery_block(order.vbeln, "")
        return "approved" if blocked else "none"
