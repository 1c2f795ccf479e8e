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
IDOCS = re.compile(r"^\[\s*\d+s\] .* \| ecc idocs 64=(\d+),53=(\d+),51=(\d+),56=(\d+)", re.M)
EXCEPTIONS = re.compile(r"^  exceptions: (.*)$", re.MULTILINE)
#: What the sample traffic's bad input (~1%) and ghost stock (~1% of stock) are recorded as.
BAD_INPUT = {"schema_violation", "undecodable", "unknown_type", "unknown_sku", "unmapped_warehouse"}


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


def _dev(*options: str, duration: int = 20) -> subprocess.CompletedProcess[str]:
    """``skuflow dev --no-view --duration N --rate 100 OPTIONS`` in a process of its own."""
    env = {
        **os.environ,
        "SKUFLOW_CACHE_DIR": str(REPO / ".cache"),  # reuse the resolved Kafka jars
        "SKUFLOW_HEALTH_PORT": "0",
    }
    for name in ("SKUFLOW_CONFIG", "SKUFLOW_KAFKA_BOOTSTRAP", "SKUFLOW_DATABASE_URL"):
        env.pop(name, None)
    command = [sys.executable, "-m", "skuflow.cli", "dev", "--no-view", "--duration", str(duration)]
    return subprocess.run(
        [*command, "--rate", "100", *options],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def _no_process_left(output: str, context: str) -> None:
    leftovers = {name: _pid(output, name) for name in ("kafka", "postgresql")}
    deadline = time.monotonic() + 5
    while any(map(_running, leftovers.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in leftovers.items() if _running(pid)], context


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_dev_runs_the_stack_confirms_dispatches_posts_stock_and_leaves_no_process_behind() -> None:
    result = _dev()
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
    assert " | ecc idocs " not in output, context  # B1: no IDocs

    _no_process_left(output, context)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_dev_with_erp_ecc_posts_the_sample_stock_as_idocs_the_simulator_applies() -> None:
    result = _dev("--erp", "ecc", duration=15)
    output = result.stdout
    context = f"stdout:\n{output}\nstderr (tail):\n{result.stderr[-3000:]}"
    assert result.returncode == 0, context
    assert "Traceback" not in result.stderr, context

    # the worker posted to the ECC simulator, its warehouses storage locations of plant 1000
    assert re.search(r"^  sap ecc .* at http://127\.0\.0\.1:\d+, ECDCLNT100", output, re.M), context
    assert "LOC-01→1000/0001" in output, context
    summary = SUMMARY.search(output)
    assert summary is not None, context
    produced, processed = int(summary.group(1)), int(summary.group(2))
    assert produced >= 500, context
    assert processed > 0.9 * produced, context
    assert "send_failures" not in output, context

    # stock reached ECC as IDocs that ECC applied (status 53), out of sequence as it may
    statuses = STATUS.findall(output)
    idocs = [tuple(map(int, numbers)) for numbers in IDOCS.findall(output)]
    assert statuses, context
    assert len(idocs) == len(statuses), context
    _waiting, posted, _failed, profile = idocs[-1]
    assert posted > 0, context
    assert profile == 0, context  # the partner profile matches: no status 56
    posted_lines = [int(n) for n in POSTED.findall(output)]
    assert posted_lines[-1] > 0, context
    assert re.search(r" erp_documents [1-9]", output), context

    # valid traffic never becomes an exception: only the bad input and ghost stock do
    exceptions = EXCEPTIONS.search(output)
    assert exceptions is not None, context
    kinds = {part.split()[0] for part in exceptions.group(1).split(" · ") if part != "none"}
    assert kinds <= BAD_INPUT, context

    _no_process_left(output, context)
