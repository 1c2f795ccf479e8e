"""The SAP ECC simulator over real HTTP: the IDoc services, asynchronous application out of
sequence, BAPI_GOODSMVT_CREATE semantics, RFC_READ_TABLE, ALEAUD01 feedback and fault knobs."""

from __future__ import annotations

import asyncio
import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devstack.sims.ecc import idoc as xml
from devstack.sims.ecc.server import EccSimulator
from devstack.sims.http import LocalServer

pytestmark = pytest.mark.integration

SID, CLIENT, USER, PASSWORD = "ECD", "100", "SKUFLOW_RFC", "ecc-password-DO-NOT-LEAK-7c2"
PARTNER, PORT = "SKUFLOW", "SKUFLOWPRT"
MAT = "000000000000004711"  # numeric material, internal format
BATCHED, SERIALISED, SPARE = "BATCHED-1", "SERIAL-1", "000000000000000815"
IDOC_CT = "application/x-sap.idoc"


def control(**overrides: str) -> dict[str, str]:
    """EDI_DC40 as a WE20 inbound profile for partner SKUFLOW expects."""
    fields = {
        "MANDT": CLIENT,
        "DOCNUM": "1",
        "DIRECT": "2",
        "IDOCTYP": "MBGMCR03",
        "MESTYP": "MBGMCR",
        "SNDPOR": PORT,
        "SNDPRT": "LS",
        "SNDPRN": PARTNER,
        "RCVPOR": f"SAP{SID}",
        "RCVPRT": "LS",
        "RCVPRN": f"{SID}CLNT{CLIENT}",
    }
    return {**fields, **overrides}


def item(
    material: str = MAT,
    quantity: str = "1",
    move_type: str = "501",
    plant: str = "1000",
    sloc: str = "0001",
    **extra: str,
) -> dict[str, str]:
    fields = {
        "MATERIAL": material,
        "PLANT": plant,
        "STGE_LOC": sloc,
        "MOVE_TYPE": move_type,
        "ENTRY_QNT": quantity,
    }
    return {**fields, **extra}


def mbgmcr(
    *items: dict[str, str],
    ref: str = "REF-1",
    gm_code: str = "05",
    docnum: str = "1",
    pstng_date: str = "20261203",
    serials: tuple[tuple[int, str], ...] = (),
    header_txt: str = "skuflow",
    dc: dict[str, str] | None = None,
) -> bytes:
    """A tiny MBGMCR03 IDoc-XML builder for these tests (the connector has its own)."""
    head = xml.Segment(
        "E1BP2017_GM_HEAD_01",
        {
            "PSTNG_DATE": pstng_date,
            "DOC_DATE": pstng_date,
            "REF_DOC_NO": ref,
            "HEADER_TXT": header_txt,
        },
    )
    children = [head, xml.Segment("E1BP2017_GM_CODE", {"GM_CODE": gm_code})]
    children += [xml.Segment("E1BP2017_GM_ITEM_CREATE", fields) for fields in items]
    children += [
        xml.Segment("E1BP2017_GM_SERIALNUMBER", {"MATDOC_ITM": f"{row:04d}", "SERIALNO": s})
        for row, s in serials
    ]
    root = xml.Segment("E1MBGMCR", {}, children)
    return xml.build_idoc_xml("MBGMCR03", control(DOCNUM=docnum, **(dc or {})), [root])


def soap_wrap(body: bytes) -> bytes:
    return xml.soap_envelope(ET.fromstring(body))


@dataclass
class Stack:
    sim: EccSimulator
    session: aiohttp.ClientSession
    auth: str = aiohttp.encode_basic_auth(USER, PASSWORD)

    async def post(
        self,
        body: bytes,
        path: str = "/sap/bc/idoc_xml",
        *,
        client: str | None = CLIENT,
        content_type: str = IDOC_CT,
        auth: str | None = "",
    ) -> tuple[int, bytes]:
        params = {"sap-client": client} if client is not None else {}
        headers = {"Content-Type": content_type}
        if auth is not None:
            headers["Authorization"] = auth or self.auth
        async with self.session.post(
            self.sim.url + path,
            data=body,
            params=params,
            headers=headers,
        ) as response:
            return response.status, await response.read()

    async def send(self, body: bytes) -> str:
        """POST an IDoc; the receiver number it was stored under."""
        before = set(self.sim.idocs)
        status, _ = await self.post(body)
        assert status == 200
        (docnum,) = set(self.sim.idocs) - before
        return docnum

    async def read_table(
        self,
        table: str,
        fields: tuple[str, ...] = (),
        options: tuple[str, ...] = (),
        *,
        rowcount: int = 0,
        rowskips: int = 0,
        delimiter: str = "|",
    ) -> list[dict[str, str]]:
        """RFC_READ_TABLE through SOAP-RFC, rows split by the FIELDS offsets it answers."""
        status, body = await self.post(
            rfc_request(table, fields, options, rowcount, rowskips, delimiter),
            "/sap/bc/soap/rfc",
            content_type="text/xml",
        )
        answer = xml.soap_body(body)
        if status != 200:
            raise RfcFault(answer.findtext("faultstring") or "", status)
        layout = [
            (
                f.findtext("FIELDNAME") or "",
                int(f.findtext("OFFSET") or 0),
                int(f.findtext("LENGTH") or 0),
            )
            for f in answer.iterfind("FIELDS/item")
        ]
        rows = []
        for wa in answer.iterfind("DATA/item/WA"):
            text = wa.text or ""
            rows.append({n: text[o : o + n_len].strip() for n, o, n_len in layout})
        return rows


