"""SAP ECC fills the ERP port: master data from its tables, stock documents as goods-movement
IDocs followed to their application, never two in flight for one material in one plant; sales
orders and the documents that follow them (``sales orders``, ``sales deliveries``) are
:mod:`handlers.connectors.ecc.sales`'s, which :class:`EccErp` serves too.

**Master data** (``master data`` capability), read with ``RFC_READ_TABLE``: ``MARA`` (the
material: deletion flag ``LVORM``, type ``MTART``, base unit ``MEINS``), its ``MARC`` rows
(one per plant: deletion flag, plant status ``MMSTA``, batch management ``XCHPF``, serial
profile ``SERNP``) and ``T001L`` (storage locations). A warehouse code is
``<plant>/<storage location>`` (``1000/0001``); an item is judged by its view in the
warehouse's plant (:meth:`handlers.ports.erp.ItemMaster.at`).

**Stock documents** (``stock documents`` capability): :meth:`EccErp.post_document` sends one
``MBGMCR03`` IDoc per document (:mod:`handlers.connectors.ecc.idoc`) and *waits for ECC to
apply it*: a 200 only means ECC stored the IDoc. Each IDoc is recorded first in
``skuflow_ecc_idocs`` (its id is the sender's ``DOCNUM``; its ``ARCKEY`` is ``<key>#<docnum>``,
so exactly one ``EDIDC`` row answers for it), and its outcome is read back through SOAP-RFC —
``EDIDC`` by ``ARCKEY`` for the status, ``EDIDS`` for the status message, ``MKPF`` by ``XBLNR``
(= ``REF_DOC_NO`` = the key) for the material document — polling from ``poll_seconds``
doubling to ``poll_max_seconds``. ALEAUD01 audit IDocs are the fallback where the RFC
service is not released (:func:`record_audit`, fed by an intake endpoint): the tracker row is
the meeting point of both.

- 53 (posted): the material document is the posting's document (``doc_num`` = MBLNR).
- 51 with a lock message (the plant data of a material locked by another posting, M3 897
  [UNCONF number], or "is locked by"): :class:`~handlers.ports.erp.ErpLocked` — the posting
  waits with jittered backoff; the next attempt sends a new IDoc (``lock_errors = "resend"``)
  or waits for ECC's RBDMANIN job to post the same IDoc again (``"reprocessed"``; then a
  resend would post twice).
- 51 otherwise (M7 021 deficit, M7 053 period closed, material not in plant, batch missing):
  :class:`~handlers.ports.erp.ErpRejected` with SAP's message class and number and the line it
  names (the material in its variables); the poster turns that line into ``erp_rejected``
  exception records and posts the rest.
- 56 / 60 and other IDoc errors (partner profile, syntax): a configuration error
  (:class:`~handlers.ports.erp.ErpAuthFailed`): the posting waits until it is fixed.
- still 50/64/62/66/75 after ``application_wait_seconds``: :class:`ErpLocked` "still in
  process"; the next attempt follows the same IDoc, it never sends another beside it.

**Order per material, whatever ECC does.** ECC applies IDocs in any order and two IDocs of one
material collide on its plant-data lock (BAPI IDocs cannot be serialised at IDoc level [DOC]).
The poster posts a warehouse's windows in order and holds an advisory lock per item while a
document is in flight; ``post_document`` waits for the application inside that lock, and before
sending refuses (:class:`ErpLocked`) while *any* IDoc of ours touching one of the document's
materials in the same plant is not final — even one whose wait ran out. So a later window of a
material is sent only after the earlier one posted or failed.

**Never twice.** An IDoc whose answer was lost stays ``sending``; :meth:`EccErp.find_document`
(called by the poster before it posts an ambiguous document again) looks it up in ``EDIDC`` by
its ``ARCKEY`` — after ``lookup_grace_seconds``, so a request ECC is still working on is not
taken for a lost one — and follows it if it is there; only an IDoc ECC does not have is given
up (``lost``) and sent anew under a new number.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

import aiohttp
import anyio
import asyncpg
import msgspec

from config.settings import (
    EccSettings,
    default_gm_codes,
    default_movement_types,
    default_transfer_types,
)
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.idoc import (
    AuditConfirmation,
    ControlRecord,
    GoodsMovement,
    IdocError,
    MovementItem,
    goods_movement_xml,
    material_number,
    split_warehouse,
)
from handlers.connectors.ecc.reads import Conditions, StatusMessage, TableReader, line_named
from handlers.connectors.ecc.sales import EccSales, SalesOptions, sales_options
from handlers.connectors.ecc.tracker import FAILED, IN_PROCESS, POSTED, IdocTracker
from handlers.ports.erp import (
    Delivery,
    DocumentKind,
    ErpAuthFailed,
    ErpLocked,
    ErpRejected,
    ItemMaster,
    PostedDocument,
    SalesDocumentKind,
    SalesOrder,
    SalesOrderRef,
    SalesOrderState,
    SalesReturn,
    StockDocument,
    WarehouseMaster,
)

log = logging.getLogger("skuflow.ecc")

#: Message classes and numbers read as a lock on the plant data (retried, never a bad line).
LOCK_MESSAGES = frozenset({("M3", "897"), ("M3", "024"), ("MM", "031")})  # [UNCONF] numbers
LockErrors = Literal["resend", "reprocessed"]


class EccOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The connector's behaviour (from ``[ecc]`` settings)."""

    #: Per reason (lower case; "*": any other), the movement types of a net increase and of
    #: a net decrease ("501/502"), then the GM code per movement type (T158G).
    movement_types: dict[str, str] = msgspec.field(default_factory=default_movement_types)
    gm_codes: dict[str, str] = msgspec.field(default_factory=default_gm_codes)
    #: Transfers: between storage locations of a plant, between plants (one step).
    transfer_types: dict[str, str] = msgspec.field(default_factory=default_transfer_types)
    #: Material types with no stock (services, non-stock material).
    non_stock_types: frozenset[str] = frozenset({"DIEN", "NLAG"})
    #: How long ``post_document`` follows an IDoc before the posting waits and tries later.
    application_wait_seconds: float = 120.0
    poll_seconds: float = 0.5
    poll_max_seconds: float = 10.0
    #: An ambiguous send is looked up in EDIDC only this long after it was made.
    lookup_grace_seconds: float = 60.0
    lock_errors: LockErrors = "resend"
    #: Sales documents (``sales orders`` and ``sales deliveries`` capabilities).
    sales: SalesOptions = msgspec.field(default_factory=SalesOptions)


