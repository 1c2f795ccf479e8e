"""The ERP of the order-flow fault scenario, in neutral words: its customers, holds and
approvals, its faults, and what it holds (:class:`~tests.chaos.orders.ErpSales`), read from the
simulator as an outside observer would (B1 over its ``/_sim`` endpoints where they exist).

====================  =======================================  ==================================
neutral               SAP Business One                         SAP ECC
====================  =======================================  ==================================
held customer         ``C-HOLD`` on credit hold (its orders    ``C-HOLD`` with a credit limit of 0
(``C-HOLD``)          read ``Confirmed`` tNO); lifted          (new orders credit blocked, CMGST
                                                               B); released as VKM3 does (D)
approval              orders above 100.00 become drafts of an  ``C-APPR``'s central delivery block
(``C-APPR``)          approval procedure; approved and added   01 on its orders; lifted per order
                      as orders
the document taking   a credit note based on the invoice       a returns order (its returns
goods back            (restocks and credits at once)           delivery receipts 653 into
                                                               unrestricted stock), then a credit
                                                               memo
outage                503 from the load balancer               503
locks                 -2039 for a share of writes              the next wrapper calls find their
                                                               sales document locked (V1 042)
lost answers          applied, answered after the client's     stored / applied, the connection
                      timeout                                  cut (IDocs and wrapper calls)
====================  =======================================  ==================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from devstack.sims.ecc.sales import CREDIT_MEMO, DELIVERY, INVOICE, ORDER, RETURNS
from tests.chaos.harness import ECC_PARTNER, ECC_PLANT, ECC_PORT, Simulators, WorkerProcess
from tests.chaos.orders import (
    APPROVAL_ABOVE,
    APPROVAL_CUSTOMER,
    CUSTOMERS,
    HELD_CUSTOMER,
    ErpSales,
    Lines,
    ReturnLines,
)

#: ECC: the wrapper calls refused as locked in a lock storm.
ECC_LOCKS = 8


class SalesErp(ABC):
    """One ERP simulator of the order scenario (see the module)."""

    kind: ClassVar[str]
    #: A return of invoiced goods credits them itself (else a credit document follows it).
    returns_credit: ClassVar[bool]
    #: Settings the ERP needs beyond the harness's (its section's).
    overrides: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, sims: Simulators) -> None:
        self.sims = sims

    @abstractmethod
    def seed(self) -> None:
        """The customers (``C-HOLD``'s orders held, ``C-APPR``'s awaiting approval)."""

    @abstractmethod
    def lift_holds(self, approvals: list[str]) -> None:
        """``C-HOLD``'s hold lifted; the orders ``approvals`` approved."""

    @abstractmethod
    def known(self) -> set[str]:
        """The marketplace orders the ERP has a document of (an order, a draft)."""

    @abstractmethod
    def read(self) -> ErpSales: ...

    @abstractmethod
    def outage(self, until: datetime) -> None: ...

    @abstractmethod
    def locks(self, on: bool) -> None: ...

    @abstractmethod
    def lost_answers(self, on: bool) -> None: ...

    @abstractmethod
    def answers_lost(self, worker: WorkerProcess) -> int:
        """Writes whose answer the worker never got (so far)."""

    @abstractmethod
    def injected(self, approvals: set[str]) -> tuple[str, list[int]]:
        """What the ERP's outage and locks did, and their counts (each must be > 0)."""