class RfcFault(Exception):
    def __init__(self, name: str, status: int) -> None:
        super().__init__(name)
        self.name, self.status = name, status


def rfc_request(
    table: str,
    fields: tuple[str, ...],
    options: tuple[str, ...],
    rowcount: int,
    rowskips: int,
    delimiter: str,
) -> bytes:
    call = ET.Element(f"{{{xml.RFC_NS}}}RFC_READ_TABLE")
    for name, value in (
        ("QUERY_TABLE", table),
        ("DELIMITER", delimiter),
        ("ROWCOUNT", str(rowcount)),
        ("ROWSKIPS", str(rowskips)),
    ):
        ET.SubElement(call, name).text = value
    for table_name, column, values in (
        ("OPTIONS", "TEXT", options),
        ("FIELDS", "FIELDNAME", fields),
    ):
        parent = ET.SubElement(call, table_name)
        for value in values:
            ET.SubElement(ET.SubElement(parent, "item"), column).text = value
    ET.SubElement(call, "DATA")
    return xml.soap_envelope(call)


@asynccontextmanager
async def stack(seed: int = 7, **processing: Any) -> AsyncIterator[Stack]:
    sim = EccSimulator(sid=SID, client=CLIENT, user=USER, password=PASSWORD, seed=seed)
    sim.add_partner(PARTNER, PORT)
    for werks, lgort in (("1000", "0001"), ("1000", "0002"), ("2000", "0001")):
        sim.add_storage_location(werks, lgort)
    sim.add_material(MAT, ["1000", "2000"])
    sim.add_material(SPARE, ["1000"])
    sim.add_material(BATCHED, ["1000"], batches=True)
    sim.add_material(SERIALISED, ["1000"], serial_profile="0001")
    sim.set_stock(MAT, "1000", "0001", 10)
    sim.set_stock(SPARE, "1000", "0001", 10)
    sim.set_stock(BATCHED, "1000", "0001", 5, batch="LOT1")
    sim.add_serials(SERIALISED, "1000", "0001", "SN1", "SN2")
    sim.set_processing(tick_ms=5, **processing)
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(sim, session)
    finally:
        await sim.stop()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def last(sim: EccSimulator, docnum: str) -> tuple[str, str, str, str]:
    record = sim.idoc(docnum).statuses[-1]
    return record.status, record.stamid, record.stamno, record.text


# --- 1. the IDoc services: auth, client, storing ---


@pytest.mark.timeout(20)
def test_idoc_xml_needs_preemptive_basic_auth_and_the_configured_client() -> None:
    async def scenario() -> None:
        async with stack() as s:
            body = mbgmcr(item())
            status, _ = await s.post(body, auth=None)
            assert status == 401
            assert s.sim.requests[-1].status == 401
            assert (await s.post(body, auth=aiohttp.encode_basic_auth(USER, "wrong")))[0] == 401
            assert (await s.post(body, client="200"))[0] == 401
            assert s.sim.idocs == {}
            assert (await s.post(body, client=None))[0] == 200  # absent: the default client
            assert (await s.post(body, content_type="text/xml"))[0] == 200
            assert len(s.sim.idocs) == 2

    run(scenario)


@pytest.mark.timeout(20)
def test_the_401_names_basic_auth_and_no_csrf_token_is_needed() -> None:
    async def scenario() -> None:
        async with (
            stack() as s,
            s.session.post(
                s.sim.url + "/sap/bc/idoc_xml", params={"sap-client": CLIENT}, data=b"<x/>"
            ) as response,
        ):
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")

    run(scenario)


@pytest.mark.timeout(20)
def test_a_200_only_means_stored_the_posting_comes_later() -> None:
    async def scenario() -> None:
        async with stack(paused=True) as s:
            status, body = await s.post(mbgmcr(item(quantity="3")))
            assert (status, body) == (200, b"")
            (docnum,) = s.sim.idocs
            assert s.sim.idoc(docnum).status == "64"
            assert s.sim.documents == []
            assert s.sim.stock(MAT, "1000", "0001") == 10
            s.sim.set_processing(paused=False)
            await s.sim.settle()
            assert [r.status for r in s.sim.idoc(docnum).statuses] == ["50", "64", "62", "53"]
            assert s.sim.stock(MAT, "1000", "0001") == 13

    run(scenario)


@pytest.mark.timeout(20)
def test_malformed_xml_an_unknown_basic_type_or_content_type_are_http_errors() -> None:
    async def scenario() -> None:
        async with stack() as s:
            assert (await s.post(b"<MBGMCR03><IDOC BEGIN='1'>"))[0] == 400
            other = mbgmcr(item()).replace(b"MBGMCR03", b"DELVRY07")  # (ORDERS05 is known)
            assert (await s.post(other))[0] == 400
            dtd = b'<!DOCTYPE x [<!ENTITY a "b">]><MBGMCR03/>'
            assert (await s.post(dtd))[0] == 400
            assert (await s.post(mbgmcr(item()), content_type="application/json"))[0] == 415
            status, body = await s.post(b"<nope/>", "/sap/bc/srt/idoc", content_type="text/xml")
            assert status == 500
            assert xml.soap_body(body).tag == f"{{{xml.SOAP_ENV}}}Fault"
            assert s.sim.idocs == {}
            assert s.sim.counters["rejected_http"] == 4

    run(scenario)


