"""A real worker process with the recording handler, for crash and drain tests.

``python -m tests.support.recording_worker BOOTSTRAP DATABASE_URL GROUP TOPIC NAME [options]``
Handled events are written to ``test_handled`` in the same transaction-less way a real handler
writes its effect, then the outcome is returned; SIGTERM drains, SIGKILL is a crash.
"""

from __future__ import annotations

import argparse
import sys

import anyio
import asyncpg

from skuflow.app import Worker, engine_options, run_until_signalled
from tests.support.recording import TABLE, Recorder, TestEvent, random_latency
from tests.support.stack import settings_for
from worker.logs import configure_logging
from worker.messages import Message
from worker.outcomes import Outcome


async def main(args: argparse.Namespace) -> int:
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=4)
    await pool.execute(TABLE)

    async def stall_slow_sku(event: TestEvent, _message: Message) -> Outcome | None:
        if event.sku == args.slow_sku:
            await anyio.sleep_forever()
        return None

    recorder = Recorder(
        args.name,
        latency=random_latency(args.latency, seed=hash(args.name) & 0xFFFF),
        pool=pool,
        before=stall_slow_sku if args.slow_sku else None,
    )
    settings = settings_for(
        args.bootstrap,
        args.database_url,
        args.group,
        args.topic,
        max_in_flight=args.max_in_flight,
        drain_timeout_seconds=args.drain_timeout,
    )
    worker = Worker(settings, router=recorder.router(), options=engine_options(settings))
    try:
        return await run_until_signalled(worker)
    finally:
        await pool.close()


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "database_url", "group", "topic", "name"):
        parser.add_argument(name)
    parser.add_argument("--latency", type=float, default=0.0, help="max random handler delay")
    parser.add_argument("--slow-sku", default=None, help="events of this SKU never finish")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    configure_logging("console", "INFO")
    return int(anyio.run(main, args))


if __name__ == "__main__":
    sys.exit(cli())