class EccErp:
    """The ERP port over an :class:`EccClient` (see the module); sales documents are
    :class:`~handlers.connectors.ecc.sales.EccSales`'s."""

    def __init__(
        self,
        client: EccClient,
        control: ControlRecord,
        pool: asyncpg.Pool,
        options: EccOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._client = client
        self._control = control
        self._pool = pool
        self._options = options or EccOptions()
        self._clock, self._sleep, self._today = clock, sleep, today
        self._reader = TableReader(client)
        self._tracker = IdocTracker(pool)
        self._sales = EccSales(
            client, control, self._reader, self._tracker, self._options.sales,
            poll=(self._options.poll_seconds, self._options.poll_max_seconds),
            lookup_grace_seconds=self._options.lookup_grace_seconds, clock=clock, sleep=sleep,
            today=today,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"EccErp({self._client!r}, partner={self._control.sender_partner!r})"

    # --- master data ------------------------------------------------------------------------

    async def get_item(self, item_code: str) -> ItemMaster | None:
        _, matnr = material_number(item_code)
        mara = await self._read("MARA", ["MATNR", "MTART", "MEINS", "LVORM"], [("MATNR", matnr)])
        if not mara:
            return None
        material = mara[0]
        plants = await self._read(
            "MARC", ["MATNR", "WERKS", "LVORM", "MMSTA", "XCHPF", "SERNP"], [("MATNR", matnr)]
        )
        deleted = material["LVORM"] == "X"
        stock = material["MTART"] not in self._options.non_stock_types
        views = {
            row["WERKS"]: ItemMaster(
                item_code=item_code,
                valid=not deleted and row["LVORM"] != "X",
                frozen=bool(row["MMSTA"]),
                inventory_item=stock,
                manages_batches=row["XCHPF"] == "X",
                manages_serials=bool(row["SERNP"]),
                unit=material["MEINS"],
            )
            for row in plants
        }
        return ItemMaster(
            item_code=item_code,
            valid=not deleted,
            frozen=False,
            inventory_item=stock,
            manages_batches=False,
            manages_serials=False,
            unit=material["MEINS"],
            plants=views,
        )

    async def get_warehouse(self, code: str) -> WarehouseMaster | None:
        try:
            plant, sloc = split_warehouse(code)
        except ValueError:
            return None
        rows = await self._read(
            "T001L", ["WERKS", "LGORT", "LGOBE"], [("WERKS", plant), ("LGORT", sloc)]
        )
        if not rows:
            return None
        return WarehouseMaster(code=code, name=rows[0]["LGOBE"], plant=plant)

    # --- stock documents --------------------------------------------------------------------

    async def post_document(self, document: StockDocument) -> PostedDocument:
        plants = {split_warehouse(line.warehouse_code)[0] for line in document.lines}
        if len(plants) != 1:
            raise ErpRejected("ECC", f"one document, one plant: {sorted(plants)}")
        plant = plants.pop()
        lines = [_matnr(line.item_code, index) for index, line in enumerate(document.lines)]
        materials = _places(document, lines)  # "<plant>/<material>": a transfer's both ends
        docnum, state = await self._claim(document.key, plant, materials)
        if state == "sending":  # an earlier send of this key whose answer was lost
            found = await self.find_document(document.kind, document.key)
            if found is not None:
                return found
            docnum, state = await self._claim(document.key, plant, materials)
        if state == "posted":
            return await self._document(docnum)
        if state == "new":
            await self._send(docnum, document, materials=sorted(set(lines)))
        # else ("stored"): an IDoc of this key is on its way: follow it, never send beside it
        return await self._follow(docnum, document.key, lines)

    async def find_document(self, kind: DocumentKind, key: str) -> PostedDocument | None:
        """The document ``key`` posted as, if ECC has it; raises :class:`ErpLocked` while an
        IDoc of the key may still become it (never answer "not there" for one in flight)."""
        for row in await self._rows(key):
            state, docnum = row["state"], int(row["docnum"])
            if state == "posted":
                return _posted(row)
            if state == "sending":
                age = (datetime.now(UTC) - row["sent_at"]).total_seconds()
                if age < self._options.lookup_grace_seconds:
                    raise ErpLocked(
                        f"IDoc {docnum} of {key}: its answer was lost {age:.0f}s ago; looked "
                        f"up after {self._options.lookup_grace_seconds:g}s"
                    )
                if await self._control_record(docnum, key) is None:
                    await self._update(docnum, state="lost", message="ECC never stored it")
                    continue
                await self._update(docnum, state="stored")
                state = "stored"
            if state == "stored":
                outcome = await self._outcome(docnum, key)
                if isinstance(outcome, PostedDocument):
                    return outcome
                if outcome is None or outcome == "reprocessed":
                    raise ErpLocked(f"IDoc {docnum} of {key} is still in process")
        # Nothing of ours in flight: a document ECC holds under this reference (a tracker
        # restored from an older backup) is this posting's all the same.
        documents = await self._read("MKPF", ["MBLNR", "MJAHR", "XBLNR"], [("XBLNR", key)])
        if documents:
            return PostedDocument(doc_entry=0, doc_num=int(documents[0]["MBLNR"]))
        return None

    # --- the IDoc's life ----------------------------------------------------------------------

    async def _claim(self, key: str, plant: str, materials: list[str]) -> tuple[int, str]:
        """(docnum, ``"new"``) for a new IDoc recorded for ``key``; (docnum, its state) for an
        IDoc of ``key`` still in flight or already posted. Refused (:class:`ErpLocked`) while
        another key's IDoc touching one of ``materials`` in ``plant`` is not final."""
        async with self._pool.acquire() as conn, conn.transaction():
            for involved in sorted({m.split("/", 1)[0] for m in materials}):  # (no deadlock)
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('skuflow-ecc:' || $1))", involved
                )
            open_rows = await conn.fetch(
                """SELECT docnum, key, materials, state FROM skuflow_ecc_idocs
                   WHERE state IN ('sending', 'stored') AND materials && $1::text[]
                   ORDER BY docnum""",
                materials,
            )
            for row in open_rows:
                if row["key"] == key:
                    return int(row["docnum"]), str(row["state"])
            posted = await conn.fetchval(
                "SELECT docnum FROM skuflow_ecc_idocs WHERE key = $1 AND state = 'posted'", key
            )
            if posted is not None:
                return int(posted), "posted"  # this key's document exists: never a second
            if open_rows:
                row = open_rows[0]
                shared = sorted(set(row["materials"]) & set(materials))
                raise ErpLocked(
                    f"IDoc {row['docnum']} (posting {row['key']}) for "
                    f"{', '.join(shared[:3])} (plant/material) is not applied yet: this "
                    "document waits for it"
                )
            docnum = await conn.fetchval(
                "INSERT INTO skuflow_ecc_idocs (key, plant, materials) VALUES ($1, $2, $3) "
                "RETURNING docnum",
                key,
                plant,
                materials,
            )
        return int(docnum), "new"

    async def _send(self, docnum: int, document: StockDocument, *, materials: list[str]) -> None:
        """Send the IDoc recorded as ``docnum`` (:meth:`IdocTracker.send`: failing for certain,
        it is ``lost`` at once, freeing its materials; ambiguous, it stays ``sending`` until
        :meth:`find_document` looks it up)."""

        async def payload() -> bytes:
            units = {
                row["MATNR"]: row["MEINS"]
                for row in await self._read("MARA", ["MATNR", "MEINS"], [("MATNR", materials)])
            }
            return goods_movement_xml(
                self._control, docnum, self._movement(document, units),
                created=datetime.now(UTC), arckey=f"{document.key}#{docnum}",
            )  # fmt: skip

        await self._tracker.send(self._client, docnum, payload)
        log.info(
            "IDoc stored by ECC",
            extra={"docnum": docnum, "posting": document.key, "lines": len(document.lines)},
        )

    def reason_class(self, reason: str) -> str:
        """The reason itself where ``movement_types`` names it, else ``"*"``: movements of
        different classes post with different movement types, never netted together."""
        name = reason.strip().lower()
        return name if name in self._options.movement_types else "*"

    def _movement(self, document: StockDocument, units: dict[str, str]) -> GoodsMovement:
        """The goods movement of a document: a receipt or issue with the movement type of its
        reason class and direction, or a transfer — 311 between storage locations of one
        plant, 301 between plants (one step), each line naming where the stock goes."""
        options = self._options
        items = []
        for index, line in enumerate(document.lines):
            plant, sloc = split_warehouse(line.warehouse_code)
            to_plant: str | None = None
            to_sloc: str | None = None
            if document.kind == "transfer":
                if line.to_warehouse_code is None:
                    raise ErpRejected("ECC", "a transfer line needs its destination", line=index)
                to_plant, to_sloc = split_warehouse(line.to_warehouse_code)
                move_type = options.transfer_types["plant" if to_plant != plant else "sloc"]
            else:
                move_type = self._move_type(document)
            unit = units.get(_matnr(line.item_code, index))
            if unit is None:
                raise ErpRejected("M3", f"material {line.item_code} does not exist", line=index)
            items.append(
                MovementItem(
                    material=line.item_code,
                    plant=plant,
                    storage_location=sloc,
                    move_type=move_type,
                    quantity=line.quantity,
                    unit=unit,
                    batch=line.batch_number,
                    move_plant=to_plant if to_plant != plant else None,
                    move_storage_location=to_sloc,
                    serial_numbers=line.serial_numbers,
                    text=_source_text(line.sources),
                )
            )
        codes = {options.gm_codes.get(item.move_type) for item in items}
        if None in codes or len(codes) != 1:
            types = sorted({item.move_type for item in items})
            raise ErpAuthFailed(f"[ecc] gm_codes give movement types {types} no single GM code")
        today = self._today()
        return GoodsMovement(
            key=document.key, gm_code=str(codes.pop()), posting_date=today,
            document_date=today, items=tuple(items),
        )  # fmt: skip

    def _move_type(self, document: StockDocument) -> str:
        """The movement type of a receipt (``entry``) or issue (``exit``) of its reason class."""
        types = self._options.movement_types
        pair = types.get(document.reason_class or "*") or types.get("*")
        if pair is None or "/" not in pair:
            raise ErpAuthFailed(f"[ecc] movement_types has no pair for {document.reason_class!r}")
        increase, decrease = pair.split("/", 1)
        return increase if document.kind == "entry" else decrease

    async def _follow(self, docnum: int, key: str, lines: list[str]) -> PostedDocument:
        """Wait for ECC to apply the IDoc (see the module for each outcome)."""
        options = self._options
        deadline = self._clock() + options.application_wait_seconds
        delay = options.poll_seconds
        while True:
            outcome = await self._outcome(docnum, key, lines)
            if isinstance(outcome, PostedDocument):
                return outcome
            if self._clock() >= deadline:
                what = "waiting for ECC to post it again (RBDMANIN)" if outcome else "in process"
                raise ErpLocked(
                    f"IDoc {docnum} of {key} still {what} after "
                    f"{options.application_wait_seconds:g}s"
                )
            await self._sleep(delay)
            delay = min(delay * 2, options.poll_max_seconds)

    async def _outcome(
        self, docnum: int, key: str, lines: list[str] | None = None
    ) -> PostedDocument | str | None:
        """The IDoc's outcome now: its document (posted), ``None`` (in process),
        ``"reprocessed"`` (a lock error ECC will post again), ``"failed"`` (final, when
        ``lines`` is None; with the document's ``lines`` — their materials — the translated
        error is raised, naming the line the message names)."""
        tracked = await self._pool.fetchrow(
            "SELECT * FROM skuflow_ecc_idocs WHERE docnum = $1", docnum
        )
        if tracked is not None and tracked["state"] == "posted":
            return _posted(tracked)  # (an audit IDoc got there first)
        control = await self._control_record(docnum, key)
        if control is None:
            return None  # stored moments ago: not readable yet
        receiver, status = control["DOCNUM"], control["STATUS"]
        if status in IN_PROCESS or not status:
            await self._update(docnum, receiver_docnum=receiver, status=status)
            return None
        if status == POSTED:
            documents = await self._read("MKPF", ["MBLNR", "MJAHR", "XBLNR"], [("XBLNR", key)])
            if not documents:
                return None  # the status is there before the document is readable
            mblnr, mjahr = documents[-1]["MBLNR"], documents[-1]["MJAHR"]
            await self._update(
                docnum, state="posted", receiver_docnum=receiver, status=status,
                mat_doc=mblnr, mat_year=mjahr, message=f"material document {mblnr}/{mjahr}",
            )  # fmt: skip
            return PostedDocument(doc_entry=int(receiver), doc_num=int(mblnr))
        message = await self._reader.last_status(receiver)
        text = message.text or f"IDoc status {status}"
        lock = status == FAILED and _is_lock(message)
        if lock and self._options.lock_errors == "reprocessed":
            await self._update(docnum, receiver_docnum=receiver, status=status, message=text)
            return "reprocessed"
        await self._update(
            docnum, state="failed", receiver_docnum=receiver, status=status, message=text
        )
        if lines is None:
            return "failed"
        if lock:
            raise ErpLocked(f"IDoc {receiver}: {message.code} {text}")
        if status == FAILED:
            raise ErpRejected(message.code, text, line=line_named(lines, message))
        raise ErpAuthFailed(f"IDoc {receiver} ended in status {status}: {message.code} {text}")

    async def _control_record(self, docnum: int, key: str) -> dict[str, str] | None:
        return await self._reader.control_record(docnum, key)

    async def _document(self, docnum: int) -> PostedDocument:
        return _posted(await self._tracker.fetch(docnum))

    async def _rows(self, key: str) -> list[asyncpg.Record]:
        return await self._tracker.rows(key)

    async def _update(self, docnum: int, **fields: str | None) -> None:
        await self._tracker.update(docnum, **fields)

    async def _read(
        self, table: str, fields: Sequence[str], conditions: Conditions
    ) -> list[dict[str, str]]:
        return await self._reader.read(table, fields, conditions)

    # --- sales orders and sales deliveries (EccSales) ------------------------------------------

    async def create_sales_order(self, order: SalesOrder) -> SalesOrderRef:
        return await self._sales.create_sales_order(order)

    async def find_sales_order(self, reference: str) -> SalesOrderRef | None:
        return await self._sales.find_sales_order(reference)

    async def sales_order_states(self, refs: Sequence[SalesOrderRef]) -> dict[str, SalesOrderState]:
        return await self._sales.sales_order_states(refs)

    async def cancel_sales_order(self, ref: SalesOrderRef) -> None:
        await self._sales.cancel_sales_order(ref)

    async def create_delivery(self, delivery: Delivery) -> PostedDocument:
        return await self._sales.create_delivery(delivery)

    async def create_invoice(self, key: str, delivery: PostedDocument) -> PostedDocument:
        return await self._sales.create_invoice(key, delivery)

    async def create_return(self, sales_return: SalesReturn) -> PostedDocument:
        return await self._sales.create_return(sales_return)

    async def create_credit_note(self, key: str, sales_return: PostedDocument) -> PostedDocument:
        return await self._sales.create_credit_note(key, sales_return)

    async def find_sales_document(self, kind: SalesDocumentKind, key: str) -> PostedDocument | None:
        return await self._sales.find_sales_document(kind, key)

    async def delivery_lines(self, delivery: PostedDocument) -> dict[int, tuple[str, Decimal]]:
        return await self._sales.delivery_lines(delivery)