@pytest.mark.timeout(20)
def test_the_soap_variant_stores_the_same_idoc_and_answers_its_number() -> None:
    async def scenario() -> None:
        async with stack() as s:
            status, body = await s.post(
                soap_wrap(mbgmcr(item(), docnum="77")), "/sap/bc/srt/idoc", content_type="text/xml"
            )
            assert status == 200
            assign = xml.soap_body(body)
            assert assign.tag == f"{{{xml.IDOC_SOAP_NS}}}idocAssign"
            (docnum,) = s.sim.idocs
            assert assign.findtext("DbId") == docnum
            assert len(assign.findtext("TransferId") or "") == 24
            await s.sim.settle()
            assert s.sim.idoc(docnum).status == "53"
            assert s.sim.idoc(docnum).sender_docnum == "77"

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("fields", "number"),
    [
        ({"SNDPRN": "STRANGER"}, "332"),
        ({"MESTYP": "WMMBXY"}, "078"),
        ({"RCVPRN": "ECDCLNT200"}, "078"),
        ({"DIRECT": "1"}, "078"),
        ({"SNDPOR": "OTHERPORT"}, "078"),
        ({"SNDPRT": "KU"}, "078"),
        ({"RCVPRT": "KU"}, "078"),
    ],
)
def test_a_control_record_the_partner_profile_rejects_is_stored_with_status_56(
    fields: dict[str, str], number: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            docnum = await s.send(mbgmcr(item(), dc=fields))
            await s.sim.settle()
            assert last(s.sim, docnum)[:3] == ("56", "E0", number)
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_the_sender_docnum_and_archive_key_are_kept_and_arckey_is_readable() -> None:
    async def scenario() -> None:
        async with stack() as s:
            body = mbgmcr(item(), docnum="0000000000000042", dc={"ARCKEY": "POST-K1"})
            docnum = await s.send(body)
            await s.sim.settle()
            assert s.sim.idoc(docnum).sender_docnum == "0000000000000042"
            assert s.sim.idoc(docnum).arckey == "POST-K1"
            rows = await s.read_table(
                "EDIDC", ("DOCNUM", "STATUS", "ARCKEY", "MESTYP", "SNDPRN"), ("ARCKEY = 'POST-K1'",)
            )
            assert rows == [
                {"DOCNUM": docnum, "STATUS": "53", "ARCKEY": "POST-K1", "MESTYP": "MBGMCR",
                 "SNDPRN": PARTNER},
            ]  # fmt: skip

    run(scenario)


@pytest.mark.timeout(20)
def test_buffered_number_ranges_give_16_digit_numbers_out_of_arrival_order() -> None:
    async def scenario() -> None:
        async with stack(paused=True, number_buffers=3, buffer_size=5) as s:
            numbers = [await s.send(mbgmcr(item(), docnum=str(n))) for n in range(20)]
            assert all(len(n) == 16 and n.isdigit() for n in numbers)
            assert len(set(numbers)) == 20
            assert numbers != sorted(numbers)

    run(scenario)


@pytest.mark.timeout(20)
def test_monotonic_numbers_with_one_buffer() -> None:
    async def scenario() -> None:
        async with stack(paused=True) as s:
            numbers = [await s.send(mbgmcr(item(), docnum=str(n))) for n in range(5)]
            assert numbers == sorted(numbers)

    run(scenario)


@pytest.mark.timeout(20)
def test_an_overlong_reference_is_a_syntax_error_or_cut_by_the_knob() -> None:
    async def scenario() -> None:
        async with stack() as s:
            docnum = await s.send(mbgmcr(item(), ref="R" * 17))
            await s.sim.settle()
            assert last(s.sim, docnum)[0] == "60"
            s.sim.set_processing(overlong="truncate")
            docnum = await s.send(mbgmcr(item(), ref="R" * 17))
            await s.sim.settle()
            assert last(s.sim, docnum)[0] == "53"
            assert s.sim.documents[-1].xblnr == "R" * 16

    run(scenario)


# --- 2. asynchronous application, out of sequence ---


@pytest.mark.timeout(20)
def test_statuses_run_50_64_62_then_53_with_the_material_document() -> None:
    async def scenario() -> None:
        async with stack(delay_ms=30) as s:
            docnum = await s.send(mbgmcr(item(quantity="2")))
            await s.sim.settle()
            records = s.sim.idoc(docnum).statuses
            assert [r.status for r in records] == ["50", "64", "62", "53"]
            assert (records[1].at - records[0].at).total_seconds() < 0.02
            assert (records[2].at - records[1].at).total_seconds() >= 0.025
            document = s.sim.idoc(docnum).material_document
            assert document is not None
            assert (records[-1].stamid, records[-1].stamno) == ("M7", "060")
            assert records[-1].stapa[0] == document.mblnr
            assert records[-1].statyp == "S"

    run(scenario)


async def _same_material_sequence(s: Stack, n: int = 8) -> list[str]:
    """n receipts of MAT at 1000/0001 sent while the job is paused; their references."""
    refs = [f"SEQ-{i}" for i in range(n)]
    for i, ref in enumerate(refs):
        await s.send(mbgmcr(item(quantity=str(i + 1)), ref=ref, docnum=str(i + 1)))
    s.sim.set_processing(paused=False)
    await s.sim.settle()
    return refs


@pytest.mark.timeout(20)
def test_in_order_applies_in_arrival_order() -> None:
    async def scenario() -> None:
        async with stack(paused=True, ordering="in_order") as s:
            refs = await _same_material_sequence(s)
            assert [a.xblnr for a in s.sim.history(MAT, "1000", "0001")] == refs

    run(scenario)


@pytest.mark.timeout(20)
def test_reverse_and_random_ordering_really_reorder() -> None:
    async def scenario() -> None:
        async with stack(paused=True, ordering="reverse") as s:
            refs = await _same_material_sequence(s)
            assert [a.xblnr for a in s.sim.history(MAT, "1000", "0001")] == refs[::-1]
        async with stack(paused=True, ordering="random", seed=3) as s:
            refs = await _same_material_sequence(s)
            applied = [a.xblnr for a in s.sim.history(MAT, "1000", "0001")]
            assert sorted(applied) == sorted(refs)
            assert applied != refs
            assert s.sim.stock(MAT, "1000", "0001") == 10 + sum(range(1, 9))

    run(scenario)


@pytest.mark.timeout(20)
def test_parallel_postings_of_one_material_and_plant_collide_on_the_lock() -> None:
    async def scenario() -> None:
        async with stack(paused=True, ordering="parallel", apply_ms=20) as s:
            first = await s.send(mbgmcr(item(quantity="1"), ref="A"))
            second = await s.send(mbgmcr(item(quantity="2", sloc="0002"), ref="B"))
            other = await s.send(mbgmcr(item(SPARE, quantity="1"), ref="C"))
            s.sim.set_processing(paused=False)
            await s.sim.settle()
            assert last(s.sim, first)[0] == "53"
            assert last(s.sim, other)[0] == "53"
            status, stamid, stamno, text = last(s.sim, second)
            assert (status, stamid, stamno) == ("51", "M3", "897")
            assert text == "The plant data of the material 4711 is locked by the user ALEREMOTE"
            assert s.sim.counters["lock_errors"] == 1
            assert s.sim.stock(MAT, "1000", "0002") == 0  # nothing of the loser was posted

    run(scenario)


@pytest.mark.timeout(20)
def test_lock_next_forces_transient_lock_errors_then_postings_succeed() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(lock_next=2)
            docnums = [await s.send(mbgmcr(item(), ref=f"L{n}")) for n in range(3)]
            await s.sim.settle()
            assert [last(s.sim, d)[:3] for d in docnums] == [
                ("51", "M3", "897"), ("51", "M3", "897"), ("53", "M7", "060"),
            ]  # fmt: skip
            assert s.sim.faults.lock_next == 0

    run(scenario)


@pytest.mark.timeout(20)
def test_rbdmanin_reposts_a_lock_failed_idoc_later_on_its_own() -> None:
    async def scenario() -> None:
        async with stack(reprocess_locks_ms=50) as s:
            s.sim.set_faults(lock_next=1)
            docnum = await s.send(mbgmcr(item(quantity="2")))
            await until(lambda: s.sim.idoc(docnum).status == "51")
            await s.sim.settle()
            statuses = [r.status for r in s.sim.idoc(docnum).statuses]
            assert statuses == ["50", "64", "62", "51", "62", "53"]
            assert s.sim.stock(MAT, "1000", "0001") == 12

    run(scenario)


@pytest.mark.timeout(20)
def test_slow_application_keeps_the_idoc_in_62() -> None:
    async def scenario() -> None:
        async with stack(apply_ms=300) as s:
            docnum = await s.send(mbgmcr(item()))
            await until(lambda: s.sim.idoc(docnum).status == "62")
            assert s.sim.idocs_by_status() == {"62": [docnum]}
            await s.sim.settle()
            assert s.sim.idocs_by_status() == {"53": [docnum]}

    run(scenario)


# --- 3. BAPI_GOODSMVT_CREATE semantics ---


@pytest.mark.timeout(20)
def test_receipts_and_issues_move_real_stock_and_a_deficit_is_m7_021() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.send(mbgmcr(item(quantity="5", move_type="561"), ref="IN"))
            await s.send(mbgmcr(item(quantity="4", move_type="551"), gm_code="03", ref="OUT"))
            short = await s.send(mbgmcr(item(quantity="100", move_type="201"), gm_code="03"))
            await s.sim.settle()
            assert s.sim.stock(MAT, "1000", "0001") == 11
            status, stamid, stamno, text = last(s.sim, short)
            assert (status, stamid, stamno) == ("51", "M7", "021")
            assert text == "Deficit of SL Unrestricted-use 89 EA : 4711 1000 0001"
            history = s.sim.history(MAT, "1000", "0001")
            moves = [(a.bwart, a.delta) for a in history]
            assert moves == [("561", Decimal(5)), ("551", Decimal(-4))]

    run(scenario)


@pytest.mark.timeout(20)
def test_one_idoc_is_one_material_document_all_or_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            both = await s.send(
                mbgmcr(item(quantity="2", move_type="201"), item(SPARE, "3", "201"), gm_code="03")
            )
            failing = await s.send(
                mbgmcr(item(quantity="1", move_type="201"), item(SPARE, "99", "201"), gm_code="03")
            )
            await s.sim.settle()
            document = s.sim.idoc(both).material_document
            assert document is not None
            assert [(line.zeile, line.matnr) for line in document.lines] == [(1, MAT), (2, SPARE)]
            assert last(s.sim, failing)[:3] == ("51", "M7", "021")
            assert s.sim.stock(MAT, "1000", "0001") == 8  # the failing IDoc's first item: no
            assert len(s.sim.documents) == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_transfers_311_and_301_move_stock_and_write_two_mseg_lines() -> None:
    async def scenario() -> None:
        async with stack() as s:
            sloc = await s.send(
                mbgmcr(item(quantity="3", move_type="311", MOVE_STLOC="0002"), gm_code="04")
            )
            plant = await s.send(
                mbgmcr(
                    item(quantity="2", move_type="301", MOVE_PLANT="2000", MOVE_STLOC="0001"),
                    gm_code="04",
                )
            )
            same_plant = await s.send(
                mbgmcr(item(move_type="301", MOVE_PLANT="1000", MOVE_STLOC="0002"), gm_code="04")
            )
            await s.sim.settle()
            assert s.sim.stock(MAT, "1000", "0001") == 5
            assert s.sim.stock(MAT, "1000", "0002") == 3
            assert s.sim.stock(MAT, "2000", "0001") == 2
            document = s.sim.idoc(sloc).material_document
            assert document is not None
            assert [(x.shkzg, x.lgort, x.xauto) for x in document.lines] == [
                ("H", "0001", False), ("S", "0002", True),
            ]  # fmt: skip
            assert last(s.sim, plant)[0] == "53"
            assert last(s.sim, same_plant)[:2] == ("51", "M7")

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("move_type", "gm_code", "ok"),
    [("501", "05", True), ("501", "03", False), ("201", "03", True), ("201", "05", False),
     ("311", "03", False), ("999", "05", False), ("701", "05", True), ("702", "03", True)],
)  # fmt: skip
def test_the_gm_code_must_fit_the_movement_type(move_type: str, gm_code: str, ok: bool) -> None:
    async def scenario() -> None:
        async with stack() as s:
            extra = {"MOVE_STLOC": "0002"} if move_type == "311" else {}
            docnum = await s.send(mbgmcr(item(move_type=move_type, **extra), gm_code=gm_code))
            await s.sim.settle()
            assert last(s.sim, docnum)[0] == ("53" if ok else "51")
            if not ok:
                assert last(s.sim, docnum)[1] == "M7"

    run(scenario)


