"""The order flow under faults (issue 16): marketplace orders into the ERP and back, with the
worker killed between an ERP create and its ledger write, the ERP down, locked and losing its
answers, and Amazon throttling the confirmations.

The traffic (:class:`~tests.chaos.orders.OrderTraffic`): orders of six kinds — passing at once,
their customer on credit hold (lifted later), above the ERP's approval amount (approved later),
cancelled before shipping (released or still held), cancelled after shipping — each sent twice
and some revised and replayed; the warehouse (this test, reading ``topics.released``) ships the
released orders in one to three packages, some packages sent twice; returns of about half the
shipped orders (sellable and damaged), of orders that never shipped and of an unknown order,
some sent twice. Phases and their faults:

1. **orders**: SIGKILL right after the ERP created the *k*-th sales order (before the order
   ledger says so: ``SKUFLOW_CHAOS_KILL_AFTER_SALES_ORDERS``), right after Kafka took the
   first release from the outbox (before its row is deleted: ``..._OUTBOX_SENDS``), a lock
   storm (a share of writes refused -2039) and a kill at a random moment;
2. **ship**: the cancellations; the released orders shipped while Amazon throttles
   confirmShipment (1/s under a client pacing 20/s); SIGKILL right after the ERP created the
   *k*-th delivery and the *k*-th invoice; ERP answers lost after the ERP applied the write;
3. **release**: the ERP down while the holds are lifted and the approvals given; the orders
   released then are shipped;
4. **returns**: the returns and the cancellations after shipping; SIGKILL right after the ERP
   created the *k*-th return; a random kill.

Then the independent check (:func:`~tests.chaos.orders.check_orders`), per ERP document kind:
lost 0 and duplicated 0 for orders, deliveries, invoices, returns / credit notes; ERP stock;
cancellations; every release announced once per release (by event id) and no held order
before its hold was lifted; ``return_unmatched`` and ``order_cancel_after_ship`` once each.

Both forms run against SAP B1 and SAP ECC (``EccErp`` implements ``SalesOrders`` and
``SalesDeliveries``: ``handlers/connectors/ecc/sales.py``), each ERP's holds, approvals and
faults as :mod:`tests.chaos.order_erps` describes them.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from devstack.postgres import run_sync
from tests.chaos.harness import (
    OPENING,
    ChaosRun,
    WorkerProcess,
    exception_rows,
    read_topic,
    wait_until,
)
from tests.chaos.order_erps import ERPS, SalesErp
from tests.chaos.orders import (
    CUSTOMERS,
    DAMAGED_TO,
    SHIPPED,
    Announcement,
    Order,
    OrderTraffic,
    OrderVerdict,
    check_orders,
)
from tests.chaos.report import ChaosReport, KindRow
from tests.support.stack import produce

CreateTopics = Callable[..., None]
HOOK = "SKUFLOW_CHAOS_KILL_AFTER_"


@dataclass(frozen=True)
class Size:
    orders: int
    waves: int  # orders, shipments and returns come in this many waves, a crash point each
    storm: float  # seconds of the lock storm
    throttle: float  # seconds Amazon throttles confirmShipment
    lost: float  # seconds of ERP answers lost after the write was applied
    outage: float  # seconds the ERP is down while the holds are lifted
    random_kills: int
    patience: float  # seconds a phase may take to settle (Amazon's plan drains the throttled)


SHORT = Size(orders=24, waves=1, storm=3, throttle=3, lost=3, outage=5, random_kills=1,
             patience=120)  # fmt: skip
FULL = Size(orders=240, waves=3, storm=20, throttle=30, lost=20, outage=45, random_kills=4,
            patience=600)  # fmt: skip


class OrderRun:
    """One run of the story: the harness's run, the ERP, the traffic, the worker, the kills."""

    def __init__(self, run: ChaosRun, sales: SalesErp, worker: WorkerProcess, seed: int) -> None:
        self.run, self.sales, self.worker = run, sales, worker
        self.traffic = OrderTraffic(run.items, run.sims.warehouses, seed=seed)
        self.rng = random.Random(seed)
        self.kills: Counter[str] = Counter()
        self.lifted_at: datetime | None = None
        self._phase, self._since = "start", time.monotonic()

    def phase(self, name: str) -> None:
        """Print how long the previous phase took (the run's timeline in its output)."""
        now = time.monotonic()
        print(f"{self._phase}: {now - self._since:.1f}s")
        self._phase, self._since = name, now

    def produce(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        run_sync(lambda: produce(self.run.bootstrap, topic, records))

    def crash_at(self, point: str, most: int = 3) -> None:
        """The worker restarted with a crash point armed after 1 to ``most`` ERP answers."""
        self.worker.crash_at(HOOK + point, self.rng.randint(1, most))
        self.kills[point.lower().replace("_", " ")] += 1

    def random_kill(self, within: float) -> None:
        time.sleep(self.rng.uniform(0.2, within))
        self.worker.kill()
        self.kills["random"] += 1
        self.worker.start()

    def restart(self) -> None:
        if not self.worker.alive:
            self.worker.start()
        self.worker.wait_ready(90)

    def announcements(self) -> list[Announcement]:
        released = self.run.order_topics[2]
        found = []
        for value, _ in read_topic(self.run.bootstrap, released):
            body = msgspec.json.decode(value)
            occurred = datetime.fromisoformat(body["occurred_at"])
            found.append(Announcement(body["type"], body["event_id"], body["order_id"], occurred))
        return found

    def released(self, orders: list[Order], timeout: float) -> None:
        """Wait until the warehouse was told ``orders`` are released."""
        wanted = {order.order_id for order in orders}

        def told() -> bool:
            seen = {a.order_id for a in self.announcements() if a.type == "order.released"}
            return wanted <= seen

        self.wait(told, timeout, f"{len(wanted)} orders released")

    def in_erp(self, timeout: float) -> None:
        wanted = set(self.traffic.orders)
        self.wait(lambda: wanted <= self.sales.known(), timeout, "every order in the ERP")

    def shipped(self, timeout: float) -> None:
        """Wait until the ERP holds every delivery and invoice of what was shipped."""

        def delivered() -> bool:
            found = self.sales.read()
            return all(
                not (want - found.deliveries.get(order_id, Counter()))
                and not (want - found.invoices.get(order_id, Counter()))
                for order_id, want in self.traffic.expected_deliveries().items()
            )

        self.wait(delivered, timeout, "every package delivered and invoiced in the ERP")

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for ``condition``; on timeout say what the independent check sees."""
        try:
            wait_until(condition, timeout, what, poll=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.check().summary()}") from None

    def ship(self, orders: list[Order], waves: int, crash: bool) -> None:
        for wave in _waves(orders, waves):
            self.produce(self.run.topics[1], self.traffic.dispatches(wave))
            if crash:
                self.crash_at("DELIVERIES")
                self.crash_at("INVOICES")
                self.restart()

    def check(self) -> OrderVerdict:
        return check_orders(
            self.traffic,
            self.sales.read(),
            self.announcements(),
            [dict(row) for row in exception_rows(self.run.database_url)],
            lifted_at=self.lifted_at,
            opening=OPENING,
            returns_credit=self.sales.returns_credit,
        )

    def settle(self, timeout: float) -> tuple[OrderVerdict, float]:
        deadline = time.monotonic() + timeout
        while True:
            verdict = self.check()
            if verdict.ok or time.monotonic() > deadline:
                return verdict, time.monotonic() - self.run.fault_ended
            time.sleep(1.0)


def _waves(orders: list[Order], count: int) -> list[list[Order]]:
    size = -(-len(orders) // count)
    return [orders[i : i + size] for i in range(0, len(orders), size)]


def order_flow(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    erp: str,
    size: Size,
    scenario: str,
) -> None:
    erp_type = ERPS[erp]
    overrides = {
        "orders": {
            "default_customers": CUSTOMERS, "watch_seconds": 0.5, "window_seconds": 0.5,
            "retry_max_seconds": 2.0, "return_locations": {"damaged": DAMAGED_TO},
        },
        **erp_type.overrides,
    }  # fmt: skip
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique,
                  items=8, b1_timeout=2.0, erp=erp, overrides=overrides) as run:  # fmt: skip
        create_topics(*run.topics, *run.order_topics)
        sales = erp_type(run.sims)
        sales.seed()
        # A static member: a restarted worker has its partitions back at once.
        worker = run.worker("a", SKUFLOW_KAFKA__GROUP_INSTANCE_ID=f"{unique}-a")
        story = OrderRun(run, sales, worker, seed=16)
        traffic, orders_topic, returns_topic = story.traffic, *run.order_topics[:2]
        worker.start().wait_ready(90)

        # 1. orders: crashes after ERP creates and after an outbox send, a lock storm
        story.phase("orders")
        orders = traffic.new_orders(size.orders)
        ship_by = datetime.now(UTC) + timedelta(hours=8)
        run.sims.add_orders([(order.order_id, ship_by) for order in orders],
                            items=lambda o: traffic.orders[o].lines,
                            marketplace=lambda o: traffic.orders[o].marketplace)  # fmt: skip
        for number, wave in enumerate(_waves(orders, size.waves)):
            story.produce(orders_topic, traffic.order_events(wave))
            sales.locks(on=True)  # while the wave is created
            story.crash_at("SALES_ORDERS")
            if number == 0:
                story.crash_at("OUTBOX_SENDS", most=1)
            story.restart()
            if number < size.random_kills:
                story.random_kill(within=size.storm)
            sales.locks(on=False)
        story.restart()
        story.in_erp(timeout=size.patience)

        # 2. ship: cancellations; the released orders shipped while Amazon throttles, the ERP
        # refuses writes as locked and loses answers after applying them; crashes after a
        # delivery and an invoice
        story.phase("ship")
        ready = traffic.of("plain", "cancel", "late_cancel")
        story.released(ready, timeout=size.patience)
        story.produce(orders_topic, traffic.cancels("cancel", "cancel_held"))
        now = time.monotonic()
        run.sims.spapi_faults(throttle_rate=1.0, burst=2)  # the client paces at 20/s
        sales.locks(on=True)
        sales.lost_answers(on=True)
        story.ship(traffic.of("plain", "late_cancel"), size.waves, crash=True)
        time.sleep(max(0.0, now + size.storm - time.monotonic()))
        sales.locks(on=False)
        time.sleep(max(0.0, now + size.throttle - time.monotonic()))
        run.sims.spapi_faults(throttle_rate=None, burst=None)
        # (the packages Amazon held back are delivered now: some of their answers are lost)
        story.wait(
            lambda: time.monotonic() > now + size.lost and sales.answers_lost(worker) > 0,
            60,
            "an ERP answer lost after the write",
        )
        sales.lost_answers(on=False)

        # 3. release: the ERP down while the holds are lifted and the approvals given
        story.phase("release")
        held = traffic.of("hold", "approval")
        sales.outage(datetime.now(UTC) + timedelta(seconds=size.outage))
        story.lifted_at = datetime.now(UTC)
        sales.lift_holds([order.order_id for order in traffic.of("approval")])
        time.sleep(size.outage)
        story.released(held, timeout=size.patience)
        story.ship(held, 1, crash=False)
        story.shipped(timeout=size.patience)

        # 4. returns: of shipped orders, of orders never shipped, of an unknown order; the
        # cancellations after shipping; crashes after a return, a random kill
        story.phase("returns")
        shipped = [order for order in traffic.orders.values() if order.kind in SHIPPED]
        for wave in _waves(shipped, size.waves):
            story.produce(returns_topic, traffic.new_returns(wave, []))
            story.crash_at("RETURNS", most=2)
            story.restart()
        story.produce(returns_topic, traffic.new_returns([], traffic.of("cancel")))
        story.produce(orders_topic, traffic.cancels("late_cancel"))
        for _ in range(max(0, size.random_kills - size.waves)):
            story.random_kill(within=3.0)
        story.restart()
        run.fault_over()

        story.phase("settle")
        verdict, recovery = story.settle(timeout=size.patience)
        story.phase("end")
        assert worker.terminate() == 0, f"{worker.name} did not drain cleanly"
        lost_answers = sales.answers_lost(worker)
        throttled = sum(1 for r in run.sims.spapi_requests() if r["status"] == 429)
        injected, counts = sales.injected({o.order_id for o in traffic.of("approval")})
        faults = f"{_faults(story, size, lost_answers, throttled)}; {injected}"
        run.report(report, scenario, faults, verdict, recovery, events=traffic.events)
        for kind, count in verdict.kinds.items():
            report.add_kind(KindRow(scenario, erp, kind, count.expected, count.found,
                                    count.lost, count.duplicated))  # fmt: skip
        print(f"{scenario}: {faults}; recovery {recovery:.1f}s\n{verdict.table()}")
        assert verdict.ok, verdict.summary()
        assert all(count > 0 for count in counts), injected  # every ERP fault was met
        assert lost_answers > 0, "no ERP answer was lost"
        assert throttled > 0, "Amazon throttled nothing"


def _faults(story: OrderRun, size: Size, lost: int, throttled: int) -> str:
    kills = ", ".join(f"{n} {kind}" for kind, n in sorted(story.kills.items()))
    return (
        f"{sum(story.kills.values())} SIGKILLs ({kills}); lock storms {size.storm:g} s; "
        f"confirmShipment throttled {size.throttle:g} s ({throttled}x 429); {size.lost:g} s "
        f"of answers lost after the write ({lost} ambiguous); ERP down {size.outage:g} s "
        "while holds were lifted"
    )


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("erp", sorted(ERPS))
def test_the_order_flow_under_crashes_erp_faults_and_throttling_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    order_flow(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               erp=erp, size=FULL, scenario="order flow")  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("erp", sorted(ERPS))
def test_order_flow_crashes_between_erp_create_and_ledger_write_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    order_flow(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               erp=erp, size=SHORT, scenario="order flow (short)")  # fmt: skip