def _is_lock(message: StatusMessage) -> bool:
    """A lock on the plant data (retried, never a bad line)."""
    return (message.message_class, message.number) in LOCK_MESSAGES or (
        "is locked by" in message.text
    )


def _source_text(sources: tuple[str, ...]) -> str:
    """ITEM_TEXT: the line's first source transaction, and how many more there are."""
    return sources[0] if len(sources) == 1 else f"{sources[0]} +{len(sources) - 1}"


def _places(document: StockDocument, materials: list[str]) -> list[str]:
    """``<plant>/<material>`` of every place the document changes stock in (both ends of a
    transfer): no second IDoc may touch one of them while this one is in flight."""
    places = set()
    for line, matnr in zip(document.lines, materials, strict=True):
        places.add(f"{split_warehouse(line.warehouse_code)[0]}/{matnr}")
        if line.to_warehouse_code is not None:
            places.add(f"{split_warehouse(line.to_warehouse_code)[0]}/{matnr}")
    return sorted(places)


def _matnr(item_code: str, line: int) -> str:
    try:
        return material_number(item_code)[1]
    except IdocError as exc:
        raise ErpRejected("IDOC", str(exc), line=line) from None


def _posted(row: asyncpg.Record) -> PostedDocument:
    return PostedDocument(
        doc_entry=int(row["receiver_docnum"] or 0), doc_num=int(row["mat_doc"] or 0)
    )