@pytest.mark.timeout(20)
def test_inventory_difference_types_can_be_refused_by_the_bapi() -> None:
    async def scenario() -> None:
        async with stack(inventory_differences=False) as s:
            docnum = await s.send(mbgmcr(item(move_type="701")))
            await s.sim.settle()
            assert last(s.sim, docnum)[:2] == ("51", "M7")

    run(scenario)


@pytest.mark.timeout(20)
def test_a_closed_posting_period_is_m7_053() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(open_period="2026/12")
            ok = await s.send(mbgmcr(item(), pstng_date="20261130"))
            closed = await s.send(mbgmcr(item(), pstng_date="20261031"))
            await s.sim.settle()
            assert last(s.sim, ok)[0] == "53"
            status, stamid, stamno, text = last(s.sim, closed)
            assert (status, stamid, stamno) == ("51", "M7", "053")
            assert (
                text == "Posting only possible in periods 2026/12 and 2026/11 in company code 1000"
            )

    run(scenario)


def _blocked(sim: EccSimulator) -> None:
    sim.update_plant_data(MAT, "1000", status="01")


def _deleted(sim: EccSimulator) -> None:
    sim.update_plant_data(MAT, "1000", deleted=True)


def _nothing(sim: EccSimulator) -> None:
    return None


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("setup", "fields", "serials", "klass"),
    [
        (_nothing, {"MATERIAL": "4711"}, (), "M3"),  # no leading zeros: another material
        (_nothing, {"MATERIAL": "000000000000009999"}, (), "M3"),
        (_nothing, {"PLANT": "2000", "MATERIAL": SPARE}, (), "M7"),  # not in plant
        (_deleted, {}, (), "M7"),
        (_blocked, {}, (), "M7"),
        (_nothing, {"STGE_LOC": "0099"}, (), "M7"),
        (_nothing, {"MATERIAL": BATCHED}, (), "M7"),  # batch missing
        (_nothing, {"MATERIAL": BATCHED, "BATCH": "lot1"}, (), "M7"),  # not uppercase
        (_nothing, {"MATERIAL": SERIALISED, "ENTRY_QNT": "2"}, ((1, "SN9"),), "IO"),
        (_nothing, {"MATERIAL": SERIALISED, "ENTRY_QNT": "2"}, ((1, "SN9"), (1, "SN9")), "IO"),
        (_nothing, {"MATERIAL": SERIALISED}, ((1, "SN1"),), "IO"),  # receipt of one in stock
        (_nothing, {"ENTRY_UOM": "KG"}, (), "M7"),
        (_nothing, {"ENTRY_QNT": "-1"}, (), "M7"),
    ],
)
def test_master_data_problems_are_51_with_their_message_class(
    setup: Callable[[EccSimulator], None],
    fields: dict[str, str],
    serials: tuple[tuple[int, str], ...],
    klass: str,
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            setup(s.sim)
            docnum = await s.send(mbgmcr(item(**fields), serials=serials))
            await s.sim.settle()
            assert last(s.sim, docnum)[:2] == ("51", klass)
            assert s.sim.documents == []

    run(scenario)


@pytest.mark.timeout(20)
def test_batches_and_serial_numbers_move_with_the_stock() -> None:
    async def scenario() -> None:
        async with stack() as s:
            await s.send(mbgmcr(item(BATCHED, "2", "501", BATCH="LOT2")))
            await s.send(mbgmcr(item(BATCHED, "3", "201", BATCH="LOT1"), gm_code="03"))
            short = await s.send(mbgmcr(item(BATCHED, "3", "201", BATCH="LOT1"), gm_code="03"))
            await s.send(mbgmcr(item(SERIALISED, "1", "501"), serials=((1, "SN3"),)))
            await s.send(mbgmcr(item(SERIALISED, "1", "551"), serials=((1, "SN1"),), gm_code="03"))
            absent = await s.send(
                mbgmcr(item(SERIALISED, "1", "551"), serials=((1, "SN1"),), gm_code="03")
            )
            await s.sim.settle()
            assert s.sim.stock(BATCHED, "1000", "0001", "LOT1") == 2
            assert s.sim.stock(BATCHED, "1000", "0001", "LOT2") == 2
            assert s.sim.stock(BATCHED, "1000", "0001") == 4
            assert (
                last(s.sim, short)[3]
                == "Deficit of BA Unrestricted-use 1 EA : BATCHED-1 1000 0001 LOT1"
            )
            assert s.sim.serials(SERIALISED, "1000", "0001") == {"SN2", "SN3"}
            assert last(s.sim, absent)[:2] == ("51", "IO")

    run(scenario)


# --- 4. reading back: RFC_READ_TABLE over SOAP-RFC ---


@pytest.mark.timeout(20)
def test_rfc_read_table_reads_master_data_with_options_and_fields() -> None:
    async def scenario() -> None:
        async with stack() as s:
            marc = await s.read_table(
                "MARC", ("MATNR", "WERKS", "XCHPF", "SERNP", "MMSTA", "LVORM"),
                ("MATNR IN ('BATCHED-1', 'SERIAL-1')", "AND WERKS = '1000'"),
            )  # fmt: skip
            assert marc == [
                {"MATNR": BATCHED, "WERKS": "1000", "XCHPF": "X", "SERNP": "", "MMSTA": "",
                 "LVORM": ""},
                {"MATNR": SERIALISED, "WERKS": "1000", "XCHPF": "", "SERNP": "0001",
                 "MMSTA": "", "LVORM": ""},
            ]  # fmt: skip
            mara = await s.read_table("MARA", ("MATNR", "MEINS"), (f"MATNR = '{MAT}'",))
            assert mara == [{"MATNR": MAT, "MEINS": "EA"}]
            t001l = await s.read_table("T001L", ("WERKS", "LGORT"), ("WERKS EQ '1000'",))
            assert t001l == [{"WERKS": "1000", "LGORT": "0001"}, {"WERKS": "1000", "LGORT": "0002"}]
            everything = await s.read_table("T001L")
            assert everything[0]["MANDT"] == CLIENT
            page = await s.read_table("T001L", ("LGORT",), rowcount=1, rowskips=2)
            assert page == [{"LGORT": "0001"}]
            mard = await s.read_table("MARD", ("MATNR", "LABST"), (f"MATNR = '{MAT}'",))
            assert mard == [{"MATNR": MAT, "LABST": "10.000"}]
            mchb = await s.read_table("MCHB", ("CHARG", "CLABS"), ("CLABS > 0",))
            assert mchb == [{"CHARG": "LOT1", "CLABS": "5.000"}]

    run(scenario)


@pytest.mark.timeout(20)
def test_rfc_read_table_finds_idoc_status_and_the_material_document_by_reference() -> None:
    async def scenario() -> None:
        async with stack() as s:
            posted = await s.send(mbgmcr(item(quantity="2"), ref="POSTING-0001"))
            failed = await s.send(mbgmcr(item(quantity="99", move_type="201"), gm_code="03"))
            await s.sim.settle()
            mkpf = await s.read_table(
                "MKPF", ("MBLNR", "MJAHR", "XBLNR", "BKTXT"), ("XBLNR = 'POSTING-0001'",)
            )
            document = s.sim.idoc(posted).material_document
            assert document is not None
            assert mkpf == [{"MBLNR": document.mblnr, "MJAHR": "2026", "XBLNR": "POSTING-0001",
                             "BKTXT": "skuflow"}]  # fmt: skip
            assert len(document.mblnr) == 10
            mseg = await s.read_table(
                "MSEG", ("MBLNR", "ZEILE", "BWART", "MATNR", "MENGE", "SHKZG"),
                (f"MBLNR = '{document.mblnr}'", f"AND MJAHR = '{document.mjahr}'"),
            )  # fmt: skip
            assert mseg == [{"MBLNR": document.mblnr, "ZEILE": "0001", "BWART": "501",
                             "MATNR": MAT, "MENGE": "2.000", "SHKZG": "S"}]  # fmt: skip
            edids = await s.read_table(
                "EDIDS", ("STATUS", "STAMID", "STAMNO", "STAPA1"),
                (f"DOCNUM = '{failed}'", "AND STATUS = '51'"),
            )  # fmt: skip
            assert edids == [{"STATUS": "51", "STAMID": "M7", "STAMNO": "021", "STAPA1": "SL"}]
            statuses = await s.read_table("EDIDC", ("DOCNUM", "STATUS"), ("STATUS <> '53'",))
            assert statuses == [{"DOCNUM": failed, "STATUS": "51"}]

    run(scenario)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("table", "fields", "options", "name"),
    [
        ("ZZNOPE", (), (), "TABLE_NOT_AVAILABLE"),
        ("MARA", ("NOPE",), (), "FIELD_NOT_VALID"),
        ("MARA", ("MATNR",), ("NOPE = 'X'",), "OPTION_NOT_VALID"),
        ("MARA", ("MATNR",), ("MATNR = ",), "OPTION_NOT_VALID"),
        ("MARA", ("MATNR",), ("MATNR BETWEEN 'A' AND 'B'",), "OPTION_NOT_VALID"),
        ("MARA", (), (), "DATA_BUFFER_EXCEEDED"),
        ("EDIDS", ("STATXT",) * 8, (), "DATA_BUFFER_EXCEEDED"),
    ],
)
def test_rfc_exceptions_are_soap_faults(
    table: str, fields: tuple[str, ...], options: tuple[str, ...], name: str
) -> None:
    async def scenario() -> None:
        async with stack() as s:
            with pytest.raises(RfcFault) as fault:
                await s.read_table(table, fields, options)
            assert (fault.value.name, fault.value.status) == (name, 500)

    run(scenario)


