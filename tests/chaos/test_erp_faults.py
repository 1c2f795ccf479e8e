"""ERP faults: SAP B1 down for longer than the posting retry budget, then back; a lock storm;
answers slower than the client timeout (the document was created, the client cannot know).

Phases, with traffic throughout: warm-up (every item's master data cached) → outage (the
load balancer answers 503; the postings wait with a backoff capped at 4 s, many times over;
only invalid input the worker can judge without the ERP is produced meanwhile) → lock storm
(a share of postings refused with ODBC -2039, plus the 50 ms conflict window) → slow answers
(a share of postings applied, then answered after the 2 s client timeout, plus latency).

Then the independent check: exact ERP stock, no duplicate document (the ambiguous ones are
looked up by key before any new post), every invalid message an exception record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.harness import ERP_FREE_INVALID, ChaosRun
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]


def erp_faults(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    outage: float,
    storm: float,
    slow: float,
    batch: int,
    scenario: str,
) -> None:
    with ChaosRun(
        bootstrap=kafka_bootstrap, database_url=database_url, unique=unique, b1_timeout=2.0
    ) as run:
        create_topics(*run.topics)
        worker = run.worker("a").start()
        worker.wait_ready(90)
        run.produce_stock(batch)  # warm-up: every item seen, its master data cached
        warm, _ = run.settle(60)
        assert warm.ok, warm.summary()

        run.sims.b1_faults(outage_until=(datetime.now(UTC) + timedelta(seconds=outage)).isoformat())
        ends = time.monotonic() + outage
        while time.monotonic() < ends:
            run.produce_stock(batch // 4, invalid_kinds=ERP_FREE_INVALID)
            time.sleep(min(outage / 4, max(0.0, ends - time.monotonic())))

        run.sims.b1_faults(lock_storm_rate=0.5, conflict_window_ms=50)
        run.produce_stock(batch)
        time.sleep(storm)
        run.sims.b1_faults(lock_storm_rate=0.0, conflict_window_ms=0)

        run.sims.b1_faults(
            timeout_after_apply_ms=3_000, timeout_after_apply_rate=0.3, latency_ms=300
        )
        run.produce_stock(batch)
        time.sleep(slow)
        run.sims.b1_faults(timeout_after_apply_ms=0, latency_ms=0)
        run.fault_over()

        requests = run.sims.b1_requests()
        posts = [r for r in requests if r["operation"].startswith("Inventory")]
        unavailable = sum(1 for r in requests if r["status"] == 503)
        locked = sum(1 for r in posts if r["status"] == 400)
        faults = (
            f"B1 down {outage:g} s ({unavailable}x 503); lock storm {storm:g} s ({locked}x "
            f"-2039); {slow:g} s of answers after the 2 s timeout"
        )
        run.finish(report, scenario, faults)
        assert unavailable > 0
        assert locked > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_long_b1_outage_a_lock_storm_and_late_answers_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    erp_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               outage=60, storm=30, slow=30, batch=1000, scenario="ERP faults")  # fmt: skip


@pytest.mark.timeout(300)
def test_a_b1_outage_a_lock_storm_and_late_answers_lose_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    erp_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               outage=10, storm=6, slow=6, batch=300, scenario="ERP faults (short)")  # fmt: skip
