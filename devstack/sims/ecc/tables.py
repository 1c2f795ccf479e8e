"""The database tables RFC_READ_TABLE reads, as rows drawn from the simulator's state: MARA, MARC,
T001L (master data), MARD, MCHB (stock), MKPF, MSEG (material documents), EDIDC, EDIDS (IDoc
control and status records). Column layouts are in :data:`devstack.sims.ecc.rfc.TABLES`.

[UNCONF] MKPF-VGART/BLART are written ``WA`` for every document (a real system types GR and GI
documents differently); INSME/SPEME are always zero (only unrestricted stock is modelled).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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


def rows(table: str, db: Database) -> Iterator[rfc.Row]:
    return _ROWS[table](db)


def _flag(value: bool) -> str:
    return "X" if value else ""


def _mara(db: Database) -> Iterator[rfc.Row]:
    for m in db.master.materials.values():
        yield {"MATNR": m.matnr, "MTART": m.mtart, "MEINS": m.meins, "LVORM": _flag(m.deleted)}


def _marc(db: Database) -> Iterator[rfc.Row]:
    for p in db.master.plants.values():
        yield {
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
        posted = db.idocs[d.idoc].statuses[-1].at
        yield {
            "MBLNR": d.mblnr, "MJAHR": d.mjahr, "VGART": "WA", "BLART": "WA", "BLDAT": d.bldat,
            "BUDAT": d.budat, "CPUDT": posted.strftime("%Y%m%d"),
            "CPUTM": posted.strftime("%H%M%S"), "USNAM": db.job_user,
            "XBLNR": d.xblnr, "BKTXT": d.bktxt,
        }  # fmt: skip


def _mseg(db: Database) -> Iterator[rfc.Row]:
    for d in db.documents:
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
        c, first, last = entry.control, entry.statuses[0].at, entry.statuses[-1].at
        yield {
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


_ROWS: dict[str, Callable[[Database], Iterator[rfc.Row]]] = {
    "MARA": _mara, "MARC": _marc, "T001L": _t001l, "MARD": _mard, "MCHB": _mchb,
    "MKPF": _mkpf, "MSEG": _mseg, "EDIDC": _edidc, "EDIDS": _edids,
}  # fmt: skip