class B1Sales(SalesErp):
    kind = "b1"
    returns_credit = True
    # The credit hold is read as the customer's flag too (the simulator shows it both ways).
    overrides: ClassVar[dict[str, dict[str, Any]]] = {"b1": {"credit_hold_field": "U_CreditHold"}}

    def seed(self) -> None:
        for code in CUSTOMERS.values():
            self.sims.b1_control("customers", {"code": code, "credit_hold": code == HELD_CUSTOMER})
        # Over-delivery allowed: a delivery posted twice shows as two, not as B1's refusal.
        rules = {"approval_above_amount": str(APPROVAL_ABOVE), "allow_over_delivery": True}
        self.sims.b1_control("sales-rules", rules)

    def lift_holds(self, approvals: list[str]) -> None:
        self.sims.b1_control("customers", {"code": HELD_CUSTOMER, "credit_hold": False})
        wanted = set(approvals)
        for doc in self.sims.b1_documents():
            if doc["entity"] == "Drafts" and doc["body"].get("NumAtCard") in wanted:
                self.sims.b1_control(f"drafts/{doc['doc_entry']}/approve", {})

    def known(self) -> set[str]:
        return {
            str(doc["body"].get("NumAtCard"))
            for doc in self.sims.b1_documents()
            if doc["entity"] in ("Orders", "Drafts")
        }

    def read(self) -> ErpSales:
        sales = self.sims.b1.sales
        entities = ("Orders", "Drafts", "DeliveryNotes", "Invoices", "Returns", "CreditNotes")
        docs = self.sims.run(lambda: {e: list(sales.rows(e, [[]])) for e in entities})
        found = ErpSales(stock=self.sims.b1_stock())
        order_of: dict[tuple[int, int], str] = {}  # (object code, DocEntry) -> order id
        for doc in docs["Orders"]:
            reference = str(doc["NumAtCard"])
            order_of[17, doc["DocEntry"]] = reference
            found.orders[reference] += 1
            if doc["Cancelled"] == "tYES":
                found.cancelled.add(reference)
        found.drafts.update(str(doc["NumAtCard"]) for doc in docs["Drafts"])
        based = (("DeliveryNotes", 15, "deliveries"), ("Invoices", 13, "invoices"),
                 ("Returns", 16, "returns"), ("CreditNotes", 14, ""))  # fmt: skip
        for entity, code, kind in based:
            for doc in docs[entity]:
                lines = doc["DocumentLines"]
                base = (lines[0]["BaseType"], lines[0]["BaseEntry"]) if lines else (-1, 0)
                order_id = order_of.get(base, "?")
                order_of[code, doc["DocEntry"]] = order_id
                if entity == "CreditNotes":  # on an invoice: the return; on a return: its credit
                    kind = "returns" if base[0] == 13 else "credits"
                rows = [
                    (line["ItemCode"], line["Quantity"], line["WarehouseCode"]) for line in lines
                ]
                found.add(kind, order_id, _returned(rows) if kind == "returns" else _items(rows))
        return found

    def outage(self, until: datetime) -> None:
        self.sims.b1_faults(outage_until=until.isoformat())

    def locks(self, on: bool) -> None:
        self.sims.b1_faults(lock_storm_rate=0.4 if on else 0.0)

    def lost_answers(self, on: bool) -> None:
        if on:  # applied, answered 3 s later: after the client's 2 s timeout
            self.sims.b1_faults(timeout_after_apply_ms=3_000, timeout_after_apply_rate=0.3)
        else:
            self.sims.b1_faults(timeout_after_apply_ms=0)

    def answers_lost(self, worker: WorkerProcess) -> int:
        return worker.count("may have been applied")  # B1Unavailable, ambiguous

    def injected(self, approvals: set[str]) -> tuple[str, list[int]]:
        requests = self.sims.b1_requests()
        unavailable = sum(1 for r in requests if r["status"] == 503)
        # Writes refused -2039, told from the -2028 (400) of an order an approval drafted.
        locked = sum(
            1
            for r in requests
            if r["method"] == "POST"
            and r["status"] == 400
            and not (r["operation"] == "Orders" and _reference(r["body"]) in approvals)
        )
        return f"B1 down ({unavailable}x 503), locked ({locked}x -2039)", [unavailable, locked]


