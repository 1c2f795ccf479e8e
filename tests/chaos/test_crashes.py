"""Crashes, against SAP B1 and against SAP ECC (parametrised): SIGKILL the worker at random
points and at the dangerous ones, restart it each time.

The kinds of kill, in turn:

* ``random``   — after a random pause while traffic is being worked;
* ``erp-post`` — the process dies right after the ERP took a document (B1 created it; ECC
  posted the IDoc) and before the posting's plan reaches PostgreSQL (the crash point of
  :mod:`tests.chaos.worker_main`);
* ``idoc-send`` — ECC only: right after ECC stored an IDoc, before skuflow recorded that or
  followed its application (the restarted worker must find it by its ``ARCKEY``);
* ``confirm``  — the same right after Amazon accepted a confirmation, before the ledger says so;
* ``rebalance`` — a second member joins; the first is killed as soon as it has revoked its
  partitions, in the middle of the rebalance; then the second is killed too.

The short runs (``make test``) kill four times: B1 after a post, at random, after a
confirmation and mid-rebalance; ECC after an IDoc was stored, after a posting, mid-rebalance
and at random (the Amazon crash point does not depend on the ERP: it comes in ECC's full run).

Then the independent check, the same for both ERPs: exact ERP stock, no duplicate document,
every order one shipment, every invalid message an exception record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import ChaosRun, WorkerProcess, wait_until
from tests.chaos.report import ChaosReport
from tests.support.erps import ERP_KINDS

CreateTopics = Callable[..., None]
#: The kinds of kill per ERP, in turn.
KINDS = {
    "b1": ("erp-post", "random", "confirm", "rebalance"),
    "ecc": ("idoc-send", "erp-post", "rebalance", "random", "confirm"),
}


def _self_kill(worker: WorkerProcess, hook: str) -> None:
    """Restart ``worker`` with a crash point armed and wait until it has killed itself."""
    worker.crash_at(hook)


def _wait_for_revocation(worker: WorkerProcess, before: int) -> None:
    wait_until(lambda: worker.count("partitions revoked") > before, 60, "a rebalance")


def crashes(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    rounds: int,
    batch: int,
    scenario: str,
    erp: str,
) -> None:
    rng = random.Random(3)
    kinds = KINDS[erp]
    with ChaosRun(
        bootstrap=kafka_bootstrap, database_url=database_url, unique=unique, erp=erp
    ) as run:
        create_topics(*run.topics)
        first, second = run.worker("a"), run.worker("b")
        first.start().wait_ready()
        kills: list[str] = []
        for round_no in range(rounds):
            run.produce_stock(batch)
            run.produce_dispatches(max(2, batch // 40))
            kind = kinds[round_no % len(kinds)]
            if kind == "idoc-send":
                _self_kill(first, "SKUFLOW_CHAOS_KILL_AFTER_IDOC_SENDS")
                kills.append(kind)
            elif kind == "random":
                time.sleep(rng.uniform(0.5, 3.0))
                first.kill()
                kills.append(kind)
            elif kind == "erp-post":
                _self_kill(first, "SKUFLOW_CHAOS_KILL_AFTER_ERP_POSTS")
                kills.append(kind)
            elif kind == "confirm":
                _self_kill(first, "SKUFLOW_CHAOS_KILL_AFTER_CONFIRMATIONS")
                kills.append(kind)
            else:
                revoked = first.count("partitions revoked")
                second.start()
                _wait_for_revocation(first, revoked)
                first.kill()
                kills.append(kind)
                time.sleep(rng.uniform(0.5, 2.0))
                second.kill()
                kills.append(kind)
            first.start()
            run.fault_over()  # the last restart ends the last fault: recovery counts from here
            first.wait_ready(90)
        faults = (
            f"{len(kills)} SIGKILLs ("
            + ", ".join(f"{kills.count(kind)} {kind}" for kind in kinds)
            + ")"
        )
        run.finish(report, scenario, faults)
    assert len(kills) >= rounds


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("erp", ERP_KINDS)
def test_ten_rounds_of_sigkills_at_random_and_dangerous_points_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=10, batch=600, scenario="crashes", erp=erp)  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("erp", ERP_KINDS)
def test_sigkills_after_the_erp_took_a_document_and_mid_rebalance_lose_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
    erp: str,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=4, batch=200, scenario="crashes (short)", erp=erp)  # fmt: skip
