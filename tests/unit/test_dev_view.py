"""What ``skuflow dev`` shows of the order pipeline: the live panel and the status line."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

from rich.console import Console

from devstack.order_traffic import OrderTrafficStats
from devstack.order_view import Pipeline
from devstack.traffic import TrafficStats
from devstack.view import Dispatch, Snapshot, Stock, render, status_line

PIPELINE = Pipeline(
    ledger={"received": 1, "in_erp": 2, "held": 6, "released": 9, "closed": 1180, "cancelled": 22},
    holds={"credit block": 4, "not approved (draft awaiting approval)": 2},
    documents={
        ("delivery", "posted"): 1190, ("delivery", "waiting"): 2, ("delivery", "failed"): 12,
        ("invoice", "posted"): 1188, ("return", "posted"): 140, ("return", "failed"): 9,
    },
    exceptions={"delivery_line_unknown": 12, "return_unmatched": 9},
    behind=131.4,
    announced=1,
)  # fmt: skip
ORDERS = OrderTrafficStats(
    erp="SAP B1", created=1260, released=1230, held=25, packages=1400, two_packages=220,
    shipped=1170, cancelled=22, returns=Counter(sellable=92, damaged=48, unmatched=9),
    holds_placed=12, holds_lifted=11, approvals=31, hold="C-AMZ-FR", hold_phase="on credit hold",
)  # fmt: skip
SNAPSHOT = Snapshot(
    state="running", uptime=1234, traffic=TrafficStats(produced=60_000), rates=(100.0, 100.0),
    processed=60_000, buffered=0, in_flight=0, paused=0, assigned=21, lag=0, health="",
    exceptions={}, dispatch=Dispatch(), stock=Stock(), suppressed=0, pipeline=PIPELINE,
    orders=ORDERS,
)  # fmt: skip


def _panel(snapshot: Snapshot) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render(snapshot, {}))
    return console.export_text()


def test_the_panel_shows_the_order_pipeline_from_marketplace_to_credit() -> None:
    text = _panel(SNAPSHOT)
    assert "made 1,260 · cancelled 22 · poller read up to 2 min 11 s ago" in text
    assert (
        "ledger    received 1 · in ERP 2 · held 6 · released 9 · closed 1,180 · cancelled 22 "
        "· failed 0"
    ) in text
    assert "holds     credit block 4 · not approved (draft awaiting approval) 2" in text
    assert "delivery 1,190/2/12 · invoice 1,188/0/0 · return 140/0/9 · credit note 0/0/0" in text
    assert "told released 1,230 · held 25 (to publish 1) · shipped 1,170 (220 in two" in text
    assert "returns   sellable 92 · damaged 48 · matching no order 9" in text
    assert "C-AMZ-FR on credit hold · credit holds placed 12, lifted 11 · approvals 31" in text
    assert "exceptions delivery_line_unknown 12 · return_unmatched 9 (open)" in text


def test_the_status_line_names_every_state_and_document_for_scripts() -> None:
    line = status_line(SNAPSHOT)
    ledger = re.search(r"\| orders (\S+) documents (\S+) open_exceptions (\S+)", line)
    assert ledger is not None, line
    assert ledger.group(1) == (
        "received=1,in_erp=2,held=6,released=9,closed=1180,cancelled=22,failed=0"
    )
    assert ledger.group(2) == "delivery=1190/2/12,invoice=1188/0/0,return=140/0/9,credit_note=0/0/0"
    assert ledger.group(3) == "delivery_line_unknown=12,return_unmatched=9"
    assert "| warehouse released 1230 held 25 packages 1400 two_packages 220 shipped 1170" in line
    assert "returns sellable=92,damaged=48,unmatched=9" in line
    assert "back_office holds placed=12,lifted=11 approvals 31" in line


def test_without_the_ecc_sales_connector_the_view_says_so_instead_of_an_empty_pipeline() -> None:
    off = replace(
        SNAPSHOT,
        pipeline=Pipeline(),
        orders=OrderTrafficStats(erp="SAP ECC", off="SAP ECC sales connector not available"),
    )
    assert "orders      SAP ECC sales connector not available (no order traffic" in _panel(off)
    assert "| orders off (SAP ECC sales connector not available)" in status_line(off)