class EccSales(SalesErp):
    """ECC taking ORDERS IDocs asynchronously (applied out of sequence, as the harness sets its
    processing) and making the other documents through the customer's wrapper functions."""

    kind = "ecc"
    returns_credit = False
    overrides: ClassVar[dict[str, dict[str, Any]]] = {
        "ecc": {
            "sales_org": "1000", "distribution_channel": "10", "division": "00",
            "order_type": "OR", "sales_order_wait_seconds": 10.0,
            "return_movement_type": "653",  # returned goods back into unrestricted stock
        }
    }  # fmt: skip

    def __init__(self, sims: Simulators) -> None:
        super().__init__(sims)
        self._locked = 0

    def seed(self) -> None:
        ecc = self.sims.ecc

        def add() -> None:
            ecc.add_partner(ECC_PARTNER, ECC_PORT, message_types=("MBGMCR", "ORDERS"))
            for code in CUSTOMERS.values():
                ecc.sales.add_customer(
                    code, sales_areas=("1000/10/00",),
                    credit_limit=0 if code == HELD_CUSTOMER else None,
                    delivery_block="01" if code == APPROVAL_CUSTOMER else "",
                )  # fmt: skip

        self.sims.run(add)

    def lift_holds(self, approvals: list[str]) -> None:
        sales = self.sims.ecc.sales

        def lift() -> None:
            sales.update_customer(HELD_CUSTOMER, credit_limit=None)
            sales.update_customer(APPROVAL_CUSTOMER, delivery_block="")
            for order in list(sales.orders.values()):
                if order.kunnr == HELD_CUSTOMER:
                    sales.release_credit(order.vbeln)
            for reference in approvals:
                for order in sales.orders_by_reference(reference):
                    sales.set_delivery_block(order.vbeln, "")

        self.sims.run(lift)

    def known(self) -> set[str]:
        sales = self.sims.ecc.sales
        return self.sims.run(lambda: {o.bstkd for o in sales.orders.values() if o.vbtyp == ORDER})

    def read(self) -> ErpSales:
        ecc = self.sims.ecc
        sales = ecc.sales

        def collect() -> ErpSales:
            found = ErpSales(stock={
                (item, f"{ECC_PLANT}/{sloc}"): ecc.stock(item, ECC_PLANT, sloc)
                for item in self.sims.items for sloc in ("0001", "0002")
            })  # fmt: skip
            order_of: dict[str, str] = {}  # VBELN of any document -> marketplace order id
            for order in sales.orders.values():
                if order.vbtyp == ORDER:
                    order_of[order.vbeln] = order.bstkd
                    found.orders[order.bstkd] += 1
                    if order.items and all(item.rejected for item in order.items):
                        found.cancelled.add(order.bstkd)
            for delivery in sales.deliveries.values():
                if delivery.vbtyp == DELIVERY:
                    order_id = order_of.get(delivery.items[0].vgbel, "?")
                    order_of[delivery.vbeln] = order_id
                    rows = [(i.matnr, i.lfimg, "") for i in delivery.items]
                    found.add("deliveries", order_id, _items(rows))
            for order in sales.orders.values():
                if order.vbtyp == RETURNS:  # with reference to the delivery
                    order_id = order_of.get(order.items[0].vgbel, "?")
                    order_of[order.vbeln] = order_id
                    rows = [(i.matnr, i.kwmeng, f"{i.werks}/{i.lgort}") for i in order.items]
                    found.add("returns", order_id, _returned(rows))
            for billing in sales.billings.values():
                kind = {INVOICE: "invoices", CREDIT_MEMO: "credits"}.get(billing.vbtyp)
                if kind is not None:
                    item = billing.items[0]
                    order_id = order_of.get(item.vgbel) or order_of.get(item.aubel, "?")
                    found.add(
                        kind, order_id, _items([(i.matnr, i.fkimg, "") for i in billing.items])
                    )
            return found

        return self.sims.run(collect)

    def outage(self, until: datetime) -> None:
        self.sims.ecc_faults(outage_until=until)

    def locks(self, on: bool) -> None:
        if on:
            self.sims.ecc_faults(order_lock_next=ECC_LOCKS)
            return
        left = self.sims.run(lambda: self.sims.ecc.faults.order_lock_next)
        self._locked += ECC_LOCKS - left  # the locks a wrapper call met
        self.sims.ecc_faults(order_lock_next=0)

    def lost_answers(self, on: bool) -> None:
        rate = 0.3 if on else 0.0
        self.sims.ecc_faults(lost_answer_rate=rate, function_lost_answer_rate=rate,
                             lost_answer_mode="reset")  # fmt: skip

    def answers_lost(self, worker: WorkerProcess) -> int:
        return self.sims.ecc_counters().get("lost_answers", 0)

    def injected(self, approvals: set[str]) -> tuple[str, list[int]]:
        unavailable = sum(1 for status in self.sims.ecc_statuses() if status == 503)
        locked = self._locked
        return f"ECC down ({unavailable}x 503), locked ({locked}x V1 042)", [unavailable, locked]


def _reference(body: Any) -> str | None:
    return body.get("NumAtCard") if isinstance(body, dict) else None


def _items(rows: Iterable[tuple[str, Any, str]]) -> Lines:
    """(item, quantity) of a document's lines, merged per item and sorted."""
    merged: Counter[str] = Counter()
    for item, quantity, _ in rows:
        merged[str(item)] += int(Decimal(str(quantity)))
    return tuple(sorted(merged.items()))


def _returned(rows: Iterable[tuple[str, Any, str]]) -> ReturnLines:
    """(item, quantity, warehouse) of a document's lines, merged and sorted."""
    merged: Counter[tuple[str, str]] = Counter()
    for item, quantity, warehouse in rows:
        merged[str(item), str(warehouse)] += int(Decimal(str(quantity)))
    return tuple(sorted((item, quantity, code) for (item, code), quantity in merged.items()))


#: The ERPs of the order scenario, by ``erp.kind``.
ERPS: dict[str, type[SalesErp]] = {"b1": B1Sales, "ecc": EccSales}
