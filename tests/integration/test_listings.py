"""Operator listings on the real database: paged by a stable cursor, complete or saying not.

`skuflow exceptions list` and `skuflow postings list` print at most `--limit` rows, continue
with `--after ID`, stream everything with `--all`, count from the database (`N of M`), and say
on stderr when a listing is cut short (in `--json` mode a JSON object, the documented marker).
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import asyncpg
import pytest

from handlers.flows import migrations as domain_migrations
from skuflow.cli import main as cli
from worker.listing import FETCH_ROWS
from worker.store import create_pool, migrate, package_migrations

pytestmark = [pytest.mark.integration]

#: The stable keys of a listed posting (README, "Command line"); `movements` is added to them.
POSTING_KEYS = {
    "id", "key", "warehouse_code", "kind", "status", "lines", "doc_entry", "doc_num",
    "documents", "attempts", "last_error", "created_at", "posted_at",
}  # fmt: skip


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    """A settings file naming the test's database, whose schema is migrated."""

    async def migrated() -> None:
        pool = await create_pool(database_url, min_size=1, max_size=1)
        try:
            await migrate(
                pool,
                [
                    *package_migrations("worker", "engine"),
                    *domain_migrations(),
                ],
            )
        finally:
            await pool.close()

    anyio.run(migrated)
    path = tmp_path / "skuflow.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n')
    return path


