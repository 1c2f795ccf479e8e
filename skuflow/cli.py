"""The ``skuflow`` command line: run, dev, config check, exceptions.

Every command takes ``--config``; errors exit non-zero with one clear line on stderr;
``--json`` output is the documented, stable shape (README, "Command line").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio
import msgspec

from config.settings import Settings, SettingsError, load_settings, load_sku_map, redacted_dict
from skuflow.app import (
    CLASSES,
    VERSION,
    Worker,
    install_uvloop,
    run_until_signalled,
    tune_gc,
)
from skuflow.listing import ListingOutput, add_listing_options, check_listing_options
from worker.errors import SkuflowError
from worker.logs import configure_logging
from worker.tracing import configure_tracing


class CliError(SkuflowError):
    """An error the user can act on; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``skuflow: error: ...`` line naming the command, and
    exit status 2 (``--help`` still prints the usage)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("skuflow").strip()
        where = f" ({command})" if command else ""
        self.exit(2, f"skuflow: error: {message}{where}; see --help\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, help="settings TOML (default: $SKUFLOW_CONFIG)")

    parser = _Parser(prog="skuflow", description=__doc__, parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", parents=[common], help="run the worker daemon")
    run.add_argument(
        "--class",
        dest="classes",
        choices=("all", "urgent", "normal"),
        default="all",
        help="run both event classes (default), or only one: e.g. dispatch confirmations in "
        "their own deployment, so no stock backlog shares their event loop",
    )

    dev = commands.add_parser(
        "dev", parents=[common], help="embedded stack: broker, PostgreSQL, traffic, worker, view"
    )
    dev.add_argument("--rate", type=float, default=200.0, help="sample events per second")
    dev.add_argument("--skus", type=int, default=500, help="distinct SKUs in sample traffic")
    dev.add_argument("--no-view", action="store_true", help="log instead of the live view")
    dev.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    dev.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    dev.add_argument(
        "--erp",
        choices=("b1", "ecc"),
        default="b1",
        help="the ERP simulator the stock flow posts to: SAP B1 (default) or SAP ECC (IDocs)",
    )

    config = commands.add_parser("config", parents=[common], help="settings")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("check", parents=[common], help="validate and print settings")

    exc = commands.add_parser("exceptions", parents=[common], help="exception records")
    exc_commands = exc.add_subparsers(dest="exceptions_command", required=True)
    listing = exc_commands.add_parser("list", parents=[common])
    listing.add_argument(
        "--status", choices=("open", "retrying", "resolved", "all"), default="open"
    )
    add_listing_options(listing, default_limit=1000)
    listing.add_argument("--json", action="store_true")
    show = exc_commands.add_parser("show", parents=[common])
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    retry = exc_commands.add_parser("retry", parents=[common])
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("id", type=int, nargs="?")
    target.add_argument("--all", action="store_true", help="retry every open exception")
    resolve = exc_commands.add_parser("resolve", parents=[common])
    resolve.add_argument("id", type=int)
    resolve.add_argument("--note", required=True)

    postings = commands.add_parser("postings", parents=[common], help="summarised ERP documents")
    posting_commands = postings.add_subparsers(dest="postings_command", required=True)
    posting_list = posting_commands.add_parser("list", parents=[common])
    posting_list.add_argument("--status", choices=("pending", "posted", "settled", "failed",
                                                   "all"), default="all")  # fmt: skip
    add_listing_options(posting_list, default_limit=100)
    posting_list.add_argument("--json", action="store_true")
    posting_show = posting_commands.add_parser("show", parents=[common])
    posting_show.add_argument("id", type=int)
    posting_show.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "listing_default_limit"):
            check_listing_options(args)  # before any settings or database: a bad page is input
        settings = load_settings(args.config)
        return _dispatch(args, settings)
    except (SettingsError, CliError, SkuflowError) as exc:
        print(f"skuflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `skuflow config check | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "run":
        configure_logging(settings.log.format, settings.log.level)
        tune_gc()
        uvloop = install_uvloop()
        backend_options = {"use_uvloop": True} if uvloop is not None else {}
        classes = CLASSES if args.classes == "all" else frozenset({args.classes})
        tracer_provider = configure_tracing(VERSION)
        worker = Worker(settings, classes=classes, tracer_provider=tracer_provider)
        try:
            return int(
                anyio.run(
                    run_until_signalled, worker, backend="asyncio", backend_options=backend_options
                )
            )
        finally:
            if tracer_provider is not None:
                tracer_provider.shutdown()  # flushes the spans still queued for export
    if args.command == "dev":
        from devstack.dev import run_dev

        return run_dev(settings, args)
    if args.command == "config":
        if settings.mappings.sku_map is not None:
            load_sku_map(settings.mappings.sku_map)  # a broken map fails the check, by line
        print(json.dumps(redacted_dict(settings), indent=2, sort_keys=True, default=str))
        return 0
    if args.command == "exceptions":
        return _run_db(settings, lambda pool: _exceptions(args, settings, pool))
    if args.command == "postings":
        from skuflow.postings_cli import postings_command

        return _run_db(settings, lambda pool: postings_command(args, pool))
    raise CliError(f"unknown command {args.command}")


def _run_db(settings: Settings, action: Callable[[Any], Awaitable[int]]) -> int:
    from skuflow.app import connect_database

    async def go() -> int:
        pool = await connect_database(settings, attempts=1)
        try:
            return await action(pool)
        finally:
            await pool.close()

    return int(anyio.run(go))


async def _exceptions(args: argparse.Namespace, settings: Settings, pool: Any) -> int:
    from worker.exceptions import ExceptionRecord, ExceptionStore, republish
    from worker.kafka import build_producer

    store = ExceptionStore(pool)
    command = args.exceptions_command
    if command == "list":
        out = ListingOutput(
            json_mode=args.json,
            header=f"{'ID':>6}  {'STATUS':<9} {'KIND':<20} {'WHERE':<36} REASON",
        )

        def emit(r: ExceptionRecord) -> None:
            if args.json:
                out.json_row(msgspec.json.encode(r).decode())
                return
            where = f"{r.topic}[{r.partition}]@{r.offset}"
            out.text_row(f"{r.id:>6}  {r.status:<9} {r.kind:<20} {where:<36} {r.reason[:100]}")

        counts = await store.listing(args.status, after=args.after, limit=args.limit, emit=emit)
        out.finish(counts, noun="exception", status=args.status)
        return 0
    if command == "show":
        record = await store.get(args.id)
        if record is None:
            raise CliError(f"no exception with id {args.id}")
        if args.json:
            print(msgspec.json.encode(record).decode())
        else:
            for field, value in msgspec.structs.asdict(record).items():
                print(f"{field:>11}: {value}")
        return 0
    if command == "retry":
        ids = await store.ids("open") if args.all else [args.id]
        if not args.all and await store.get(args.id) is None:
            raise CliError(f"no exception with id {args.id}")
        producer = build_producer(settings.kafka)
        await producer.start()
        try:
            count = await republish(store, producer, ids)
        finally:
            await producer.stop()
        print(f"re-published {count} exception(s) to their topics")
        return 0
    if command == "resolve":
        if not await store.resolve(args.id, args.note):
            raise CliError(f"no exception with id {args.id}")
        print(f"exception {args.id} resolved")
        return 0
    raise CliError(f"unknown exceptions command {command}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
