"""The database tables RFC_READ_TABLE reads, as rows drawn from the simulator's state: MARA, MARC,
T001L (master data), MARD, MCHB (stock), MKPF, MSEG (material documents), EDIDC, EDIDS (IDoc
control and status records). Column layouts are in :data:`devstack.sims.ecc.rfc.TABLES`.

Reads by key are lookups, not scans (a real ECC reads by primary key or a secondary index):
``MARA``/``MARC`` by ``MATNR``, ``EDIDC`` by ``DOCNUM`` or ``ARCKEY``, ``EDIDS`` by ``DOCNUM``,
``MKPF``/``MSEG`` by ``MBLNR``, ``MKPF`` by ``XBLNR`` (:data:`INDEXES`); any other WHERE scans.

[UNCONF] MKPF-VGART/BLART are written ``WA`` for every document (a real system types GR and GI
documents differently); INSME/SPEME are always zero (only unrestricted stock is modelled).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from devstack.sims.ecc import model, rfc
from devstack.sims.ecc.records import Idoc


@dataclass(frozen=True)
class Database:
    master: model.MasterData
    book: model.StockBook
    idocs: Mapping[str, Idoc]
    documents: Sequence[model.MaterialDocument]
    job_user: str
    #: Secondary indexes the simulator keeps as it stores: ARCKEY → IDoc numbers, MBLNR and
    #: XBLNR → material documents.
    arckeys: Mapping[str, Sequence[str]] = field(default_factory=dict)
    by_mblnr: Mapping[str, model.MaterialDocument] = field(default_factory=dict)
    by_xblnr: Mapping[str, Sequence[model.MaterialDocument]] = field(default_factory=dict)


def rows(table: str, db: Database, where: rfc.Where | None = None) -> Iterable[rfc.Row]:
    """The candidate rows of ``table`` for ``where``: looked up when it pins an indexed key."""
    for key, lookup in INDEXES.get(table, {}).items():
        values = rfc.keyed_values(where or [], key)
        if values is not None:
            return (row for value in values for row in lookup(db, value))
    return _ROWS[table](db)


def _flag(value: bool) -> str:
    return "X" if value else ""


def _mara(db: Database) -> Iterator[rfc.Row]:
    for m in db.master.materials.values():
        yield _mara_row(m)


def _mara_row(m: model.Material) -> rfc.Row:
    return {"MATNR": m.matnr, "MTART": m.mtart, "MEINS": m.meins, "LVORM": _flag(m.deleted)}


def _marc(db: Database) -> Iterator[rfc.Row]:
    for p in db.master.plants.values():
        yield _marc_row(p)


def _marc_row(p: model.PlantData) -> rfc.Row:
    return {
        "MATNR": p.matnr, "WERKS": p.werks, "LVORM": _flag(p.deleted), "MMSTA": p.status,
        "XCHPF": _flag(p.batches), "SERNP": p.serial_profile,
    }  # fmt: skip


def _t001l(db: Database) -> Iterator[rfc.Row]:
    for (werks, lgort), name in sorted(db.master.storage_locations.items()):
        yield {"WERKS": werks, "LGORT": lgort, "LGOBE": name}


def _mard(db: Database) -> Iterator[rfc.Row]:
    zero = Decimal(0)
    for (matnr, werks, lgort), labst in sorted(db.book.mard.items()):
        yield {
            "MATNR": matnr, "WERKS": werks, "LGORT": lgort, "LVORM": "", "LABST": labst,
            "INSME": zero, "SPEME": zero,
        }  # fmt: skip


def _mchb(db: Database) -> Iterator[rfc.Row]:
    for (matnr, werks, lgort, charg), clabs in sorted(db.book.mchb.items()):
        yield {"MATNR": matnr, "WERKS": werks, "LGORT": lgort, "CHARG": charg, "CLABS": clabs}


def _mkpf(db: Database) -> Iterator[rfc.Row]:
    for d in db.documents:
        yield _mkpf_row(db, d)


def _mkpf_row(db: Database, d: model.MaterialDocument) -> rfc.Row:
    entry = db.idocs.get(d.idoc)
    posted = entry.statuses[-1].at if entry is not None else d.posted_at
    return {
        "MBLNR": d.mblnr, "MJAHR": d.mjahr, "VGART": d.vgart, "BLART": "WA", "BLDAT": d.bldat,
        "BUDAT": d.budat, "CPUDT": posted.strftime("%Y%m%d") if posted else d.budat,
        "CPUTM": posted.strftime("%H%M%S") if posted else "000000", "USNAM": db.job_user,
        "XBLNR": d.xblnr, "BKTXT": d.bktxt,
    }  # fmt: skip


def _mseg(db: Database) -> Iterator[rfc.Row]:
    for d in db.documents:
        yield from _mseg_rows(d)


def _mseg_rows(d: model.MaterialDocument) -> Iterator[rfc.Row]:
    for line in d.lines:
        yield {
            "MBLNR": d.mblnr, "MJAHR": d.mjahr, "ZEILE": str(line.zeile),
            "BWART": line.bwart, "XAUTO": _flag(line.xauto), "MATNR": line.matnr,
            "WERKS": line.werks, "LGORT": line.lgort, "CHARG": line.charg,
            "SHKZG": line.shkzg, "MENGE": line.menge, "MEINS": line.meins,
            "ERFMG": line.menge, "ERFME": line.meins, "UMWRK": line.umwrk,
            "UMLGO": line.umlgo, "UMCHA": line.umcha,
        }  # fmt: skip


def _edidc(db: Database) -> Iterator[rfc.Row]:
    for entry in sorted(db.idocs.values(), key=lambda i: i.docnum):
        yield _edidc_row(entry)


def _edidc_row(entry: Idoc) -> rfc.Row:
    c, first, last = entry.control, entry.statuses[0].at, entry.statuses[-1].at
    return {
        "DOCNUM": entry.docnum, "DOCREL": "700", "STATUS": entry.status, "DIRECT": "2",
        "IDOCTP": entry.document.basic_type, "MESTYP": c.get("MESTYP", ""),
        "SNDPOR": c.get("SNDPOR", ""), "SNDPRT": c.get("SNDPRT", ""),
        "SNDPRN": c.get("SNDPRN", ""), "RCVPOR": c.get("RCVPOR", ""),
        "RCVPRT": c.get("RCVPRT", ""), "RCVPRN": c.get("RCVPRN", ""),
        "CREDAT": first.strftime("%Y%m%d"), "CRETIM": first.strftime("%H%M%S"),
        "UPDDAT": last.strftime("%Y%m%d"), "UPDTIM": last.strftime("%H%M%S"),
        "SERIAL": c.get("SERIAL", ""), "ARCKEY": entry.arckey,
    }  # fmt: skip


def _edids(db: Database) -> Iterator[rfc.Row]:
    for entry in sorted(db.idocs.values(), key=lambda i: i.docnum):
        yield from _edids_rows(entry)


def _edids_rows(entry: Idoc) -> Iterator[rfc.Row]:
    for countr, s in enumerate(entry.statuses, start=1):
        yield {
            "DOCNUM": entry.docnum, "LOGDAT": s.at.strftime("%Y%m%d"),
            "LOGTIM": s.at.strftime("%H%M%S"), "COUNTR": str(countr),
            "CREDAT": s.at.strftime("%Y%m%d"), "CRETIM": s.at.strftime("%H%M%S"),
            "STATUS": s.status, "UNAME": s.uname, "STATXT": s.text,
            "STAMQU": "SAP" if s.stamid else "", "STAMID": s.stamid, "STAMNO": s.stamno,
            "STATYP": s.statyp, "STAPA1": s.stapa[0], "STAPA2": s.stapa[1],
            "STAPA3": s.stapa[2], "STAPA4": s.stapa[3],
        }  # fmt: skip


# --- lookups by key ---


def _material(db: Database, matnr: str) -> Iterator[rfc.Row]:
    material = db.master.materials.get(matnr)
    if material is not None:
        yield _mara_row(material)


def _plants_of(db: Database, matnr: str) -> Iterator[rfc.Row]:
    plants = sorted({werks for werks, _ in db.master.storage_locations})
    plants += sorted({werks for m, werks in db.master.plants if m == matnr} - set(plants))
    for werks in plants:
        found = db.master.plants.get((matnr, werks))
        if found is not None:
            yield _marc_row(found)


def _idoc(db: Database, docnum: str) -> Iterable[Idoc]:
    entry = db.idocs.get(docnum)
    return () if entry is None else (entry,)


def _by_arckey(db: Database, arckey: str) -> Iterator[Idoc]:
    for docnum in sorted(db.arckeys.get(arckey, ())):
        yield from _idoc(db, docnum)


def _document(db: Database, mblnr: str) -> Iterable[model.MaterialDocument]:
    found = db.by_mblnr.get(mblnr)
    return () if found is None else (found,)


INDEXES: dict[str, dict[str, Callable[[Database, str], Iterable[rfc.Row]]]] = {
    "MARA": {"MATNR": _material},
    "MARC": {"MATNR": _plants_of},
    "EDIDC": {
        "DOCNUM": lambda db, n: (_edidc_row(e) for e in _idoc(db, n)),
        "ARCKEY": lambda db, key: (_edidc_row(e) for e in _by_arckey(db, key)),
    },
    "EDIDS": {"DOCNUM": lambda db, n: (r for e in _idoc(db, n) for r in _edids_rows(e))},
    "MKPF": {
        "MBLNR": lambda db, n: (_mkpf_row(db, d) for d in _document(db, n)),
        "XBLNR": lambda db, ref: (_mkpf_row(db, d) for d in db.by_xblnr.get(ref, ())),
    },
    "MSEG": {"MBLNR": lambda db, n: (r for d in _document(db, n) for r in _mseg_rows(d))},
}


_ROWS: dict[str, Callable[[Database], Iterator[rfc.Row]]] = {
    "MARA": _mara, "MARC": _marc, "T001L": _t001l, "MARD": _mard, "MCHB": _mchb,
    "MKPF": _mkpf, "MSEG": _mseg, "EDIDC": _edidc, "EDIDS": _edids,
}  # fmt: skip
