"""The order traffic of ``skuflow dev``: its orders, the warehouse's timeline, the ERP's users
(no broker; the simulators' Python hooks only)."""

from __future__ import annotations

import asyncio
import importlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anyio
import pytest

from devstack import backoffice
from devstack.backoffice import Approval, EccBackOffice, ecc_sales_missing, seed_ecc_customers
from devstack.order_board import OrderBoard
from devstack.order_traffic import OrderTraffic, OrderTrafficStats
from devstack.orders import MARKETPLACES, PlannedLine, PlannedOrder, SampleOrders
from devstack.sims.ecc.sales import OrderItem, SalesOrder
from devstack.sims.ecc.server import EccSimulator
from devstack.sims.spapi.server import SpApiSimulator
from devstack.traffic import SampleEvents, TrafficStats
from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed
from handlers.flows import default_families
from handlers.orders.events import ReturnReceived
from worker.messages import DecodeFailure, Message

NOW = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
UK, DE, FR = "A1F83G8C2ARO7P", "A1PA6795UKMFR9", "A13V1IB3VIYZZH"


def _decode(value: bytes) -> Any:
    message = Message(
        topic="t", partition=0, offset=0, key=b"", value=value, headers=(), timestamp_ms=0
    )
    decoded = DomainRouter(default_families()).decode(message)
    assert not isinstance(decoded, DecodeFailure), decoded
    return decoded


def _order(order_id: str = "202-0000001-0000001", **changes: Any) -> PlannedOrder:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "marketplace_id": UK,
        "currency": "GBP",
        "lines": (PlannedLine("11111111111111", "ABC-100", 2, Decimal("9.99")),),
        "latest_ship_date": NOW + timedelta(hours=4),
        "scenario": "on_time",
        "packages": 1,
        "cancel": False,
        "returned": None,
        **changes,
    }
    return PlannedOrder(**fields)


@pytest.mark.timeout(60)
def test_sample_orders_are_taken_by_the_simulator_and_their_packages_ship_what_was_ordered() -> (
    None
):
    events = SampleEvents(200, seed=3)
    plain = [s for s in events.skus if s not in events.batch_skus | events.serial_skus]
    plain = [s for s in plain if s not in events.weight_skus]
    orders, sim = SampleOrders(plain, seed=5), SpApiSimulator()
    event_ids: set[str] = set()
    for _ in range(1500):
        order = orders.next_order(NOW)
        sim.create_order(order.spec(lag=130))
        revision = sim.order_revision(order.order_id)  # found at once by a search to now - 130 s
        assert revision is not None
        assert revision <= datetime.now(UTC) - timedelta(seconds=129)
        assert {line.sku for line in order.lines} <= set(plain)
        shipped: Counter[tuple[str, str]] = Counter()
        for number in range(1, order.packages + 1):
            event = _decode(orders.dispatch(order, number, NOW))
            assert isinstance(event, DispatchConfirmed)
            assert (event.order_id, event.package_reference_id) == (order.order_id, str(number))
            assert event.ship_by == order.latest_ship_date
            assert event.event_id not in event_ids
            event_ids.add(event.event_id)
            for line in event.lines:
                shipped[line.order_item_id, line.sku] += int(line.quantity)
        ordered = Counter({(x.order_item_id, x.sku): x.quantity for x in order.lines})
        if order.scenario == "unknown_item":
            assert shipped != ordered
            assert sum(shipped.values()) == sum(ordered.values())
        else:
            assert shipped == ordered
        if order.returned is not None:
            order_id, payload = orders.return_of(order, NOW)
            back = _decode(payload)
            assert isinstance(back, ReturnReceived)
            assert order_id == back.order_id == order.order_id
            assert [(x.sku, x.condition, x.order_item_id) for x in back.lines] == [
                (order.lines[0].sku, order.returned, order.lines[0].order_item_id)
            ]


def test_the_order_mix_holds_its_shares() -> None:
    orders = SampleOrders([f"SKU-{n}" for n in range(100)], seed=11)
    made = [orders.next_order(NOW) for _ in range(5000)]
    markets = Counter(order.marketplace_id for order in made)
    for marketplace, (_currency, share) in MARKETPLACES.items():
        assert abs(markets[marketplace] / 5000 - share / 100) < 0.03, markets
    assert all(order.currency == MARKETPLACES[order.marketplace_id][0] for order in made)
    shares = {
        "two packages": sum(o.packages == 2 for o in made) / 5000,
        "cancelled": sum(o.cancel for o in made) / 5000,
        "returned": sum(o.returned is not None for o in made) / 5000,
        "at risk": sum(o.scenario == "at_risk" for o in made) / 5000,
        "late": sum(o.latest_ship_date < NOW for o in made) / 5000,
    }
    assert 0.12 <= shares["two packages"] <= 0.25, shares
    assert 0.01 <= shares["cancelled"] <= 0.03, shares
    assert 0.11 <= shares["returned"] <= 0.13, shares
    assert made[0].returned == "sellable"  # a short run shows a return too
    damaged = sum(o.returned == "damaged" for o in made) / sum(o.returned is not None for o in made)
    assert 0.3 <= damaged <= 0.35
    assert 0.012 <= shares["at risk"] <= 0.03, shares
    assert 0.001 <= shares["late"] <= 0.01, shares
    assert sum(orders.unmatched() for _ in range(3000)) == 200  # one return in 15


