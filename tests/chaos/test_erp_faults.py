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


def ecc_faults(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    outage: float,
    locks: int,
    lost: float,
    batch: int,
    scenario: str,
) -> None:
    """The same story against SAP ECC, whose simulator applies IDocs out of sequence: ECC down
    (503), a run of postings failing on material locks (51 M3 897), answers lost after ECC
    stored the IDoc (the connection cut), with latency."""
    with ChaosRun(
        bootstrap=kafka_bootstrap, database_url=database_url, unique=unique, b1_timeout=2.0,
        erp="ecc",
    ) as run:  # fmt: skip
        create_topics(*run.topics)
        worker = run.worker("a").start()
        worker.wait_ready(90)
        run.produce_stock(batch)  # warm-up: every item seen, its master data cached
        warm, _ = run.settle(90)
        assert warm.ok, warm.summary()

        run.sims.ecc_faults(outage_until=datetime.now(UTC) + timedelta(seconds=outage))
        ends = time.monotonic() + outage
        while time.monotonic() < ends:
            run.produce_stock(batch // 4, invalid_kinds=ERP_FREE_INVALID)
            time.sleep(min(outage / 4, max(0.0, ends - time.monotonic())))

        run.sims.ecc_faults(lock_next=locks)
        run.produce_stock(batch)
        time.sleep(4)

        run.sims.ecc_faults(lost_answer_rate=0.3, lost_answer_mode="reset", latency_ms=200)
        run.produce_stock(batch)
        time.sleep(lost)
        run.sims.ecc_faults(lost_answer_rate=0.0, latency_ms=0)
        run.fault_over()

        counters = run.sims.ecc_counters()
        faults = (
            f"ECC down {outage:g} s; {counters.get('lock_errors', 0)}x 51 M3 897 (locks); "
            f"{lost:g} s of lost answers ({counters.get('lost_answers', 0)}x, IDoc stored); "
            "IDocs applied out of sequence throughout"
        )
        run.finish(report, scenario, faults)
        assert counters.get("lock_errors", 0) > 0
        assert counters.get("lost_answers", 0) > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sap_ecc_down_locked_and_losing_answers_loses_and_doubles_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    ecc_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               outage=60, locks=20, lost=30, batch=1000,
               scenario="ERP faults, SAP ECC")  # fmt: skip


@pytest.mark.timeout(300)
def test_an_ecc_outage_locks_and_lost_answers_lose_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    ecc_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               outage=8, locks=5, lost=6, batch=300,
               scenario="ERP faults, SAP ECC (short)")  # fmt: skip