@pytest.mark.timeout(20)
def test_soap_rfc_needs_auth_and_knows_only_rfc_read_table() -> None:
    async def scenario() -> None:
        async with stack() as s:
            request = rfc_request("MARA", (), (), 0, 0, "|")
            status, _ = await s.post(request, "/sap/bc/soap/rfc", auth=None)
            assert status == 401
            other = request.replace(b"RFC_READ_TABLE", b"BAPI_GOODSMVT_CREATE")
            status, body = await s.post(other, "/sap/bc/soap/rfc", content_type="text/xml")
            assert status == 500
            assert xml.soap_body(body).findtext("faultstring") == "FU_NOT_FOUND"

    run(scenario)


# --- 5. ALEAUD01 feedback ---


@dataclass
class AuditInbox:
    bodies: list[bytes] = field(default_factory=list)
    authorisations: list[str] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    answer: int = 200

    def confirmations(self) -> list[dict[str, Any]]:
        found = []
        for body in self.bodies:
            (audit,) = xml.parse_idoc_xml(body)
            for state in audit.segments[0].all("E1STATE"):
                prtob = state.first("E1PRTOB")
                found.append({**state.fields, "E1PRTOB": prtob.fields if prtob else None})
        return found


@asynccontextmanager
async def inbox() -> AsyncIterator[tuple[AuditInbox, str]]:
    box = AuditInbox()

    async def receive(request: web.Request) -> web.Response:
        box.bodies.append(await request.read())
        box.authorisations.append(request.headers.get("Authorization", ""))
        box.content_types.append(request.content_type)
        return web.Response(status=box.answer)

    app = web.Application()
    app.router.add_post("/ale/audit", receive)
    server = LocalServer(app)
    base = await server.start()
    try:
        yield box, base + "/ale/audit"
    finally:
        await server.stop()


