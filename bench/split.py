"""The urgent class in a process of its own, as ``skuflow run --class urgent`` deploys it.

``python -m bench.split '<Spec as JSON>'`` wires the urgent engine as :class:`skuflow.app.Worker`
does with ``classes={"urgent"}`` (``urgent_options``: its own group, EDF, its own runners, one
OpenTelemetry SDK meter; no normal engine, so nothing to yield to), joins, prints ``ready``, then
records every dispatch event's latency (``time.time()`` in the handler minus the event's
``occurred_at``, as in the one-process runs) until all ``Spec.expected`` events are handled or it
receives SIGTERM, and prints one :class:`Report` as JSON. :class:`UrgentProcess` is the benchmark
process's side.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from subprocess import PIPE
from types import TracebackType

import anyio
import msgspec
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from bench.stack import Stack, outcome_sinks, started_consumer, worker_metrics, worker_settings
from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed
from handlers.flows import default_families
from skuflow.app import tune_gc, urgent_options
from worker.engine import Engine
from worker.messages import Message
from worker.outcomes import DONE, Outcome

_REPO = Path(__file__).resolve().parents[1]
_REPORT_BYTES = 16 * 1024 * 1024


class Spec(msgspec.Struct, frozen=True):
    stack: Stack
    group: str  # ``kafka.group``; the urgent class's group is derived from it
    stock_topic: str
    dispatch_topic: str
    expected: int


class Report(msgspec.Struct, frozen=True):
    latencies: list[float]  # seconds, produce→handler, in handling order
    first_at: float  # time.time() when the first / last dispatch event was handled
    last_at: float


async def urgent_class(spec: Spec) -> Report:
    settings = worker_settings(
        spec.stack, spec.group, stock_topic=spec.stock_topic, dispatch_topic=spec.dispatch_topic
    )
    latencies: list[float] = []
    first_at = last_at = 0.0
    done = anyio.Event()

    async def dispatch(event: DispatchConfirmed, _message: Message) -> Outcome:
        nonlocal first_at, last_at
        last_at = time.time()
        latencies.append(last_at - event.occurred_at.timestamp())
        if len(latencies) == 1:
            first_at = last_at
        if len(latencies) >= spec.expected:
            done.set()
        return DONE  # no SP-API call: no simulator latency, no rate limit

    router = DomainRouter(default_families({"dispatch.confirmed": dispatch}))
    options = urgent_options(settings)
    async with (
        outcome_sinks(spec.stack, settings.topics.dead_letter) as sinks,
        started_consumer(spec.stack, options.group) as consumer,
    ):
        engine = Engine(consumer, router, sinks, options, metrics=worker_metrics())
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run)
                with anyio.fail_after(60):
                    while not engine.joined:  # noqa: ASYNC110  # join, not timed
                        await anyio.sleep(0.05)
                print("ready", flush=True)
                async with anyio.create_task_group() as waiting:  # all handled, or SIGTERM

                    async def terminated() -> None:
                        async for _ in signals:
                            break
                        waiting.cancel_scope.cancel()

                    waiting.start_soon(terminated)
                    await done.wait()
                    waiting.cancel_scope.cancel()
                engine.request_stop()
    return Report(latencies, first_at, last_at)


def dedicate_cpu(pid: int) -> set[int] | None:
    """Give the urgent process a CPU of its own, as its own deployment gets its own CPU request:
    it is pinned to the last CPU, the benchmark process (the normal deployment) to the others.
    Returns the benchmark process's former CPU set (None: one CPU, nothing pinned)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    before = set(cpus)
    os.sched_setaffinity(pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))
    return before


class UrgentProcess:
    """``python -m bench.split`` as a child of the benchmark process (with a CPU of its own)."""

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._pinned: set[int] | None = None
        self._process: Process | None = None
        self._stdout: BufferedByteReceiveStream | None = None

    async def __aenter__(self) -> UrgentProcess:
        command = [sys.executable, "-m", "bench.split", msgspec.json.encode(self._spec).decode()]
        # stderr is inherited: the child's warnings show up with the benchmark's notes.
        self._process = await anyio.open_process(command, cwd=_REPO, stdout=PIPE, stderr=None)
        self._pinned = dedicate_cpu(self._process.pid)
        assert self._process.stdout is not None
        self._stdout = BufferedByteReceiveStream(self._process.stdout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pinned is not None:
            os.sched_setaffinity(0, self._pinned)  # the benchmark process gets every CPU back
        if self._process is not None:
            if self._process.returncode is None:
                self._process.terminate()
            await self._process.aclose()

    async def _line(self) -> bytes:
        assert self._stdout is not None
        assert self._process is not None
        try:
            return await self._stdout.receive_until(b"\n", _REPORT_BYTES)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            code = await self._process.wait()
            raise RuntimeError(f"the urgent process exited ({code}) early") from None

    async def ready(self) -> None:
        """Wait until the urgent engine has joined its group."""
        line = await self._line()
        if line != b"ready":
            raise RuntimeError(f"the urgent process said {line[:200]!r}, not ready")

    async def report(self, settle_seconds: float) -> Report:
        """Its report: once every event is handled, or what it has after ``settle_seconds``."""
        assert self._process is not None
        with anyio.move_on_after(settle_seconds):
            return msgspec.json.decode(await self._line(), type=Report)
        self._process.terminate()
        return msgspec.json.decode(await self._line(), type=Report)


def main() -> None:
    spec = msgspec.json.decode(sys.argv[1], type=Spec)
    tune_gc()  # as `skuflow run` does
    report = anyio.run(urgent_class, spec, backend="asyncio", backend_options={"use_uvloop": True})
    print(msgspec.json.encode(report).decode(), flush=True)


if __name__ == "__main__":
    main()
