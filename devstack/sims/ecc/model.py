"""What ECC does with an ``MBGMCR03`` IDoc: BAPI_GOODSMVT_CREATE semantics over the master data
(MARA, MARC, T001L) and the stock (MARD, MCHB, serial numbers), giving one material document
(MKPF + MSEG) or the first error message.

Facts and their sources:

- [DOC-3P] (sap4tech; TraceLink MBGMCR03 guideline) segment tree ``E1MBGMCR`` >
  ``E1BP2017_GM_HEAD_01`` (``PSTNG_DATE``, ``DOC_DATE`` 8, ``REF_DOC_NO`` 16, ``HEADER_TXT``
  25, …), ``E1BP2017_GM_CODE`` (``GM_CODE`` 2), ``E1BP2017_GM_ITEM_CREATE`` (one per item),
  ``E1BP2017_GM_SERIALNUMBER``; inbound function ``IDOC_INPUT_MBGMCR`` calls the BAPI.
- [DOC] (BAPI_GOODSMVT_CREATE documentation) one material document per call, all or nothing;
  data in database format: "Material number 18-character with leading zeros", "Batches with
  uppercase letters" — so ``"42"`` is not material ``000000000000000042`` (no conversion exit
  runs); always fill PSTNG_DATE.
- [OBS] ``MATERIAL_LONG`` (40) is read when ``MATERIAL`` is empty.
- [UNCONF, recollection of BAPI2017_GM_SERIALNUMBER] ``E1BP2017_GM_SERIALNUMBER`` carries
  ``MATDOC_ITM`` (the item's position, 1-based, ``0001``) and ``SERIALNO``; a serialised
  material (MARC-SERNP set) needs exactly ``ENTRY_QNT`` distinct serials per item.
- ``ENTRY_QNT`` is read with a decimal point (``5.000``); ``ENTRY_UOM`` must be the base unit
  (MARA-MEINS, internal format) or empty — no unit conversion is modelled. ``MOVE_BATCH``
  defaults to ``BATCH``, ``MOVE_PLANT`` to ``PLANT``. ``E1MBGMCR-TESTRUN`` is ignored.
- Receipts create the MARD/MCHB record if missing (automatic creation of storage location
  data / new batches on receipt, customising-dependent in reality [UNCONF]).
- [DOC] GM_CODE 01 GR for PO, 02 GR for order, 03 goods issue, 04 transfer posting, 05 other
  receipts, 06 reversal, 07 subcontracting (SAP wiki "How To Goods Movements with BAPI").
  [DOC] movement types (help.sap.com 4.6C): 201 GI to cost centre, 301 plant→plant, 311
  sloc→sloc, 501 receipt without PO, 551 scrapping, 561 initial entry, 701/702 inventory
  differences; the reversal of a type is type+1. The GM_CODE each is allowed with is [DOC] for
  201/202 (03), 301/311 (04) and 501 (05), [UNCONF] for 502, 551/552, 561/562, 701/702 — and
  701/702 may in reality only be posted by physical inventory (MI07), not this BAPI [UNCONF]:
  the ``inventory_differences`` switch of :func:`movement_rule` turns them off.
- [DOC] (OMCQ help) "If no negative stock is allowed, the system always issues an error
  message": M7 021, text [OBS] "Deficit of SL Unrestricted-use 13 L : A706 1110 1001"
  (quantity unit : material plant sloc [batch]; ``BA`` for batch stock).
- [OBS] M7 053 "Posting only possible in periods 2026/04 and 2026/03 in company code 1100".
- [DOC] (help.sap.com "Material Block for Goods Movements") a goods movement locks the
  material's plant data until it is posted; [UNCONF] M3 897 "The plant data of the material &
  is locked by the user &".
- [UNCONF] every other message number below (material unknown, not in plant, flagged for
  deletion, blocked, storage location unknown, batch, serial numbers, movement type, unit,
  dates): the texts are SAP's style, the *class* (M3 material master, M7 inventory
  management, IO serial numbers) is what a connector should key on.
- [UNCONF] material document numbers from one range starting 4900000001, ``MJAHR`` the posting
  date's calendar year (a non-calendar fiscal year is not modelled).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal, TypeAlias

from devstack.sims.ecc.idoc import IdocDocument, Segment

Place: TypeAlias = tuple[str, str, str]  # (MATNR, WERKS, LGORT)
BatchPlace: TypeAlias = tuple[str, str, str, str]  # (MATNR, WERKS, LGORT, CHARG)
Kind = Literal["receipt", "issue", "transfer"]


@dataclass(frozen=True)
class Message:
    """A T100 message: class (STAMID / BAPIRET2-ID), number, text with ``&1``…``&4``."""

    klass: str
    number: str
    text: str

    def format(self, *values: str) -> tuple[str, tuple[str, str, str, str]]:
        padded = (*values, "", "", "", "")[:4]
        text = self.text
        for n, value in enumerate(padded, start=1):
            text = text.replace(f"&{n}", value)
        return text.strip(), (padded[0], padded[1], padded[2], padded[3])


DEFICIT = Message("M7", "021", "Deficit of &1 Unrestricted-use &2 : &3")  # [OBS] text
PERIOD = Message("M7", "053", "Posting only possible in periods &1 and &2 in company code &3")
LOCKED = Message("M3", "897", "The plant data of the material &1 is locked by the user &2")
POSTED = Message("M7", "060", "Document &1 posted")  # [UNCONF] number
NO_MATERIAL = Message("M3", "305", "Material &1 does not exist")  # [UNCONF] number
NOT_IN_PLANT = Message("M7", "042", "Material &1 not maintained in plant &2")  # [UNCONF] number
DELETION = Message("M7", "127", "Material &1 in plant &2 is flagged for deletion")  # [UNCONF]
BLOCKED = Message("M7", "162", "Material &1 has status &2 in plant &3 (blocked)")  # [UNCONF]
NO_SLOC = Message("M7", "001", "Storage location &1 &2 does not exist")  # [UNCONF] number
NO_BATCH = Message("M7", "018", "Enter a batch for material &1")  # [UNCONF] number
BAD_BATCH = Message("M7", "019", "Batch &1 of material &2 does not exist in &3 &4")  # [UNCONF]
SERIALS = Message("IO", "237", "Enter &1 serial numbers for material &2")  # [UNCONF]
SERIAL_TAKEN = Message("IO", "238", "Serial number &1 material &2 already in stock")  # [UNCONF]
SERIAL_ABSENT = Message("IO", "239", "Serial number &1 material &2 not in stock &3 &4")
BAD_MVT = Message("M7", "076", "Movement type &1 not allowed with GM code &2")  # [UNCONF]
NO_MVT = Message("M7", "075", "Movement type &1 does not exist")  # [UNCONF]
NO_GM_CODE = Message("M7", "077", "GM code &1 is not defined")  # [UNCONF]
BAD_UNIT = Message("M7", "029", "Unit &1 is not defined for material &2")  # [UNCONF]
BAD_QTY = Message("M7", "030", "Enter a quantity greater than zero")  # [UNCONF]
NO_DATE = Message("M7", "031", "Enter the &1")  # [UNCONF]
NO_RECEIVER = Message("M7", "043", "Enter the receiving &1 for movement type &2")  # [UNCONF]
NO_ITEMS = Message("M7", "044", "No items transferred")  # [UNCONF]


class Rejected(Exception):
    """BAPI_GOODSMVT_CREATE returned an error: the IDoc goes to status 51 with this message."""

    def __init__(self, message: Message, *values: str, row: int = 0) -> None:
        self.message, self.values, self.row = message, values, row
        self.text, self.stapa = message.format(*values)
        super().__init__(f"{message.klass} {message.number} {self.text}")


# --- movement types ---


@dataclass(frozen=True)
class MovementRule:
    kind: Kind
    sign: int  # +1 receipt into the item's location, -1 issue from it (transfers: -1)
    gm_codes: frozenset[str]
    confirmed: bool  # the GM code pairing is [DOC]; False: [UNCONF]


def _rule(kind: Kind, sign: int, codes: str, confirmed: bool) -> MovementRule:
    return MovementRule(kind, sign, frozenset(codes.split()), confirmed)


MOVEMENT_TYPES: dict[str, MovementRule] = {
    "201": _rule("issue", -1, "03", True),
    "202": _rule("receipt", +1, "03", True),
    "301": _rule("transfer", -1, "04", True),
    "311": _rule("transfer", -1, "04", True),
    "501": _rule("receipt", +1, "05", True),
    "502": _rule("issue", -1, "05", False),
    "551": _rule("issue", -1, "03", False),
    "552": _rule("receipt", +1, "03", False),
    "561": _rule("receipt", +1, "05", False),
    "562": _rule("issue", -1, "05", False),
    "701": _rule("receipt", +1, "05", False),
    "702": _rule("issue", -1, "03", False),
}
GM_CODES = frozenset({"01", "02", "03", "04", "05", "06", "07"})
INVENTORY_DIFFERENCES = frozenset({"701", "702"})


def movement_rule(bwart: str, gm_code: str, *, inventory_differences: bool = True) -> MovementRule:
    rule = MOVEMENT_TYPES.get(bwart)
    if rule is None or (bwart in INVENTORY_DIFFERENCES and not inventory_differences):
        raise Rejected(NO_MVT, bwart)
    if gm_code not in rule.gm_codes:
        raise Rejected(BAD_MVT, bwart, gm_code)
    return rule


# --- master data ---


@dataclass
class Material:
    """MARA: ``MATNR`` (18, internal format), ``MTART``, ``MEINS`` base unit, ``LVORM``."""

    matnr: str
    meins: str = "EA"
    mtart: str = "HAWA"
    deleted: bool = False


@dataclass
class PlantData:
    """MARC: the material in a plant — ``LVORM``, ``MMSTA`` (plant-specific status; a
    non-blank status blocks goods movements here), ``XCHPF`` batches, ``SERNP`` serial
    profile."""

    matnr: str
    werks: str
    deleted: bool = False
    status: str = ""
    batches: bool = False
    serial_profile: str = ""


@dataclass
class StockBook:
    """Unrestricted-use stock: MARD-LABST per place, MCHB-CLABS per batch, and the serial numbers
    in stock per material (serial → place); ``returns``: blocked returns stock (MARD-RETME, what
    a returns delivery's 651 receives [UNCONF: 651 → RETME])."""

    mard: defaultdict[Place, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    returns: defaultdict[Place, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    mchb: defaultdict[BatchPlace, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    serials: defaultdict[str, dict[str, tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )


@dataclass
class MasterData:
    company_code: str = "1000"
    materials: dict[str, Material] = field(default_factory=dict)
    plants: dict[tuple[str, str], PlantData] = field(default_factory=dict)  # (MATNR, WERKS)
    storage_locations: dict[tuple[str, str], str] = field(default_factory=dict)  # → LGOBE


# --- the material document ---


@dataclass(frozen=True)
class DocumentLine:
    """One MSEG line (a transfer posts two: the issuing line and the receiving ``XAUTO`` one)."""

    zeile: int
    bwart: str
    matnr: str
    werks: str
    lgort: str
    charg: str
    shkzg: str  # "S" receipt (debit), "H" issue (credit)
    menge: Decimal
    meins: str
    xauto: bool = False
    umwrk: str = ""
    umlgo: str = ""
    umcha: str = ""
    serials: tuple[str, ...] = ()

    @property
    def delta(self) -> Decimal:
        return self.menge if self.shkzg == "S" else -self.menge


@dataclass(frozen=True)
class MaterialDocument:
    """MKPF (+ its MSEG lines)."""

    mblnr: str
    mjahr: str
    budat: str
    bldat: str
    xblnr: str  # = REF_DOC_NO
    bktxt: str  # = HEADER_TXT
    gm_code: str
    lines: tuple[DocumentLine, ...]
    idoc: str  # the receiver IDoc number that posted it ("": a delivery's goods movement)
    posted_at: datetime | None = None  # when posted without an IDoc
    vgart: str = "WA"  # transaction type: WA goods movement, WL delivery goods issue/receipt


@dataclass(frozen=True)
class Item:
    row: int
    rule: MovementRule
    bwart: str
    matnr: str
    werks: str
    lgort: str
    charg: str
    quantity: Decimal
    unit: str
    to_werks: str
    to_lgort: str
    to_charg: str
    serials: tuple[str, ...]


@dataclass(frozen=True)
class GoodsMovement:
    """The BAPI's input read from an MBGMCR03 IDoc."""

    budat: str
    bldat: str
    xblnr: str
    bktxt: str
    gm_code: str
    items: tuple[Item, ...]

    def plant_keys(self) -> set[tuple[str, str]]:
        """The (material, plant) pairs whose plant data the posting locks."""
        keys = {(item.matnr, item.werks) for item in self.items}
        keys |= {(item.matnr, item.to_werks) for item in self.items if item.to_werks}
        return keys


def _quantity(text: str) -> Decimal:
    try:
        number = Decimal(text.strip() or "0")
    except InvalidOperation:
        raise Rejected(BAD_QTY) from None
    if not number.is_finite() or number <= 0:
        raise Rejected(BAD_QTY)
    return number


def _date(text: str, name: str) -> str:
    try:
        date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise Rejected(NO_DATE, name) from None
    if len(text) != 8:
        raise Rejected(NO_DATE, name)
    return text


def read_goods_movement(
    document: IdocDocument, master: MasterData, *, inventory_differences: bool = True
) -> GoodsMovement:
    """The header, GM code and items of an MBGMCR03 IDoc, checked against master data."""
    head = document.segment("E1BP2017_GM_HEAD_01") or Segment("E1BP2017_GM_HEAD_01")
    budat = _date(head.get("PSTNG_DATE"), "posting date")
    bldat = _date(head.get("DOC_DATE"), "document date")
    code = document.segment("E1BP2017_GM_CODE")
    gm_code = code.get("GM_CODE") if code else ""
    if gm_code not in GM_CODES:
        raise Rejected(NO_GM_CODE, gm_code)
    root = document.segment("E1MBGMCR")
    segments = root.all("E1BP2017_GM_ITEM_CREATE") if root else []
    serials: defaultdict[int, list[str]] = defaultdict(list)
    for serial in root.all("E1BP2017_GM_SERIALNUMBER") if root else []:
        number = serial.get("MATDOC_ITM").lstrip("0")
        serials[int(number or 0)].append(serial.get("SERIALNO"))
    if not segments:
        raise Rejected(NO_ITEMS)
    items = []
    for row, segment in enumerate(segments, start=1):
        try:
            numbers = tuple(serials.get(row, ()))
            items.append(_item(row, segment, gm_code, master, numbers, inventory_differences))
        except Rejected as error:
            error.row = row
            raise

    xblnr, bktxt = head.get("REF_DOC_NO"), head.get("HEADER_TXT")
    return GoodsMovement(budat, bldat, xblnr, bktxt, gm_code, tuple(items))


def _item(
    row: int,
    segment: Segment,
    gm_code: str,
    master: MasterData,
    serials: tuple[str, ...],
    inventory_differences: bool,
) -> Item:
    bwart = segment.get("MOVE_TYPE")
    rule = movement_rule(bwart, gm_code, inventory_differences=inventory_differences)
    matnr = segment.get("MATERIAL") or segment.get("MATERIAL_LONG")
    werks, lgort = segment.get("PLANT"), segment.get("STGE_LOC")
    material = master.materials.get(matnr)
    if material is None:
        raise Rejected(NO_MATERIAL, matnr)
    plant = _plant_data(master, material, werks)
    _check_sloc(master, werks, lgort)
    quantity = _quantity(segment.get("ENTRY_QNT"))
    unit = segment.get("ENTRY_UOM") or material.meins
    if unit != material.meins:
        raise Rejected(BAD_UNIT, unit, matnr)
    charg = segment.get("BATCH")
    to_werks = to_lgort = to_charg = ""
    if rule.kind == "transfer":
        to_werks = segment.get("MOVE_PLANT") or werks
        to_lgort = segment.get("MOVE_STLOC")
        if bwart == "301" and to_werks == werks:
            raise Rejected(NO_RECEIVER, "plant", bwart)
        if not to_lgort:
            raise Rejected(NO_RECEIVER, "storage location", bwart)
        _check_sloc(master, to_werks, to_lgort)
        receiving = _plant_data(master, material, to_werks)
        to_charg = (segment.get("MOVE_BATCH") or charg) if receiving.batches else ""
        if receiving.batches and not to_charg:
            raise Rejected(NO_BATCH, matnr)
    if plant.batches:
        if not charg:
            raise Rejected(NO_BATCH, matnr)
        if charg != charg.upper():
            raise Rejected(BAD_BATCH, charg, matnr, werks, lgort)
    else:
        charg = ""
    if plant.serial_profile:
        if len(serials) != quantity or len(set(serials)) != len(serials) or not all(serials):
            raise Rejected(SERIALS, str(quantity.normalize()), matnr)
    else:
        serials = ()
    return Item(
        row, rule, bwart, matnr, werks, lgort, charg, quantity, unit, to_werks, to_lgort,
        to_charg, serials,
    )  # fmt: skip


def _plant_data(master: MasterData, material: Material, werks: str) -> PlantData:
    plant = master.plants.get((material.matnr, werks))
    if plant is None:
        raise Rejected(NOT_IN_PLANT, material.matnr, werks)
    if material.deleted or plant.deleted:
        raise Rejected(DELETION, material.matnr, werks)
    if plant.status:
        raise Rejected(BLOCKED, material.matnr, plant.status, werks)
    return plant


def _check_sloc(master: MasterData, werks: str, lgort: str) -> None:
    if (werks, lgort) not in master.storage_locations:
        raise Rejected(NO_SLOC, werks, lgort)


def check_period(budat: str, open_period: str | None, company_code: str) -> None:
    """M7 053 unless the posting date falls in the open period ``YYYY/MM`` or the one before
    (MMPV keeps the current and the previous period open); ``None``: every period is open."""
    if open_period is None:
        return
    year, month = int(open_period[:4]), int(open_period[5:7])
    previous = f"{year - 1}/12" if month == 1 else f"{year}/{month - 1:02d}"
    if f"{budat[:4]}/{budat[4:6]}" not in (open_period, previous):
        raise Rejected(PERIOD, open_period, previous, company_code)


def plan(movement: GoodsMovement, master: MasterData, book: StockBook) -> list[DocumentLine]:
    """The MSEG lines, or the first error (deficits over all items taken together)."""
    lines: list[DocumentLine] = []
    meins = {m.matnr: m.meins for m in master.materials.values()}
    for item in movement.items:
        zeile = len(lines) + 1
        if item.rule.kind == "transfer":
            lines.append(
                DocumentLine(
                    zeile, item.bwart, item.matnr, item.werks, item.lgort, item.charg, "H",
                    item.quantity, meins[item.matnr], umwrk=item.to_werks, umlgo=item.to_lgort,
                    umcha=item.to_charg, serials=item.serials,
                )
            )  # fmt: skip
            lines.append(
                DocumentLine(
                    zeile + 1, item.bwart, item.matnr, item.to_werks, item.to_lgort,
                    item.to_charg, "S", item.quantity, meins[item.matnr], xauto=True,
                    umwrk=item.werks, umlgo=item.lgort, umcha=item.charg, serials=item.serials,
                )
            )  # fmt: skip
        else:
            shkzg = "S" if item.rule.sign > 0 else "H"
            lines.append(
                DocumentLine(
                    zeile, item.bwart, item.matnr, item.werks, item.lgort, item.charg, shkzg,
                    item.quantity, meins[item.matnr], serials=item.serials,
                )
            )  # fmt: skip
    check_stock(lines, book)
    return lines


def check_stock(lines: list[DocumentLine], book: StockBook) -> None:
    """M7 021 (deficit) or a serial number problem for the first line the stock cannot take."""
    place_need: defaultdict[Place, Decimal] = defaultdict(Decimal)
    batch_need: defaultdict[BatchPlace, Decimal] = defaultdict(Decimal)
    moved: set[tuple[str, str]] = set()
    for line in lines:
        place = (line.matnr, line.werks, line.lgort)
        if line.shkzg == "H":
            place_need[place] += line.menge
            stock = book.mard.get(place, Decimal(0))
            if line.charg:
                key = (*place, line.charg)
                batch_need[key] += line.menge
                stock = book.mchb.get(key, Decimal(0))
                if batch_need[key] > stock:
                    short = batch_need[key] - stock
                    raise _deficit("BA", short, line, f"{line.werks} {line.lgort} {line.charg}")
            elif place_need[place] > stock:
                short = place_need[place] - stock
                raise _deficit("SL", short, line, f"{line.werks} {line.lgort}")
            held = book.serials.get(line.matnr, {})
            for serial in line.serials:
                if held.get(serial) != (line.werks, line.lgort) or (line.matnr, serial) in moved:
                    raise Rejected(SERIAL_ABSENT, serial, line.matnr, line.werks, line.lgort)
                moved.add((line.matnr, serial))
        elif not line.xauto:
            held = book.serials.get(line.matnr, {})
            for serial in line.serials:
                if serial in held or (line.matnr, serial) in moved:
                    raise Rejected(SERIAL_TAKEN, serial, line.matnr)
                moved.add((line.matnr, serial))


def _deficit(kind: str, short: Decimal, line: DocumentLine, where: str) -> Rejected:
    quantity = f"{short.normalize():f} {line.meins}"
    return Rejected(DEFICIT, kind, quantity, f"{line.matnr.lstrip('0')} {where}")


#: Movement types receiving into blocked returns stock (MARD-RETME) [UNCONF: research A3].
BLOCKED_RETURNS = frozenset({"651"})


def apply(lines: list[DocumentLine], book: StockBook) -> None:
    for line in lines:
        place = (line.matnr, line.werks, line.lgort)
        if line.bwart in BLOCKED_RETURNS:
            book.returns[place] += line.delta
        else:
            book.mard[place] += line.delta
        if line.charg and line.bwart not in BLOCKED_RETURNS:
            book.mchb[(*place, line.charg)] += line.delta
        held = book.serials[line.matnr]
        for serial in line.serials:
            if line.shkzg == "S":
                held[serial] = (line.werks, line.lgort)
            elif held.get(serial) == (line.werks, line.lgort):
                del held[serial]