@pytest.mark.timeout(20)
def test_aleaud_confirms_each_idoc_with_the_sender_docnum_status_and_object_key() -> None:
    async def scenario() -> None:
        async with stack() as s, inbox() as (box, url):
            s.sim.set_audit(url=url, user="AUDIT", password="pw", interval_ms=30)
            ok = await s.send(mbgmcr(item(), docnum="501"))
            bad = await s.send(
                mbgmcr(item(quantity="99", move_type="201"), gm_code="03", docnum="502")
            )
            await s.sim.settle()
            await until(lambda: len(box.confirmations()) == 2)
            (audit,) = xml.parse_idoc_xml(box.bodies[0])
            assert audit.basic_type == "ALEAUD01"
            assert (audit.control["MESTYP"], audit.control["DIRECT"]) == ("ALEAUD", "1")
            assert audit.control["RCVPRN"] == PARTNER
            assert audit.control["SNDPRN"] == f"{SID}CLNT{CLIENT}"
            assert audit.segments[0].name == "E1ADHDR"
            assert audit.segments[0].get("MESTYP") == "MBGMCR"
            by_sender = {c["DOCNUM"]: c for c in box.confirmations()}
            document = s.sim.idoc(ok).material_document
            assert document is not None
            assert by_sender["501"]["STATUS"] == "53"
            assert by_sender["501"]["E1PRTOB"] == {
                "DOCNUM": ok, "OBJTYPE": "BUS2017", "OBJKEY": document.mblnr + document.mjahr,
            }  # fmt: skip
            failure = by_sender["502"]
            assert (failure["STATUS"], failure["STAMID"], failure["STAMNO"]) == ("51", "M7", "021")
            assert failure["E1PRTOB"] is None
            assert s.sim.idoc(bad).status == "51"
            expected = "Basic " + base64.b64encode(b"AUDIT:pw").decode()
            assert box.authorisations == [expected] * len(box.bodies)
            assert box.content_types[0] == IDOC_CT

    run(scenario)