async def record_audit(pool: asyncpg.Pool, confirmations: Sequence[AuditConfirmation]) -> int:
    """Apply ALEAUD01 confirmations to the IDoc tracker (the fallback to reading EDIDC): a
    posted IDoc with its material document (``E1PRTOB`` BUS2017 key = MBLNR + MJAHR), a failed
    one with its message. Confirmations of IDocs that are not ours are ignored; a confirmation
    repeated changes nothing. Returns how many IDocs changed."""
    changed = 0
    for confirmation in confirmations:
        try:
            docnum = int(confirmation.sender_docnum)
        except ValueError:
            continue
        if confirmation.status == POSTED:
            key = confirmation.object_key
            result = await pool.execute(
                """UPDATE skuflow_ecc_idocs SET state = 'posted', status = $2,
                     receiver_docnum = $3, mat_doc = $4, mat_year = $5, updated_at = now()
                   WHERE docnum = $1 AND state IN ('sending', 'stored')""",
                docnum, POSTED, confirmation.receiver_docnum or None, key[:10] or None,
                key[10:14] or None,
            )  # fmt: skip
        elif confirmation.status == FAILED:
            result = await pool.execute(
                """UPDATE skuflow_ecc_idocs SET status = $2, message = $3, updated_at = now()
                   WHERE docnum = $1 AND state IN ('sending', 'stored')""",
                docnum, FAILED, confirmation.text,
            )  # fmt: skip
        else:
            continue
        changed += result.endswith(" 1")
    return changed


