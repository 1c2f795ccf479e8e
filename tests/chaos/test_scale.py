"""Scale: three workers in one consumer group, members leaving (SIGTERM: drain, commit,
LeaveGroup) and joining while traffic flows; every change is a rebalance of both classes.

Then the independent check: exact ERP stock, no duplicate document, every order one shipment,
every invalid message an exception record.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import ChaosRun
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]


def scale(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    changes: int,
    batch: int,
    scenario: str,
) -> None:
    rng = random.Random(5)
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique) as run:
        create_topics(*run.topics)
        members = [run.worker(name) for name in ("a", "b", "c")]
        for member in members:
            member.start()
        for member in members:
            member.wait_ready(90)
        joins = leaves = 0
        for change in range(changes):
            run.produce_stock(batch)
            run.produce_dispatches(max(2, batch // 40))
            time.sleep(rng.uniform(0.5, 2.0))
            running = [m for m in members if m.alive]
            stopped = [m for m in members if not m.alive]
            if stopped and (change % 2 or len(running) == 1):
                rng.choice(stopped).start()
                joins += 1
            else:
                assert rng.choice(running).terminate() == 0
                leaves += 1
            run.fault_over()
        for member in members:
            if not member.alive:
                member.start()
                joins += 1
        run.fault_over()
        for member in members:
            member.wait_ready(90)
        faults = f"3 members; {leaves} leaves + {joins} joins = {leaves + joins} rebalances"
        run.finish(report, scenario, faults)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_three_workers_with_members_leaving_and_joining_lose_and_double_nothing(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    scale(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
          changes=10, batch=800, scenario="scale")  # fmt: skip


@pytest.mark.timeout(300)
def test_three_workers_survive_a_leave_and_a_join(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    scale(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
          changes=2, batch=200, scenario="scale (short)")  # fmt: skip
