"""How ``skuflow ... list`` prints a listing as it streams, and says when it is cut short.

stdout: with ``--json`` exactly one JSON array of the records (written row by row, so ``--all``
never holds the listing in memory); otherwise a header, one line per record and the footer
``N of M <noun>(s) with status S``. A listing that stops before the last matching row says so
on stderr, in one line: with ``--json`` a JSON object ``{"truncated": true, "shown": N,
"total": M, "remaining": R, "next_after": ID}``, otherwise ``skuflow: listing cut short: ...``.
A complete listing writes nothing to stderr. The exit status is 0 either way (README, "Command
line").
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import TextIO

from worker.errors import SkuflowError
from worker.listing import MAX_ID, MAX_LIMIT, ListingCounts

_WHOLE = re.compile(r"[0-9]+")


class ListingError(SkuflowError):
    """A bad ``--limit``/``--after``/``--all``; printed as one line, exit status 2."""


def add_listing_options(parser: argparse.ArgumentParser, *, default_limit: int) -> None:
    """``--limit N``, ``--after ID``, ``--all`` (checked by :func:`check_listing_options`)."""
    parser.add_argument(
        "--limit",
        metavar="N",
        help=f"rows to print, 1 to {MAX_LIMIT} (default {default_limit}); a listing cut short "
        "says so on stderr",
    )
    parser.add_argument(
        "--after",
        metavar="ID",
        help="continue after the row with this id, in the listing's order (the next_after of "
        "a listing cut short)",
    )
    parser.add_argument(
        "--all", action="store_true", help="every matching row, streamed (not with --limit)"
    )
    parser.set_defaults(listing_default_limit=default_limit)


def check_listing_options(args: argparse.Namespace) -> None:
    """Turn the listing options into ``args.limit`` (None: ``--all``) and ``args.after`` ints."""
    if args.all and args.limit is not None:
        raise ListingError("--all lists every row; leave out --limit")
    if args.all:
        args.limit = None
    elif args.limit is None:
        args.limit = args.listing_default_limit
    else:
        args.limit = _whole("--limit", args.limit, 1, MAX_LIMIT)
    if args.after is not None:
        args.after = _whole("--after", args.after, 0, MAX_ID)


def _whole(option: str, text: str, low: int, high: int) -> int:
    value = int(text) if _WHOLE.fullmatch(text) else None
    if value is None or not low <= value <= high:
        raise ListingError(f"{option} must be a whole number from {low} to {high}, got {text!r}")
    return value


class ListingOutput:
    """One listing on stdout, row by row, then its footer and (if cut short) the notice."""

    def __init__(
        self,
        *,
        json_mode: bool,
        header: str,
        separator: str = ",",
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self._json = json_mode
        self._separator = separator
        self._out = out if out is not None else sys.stdout
        self._err = err if err is not None else sys.stderr
        self._rows = 0
        if not json_mode:
            self._out.write(header + "\n")

    def json_row(self, encoded: str) -> None:
        self._out.write(("[" if self._rows == 0 else self._separator) + encoded)
        self._rows += 1

    def text_row(self, line: str) -> None:
        self._out.write(line + "\n")
        self._rows += 1

    def finish(self, counts: ListingCounts, *, noun: str, status: str) -> None:
        if self._json:
            self._out.write(("[]" if self._rows == 0 else "]") + "\n")
        else:
            self._out.write(f"{counts.shown} of {counts.total} {noun}(s) with status {status}\n")
        self._out.flush()
        if not counts.truncated:
            return
        if self._json:
            notice = {
                "truncated": True,
                "shown": counts.shown,
                "total": counts.total,
                "remaining": counts.remaining,
                "next_after": counts.last_id,
            }
            self._err.write(json.dumps(notice) + "\n")
        else:
            self._err.write(
                f"skuflow: listing cut short: {counts.remaining} more {noun}(s) after id "
                f"{counts.last_id}; continue with --after {counts.last_id}, or --all\n"
            )
        self._err.flush()