def ecc_erp_from_settings(
    settings: EccSettings, session: aiohttp.ClientSession, pool: asyncpg.Pool
) -> EccErp:
    """The ECC connector of ``[ecc]`` (its password must be set)."""
    if settings.password is None:
        raise ValueError("ecc.password is required")
    client = EccClient(
        settings.url, settings.client, settings.user, settings.password, session,
        inbound=settings.inbound, timeout=settings.timeout_seconds,
        verify_tls=settings.verify_tls,
    )  # fmt: skip
    control = ControlRecord(
        client=settings.client, sid=settings.sid, sender_port=settings.sender_port,
        sender_partner=settings.sender_partner, receiver_port=settings.receiver_port or None,
        receiver_partner=settings.receiver_partner or None,
    )  # fmt: skip
    options = EccOptions(
        movement_types=dict(settings.movement_types), gm_codes=dict(settings.gm_codes),
        application_wait_seconds=settings.application_wait_seconds,
        poll_seconds=settings.poll_seconds, poll_max_seconds=settings.poll_max_seconds,
        lookup_grace_seconds=settings.lookup_grace_seconds, lock_errors=settings.lock_errors,
        transfer_types=dict(settings.transfer_types), sales=sales_options(settings),
    )  # fmt: skip
    return EccErp(client, control, pool, options)


__all__ = ["EccErp", "EccOptions", "ecc_erp_from_settings", "record_audit", "split_warehouse"]
