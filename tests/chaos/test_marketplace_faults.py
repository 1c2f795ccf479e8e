"""Marketplace faults while ship-by deadlines approach: throttling (429 QuotaExceeded far
below the client's pace), an outage (503), then intermittent 500s.

Half the orders are due within the at-risk window (``dispatch.at_risk_seconds``, 2 h): they
raise ``deadline_at_risk`` alerts, must still be confirmed, and every alert must end resolved.
Throttled and failed confirmations are parked (the partition moves on) and retried by the
park retrier with backoff until Amazon accepts them.

Then the independent check: every order confirmed as exactly one shipment at the simulator
(none missing, none twice), every invalid stock message an exception record, exact ERP stock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.harness import ChaosRun
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]


def marketplace_faults(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    orders: int,
    throttle: float,
    outage: float,
    errors: float,
    scenario: str,
) -> None:
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique) as run:
        create_topics(*run.topics)
        worker = run.worker("a").start()
        worker.wait_ready(90)
        third = orders // 3

        run.sims.spapi_faults(throttle_rate=1.0, burst=2)  # the client paces at 20/s
        run.produce_dispatches(third, at_risk_share=0.5)
        run.produce_stock(200)
        time.sleep(throttle)
        run.sims.spapi_faults(throttle_rate=None, burst=None)

        until = datetime.now(UTC) + timedelta(seconds=outage)
        run.sims.spapi_faults(outage_until=until.isoformat())
        run.produce_dispatches(third, at_risk_share=0.5)
        time.sleep(outage)

        run.sims.spapi_faults(error_rate=0.3)
        run.produce_dispatches(orders - 2 * third, at_risk_share=0.5)
        time.sleep(errors)
        run.sims.spapi_faults(error_rate=0.0)
        run.fault_over()

        statuses = [r["status"] for r in run.sims.spapi_requests() if r["operation"] != "lwa"]
        faults = (
            f"throttled {throttle:g} s ({statuses.count(429)}x 429), down {outage:g} s "
            f"({statuses.count(503)}x 503), 30% errors {errors:g} s "
            f"({statuses.count(500)}x 500)"
        )
        run.finish(report, scenario, faults, timeout=300)
        assert statuses.count(429)
        assert statuses.count(503)
        assert statuses.count(500)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_throttling_an_outage_and_errors_near_deadlines_confirm_every_order_exactly_once(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    marketplace_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
                       orders=300, throttle=30, outage=45, errors=30,
                       scenario="marketplace faults")  # fmt: skip


@pytest.mark.timeout(300)
def test_throttling_and_an_outage_near_deadlines_confirm_every_order_once(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    marketplace_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
                       orders=45, throttle=4, outage=5, errors=4,
                       scenario="marketplace faults (short)")  # fmt: skip
