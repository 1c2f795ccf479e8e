"""``skuflow dev`` end to end (the sample traffic alone: ``tests/unit/test_traffic.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STATUS = re.compile(r"^\[\s*\d+s\] (\w+): produced (\d+) .*processed (\d+) ", re.MULTILINE)
SUMMARY = re.compile(r"^stopped after [\d.]+s: produced (\d+), processed (\d+)", re.MULTILINE)
CONFIRMED = re.compile(r"^\[\s*\d+s\] .* \| amazon confirmed (\d+) ", re.MULTILINE)
LEDGER = re.compile(r"ledger (\S+) ")
POSTED = re.compile(r"^\[\s*\d+s\] .* \| stock lines \S*\bposted=(\d+)\b", re.MULTILINE)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _pid(output: str, name: str) -> int:
    match = re.search(rf"^  {name} .*\(pid (\d+)\)", output, re.MULTILINE)
    assert match is not None, f"no {name} pid in the startup lines:\n{output}"
    return int(match.group(1))


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_dev_runs_the_stack_confirms_dispatches_posts_stock_and_leaves_no_process_behind() -> None:
    env = {
        **os.environ,
        "SKUFLOW_CACHE_DIR": str(REPO / ".cache"),  # reuse the resolved Kafka jars
        "SKUFLOW_HEALTH_PORT": "0",
    }
    for name in ("SKUFLOW_CONFIG", "SKUFLOW_KAFKA_BOOTSTRAP", "SKUFLOW_DATABASE_URL"):
        env.pop(name, None)
    command = [sys.executable, "-m", "skuflow.cli", "dev", "--no-view", "--duration", "20"]
    result = subprocess.run(
        [*command, "--rate", "100"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    output = result.stdout
    context = f"stdout:\n{output}\nstderr (tail):\n{result.stderr[-3000:]}"
    assert result.returncode == 0, context

    statuses = [(state, int(p), int(n)) for state, p, n in STATUS.findall(output)]
    assert statuses, context
    assert any(processed > 0 for _state, _produced, processed in statuses), context
    summary = SUMMARY.search(output)
    assert summary is not None, context
    produced, processed = int(summary.group(1)), int(summary.group(2))
    assert produced >= 1000, context  # 100/s for 20 s, minus the token bucket's start
    assert processed > 0.9 * produced, context
    assert "send_failures" not in output, context

    # dispatches went through the real handler to the SP-API simulator, and the ledger says so
    assert re.search(r"^  sp-api .* at http://127\.0\.0\.1:\d+", output, re.MULTILINE), context
    confirmed = [int(n) for n in CONFIRMED.findall(output)]
    assert len(confirmed) == len(statuses), context
    assert confirmed[-1] > 0, context
    last_line = [line for line in output.splitlines() if CONFIRMED.match(line)][-1]
    ledger = LEDGER.search(last_line)
    assert ledger is not None, context
    assert "confirmed=" in ledger.group(1), context

    # stock adjustments were staged and posted to the SAP B1 simulator in 5 s windows
    assert re.search(r"^  sap b1 .* at http://127\.0\.0\.1:\d+/b1s/v1", output, re.M), context
    posted = [int(n) for n in POSTED.findall(output)]
    assert len(posted) == len(statuses), context
    assert posted[-1] > 0, context
    assert re.search(r" erp_documents [1-9]", output), context
    assert "unknown_sku=" in output or "unmapped_warehouse=" in output, context  # ghost stock

    leftovers = {name: _pid(output, name) for name in ("kafka", "postgresql")}
    deadline = time.monotonic() + 5
    while any(map(_running, leftovers.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in leftovers.items() if _running(pid)], context
