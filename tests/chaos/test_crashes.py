"""Crashes: SIGKILL the worker at random points and at the dangerous ones, restart it each time.

The kinds of kill, in turn:

* ``random``   — after a random pause while traffic is being worked;
* ``erp-post`` — the process dies right after B1 created a document and before the posting's
  plan reaches PostgreSQL (the crash point of :mod:`tests.chaos.worker_main`);
* ``confirm``  — the same right after Amazon accepted a confirmation, before the ledger says so;
* ``rebalance`` — a second member joins; the first is killed as soon as it has revoked its
  partitions, in the middle of the rebalance; then the second is killed too.

Then the independent check: exact ERP stock, no duplicate document, every order one shipment,
every invalid message an exception record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import ChaosRun, WorkerProcess, wait_until
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]
KINDS = ("erp-post", "random", "confirm", "rebalance")
#: With SAP ECC also: killed right after ECC stored an IDoc, before its application is followed.
ECC_KINDS = ("idoc-send", *KINDS)


def _self_kill(worker: WorkerProcess, hook: str) -> None:
    """Restart ``worker`` with a crash point armed and wait until it has killed itself."""
    worker.kill()
    worker.start(**{hook: "1"})
    assert worker.wait_exit(120) == -9, worker.tail()


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
    erp: str = "b1",
) -> None:
    rng = random.Random(3)
    kinds = ECC_KINDS if erp == "ecc" else KINDS
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
def test_twelve_sigkills_at_random_and_dangerous_points_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=10, batch=600, scenario="crashes")  # fmt: skip


@pytest.mark.timeout(300)
def test_sigkills_after_an_erp_post_after_a_confirmation_and_mid_rebalance_lose_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=4, batch=200, scenario="crashes (short)")  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkills_with_sap_ecc_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=10, batch=600, scenario="crashes, SAP ECC", erp="ecc")  # fmt: skip


@pytest.mark.timeout(300)
def test_sigkills_after_an_idoc_was_stored_and_after_a_posting_lose_nothing_with_ecc(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    crashes(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
            rounds=3, batch=200, scenario="crashes, SAP ECC (short)", erp="ecc")  # fmt: skip