def sql(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows
        finally:
            await conn.close()

    return anyio.run(go)


def add_exceptions(database_url: str, count: int, *, payload_bytes: int = 20) -> None:
    """``count`` exception records, statuses cycling open/retrying/resolved, unique offsets."""
    sql(
        database_url,
        """INSERT INTO skuflow_exceptions (kind, reason, topic, partition, "offset", payload,
                                          status)
           SELECT 'undecodable', 'row ' || g, 'stock', 0, base + g,
                  convert_to(repeat('x', $2), 'UTF8'),
                  (ARRAY['open', 'retrying', 'resolved'])[1 + g % 3]
           FROM generate_series(1, $1) AS g,
                (SELECT coalesce(max("offset"), 0) AS base FROM skuflow_exceptions) AS b""",
        count,
        payload_bytes,
    )


class Run:
    """The CLI in this process: exit status, stdout, stderr."""

    def __init__(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self._config = config
        self._capsys = capsys

    def __call__(self, *args: str) -> tuple[str, str]:
        self._capsys.readouterr()
        assert cli([*args, "--config", str(self._config)]) == 0
        captured = self._capsys.readouterr()
        return captured.out, captured.err


def marker(err: str) -> dict[str, Any] | None:
    """The documented `--json` marker of a listing cut short (stderr is empty otherwise)."""
    if err == "":
        return None
    assert err.count("\n") == 1, err
    notice: dict[str, Any] = json.loads(err)
    assert notice["truncated"] is True
    return notice


@pytest.mark.timeout(120)
def test_exception_pages_cover_every_record_once_while_records_keep_arriving(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Run(config, capsys)
    add_exceptions(database_url, 2600)

    # The default page: 1000 of 2600, and it says so, with where to continue.
    out, err = run("exceptions", "list", "--status", "all", "--json")
    first = json.loads(out)
    assert len(first) == 1000
    assert [r["id"] for r in first] == sorted(r["id"] for r in first)
    assert marker(err) == {
        "truncated": True,
        "shown": 1000,
        "total": 2600,
        "remaining": 1600,
        "next_after": first[-1]["id"],
    }
    out, err = run("exceptions", "list", "--status", "all")
    assert out.splitlines()[-1] == "1000 of 2600 exception(s) with status all"
    assert err == (
        f"skuflow: listing cut short: 1600 more exception(s) after id {first[-1]['id']}; "
        f"continue with --after {first[-1]['id']}, or --all\n"
    )

    # Walk it in pages of 300 by the cursor; new records arrive between the pages.
    seen: list[int] = []
    after: int | None = None
    pages = 0
    while True:
        page_args = ["--limit", "300"] + ([] if after is None else ["--after", str(after)])
        out, err = run("exceptions", "list", "--status", "all", "--json", *page_args)
        page = [r["id"] for r in json.loads(out)]
        seen.extend(page)
        pages += 1
        notice = marker(err)
        total, beyond = sql(
            database_url,
            "SELECT count(*), count(*) FILTER (WHERE id > $1) FROM skuflow_exceptions",
            page[-1] if page else 0,
        )[0]
        if notice is None:
            assert beyond == 0
            break
        assert len(page) == 300
        assert notice == {
            "truncated": True,
            "shown": 300,
            "total": total,
            "remaining": beyond,
            "next_after": page[-1],
        }
        after = notice["next_after"]
        if pages <= 5:
            add_exceptions(database_url, 41)
    everything = [
        r["id"] for r in sql(database_url, "SELECT id FROM skuflow_exceptions ORDER BY id")
    ]
    assert len(everything) == 2600 + 5 * 41
    assert seen == everything  # every record exactly once, in id order
    assert pages == -(-len(everything) // 300)

    # A status filter counts and pages within that status; a complete page says nothing.
    out, err = run("exceptions", "list", "--status", "resolved", "--json")
    resolved = json.loads(out)
    (count,) = sql(
        database_url, "SELECT count(*) FROM skuflow_exceptions WHERE status = 'resolved'"
    )[0]
    assert len(resolved) == count < 1000
    assert {r["status"] for r in resolved} == {"resolved"}
    assert err == ""
    out, err = run("exceptions", "list", "--status", "resolved", "--after", str(resolved[-1]["id"]))
    assert out.splitlines()[1:] == [f"0 of {count} exception(s) with status resolved"]
    assert err == ""


@pytest.mark.timeout(120)
def test_all_streams_every_exception_without_holding_the_listing(
    config: Path, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,600 records of 16 KiB (over 40 MiB of payload) stream in fetches of FETCH_ROWS."""
    rows, size = 2600, 16 * 1024
    add_exceptions(database_url, rows, payload_bytes=size)
    assert rows > 50 * FETCH_ROWS

    def run_to_files(*args: str) -> tuple[str, str, int]:
        out_path, err_path = tmp_path / "out", tmp_path / "err"
        with out_path.open("w") as out, err_path.open("w") as err:
            monkeypatch.setattr(sys, "stdout", out)
            monkeypatch.setattr(sys, "stderr", err)
            tracemalloc.start()
            try:
                assert cli([*args, "--config", str(config)]) == 0
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                monkeypatch.undo()
        return out_path.read_text(), err_path.read_text(), peak

    out, err, peak = run_to_files("exceptions", "list", "--status", "all", "--all", "--json")
    listed = json.loads(out)
    ids = [r["id"] for r in sql(database_url, "SELECT id FROM skuflow_exceptions ORDER BY id")]
    assert [r["id"] for r in listed] == ids
    assert {len(r["payload"]) for r in listed} == {size}
    assert err == ""  # complete: no marker
    # Holding the listing would take the payloads twice over (bytes, then text): > 80 MiB;
    # streaming holds one fetch (about 2 MiB).
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"

    out, err, peak = run_to_files("exceptions", "list", "--status", "open", "--all")
    lines = out.splitlines()
    open_count = sum(1 for g in range(1, rows + 1) if g % 3 == 0)
    assert len(lines) == 1 + open_count + 1
    assert lines[-1] == f"{open_count} of {open_count} exception(s) with status open"
    assert err == ""
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"

    # --all after a cursor: everything beyond it, still complete.
    out, err, _ = run_to_files(
        "exceptions", "list", "--status", "all", "--all", "--json", "--after", str(ids[99])
    )
    assert [r["id"] for r in json.loads(out)] == ids[100:]
    assert err == ""


class Made(NamedTuple):
    kind: str
    per_line: list[int]  #: movements of each document line (none for a settled posting)
    movements: int  #: all of its movements


def add_postings(database_url: str, count: int) -> dict[int, Made]:
    """``count`` postings (entry, exit, settled in turn), each with its stock movements; a
    settled posting has no lines, and its movements no line number."""

    async def go() -> dict[int, Made]:
        conn = await asyncpg.connect(database_url)
        made: dict[int, Made] = {}
        try:
            async with conn.transaction():
                start = int(await conn.fetchval("SELECT count(*) FROM skuflow_postings"))
                for n in range(start, start + count):
                    kind = ("entry", "exit", "settled")[n % 3]
                    per_line = [1 + (n + i) % 3 for i in range(1 + n % 4)]
                    lines = (
                        []
                        if kind == "settled"
                        else [
                            {"item_code": f"I{n}-{i}", "warehouse_code": "01", "quantity": "1"}
                            for i in range(len(per_line))
                        ]
                    )
                    posting_id = int(
                        await conn.fetchval(
                            """INSERT INTO skuflow_postings (key, warehouse_code, kind, status,
                                                             lines)
                               VALUES ($1, '01', $2, $3, $4::jsonb) RETURNING id""",
                            f"T{n}",
                            kind,
                            "settled" if kind == "settled" else ("posted", "pending")[n % 2],
                            json.dumps(lines),
                        )
                    )
                    for line_no, movements in enumerate(per_line):
                        await conn.executemany(
                            """INSERT INTO skuflow_stock_lines
                                 (event_id, sku, location, item_code, warehouse_code, quantity,
                                  reason, source, source_ref, occurred_at, topic, partition,
                                  "offset", payload, posting_id, line_no, state)
                               VALUES ($1, 'SKU', 'L', 'I', '01', 1, 'count', 'wms', 'r', now(),
                                       'stock', 0, 0, '\\x7b7d', $2, $3, $4)""",
                            [
                                (
                                    f"E{posting_id}-{line_no}-{m}",
                                    posting_id,
                                    None if kind == "settled" else line_no,
                                    "settled" if kind == "settled" else "batched",
                                )
                                for m in range(movements)
                            ],
                        )
                    made[posting_id] = Made(
                        kind, [] if kind == "settled" else per_line, sum(per_line)
                    )
        finally:
            await conn.close()
        return made

    return anyio.run(go)


@pytest.mark.timeout(120)
def test_posting_pages_name_every_postings_movements_and_say_when_cut_short(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Run(config, capsys)
    made = add_postings(database_url, 262)
    at_start = sorted(made, reverse=True)  # newest first

    # The default page: the newest 100 of 262, each with its movements' count.
    out, err = run("postings", "list", "--json")
    page = json.loads(out)
    assert [p["id"] for p in page] == at_start[:100]
    assert marker(err) == {
        "truncated": True,
        "shown": 100,
        "total": 262,
        "remaining": 162,
        "next_after": at_start[99],
    }
    for posting in page:
        assert set(posting) == POSTING_KEYS | {"movements"}
        assert posting["movements"] == made[posting["id"]].movements
        if posting["kind"] == "settled":
            assert posting["lines"] == []
            assert posting["movements"] > 0
        else:
            assert [line["movements"] for line in posting["lines"]] == made[posting["id"]].per_line
    assert {p["kind"] for p in page} == {"entry", "exit", "settled"}

    # Walk every page by the cursor while new postings are made: each posting there at the
    # start exactly once, the new ones (newer than the first page) in none of the continuations.
    seen: list[int] = []
    after: int | None = None
    while True:
        page_args = ["--limit", "70"] + ([] if after is None else ["--after", str(after)])
        out, err = run("postings", "list", "--json", *page_args)
        ids = [p["id"] for p in json.loads(out)]
        seen.extend(ids)
        notice = marker(err)
        if notice is None:
            break
        assert notice["next_after"] == ids[-1]
        assert notice["remaining"] == sum(1 for i in at_start if i < ids[-1])
        after = notice["next_after"]
        made.update(add_postings(database_url, 9))
    assert seen == at_start
    assert len(made) > len(at_start)

    # --all streams every posting (more than one fetch), complete, each with its movements.
    out, err = run("postings", "list", "--all", "--json")
    everything = json.loads(out)
    assert len(everything) > 5 * FETCH_ROWS
    assert [p["id"] for p in everything] == sorted(made, reverse=True)
    assert all(p["movements"] == made[p["id"]].movements for p in everything)
    assert err == ""

    # Text: the MOVEMENTS column, `N of M` by status, and the notice on stderr when cut short.
    (settled,) = sql(database_url, "SELECT count(*) FROM skuflow_postings WHERE kind = 'settled'")[
        0
    ]
    out, err = run("postings", "list", "--status", "settled", "--limit", "10")
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["LINES", "MOVEMENTS"]
    assert lines[-1] == f"10 of {settled} posting(s) with status settled"
    for line in lines[1:-1]:
        posting_id, *_, line_count, movements = line.split()
        assert (int(line_count), int(movements)) == (0, made[int(posting_id)].movements)
    last = int(lines[-2].split()[0])
    assert err == (
        f"skuflow: listing cut short: {settled - 10} more posting(s) after id {last}; "
        f"continue with --after {last}, or --all\n"
    )

    # show: the same count, and a settled posting's movements by name.
    out, _ = run("postings", "show", str(last), "--json")
    shown = json.loads(out)
    assert shown["movements"] == len(shown["settled"]) == made[last].movements
    out, _ = run("postings", "show", str(last))
    assert f"{shown['movements']} movement(s)" in out.splitlines()[0]
    assert all(s["event_id"] in out for s in shown["settled"])
