"""``skuflow postings list|show``: summarised ERP documents and the movements behind them.

JSON shapes (stable): ``list`` prints an array of postings ``{id, key, warehouse_code, kind,
status, lines, doc_entry, doc_num, documents, attempts, last_error, created_at, posted_at}``;
``show`` prints one posting with ``lines`` expanded: each document line with its ``sources``
(``event_id``, ``sku``, ``quantity``, ``source``, ``source_ref``, ``reason``, ``state``,
``topic``, ``partition``, ``offset``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import asyncpg

from worker.errors import SkuflowError

_COLUMNS = """id, key, warehouse_code, kind, status, lines::text AS lines, doc_entry, doc_num,
              documents::text AS documents, attempts, last_error, created_at, posted_at"""


def _posting(row: asyncpg.Record) -> dict[str, Any]:
    posting = dict(row)
    posting["lines"] = json.loads(row["lines"])
    posting["documents"] = json.loads(row["documents"])
    return posting


async def postings_command(args: argparse.Namespace, pool: asyncpg.Pool) -> int:
    if args.postings_command == "list":
        status_filter = "" if args.status == "all" else "WHERE status = $2"
        params: list[Any] = [args.limit] + ([] if args.status == "all" else [args.status])
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM skuflow_postings {status_filter} ORDER BY id DESC LIMIT $1",
            *params,
        )
        postings = [_posting(r) for r in rows]
        if args.json:
            print(json.dumps(postings, default=str))
            return 0
        print(f"{'ID':>6}  {'KEY':<12} {'WH':<6} {'KIND':<8} {'STATUS':<8} {'DOC':>8} LINES")
        for p in postings:
            doc = p["doc_num"] if p["doc_num"] is not None else "-"
            print(f"{p['id']:>6}  {p['key']:<12} {p['warehouse_code']:<6} {p['kind']:<8} "
                  f"{p['status']:<8} {doc!s:>8} {len(p['lines'])}")  # fmt: skip
        print(f"{len(postings)} posting(s)")
        return 0
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM skuflow_postings WHERE id = $1", args.id)
    if row is None:
        raise SkuflowError(f"no posting with id {args.id}")
    posting = _posting(row)
    sources = await pool.fetch(
        """SELECT event_id, sku, quantity::text AS quantity, source, source_ref, reason, state,
                  line_no, topic, partition, "offset"
           FROM skuflow_stock_lines WHERE posting_id = $1 ORDER BY line_no, seq""",
        args.id,
    )
    by_line: dict[int | None, list[dict[str, Any]]] = {}
    for source in sources:
        entry = dict(source)
        by_line.setdefault(entry.pop("line_no"), []).append(entry)
    for index, line in enumerate(posting["lines"]):
        line["sources"] = by_line.get(index, [])
    if posting["kind"] == "settled":
        posting["settled"] = by_line.get(None, [])
    if args.json:
        print(json.dumps(posting, default=str))
        return 0
    print(f"posting {posting['id']} ({posting['key']}): {posting['kind']} in warehouse "
          f"{posting['warehouse_code']}, {posting['status']}, ERP document "
          f"{posting['doc_num'] or '-'}")  # fmt: skip
    for index, line in enumerate(posting["lines"]):
        batch = f" batch {line['batch_number']}" if line.get("batch_number") else ""
        print(f"  line {index}: {line['item_code']} x {line['quantity']}{batch}")
        for src in line["sources"]:
            print(f"    {src['event_id']} ({src['source']} {src['source_ref']}): SKU {src['sku']} "
                  f"{src['quantity']} {src['reason']} [{src['state']}]")  # fmt: skip
    return 0
