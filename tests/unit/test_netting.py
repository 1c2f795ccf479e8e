"""Netting keeps every unit and every source: what posts equals what was staged."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.stock.netting import StagedLine, net, net_by_class

pytestmark = pytest.mark.timeout(30)


def line(event: str, item: str, qty: str, batch: str | None = None, *serials: str) -> StagedLine:
    return StagedLine(
        event_id=event,
        item_code=item,
        warehouse_code="01",
        quantity=Decimal(qty),
        batch_number=batch,
        serial_numbers=serials,
    )


def test_one_entry_and_one_exit_line_per_item_and_batch() -> None:
    netted = net([
        line("e1", "A", "5"), line("e2", "A", "-2"), line("e3", "B", "-4"),
        line("e4", "A", "1", "LOT1"), line("e5", "B", "1"),
    ])  # fmt: skip
    assert [(d.item_code, d.batch_number, d.quantity, d.sources) for d in netted.entries] == [
        ("A", None, Decimal(3), ("e1", "e2")),
        ("A", "LOT1", Decimal(1), ("e4",)),
    ]
    assert [(d.item_code, d.quantity, d.sources) for d in netted.exits] == [
        ("B", Decimal(3), ("e3", "e5")),
    ]
    assert netted.settled == ()


def test_movements_that_net_to_zero_post_nothing_and_are_settled() -> None:
    netted = net([line("e1", "A", "2.5"), line("e2", "A", "-2.5"), line("e3", "B", "1")])
    assert [d.item_code for d in netted.entries] == ["B"]
    assert netted.exits == ()
    assert netted.settled == ("e1", "e2")


def test_serial_numbers_are_never_netted_away() -> None:
    netted = net([line("in", "S", "1", None, "SN1"), line("out", "S", "-1", None, "SN1")])
    assert [(d.serial_numbers, d.sources) for d in netted.entries] == [(("SN1",), ("in",))]
    assert [(d.serial_numbers, d.sources) for d in netted.exits] == [(("SN1",), ("out",))]


movement = st.builds(
    line,
    event=st.uuids().map(str),
    item=st.sampled_from(["A", "B", "C"]),
    qty=st.decimals(min_value=-50, max_value=50, places=2).filter(bool).map(str),
    batch=st.sampled_from([None, "L1"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(movement, max_size=60))
def test_posted_quantities_equal_staged_quantities_and_every_source_appears_once(
    lines: list[StagedLine],
) -> None:
    netted = net(lines)
    staged: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for staged_line in lines:
        staged[(staged_line.item_code, staged_line.batch_number)] += staged_line.quantity
    posted: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for entry in netted.entries:
        posted[(entry.item_code, entry.batch_number)] += entry.quantity
    for exit_ in netted.exits:
        posted[(exit_.item_code, exit_.batch_number)] -= exit_.quantity
    assert {k: v for k, v in staged.items() if v} == {k: v for k, v in posted.items() if v}
    sources = Counter(
        [s for d in (*netted.entries, *netted.exits) for s in d.sources] + list(netted.settled)
    )
    assert sources == Counter(staged_line.event_id for staged_line in lines)
    assert all(d.quantity > 0 for d in (*netted.entries, *netted.exits))


def test_movements_of_different_reason_classes_are_never_netted_together() -> None:
    lines = [
        StagedLine(event_id="r1", item_code="A", warehouse_code="01", quantity=Decimal(5),
                   reason_class="receipt"),
        StagedLine(event_id="d1", item_code="A", warehouse_code="01", quantity=Decimal(-5),
                   reason_class="damaged"),
        StagedLine(event_id="r2", item_code="A", warehouse_code="01", quantity=Decimal(-2),
                   reason_class="receipt"),
    ]  # fmt: skip
    by_class = dict(net_by_class(lines))
    assert list(by_class) == ["receipt", "damaged"]
    receipt, damaged = by_class["receipt"], by_class["damaged"]
    assert [(x.quantity, x.sources) for x in receipt.entries] == [(Decimal(3), ("r1", "r2"))]
    assert [(x.quantity, x.sources) for x in damaged.exits] == [(Decimal(5), ("d1",))]
    assert not receipt.settled
    assert not damaged.settled
    # One class (an ERP that books every reason alike): the same lines net to -2.
    alike = net_by_class([msgspec.structs.replace(x, reason_class="") for x in lines])
    assert [(c, [x.quantity for x in n.exits]) for c, n in alike] == [("", [Decimal(2)])]
