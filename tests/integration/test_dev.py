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
#: The order pipeline of a status line: the ledger by state, the documents (posted/waiting/failed
#: per kind), the open exception records, and what the order traffic did.
ORDERS = re.compile(
    r"\| orders (?P<ledger>\S+) documents (?P<documents>\S+) open_exceptions (?P<open>\S+) "
    r"\| amazon orders (?P<made>\d+) cancelled \d+ \| warehouse released (?P<released>\d+) "
    r"held (?P<told_held>\d+) packages (?P<packages>\d+) two_packages \d+ shipped \d+ "
    r"returns (?P<returns>\S+) \| back_office holds placed=(?P<holds>\d+),lifted=\d+ "
    r"approvals (?P<approvals>\d+)"
)
#: What the order traffic may leave open: a package naming an order item its order lacks (the
#: dispatch flow's "unknown item" path), a return matching no order.
ORDER_EXCEPTIONS = {"delivery_line_unknown", "return_unmatched"}
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


def _pairs(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)


def _orders_went_through(output: str, context: str) -> list[dict[str, str]]:
    """Orders made at the SP-API simulator were captured, created in the ERP, released to the
    warehouse, shipped and invoiced; held ones waited; a return was taken back and credited.
    Returns the order part of every status line."""
    lines = [match.groupdict() for match in ORDERS.finditer(output)]
    assert lines, context
    last = lines[-1]
    ledger = {state: int(n) for state, n in _pairs(last["ledger"]).items()}
    documents = {
        kind: tuple(map(int, n.split("/"))) for kind, n in _pairs(last["documents"]).items()
    }
    assert int(last["made"]) >= 10, context
    assert sum(ledger.values()) >= 0.7 * int(last["made"]), context  # captured, in the ledger
    assert ledger["closed"] >= 3, context  # created in the ERP, released, shipped in full
    assert ledger["failed"] == 0, context  # the ERP refused none
    assert int(last["released"]) >= ledger["closed"], context  # told on topics.released
    assert int(last["packages"]) >= 3, context
    posted = {kind: done for kind, (done, _waiting, _failed) in documents.items()}
    assert posted["delivery"] >= 3, context
    assert posted["invoice"] >= 3, context
    assert posted["return"] >= 1, context  # taken back; B1 credits it in one, ECC with a memo
    assert documents["invoice"][2] == 0, context
    # credit holds were placed, and the orders of that customer waited while they lasted
    assert any(int(line["holds"]) >= 1 and _pairs(line["ledger"])["held"] != "0" for line in lines)
    assert set(_pairs(last["open"])) <= ORDER_EXCEPTIONS, context
    return lines


def _no_process_left(output: str, context: str) -> None:
    leftovers = {name: _pid(output, name) for name in ("kafka", "postgresql")}
    deadline = time.monotonic() + 5
    while any(map(_running, leftovers.values())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in leftovers.items() if _running(pid)], context


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_dev_runs_the_stack_moves_orders_confirms_dispatches_posts_stock_leaves_nothing() -> None:
    result = _dev(duration=30)
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

    # orders through the pipeline: the SP-API simulator, the poller, B1, the warehouse, back
    started = r"^  orders      1/s at the SP-API simulator, captured by the poller"
    assert re.search(started, output, re.MULTILINE), context
    _orders_went_through(output, context)
    assert re.search(r"^  orders: ledger .*closed=\d+", output, re.MULTILINE), context

    _no_process_left(output, context)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_dev_with_erp_ecc_posts_stock_as_idocs_and_moves_orders_through_ecc() -> None:
    result = _dev("--erp", "ecc", duration=25)
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

    # valid traffic never becomes an exception: only the bad input, ghost stock, the dispatch
    # flow's deadlines and the order traffic's odd packages and returns do
    exceptions = EXCEPTIONS.search(output)
    assert exceptions is not None, context
    kinds = {part.split()[0] for part in exceptions.group(1).split(" · ") if part != "none"}
    allowed = {"deadline_at_risk", "deadline_missed", "marketplace_rejected"}
    assert kinds <= BAD_INPUT | ORDER_EXCEPTIONS | allowed, context

    # orders into ECC (ORDERS05 → sales orders), delivery blocks approved, credit holds
    lines = _orders_went_through(output, context)
    assert int(lines[-1]["approvals"]) >= 1, context  # every Amazon.de order starts blocked

    _no_process_left(output, context)
