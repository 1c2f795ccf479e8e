"""``skuflow postings list|show``: summarised ERP documents and the movements behind them.

JSON shapes (stable): ``list`` prints an array of postings ``{id, key, warehouse_code, kind,
status, lines, doc_entry, doc_num, documents, attempts, last_error, created_at, posted_at,
movements}``, newest first, paged by id (``skuflow.listing``); ``movements`` counts the stock
movements behind the posting (a settled posting has no lines but has movements) and each line
carries ``movements``, the count of its own. ``show`` prints one posting with ``lines``
expanded: each document line with its ``sources`` (``event_id``, ``sku``, ``quantity``,
``source``, ``source_ref``, ``reason``, ``state``, ``topic``, ``partition``, ``offset``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import asyncpg

from skuflow.listing import ListingOutput
from worker.errors import SkuflowError
from worker.listing import keyset

_COLUMNS = """id, key, warehouse_code, kind, status, lines::text AS lines, doc_entry, doc_num,
              documents::text AS documents, attempts, last_error, created_at, posted_at"""

#: A listed posting's movements: all of them, and per document line (``{"0": n, ...}``).
_MOVEMENTS = """(SELECT count(*) FROM skuflow_stock_lines s WHERE s.posting_id = p.id) AS movements,
    (SELECT coalesce(jsonb_object_agg(l.line_no, l.n), '{}'::jsonb)::text
     FROM (SELECT s.line_no, count(*) AS n FROM skuflow_stock_lines s
           WHERE s.posting_id = p.id AND s.line_no IS NOT NULL GROUP BY s.line_no) l
    ) AS line_movements"""


def _posting(row: asyncpg.Record) -> dict[str, Any]:
    posting = dict(row)
    posting["lines"] = json.loads(row["lines"])
    posting["documents"] = json.loads(row["documents"])
    return posting


def _listed(row: asyncpg.Record) -> dict[str, Any]:
    posting = _posting(row)  # keys in column order: ..., posted_at, movements
    posting["movements"] = int(posting["movements"])
    per_line = json.loads(posting.pop("line_movements"))
    for index, line in enumerate(posting["lines"]):
        line["movements"] = int(per_line.get(str(index), 0))
    return posting


async def _list(args: argparse.Namespace, pool: asyncpg.Pool) -> int:
    out = ListingOutput(
        json_mode=args.json,
        header=f"{'ID':>6}  {'KEY':<12} {'WH':<6} {'KIND':<8} {'STATUS':<8} {'DOC':>8} "
        f"{'LINES':>5} {'MOVEMENTS':>9}",
        separator=", ",  # json.dumps's, as the array was printed whole before
    )

    def emit(row: asyncpg.Record) -> None:
        p = _listed(row)
        if args.json:
            out.json_row(json.dumps(p, default=str))
            return
        doc = p["doc_num"] if p["doc_num"] is not None else "-"
        out.text_row(f"{p['id']:>6}  {p['key']:<12} {p['warehouse_code']:<6} {p['kind']:<8} "
                     f"{p['status']:<8} {doc!s:>8} {len(p['lines']):>5} "
                     f"{p['movements']:>9}")  # fmt: skip

    counts = await keyset(
        pool,
        table="skuflow_postings p",
        columns=f"{_COLUMNS}, {_MOVEMENTS}",
        where="TRUE" if args.status == "all" else "p.status = $1",
        params=() if args.status == "all" else (args.status,),
        id_column="p.id",
        descending=True,  # newest first
        after=args.after,
        limit=args.limit,
        emit=emit,
    )
    out.finish(counts, noun="posting", status=args.status)
    return 0


async def postings_command(args: argparse.Namespace, pool: asyncpg.Pool) -> int:
    if args.postings_command == "list":
        return await _list(args, pool)
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
    posting["movements"] = len(sources)
    for index, line in enumerate(posting["lines"]):
        line["sources"] = by_line.get(index, [])
        line["movements"] = len(line["sources"])
    if posting["kind"] == "settled":
        posting["settled"] = by_line.get(None, [])
    # With SAP ECC: the IDocs behind the posting (a bisected slice's key is "<key>.<line>").
    idocs = await pool.fetch(
        """SELECT docnum, key, state, receiver_docnum, status, mat_doc, mat_year, message,
                  sent_at, updated_at
           FROM skuflow_ecc_idocs WHERE key = $1 OR key LIKE $1 || '.%' ORDER BY docnum""",
        posting["key"],
    )
    if idocs:
        posting["idocs"] = [dict(idoc) for idoc in idocs]
    if args.json:
        print(json.dumps(posting, default=str))
        return 0
    print(f"posting {posting['id']} ({posting['key']}): {posting['kind']} in warehouse "
          f"{posting['warehouse_code']}, {posting['status']}, ERP document "
          f"{posting['doc_num'] or '-'}, {posting['movements']} movement(s)")  # fmt: skip
    for idoc in posting.get("idocs", []):
        detail = []
        if idoc["mat_doc"]:
            detail.append(f"material document {idoc['mat_doc']}/{idoc['mat_year']}")
        if idoc["message"] and not idoc["mat_doc"]:
            detail.append(idoc["message"])
        summary = ", ".join([idoc["state"], *detail])
        print(f"  IDoc {idoc['docnum']} (ECC {idoc['receiver_docnum'] or '-'}, "
              f"status {idoc['status'] or '-'}): {summary}")  # fmt: skip
    for index, line in enumerate(posting["lines"]):
        batch = f" batch {line['batch_number']}" if line.get("batch_number") else ""
        target = f" to {line['to_warehouse_code']}" if line.get("to_warehouse_code") else ""
        print(f"  line {index}: {line['item_code']} x {line['quantity']}{batch}{target}")
        for src in line["sources"]:
            print(f"    {src['event_id']} ({src['source']} {src['source_ref']}): SKU {src['sku']} "
                  f"{src['quantity']} {src['reason']} [{src['state']}]")  # fmt: skip
    if posting["kind"] == "settled":
        print("  settled (netted to zero, no ERP document):")
        for src in posting["settled"]:
            print(f"    {src['event_id']} ({src['source']} {src['source_ref']}): SKU {src['sku']} "
                  f"{src['quantity']} {src['reason']} [{src['state']}]")  # fmt: skip
    return 0