def _board(**options: Any) -> OrderBoard:
    return OrderBoard(
        pick=(1.0, 1.0), second_package=(2.0, 2.0), return_after=(5.0, 5.0), **options
    )


def test_an_order_ships_only_once_released_and_not_after_it_was_held() -> None:
    board = _board()
    assert board.add(_order("A"), "C-UK", 0.0, approval=False)
    assert board.add(_order("B"), "C-UK", 0.0, approval=False)
    assert list(board.due(10.0)) == []  # not released: never picked
    board.released("A", 10.0)
    board.released("B", 10.0)
    board.held("B")  # stop picking before it leaves
    steps = [(action, t.order.order_id) for action, t in board.due(11.0)]
    assert steps == [("ship", "A")]
    assert "A" not in board.orders  # shipped and nothing comes back: forgotten
    board.released("B", 20.0)  # released again once the hold is lifted
    assert [(a, t.order.order_id) for a, t in board.due(21.0)] == [("ship", "B")]


def test_a_customer_about_to_be_held_ships_nothing_until_the_hold_is_lifted() -> None:
    board = _board()
    board.add(_order("A"), "C-FR", 0.0, approval=False)
    board.add(_order("B"), "C-UK", 0.0, approval=False)
    board.released("A", 0.0)
    board.freeze("C-FR")
    board.released("B", 0.0)
    assert [t.order.order_id for _a, t in board.due(5.0)] == ["B"]
    assert board.open_orders("C-FR") == ["A"]
    board.unfreeze("C-FR", 6.0)
    assert [t.order.order_id for _a, t in board.due(7.0)] == ["A"]


def test_the_rest_of_two_packages_and_the_return_follow_and_then_the_order_is_forgotten() -> None:
    board = _board()
    board.add(_order("A", packages=2, returned="damaged"), "C-UK", 0.0, approval=False)
    board.released("A", 0.0)
    assert [a for a, _t in board.due(1.0)] == ["ship"]
    board.held("A")  # the first package left: the rest is on its way already
    assert [a for a, _t in board.due(3.0)] == ["ship_rest"]
    assert [a for a, _t in board.due(8.0)] == ["return"]
    assert len(board) == 0


def test_an_order_amazon_cancels_never_ships_and_an_approval_is_tried_until_given_up() -> None:
    board = _board(
        cancel_after=(3.0, 3.0), approve_after=(1.0, 1.0), approve_retry=1.0, approve_tries=2
    )
    board.add(_order("X", cancel=True), "C-DE", 0.0, approval=True)
    board.released("X", 0.0)
    assert [a for a, _t in board.due(1.0)] == ["approve"]
    assert board.approve_later("X", 1.0)
    assert [a for a, _t in board.due(3.0)] == ["approve", "cancel"]  # never "ship"
    assert not board.approve_later("X", 3.0)  # cancelled: gone
    assert len(board) == 0


def test_the_board_is_bounded_whatever_the_worker_does() -> None:
    board = _board(max_open=3, forget_after=60.0)
    assert all(board.add(_order(str(n)), "C-UK", 0.0, approval=False) for n in range(3))
    assert not board.add(_order("3"), "C-UK", 0.0, approval=False)
    assert list(board.due(59.0)) == []
    assert list(board.due(60.0)) == []  # never released (say, refused by the ERP): forgotten
    assert len(board) == 0
    assert board.add(_order("3"), "C-UK", 60.0, approval=False)


