"""Restarts: how long a worker SIGKILLed and restarted at once sits idle, with static group
membership (``kafka.group_instance_id``) and with dynamic membership; and two processes that
claim one instance id.

Each round: the worker has confirmed everything so far, it is SIGKILLed (no drain, no
LeaveGroup), one new dispatch is produced, and the worker is started again with the same
settings. The figure is the time from that restart (the process being spawned: start-up,
PostgreSQL, migrations and the group join included) to the dispatch being confirmed at the
SP-API simulator — the first message processed. A dynamic member rejoining waits for the dead
member's session to expire; a static one gets its partitions back at once.

Then the independent check: exact ERP stock, no duplicate document, every order one shipment,
every invalid message an exception record.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from tests.chaos.harness import ChaosRun, WorkerProcess, wait_until
from tests.chaos.report import ChaosReport

CreateTopics = Callable[..., None]

#: The worker's default session timeout (config/defaults.toml), and the one before it.
SESSION_MS = 15_000
PREVIOUS_SESSION_MS = 45_000


def _confirmed(run: ChaosRun, order_id: str) -> bool:
    return any(c["order_id"] == order_id for c in run.sims.confirmations())


def _settled(run: ChaosRun) -> bool:
    confirmed = {c["order_id"] for c in run.sims.confirmations()}
    return set(run.ledger.orders) <= confirmed


def _restart_to_first_processed(run: ChaosRun, worker: WorkerProcess, timeout: float) -> float:
    """SIGKILL ``worker``, produce one dispatch, restart it; seconds from the restart to that
    dispatch confirmed."""
    wait_until(lambda: _settled(run), 120, "every dispatch so far confirmed")
    worker.kill()
    before = set(run.ledger.orders)
    run.produce_dispatches(1, at_risk_share=0.0)
    (probe,) = set(run.ledger.orders) - before
    worker.start()
    started = time.monotonic()
    wait_until(lambda: _confirmed(run, probe), timeout, f"{worker.name}: {probe} confirmed", 0.05)
    run.fault_over()
    return time.monotonic() - started


def restarts(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    modes: list[tuple[str, int, int]],
    batch: int,
    scenario: str,
) -> dict[str, list[float]]:
    """``modes``: (label, session timeout ms, rounds); a label starting "static" runs with a
    group instance id. One worker at a time in one group: each mode's worker is drained
    (SIGTERM, so it leaves the group) before the next one starts; the last one settles."""
    figures: dict[str, list[float]] = {}
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique) as run:
        create_topics(*run.topics)
        for number, (label, session_ms, rounds) in enumerate(modes):
            env = {  # the worker's defaults, but for the session timeout of the mode
                "SKUFLOW_KAFKA__SESSION_TIMEOUT_MS": str(session_ms),
                "SKUFLOW_KAFKA__HEARTBEAT_INTERVAL_MS": "3000",
            }
            if label.startswith("static"):
                env["SKUFLOW_KAFKA__GROUP_INSTANCE_ID"] = f"chaos-{number}"
            worker = run.worker(f"m{number}", **env)
            worker.start().wait_ready(90)
            for _ in range(rounds):
                run.produce_stock(batch)
                run.produce_dispatches(max(2, batch // 40))
                # A dynamic member waits for the dead one's session: allow it and the start-up.
                seconds = _restart_to_first_processed(run, worker, session_ms / 1000 + 60)
                figures.setdefault(label, []).append(seconds)
                worker.wait_ready(90)
            if number < len(modes) - 1:  # (the last one finishes the work: run.finish)
                assert worker.terminate() == 0, f"{worker.name} did not drain cleanly"
        kills = sum(rounds for _, _, rounds in modes)
        medians = "; ".join(
            f"{label} {statistics.median(values):.1f} s" for label, values in figures.items()
        )
        run.finish(
            report,
            scenario,
            f"{kills} SIGKILLs + immediate restarts; restart → first dispatch confirmed "
            f"(median): {medians}",
        )
    print(f"\n{scenario}: restart after SIGKILL → first message processed")
    print("| membership | session timeout | rounds | seconds | median |")
    print("|---|---:|---:|---|---:|")
    for label, session_ms, rounds in modes:
        values = figures[label]
        each = " / ".join(f"{v:.1f}" for v in values)
        print(
            f"| {label} | {session_ms / 1000:g} s | {rounds} | {each} | "
            f"{statistics.median(values):.1f} |"
        )
    return figures


def fenced(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    report: ChaosReport,
    *,
    batch: int,
    scenario: str,
) -> None:
    """Two processes claim one instance id: Kafka gives it to the newer one, the older one is
    fenced on its next heartbeat and exits 3 with one clear line; the newer one carries on."""
    with ChaosRun(bootstrap=kafka_bootstrap, database_url=database_url, unique=unique) as run:
        create_topics(*run.topics)
        same_id = {"SKUFLOW_KAFKA__GROUP_INSTANCE_ID": "pod-0"}
        first, second = run.worker("first", **same_id), run.worker("second", **same_id)
        first.start().wait_ready(90)
        run.produce_stock(batch)
        run.produce_dispatches(max(2, batch // 40))
        second.start().wait_ready(90)
        run.fault_over()
        assert first.wait_exit(60) == 3, first.tail()
        # One line per fenced consumer (the urgent one, the normal one, or both: the one that
        # learns second may already be draining), naming its id, and no traceback.
        lines = first.count("fenced: another process joined the consumer group")
        assert 1 <= lines <= 2, first.tail()
        assert first.count("group_instance_id=pod-0-") == lines
        assert "Traceback" not in first.log.read_text(errors="replace")
        run.produce_stock(batch)
        run.produce_dispatches(max(2, batch // 40))
        assert second.alive
        run.finish(report, scenario, "a second process with the same group instance id: 1 fenced")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_restart_after_sigkill_static_membership_against_dynamic(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    figures = restarts(
        kafka_bootstrap, database_url, unique, create_topics, chaos_report,
        modes=[
            ("static (group_instance_id)", SESSION_MS, 5),
            ("dynamic", SESSION_MS, 5),
            ("dynamic, the previous session timeout", PREVIOUS_SESSION_MS, 2),
        ],
        batch=300, scenario="restart after SIGKILL",
    )  # fmt: skip
    # The dynamic member waited for the dead one's session; the static one did not.
    assert max(figures["static (group_instance_id)"]) < SESSION_MS / 1000
    assert min(figures["dynamic"]) > max(figures["static (group_instance_id)"])


@pytest.mark.timeout(300)
def test_a_static_member_restarted_after_sigkill_does_not_wait_for_its_session(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    # A long session: had the group waited for the dead member, this would take ~45 s.
    figures = restarts(
        kafka_bootstrap, database_url, unique, create_topics, chaos_report,
        modes=[("static (group_instance_id)", PREVIOUS_SESSION_MS, 2)],
        batch=100, scenario="restart after SIGKILL (short)",
    )  # fmt: skip
    assert max(figures["static (group_instance_id)"]) < PREVIOUS_SESSION_MS / 2000


@pytest.mark.timeout(300)
def test_a_second_process_with_the_same_instance_id_fences_the_first_which_exits_3(
    kafka_bootstrap: str,
    database_url: str,
    unique: str,
    create_topics: CreateTopics,
    chaos_report: ChaosReport,
) -> None:
    fenced(kafka_bootstrap, database_url, unique, create_topics, chaos_report,
           batch=100, scenario="duplicate group instance id")  # fmt: skip
