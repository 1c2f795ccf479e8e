"""Peak memory of a fresh engine facing a big backlog, in a process of its own.

``python -m bench.rss '<Probe as JSON>'`` prints one :class:`RssReport` as JSON. The engine first
runs a slow handler for ``backlog_seconds`` (its buffer stays full, the backlog stays on the
broker), then a no-op handler until the whole topic is processed. Peaks are the kernel's
high-water mark (``VmHWM``), so no sampling can miss one.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import anyio
import msgspec

from bench.cases import Progress
from bench.stack import Stack, engine_for, fresh_group
from handlers.stock.events import StockAdjusted
from skuflow.app import tune_gc
from worker.messages import Message
from worker.outcomes import DONE, Outcome

_REPO = Path(__file__).resolve().parents[1]


class Probe(msgspec.Struct, frozen=True):
    stack: Stack
    topic: str
    total: int
    slow_seconds: float
    backlog_seconds: float


class RssReport(msgspec.Struct, frozen=True):
    startup_mb: float  # VmRSS with clients started and the engine built, before consuming
    backlog_peak_mb: float  # VmHWM at the end of the slow phase
    backlog_processed: int
    backlog_buffered: int  # engine.buffered at the end of the slow phase: the buffer was full
    finish_messages: int
    finish_seconds: float
    final_peak_mb: float  # VmHWM once the whole topic is processed and the engine stopped


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} missing from /proc/self/status")


async def probe(spec: Probe) -> RssReport:
    delay = spec.slow_seconds
    progress = Progress(spec.total)

    async def handle(_event: StockAdjusted, _message: Message) -> Outcome:
        progress.begin()
        if delay:
            await anyio.sleep(delay)
        progress.add()
        return DONE

    group = fresh_group("rss")
    async with engine_for(spec.stack, spec.topic, handle, group=group) as eng:
        startup = _status_mb("VmRSS")
        async with anyio.create_task_group() as tg:
            tg.start_soon(eng.run)
            await progress.started.wait()
            await anyio.sleep(spec.backlog_seconds)
            backlog_peak, backlog_processed = _status_mb("VmHWM"), progress.count
            buffered = eng.buffered
            delay = 0.0  # the handler turns into a no-op: consume the rest of the backlog
            started = time.perf_counter()
            await progress.finished.wait()
            finish_seconds = time.perf_counter() - started
            eng.request_stop()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return RssReport(
        startup_mb=startup,
        backlog_peak_mb=backlog_peak,
        backlog_processed=backlog_processed,
        backlog_buffered=buffered,
        finish_messages=spec.total - backlog_processed,
        finish_seconds=finish_seconds,
        final_peak_mb=max(_status_mb("VmHWM"), peak_kb / 1024),
    )


def run_probe(spec: Probe, timeout: float) -> RssReport:
    """Run :func:`probe` in a fresh interpreter and return its report."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss", msgspec.json.encode(spec).decode()],
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"RSS probe failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=RssReport)


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1], type=Probe)
    tune_gc()  # as `skuflow run` does
    report = anyio.run(probe, spec, backend="asyncio", backend_options={"use_uvloop": True})
    print(msgspec.json.encode(report).decode())


if __name__ == "__main__":
    main()