class FakeOffice:
    """Every order waits for its ERP order once, then is approved."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    def hold(self, customer: str, open_orders: Any) -> None: ...

    def release(self, customer: str, open_orders: Any) -> None: ...

    def approve(self, order_id: str) -> Approval:
        self.asked[order_id] += 1
        return "waiting" if self.asked[order_id] == 1 else "approved"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _traffic(office: FakeOffice, clock: list[float], **options: Any) -> OrderTraffic:
    from config.settings import TopicsSettings

    return OrderTraffic(
        bootstrap="-",
        topics=TopicsSettings(),
        sim=SpApiSimulator(),
        office=office,
        orders=SampleOrders(["ABC-100", "ABC-200"], seed=1),
        customers={"*": "C-EU", DE: "C-DE"},
        hold_customers=(),
        approval_customer="C-DE",
        rate=1.0,
        lag=130.0,
        freeze_seconds=5.0,
        stats=OrderTrafficStats(),
        traffic=TrafficStats(),
        board=_board(approve_after=(1.0, 1.0), approve_retry=1.0, **options),
        clock=lambda: clock[0],
    )


def test_the_warehouse_ships_what_the_released_topic_releases_at_the_simulator_s_orders() -> None:
    clock, producer = [0.0], FakeProducer()
    traffic = _traffic(FakeOffice(), clock)
    made = [traffic.make_order(NOW) for _ in range(20)]
    assert all(made)
    plain = [o for o in made if o is not None and not traffic.board.orders[o].order.cancel]
    first = plain[0]
    assert first is not None
    assert traffic._sim.order_status(first) == "Unshipped"
    traffic.announced(b'{"type": "order.released", "order_id": "%s"}' % first.encode())
    traffic.announced(b"not json")
    clock[0] = 10.0

    async def steps() -> None:
        await traffic.take_steps(producer)

    anyio.run(steps)
    dispatches = [_decode(value) for topic, _key, value in producer.sent]
    assert [d.order_id for d in dispatches if isinstance(d, DispatchConfirmed)][:1] == [first]
    stats = traffic.stats
    assert (stats.created, stats.released, stats.packages) == (20, 1, len(dispatches))
    assert traffic._traffic.dispatch == len(dispatches)
    assert traffic._traffic.produced == len(producer.sent)  # acknowledged


def test_an_approval_waits_for_the_erp_order_and_counts_once_given() -> None:
    clock, office = [0.0], FakeOffice()
    traffic = _traffic(office, clock)
    for _ in range(40):
        traffic.make_order(NOW)
    waiting = {t.order.order_id for t in traffic.board.orders.values() if t.customer == "C-DE"}
    assert waiting

    async def steps() -> None:
        for moment in (1.0, 2.0, 3.0):
            clock[0] = moment
            await traffic.take_steps(FakeProducer())

    anyio.run(steps)
    assert set(office.asked) == waiting  # the approval customer's orders only
    assert set(office.asked.values()) == {2}  # once waiting, once approved
    assert traffic.stats.approvals == len(waiting)


def _ecc_order(sales: Any, vbeln: str, reference: str, kunnr: str, lifsk: str) -> None:
    item = OrderItem(
        posnr=10, matnr="ABC-100", kwmeng=Decimal(1), meins="EA", werks="1000", lgort="0001",
        netpr=Decimal(5), netwr=Decimal(5),
    )  # fmt: skip
    sales.add_order(
        SalesOrder(
            vbeln=vbeln, vbtyp="C", auart="OR", kunnr=kunnr, area=("1000", "10", "00"),
            bstkd=reference, waerk="EUR", audat="20261123", vdatu="20261123", ernam="SKUFLOW",
            items=[item], lifsk=lifsk,
        )
    )  # fmt: skip


def test_the_ecc_back_office_holds_releases_and_approves_through_the_simulator_s_hooks() -> None:
    ecc = EccSimulator()
    seed_ecc_customers(ecc)
    office, sales = EccBackOffice(ecc), ecc.sales
    fr, de = backoffice.ECC_CUSTOMERS[FR], backoffice.ECC_CUSTOMERS[DE]
    assert sales.customers[de.zfill(10)].delivery_block == "01"  # the approval customer
    _ecc_order(sales, "0000000001", "FR-1", fr.zfill(10), "")
    _ecc_order(sales, "0000000002", "DE-1", de.zfill(10), "01")
    office.hold(fr, ["FR-1"])
    assert sales.order("1").cmgst == "B"
    assert sales.customers[fr.zfill(10)].credit_limit == 0  # new orders are blocked too
    office.release(fr, ["FR-1"])
    assert sales.order("1").cmgst == "D"
    assert sales.customers[fr.zfill(10)].credit_limit is None
    assert office.approve("DE-2") == "waiting"
    assert office.approve("DE-1") == "approved"
    assert sales.order("2").lifsk == ""
    assert office.approve("DE-1") == "none"


def test_the_ecc_order_traffic_runs_only_with_the_ecc_sales_connector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ecc_sales_missing() is None  # this build has it
    real = importlib.import_module

    def without_sales(name: str) -> Any:
        if name == "handlers.connectors.ecc.sales":
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(importlib, "import_module", without_sales)
    assert ecc_sales_missing() == "SAP ECC sales connector not available"
