"""Keyset listings: pages of a table by id with a stable cursor, counts from the same snapshot.

A listing runs inside one read-only REPEATABLE READ transaction, so its counts and its rows come
from one snapshot: ``shown``, ``total`` and ``remaining`` agree exactly. The page is the rows
beyond the cursor ``after`` in listing order (ids above it, or below it when the listing is
newest first), at most ``limit`` of them, or all of them when ``limit`` is None. Rows are read
through a server-side cursor, ``fetch`` rows per round trip, and handed to ``emit`` as they
arrive: a listing of every row holds one fetch in memory, never the whole table.

The cursor is an id, so it stays valid while rows are inserted: a continuation never repeats a
row and never skips a row that existed when the first page was read. Ids come from a sequence
at insert time, so a row whose transaction commits after a listing passed its id is not seen
by that walk (a window of one inserting transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec

#: The largest page a listing prints (``--limit``); ``--all`` streams more.
MAX_LIMIT = 10_000
#: Rows per round trip of the server-side cursor (exception payloads can be MiBs each).
FETCH_ROWS = 50
#: The largest cursor PostgreSQL's ``bigint`` ids can take.
MAX_ID = 2**63 - 1


class ListingCounts(msgspec.Struct, frozen=True, kw_only=True):
    """What a listing printed, against what the database holds (one snapshot)."""

    shown: int  #: rows printed
    total: int  #: rows matching the filter, wherever the cursor is
    remaining: int  #: matching rows beyond the last one printed, in listing order
    last_id: int | None  #: the id of the last row printed (the next ``--after``)

    @property
    def truncated(self) -> bool:
        """More matching rows exist beyond this page."""
        return self.remaining > 0


async def keyset(
    pool: asyncpg.Pool,
    *,
    table: str,
    columns: str,
    emit: Callable[[asyncpg.Record], None],
    where: str = "TRUE",
    params: Sequence[Any] = (),
    id_column: str = "id",
    descending: bool = False,
    after: int | None = None,
    limit: int | None = None,
    fetch: int = FETCH_ROWS,
) -> ListingCounts:
    """Emit one page of ``table`` (``columns`` of the rows matching ``where``) and count it.

    ``where`` uses ``$1``..``$n`` for ``params``; ``columns`` may hold correlated subqueries.
    Every row must carry ``id_column`` as a column named ``id``.
    """
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    if after is not None and not 0 <= after <= MAX_ID:
        raise ValueError(f"after must be a bigint id, got {after}")
    if fetch < 1:
        raise ValueError(f"fetch must be at least 1, got {fetch}")
    args: list[Any] = list(params)
    beyond = "TRUE"
    if after is not None:
        args.append(after)
        beyond = f"{id_column} {'<' if descending else '>'} ${len(args)}"
    counts_sql = (
        f"SELECT count(*) AS total, count(*) FILTER (WHERE {beyond}) AS beyond "
        f"FROM {table} WHERE {where}"
    )
    rows_sql = (
        f"SELECT {columns} FROM {table} WHERE ({where}) AND {beyond} "
        f"ORDER BY {id_column} {'DESC' if descending else 'ASC'}"
    )
    if limit is not None:
        args.append(limit)
        rows_sql += f" LIMIT ${len(args)}"
    shown = 0
    last_id: int | None = None
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        counted = await conn.fetchrow(counts_sql, *args[: len(params) + (after is not None)])
        async for row in conn.cursor(rows_sql, *args, prefetch=fetch):
            emit(row)
            shown += 1
            last_id = int(row["id"])
    return ListingCounts(
        shown=shown,
        total=int(counted["total"]),
        remaining=int(counted["beyond"]) - shown,
        last_id=last_id,
    )
