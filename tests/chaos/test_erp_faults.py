"""ERP faults, against SAP B1 and against SAP ECC (parametrised): the ERP down for longer than
the posting retry budget, then back; postings refused as locked; answers lost although the ERP
took the document (the client cannot know).

Phases, with traffic throughout: warm-up (every item's master data cached) → outage (503; the
postings wait with a backoff capped at 4 s, many times over; only invalid input the worker can
judge without the ERP is produced meanwhile) → locks → lost answers. Each ERP shows them its
own way (:class:`B1Faults`, :class:`EccFaults`):

* B1: the load balancer's 503; a lock storm (a share of postings refused with ODBC -2039, plus
  the 50 ms conflict window); a share of postings applied, then answered after the 2 s client
  timeout, plus latency.
* ECC (IDocs applied out of sequence throughout): 503; a run of postings whose IDoc ends in
  status 51 M3 897 (plant data locked); a share of IDocs stored, then the connection cut, plus
  latency.

Then the independent check, the same for both: exact ERP stock, no duplicate document (the
ambiguous ones are looked up before any new post), every invalid message an exception record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.chaos.harness import ERP_FREE_INVALID, ChaosRun, Simulators
from tests.chaos.report import ChaosReport
from tests.support.erps import ERP_KINDS

CreateTopics = Callable[..., None]


@dataclass(frozen=True)
class Size:
    outage: float  # seconds the ERP is down
    locks: float  # seconds of the lock phase
    lost: float  # seconds of lost answers
    batch: int  # adjustments per phase
    ecc_locks: int  # ECC: postings failing on a lock in the lock phase


SHORT = Size(outage=10, locks=6, lost=6, batch=300, ecc_locks=5)
FULL = Size(outage=60, locks=30, lost=30, batch=1000, ecc_locks=20)


class B1Faults:
    """SAP B1's faults, through the simulator's HTTP fault endpoint."""

    def __init__(self, sims: Simulators) -> None:
        self.sims = sims

    def outage(self, until: datetime) -> None:
        self.sims.b1_faults(outage_until=until.isoformat())

    def locks(self, size: Size, on: bool) -> None:
        self.sims.b1_faults(lock_storm_rate=0.5 if on else 0.0, conflict_window_ms=50 if on else 0)

    def lost_answers(self, on: bool) -> None:
        if on:
            self.sims.b1_faults(
                timeout_after_apply_ms=3_000, timeout_after_apply_rate=0.3, latency_ms=300
            )
        else:
            self.sims.b1_faults(timeout_after_apply_ms=0, latency_ms=0)

    def injected(self, size: Size) -> tuple[str, list[int]]:
        """What was injected, and the counts each fault phase must have left (each > 0)."""
        requests = self.sims.b1_requests()
        posts = [r for r in requests if r["operation"].startswith("Inventory")]
        unavailable = sum(1 for r in requests if r["status"] == 503)
        locked = sum(1 for r in posts if r["method"] == "POST" and r["status"] == 400)
        # An ambiguous posting is looked up by its key before it is posted again.
        lookups = sum(1 for r in posts if r["method"] == "GET")
        return (
            f"B1 down {size.outage:g} s ({unavailable}x 503); lock storm {size.locks:g} s "
            f"({locked}x -2039); {size.lost:g} s of answers after the 2 s timeout ({lookups}x "
            "looked up by key)"
        ), [unavailable, locked, lookups]


class EccFaults:
    """SAP ECC's faults, set on the simulator in its event loop."""

    def __init__(self, sims: Simulators) -> None:
        self.sims = sims

    def outage(self, until: datetime) -> None:
        self.sims.ecc_faults(outage_until=until)

    def locks(self, size: Size, on: bool) -> None:
        self.sims.ecc_faults(lock_next=size.ecc_locks if on else 0)

    def lost_answers(self, on: bool) -> None:
        if on:
            self.sims.ecc_faults(lost_answer_rate=0.3, lost_answer_mode="reset", latency_ms=200)
        else:
            self.sims.ecc_faults(lost_answer_rate=0.0, latency_ms=0)

    def injected(self, size: Size) -> tuple[str, list[int]]:
        counters = self.sims.ecc_counters()
        unavailable = sum(1 for status in self.sims.ecc_statuses() if status == 503)
        locks, lost = counters.get("lock_errors", 0), counters.get("lost_answers", 0)
        return (
            f"ECC down {size.outage:g} s ({unavailable}x 503); {locks}x 51 M3 897 (locks); "
            f"{size.lost:g} s of lost answers ({lost}x, IDoc stored); IDocs applied out of "
            "sequence throughout"
        ), [unavailable, locks, lost]


FAULTS: dict[str, type[B1Faults | EccFaults]] = {"b1": B1Faults, "ecc": EccFaults}


def erp_faults(
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
    with ChaosRun(
        bootstrap=kafka_bootstrap, database_url=database_url, unique=unique, b1_timeout=2.0,
        erp=erp,
    ) as run:  # fmt: skip
        faults = FAULTS[erp](run.sims)
        create_topics(*run.topics)
        worker = run.worker("a").start()
        worker.wait_ready(90)
        run.produce_stock(size.batch)  # warm-up: every item seen, its master data cached
        warm, _ = run.settle(90)
        assert warm.ok, warm.summary()

        faults.outage(datetime.now(UTC) + timedelta(seconds=size.outage))
        ends = time.monotonic() + size.outage
        while time.monotonic() < ends:
            run.produce_stock(size.batch // 4, invalid_kinds=ERP_FREE_INVALID)
            time.sleep(min(size.outage / 4, max(0.0, ends - time.monotonic())))

        faults.locks(size, on=True)
        run.produce_stock(size.batch)
        time.sleep(size.locks)
        faults.locks(size, on=False)

        faults.lost_answers(on=True)
        run.produce_stock(size.batch)
        time.sleep(size.lost)
        faults.lost_answers(on=False)
        run.fault_over()

        injected, counts = faults.injected(size)
        run.finish(report, scenario, injected)
        assert all(count > 0 for count in counts), injected  # every fault was met


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("erp", ERP_KINDS)
def test_a_long_erp_outage_locks_and_lost_answers_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    erp_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               erp=erp, size=FULL, scenario="ERP faults")  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("erp", ERP_KINDS)
def test_an_erp_outage_locks_and_lost_answers_lose_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    erp_faults(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
               erp=erp, size=SHORT, scenario="ERP faults (short)")  # fmt: skip