@pytest.mark.timeout(20)
def test_aleaud_batches_drops_duplicates_and_retries_failed_deliveries() -> None:
    async def scenario() -> None:
        async with stack() as s, inbox() as (box, url):
            s.sim.set_audit(url=url, interval_ms=60_000, max_per_idoc=2)
            for n in range(5):
                await s.send(mbgmcr(item(), docnum=str(n)))
            await s.sim.settle()
            assert await s.sim.send_audit() == 5
            assert [
                len(xml.parse_idoc_xml(b)[0].segments[0].all("E1STATE")) for b in box.bodies
            ] == [2, 2, 1]
            await s.send(mbgmcr(item(), docnum="dup"))
            await s.sim.settle()
            s.sim.set_audit(duplicate_rate=1.0)
            await s.sim.send_audit()
            s.sim.set_audit(duplicate_rate=0.0)
            await s.sim.send_audit()
            assert [c["DOCNUM"] for c in box.confirmations()].count("dup") == 2
            await s.send(mbgmcr(item(), docnum="lost"))
            await s.sim.settle()
            s.sim.set_audit(drop_rate=1.0)
            assert await s.sim.send_audit() == 0
            s.sim.set_audit(drop_rate=0.0)
            await s.sim.send_audit()
            assert "lost" not in [c["DOCNUM"] for c in box.confirmations()]
            box.answer = 503
            await s.send(mbgmcr(item(), docnum="retry"))
            await s.sim.settle()
            assert await s.sim.send_audit() == 0
            box.answer = 200
            assert await s.sim.send_audit() == 1
            assert [c["DOCNUM"] for c in box.confirmations()].count("retry") == 2
            assert s.sim.audits[-2].status == 503

    run(scenario)


@pytest.mark.timeout(20)
def test_aleaud_waits_for_its_delay() -> None:
    async def scenario() -> None:
        async with stack() as s, inbox() as (_box, url):
            s.sim.set_audit(url=url, interval_ms=60_000, delay_ms=200)
            await s.send(mbgmcr(item()))
            await s.sim.settle()
            started = time.monotonic()
            assert await s.sim.send_audit() == 0
            sent = 0
            while not sent:  # bounded polling (the test's timeout) until the delay has passed
                await asyncio.sleep(0.02)
                sent = await s.sim.send_audit()
            assert sent == 1
            assert time.monotonic() - started >= 0.18

    run(scenario)


# --- 6. fault knobs ---


@pytest.mark.timeout(20)
def test_outage_and_5xx_store_nothing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(error_rate=1.0)
            assert (await s.post(mbgmcr(item())))[0] == 500
            s.sim.set_faults(error_rate=0.0, outage_until="2999-01-01T00:00:00Z")
            assert (await s.post(mbgmcr(item())))[0] == 503
            assert s.sim.idocs == {}

    run(scenario)


@pytest.mark.timeout(20)
def test_a_lost_answer_after_storing_cuts_the_connection_yet_the_idoc_posts() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(lost_answer_next=1)
            with pytest.raises(aiohttp.ClientError):
                await s.post(mbgmcr(item(quantity="4"), ref="LOST-1"))
            await s.sim.settle()
            (entry,) = s.sim.idocs.values()
            assert entry.status == "53"
            assert s.sim.stock(MAT, "1000", "0001") == 14
            rows = await s.read_table("MKPF", ("XBLNR",), ("XBLNR = 'LOST-1'",))
            assert rows == [{"XBLNR": "LOST-1"}]
            assert (await s.post(mbgmcr(item())))[0] == 200  # the knob counted down

    run(scenario)


@pytest.mark.timeout(20)
def test_a_lost_answer_can_be_a_500_after_storing() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(lost_answer_next=1, lost_answer_mode="500")
            assert (await s.post(mbgmcr(item())))[0] == 500
            await s.sim.settle()
            assert [entry.status for entry in s.sim.idocs.values()] == ["53"]
            assert s.sim.counters["lost_answers"] == 1

    run(scenario)


@pytest.mark.timeout(20)
def test_latency_slows_every_answer() -> None:
    async def scenario() -> None:
        async with stack() as s:
            s.sim.set_faults(latency_ms=100)
            started = time.monotonic()
            await s.post(mbgmcr(item()))
            assert time.monotonic() - started >= 0.1

    run(scenario)


# --- 7. inspection ---


@pytest.mark.timeout(20)
def test_the_live_view_counts_idocs_by_status() -> None:
    async def scenario() -> None:
        async with stack(paused=True) as s:
            ready = await s.send(mbgmcr(item()))
            rejected = await s.send(mbgmcr(item(), dc={"SNDPRN": "STRANGER"}))
            assert s.sim.idocs_by_status() == {"64": [ready], "56": [rejected]}
            s.sim.set_processing(paused=False)
            await s.sim.settle()
            assert s.sim.idocs_by_status() == {"53": [ready], "56": [rejected]}
            assert s.sim.counters["received"] == 2
            assert s.sim.counters["status_53"] == 1
            assert s.sim.by_sender("1")[0].docnum == ready

    run(scenario)
