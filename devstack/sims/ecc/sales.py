"""Sales documents in the SAP ECC simulator: customers, sales orders made from ``ORDERS05``
IDocs, their holds, and the documents that follow them (:mod:`devstack.sims.ecc.shipping`).

**ORDERS05** (message type ``ORDERS``, processed like ``IDOC_INPUT_ORDERS``, process code ORDE
[DOC: research A6]) is stored and applied asynchronously as ``MBGMCR03`` is (50 → 64 → 62 → 53
or 51). Read from it:

- ``E1EDK01``: ``CURCY`` (document currency), ``LIFSK`` (header delivery block) [DOC-3P:
  beyondse16 E1EDK01 field list].
- ``E1EDK14``: ``QUALF`` 008 sales organisation, 007 distribution channel, 006 division, 012
  order type [DOC: help.sap.com "Document Header: Organizational Data (E1EDK14)"]. Without
  008/007/006 the sales area comes from ``EDSDC`` by the sold-to party (:meth:`SalesBook.
  add_customer` ``edsdc=``); not determinable → **VG204** [DOC]. Without 012 the type is
  ``OR`` [DOC]. [UNCONF] the database value of OR is ``TA`` where the order type's
  conversion exit runs (German keys); the simulator stores ``OR``.
- ``E1EDK03``: ``IDDAT`` 012 document date, 002 requested delivery date [DOC-3P: EGGER].
- ``E1EDKA1``: ``PARVW`` AG (sold-to, → VBAK-KUNNR) and WE (ship-to), ``PARTN`` the internal
  customer number [DOC: help.sap.com "Document Header: Partner Info (E1EDKA1)"]; numeric
  numbers in internal format (10 digits, leading zeros) [UNCONF: whether the IDoc converts].
- ``E1EDK02`` ``QUALF`` 001 ``BELNR``: the customer's purchase order number [DOC: "Reference
  Data (E1EDP02)"; E1EDK02 help: 001 "Order number of customer"] → VBKD-BSTKD (35) and
  VBAK-BSTNK (20, [DOC: sapdatasheet data element BSTNK, CHAR 20]; a longer number is cut
  there [UNCONF]).
- ``E1EDP01`` per item: ``MENGE`` (quantity, decimal point), ``MENEE`` (empty or the base
  unit; no conversion), ``VPREI``/``PEINH`` (net price per price unit) [DOC-3P: leanx E1EDP01
  field list], ``WERKS``/``LGORT`` (plant, storage location) [UNCONF: recollection of
  ORDERS05's E1EDP01 fields]; children ``E1EDP19`` ``QUALF`` 002 ``IDTNR`` the internal
  material number [DOC: help.sap.com "Document Item: Object Identification (E1EDP19)"], in
  database format (18 digits for a numeric one); ``E1EDP02`` ``QUALF`` 044 ``BELNR`` → the
  item's VBKD-BSTKD_E ("Purchase order of ship-to party" [DOC]; skuflow keeps the
  marketplace's line id there [UNCONF: that IDOC_INPUT_ORDERS copies an item-level 044]);
  ``E1EDP05`` with ``ALCKZ`` ``-`` and ``BETRG``: an absolute discount on the item [UNCONF:
  manual conditions are customising]. Items are numbered 000010, 000020, … in IDoc order.
  [UNCONF] ECC prices by its own pricing procedure (VPREI is the customer's expected price,
  condition EDI1); the simulator takes VPREI as the net price.

Refusals (status 51, first one wins; [UNCONF] every number but VG204 — the *class* is what a
connector keys on): no sold-to party, customer unknown or not maintained in the sales area,
unknown order type, no items, material unknown / flagged for deletion / not maintained in the
plant, storage location unknown, quantity not positive, unit not the base unit, and a
**duplicate purchase order**: an order of the sold-to party with the same BSTKD exists → 51
V4 115 (``duplicate_po="error"``, the default here). [UNCONF] a real ECC only warns (the order
type's "check purchase order number" gives a warning unless configured as an error):
``duplicate_po="warn"`` saves a second order, ``"off"`` checks nothing. Saved: 53 with V1 311
"Standard Order &1 has been saved" [UNCONF number].

**Holds** (what keeps an order from being delivered; each a Python hook here and a ``POST
/_sim/...`` endpoint, :mod:`devstack.sims.ecc.controls`):

- **delivery block** VBAK-LIFSK [UNCONF recollection, research A6]: from E1EDK01-LIFSK, from the
  customer's central delivery block (KNVV-LIFSD, ``add_customer(delivery_block=)``), or for
  every new order with ``SalesRules.new_order_delivery_block`` (an approval-like procedure:
  orders start blocked until someone releases them); :meth:`SalesBook.set_delivery_block`.
- **credit block** VBUK-CMGST ``B`` [UNCONF, research A6]: a customer with a credit limit whose
  exposure (open order value + delivered not billed + billed not credited; payments are not
  modelled) plus the new order exceeds it gets the order blocked (a static credit check
  [UNCONF]); ``A`` checked, ``D`` released (:meth:`SalesBook.release_credit`, like VKM3),
  :meth:`SalesBook.set_credit_block` blocks by hand.
- **incompletion** VBUK-UVALL/UVVLK ``A`` (incomplete) / ``C`` (complete) [UNCONF: values]:
  :meth:`SalesBook.set_incomplete`; ``incomplete_without_price`` makes an order with an item
  sent without price incomplete (pricing incomplete).

An order whose every item has a reason for rejection (VBAP-ABGRU) is rejected (cancelled);
one whose items are all delivered is completed (VBUK-GBSTK ``C``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from devstack.sims.ecc import model
from devstack.sims.ecc.idoc import IdocDocument, Segment
from devstack.sims.ecc.model import Message, Rejected

# --- messages ([UNCONF] every number except VG204; texts in SAP's style) ---

SAVED = Message("V1", "311", "&1 &2 has been saved")
NO_SOLD_TO = Message("VG", "203", "Sold-to party not found in segment E1EDKA1 (AG)")
NO_CUSTOMER = Message("VP", "199", "Customer &1 does not exist")
NOT_IN_AREA = Message("VP", "200", "Customer &1 is not maintained in sales area &2 &3 &4")
NO_SALES_AREA = Message("VG", "204", "Sales area could not be determined for &1")  # [DOC] no.
NO_ORDER_TYPE = Message("V1", "201", "Sales document type &1 is not defined")
NO_ITEMS = Message("V1", "381", "The document contains no items")
NO_MATERIAL = Message("V1", "392", "Material &1 does not exist")
MATERIAL_DELETED = Message("V1", "393", "Material &1 is flagged for deletion")
NOT_IN_PLANT = Message("V1", "394", "Material &1 is not maintained in plant &2")
NO_PLANT = Message("V1", "395", "Enter a plant for item &1")
NO_SLOC = Message("V1", "396", "Storage location &1 &2 does not exist")
BAD_QUANTITY = Message("V1", "397", "Enter a quantity greater than zero for item &1")
BAD_UNIT = Message("V1", "398", "Unit &1 is not the sales unit of material &2")
BAD_PRICE = Message("V1", "399", "Price &1 of item &2 is not a number")
DUPLICATE_PO = Message("V4", "115", "Purchase order &1 already exists in sales document &2")

#: ORDERS05 field lengths enforced on storing (segment → field → length) [DOC-3P: beyondse16
#: E1EDK01, leanx E1EDP01; UNCONF for the others].
ORDERS_LENGTHS: dict[str, dict[str, int]] = {
    "E1EDK01": {"CURCY": 3, "BSART": 4, "BELNR": 35, "LIFSK": 2},
    "E1EDK14": {"QUALF": 3, "ORGID": 35},
    "E1EDK03": {"IDDAT": 3, "DATUM": 8},
    "E1EDKA1": {"PARVW": 3, "PARTN": 17},
    "E1EDK02": {"QUALF": 3, "BELNR": 35},
    "E1EDP01": {
        "POSEX": 6,
        "MENGE": 15,
        "MENEE": 3,
        "VPREI": 15,
        "PEINH": 9,
        "WERKS": 4,
        "LGORT": 4,
    },
    "E1EDP19": {"QUALF": 3, "IDTNR": 35},
    "E1EDP02": {"QUALF": 3, "BELNR": 35},
    "E1EDP05": {"ALCKZ": 3, "KSCHL": 4, "BETRG": 18},
}
BSTNK_MAX = 20
ITEM_STEP = 10  # POSNR increment (TVAK-INCPO)
#: Document categories (VBTYP) [DOC: BAPIDOCFLOW domain values].
ORDER, RETURNS, DELIVERY, RETURNS_DELIVERY, INVOICE, CREDIT_MEMO, GOODS_MOVEMENT = (
    "C",
    "H",
    "J",
    "T",
    "M",
    "O",
    "R",
)
#: First number of each range [UNCONF: number ranges are customising].
NUMBER_RANGES = {
    ORDER: 100_001,
    RETURNS: 60_000_001,
    DELIVERY: 80_000_001,
    RETURNS_DELIVERY: 84_000_001,
    INVOICE: 90_000_001,
    CREDIT_MEMO: 91_000_001,
}
Area = tuple[str, str, str]  # (VKORG, VTWEG, SPART)


class SalesRules(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Knobs of the sales model (``set_rules``; ``GET|POST /_sim/sales-rules``)."""

    duplicate_po: Literal["error", "warn", "off"] = "error"  # [UNCONF] real ECC: a warning
    new_order_delivery_block: str = ""  # every new order starts with this LIFSK ("01")
    credit_check: bool = True  # customers with a credit limit are checked
    incomplete_without_price: bool = False  # an item without VPREI: incomplete (pricing)
    sales_areas: list[str] = msgspec.field(default_factory=lambda: ["1000/10/00"])
    order_types: list[str] = msgspec.field(default_factory=lambda: ["OR"])
    overdelivery_percent: Decimal = Decimal(0)  # LIPS-UEBTO: tolerance above the open quantity
    function_ms: float = 0.0  # a wrapper function holds its sales document's lock this long
    lock_user: str = "SD_CLERK"  # who a forced lock names
    return_movement_types: list[str] = msgspec.field(default_factory=lambda: ["651", "653"])


@dataclass
class Customer:
    """KNA1 + its sales areas (KNVV; empty: maintained in every area), EDSDC's sales area for
    ORDERS without one, the central delivery block KNVV-LIFSD and the credit limit (KNKK-KLIMK;
    None: not checked)."""

    kunnr: str
    name: str = ""
    sales_areas: set[Area] = field(default_factory=set)
    edsdc: Area | None = None
    delivery_block: str = ""
    credit_limit: Decimal | None = None


@dataclass
class OrderItem:
    """VBAP (+ its VBKD-BSTKD_E). A returns item references the delivery item (VGBEL/VGPOS)."""

    posnr: int
    matnr: str
    kwmeng: Decimal
    meins: str
    werks: str
    lgort: str
    netpr: Decimal | None
    netwr: Decimal
    line_ref: str = ""
    abgru: str = ""
    vgbel: str = ""
    vgpos: int = 0
    charg: str = ""
    serials: tuple[str, ...] = ()
    move_type: str = ""  # returns: the goods receipt's movement type

    @property
    def rejected(self) -> bool:
        return bool(self.abgru)


@dataclass
class SalesOrder:
    """VBAK + VBUK + the header VBKD: a sales order (VBTYP C) or a returns order (H)."""

    vbeln: str
    vbtyp: str
    auart: str
    kunnr: str
    area: Area
    bstkd: str
    waerk: str
    audat: str
    vdatu: str
    ernam: str
    items: list[OrderItem]
    lifsk: str = ""
    faksk: str = ""
    cmgst: str = ""  # "" not checked, A checked, B blocked, D released
    incomplete: bool = False
    augru: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def bstnk(self) -> str:
        return self.bstkd[:BSTNK_MAX]

    def item(self, posnr: int) -> OrderItem | None:
        return next((item for item in self.items if item.posnr == posnr), None)


@dataclass
class DeliveryItem:
    """LIPS: ``vgbel``/``vgpos`` the order (or returns order) item it delivers."""

    posnr: int
    matnr: str
    werks: str
    lgort: str
    charg: str
    lfimg: Decimal
    meins: str
    vgbel: str
    vgpos: int
    serials: tuple[str, ...] = ()


@dataclass
class Delivery:
    """LIKP + VBUK: an outbound delivery (LF, VBTYP J) or a returns delivery (LR, T) with its
    goods movement (601 issue / 651 or 653 receipt); ``lifex``: the external reference."""

    vbeln: str
    vbtyp: str
    lfart: str
    kunnr: str
    vkorg: str
    lifex: str
    lfdat: str
    items: list[DeliveryItem]
    mblnr: str = ""
    mjahr: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class BillingItem:
    """VBRP: ``vgbel``/``vgpos`` the delivery (or returns order) item billed."""

    posnr: int
    matnr: str
    fkimg: Decimal
    meins: str
    netwr: Decimal
    vgbel: str
    vgpos: int
    aubel: str
    aupos: int


@dataclass
class Billing:
    """VBRK: an invoice (F2, VBTYP M) or a credit memo for returns (RE, O); ``xblnr`` the
    reference document number (16)."""

    vbeln: str
    vbtyp: str
    fkart: str
    kunag: str
    area: Area
    xblnr: str
    waerk: str
    fkdat: str
    items: list[BillingItem]
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def netwr(self) -> Decimal:
        return sum((item.netwr for item in self.items), Decimal(0))


@dataclass(frozen=True)
class Flow:
    """One VBFA row: ``vbelv``/``posnv`` (of category ``vbtyp_v``) → ``vbeln``/``posnn``."""

    vbelv: str
    posnv: int
    vbtyp_v: str
    vbeln: str
    posnn: int
    vbtyp_n: str
    rfmng: Decimal
    meins: str
    erdat: str


class SalesBook:
    """Customers and every sales document, with the hooks that set and lift holds. The goods
    movements of deliveries post through ``post_goods_movement`` (the server's material
    documents and stock)."""

    def __init__(
        self,
        master: model.MasterData,
        book: model.StockBook,
        post_goods_movement: Callable[[list[model.DocumentLine], str, str], tuple[str, str]],
    ) -> None:
        self.master, self.stock = master, book
        self.post_goods_movement = post_goods_movement
        self.rules = SalesRules()
        self.customers: dict[str, Customer] = {}
        self.orders: dict[str, SalesOrder] = {}  # sales and returns orders by VBELN
        self.deliveries: dict[str, Delivery] = {}
        self.billings: dict[str, Billing] = {}
        self.flow: list[Flow] = []
        self.by_bstnk: dict[str, list[str]] = {}
        self.by_lifex: dict[str, list[str]] = {}
        self.by_xblnr: dict[str, list[str]] = {}
        self.flow_from: dict[str, list[Flow]] = {}
        self.flow_to: dict[str, list[Flow]] = {}
        self._next = dict(NUMBER_RANGES)

    # --- configuration and hooks ---

    def add_customer(
        self,
        kunnr: str,
        *,
        name: str = "",
        sales_areas: tuple[str, ...] = (),
        edsdc: str | None = None,
        delivery_block: str = "",
        credit_limit: int | Decimal | str | None = None,
    ) -> Customer:
        """A customer (``kunnr`` internal: 10 digits for a numeric one); areas as
        ``"1000/10/00"``."""
        customer = Customer(
            kunnr,
            name or f"Customer {kunnr.lstrip('0')}",
            {_area(a) for a in sales_areas},
            _area(edsdc) if edsdc else None,
            delivery_block,
            None if credit_limit is None else Decimal(credit_limit),
        )
        self.customers[kunnr] = customer
        return customer

    def update_customer(self, kunnr: str, **changes: Any) -> Customer:
        customer = self.customers[kunnr]
        for name, value in changes.items():
            if name == "credit_limit":
                value = None if value is None else Decimal(value)
            elif name in ("sales_areas", "edsdc"):
                value = {_area(a) for a in value} if name == "sales_areas" else _area(value)
            elif not hasattr(customer, name) or name == "kunnr":
                raise TypeError(f"unknown customer field {name!r}")
            setattr(customer, name, value)
        return customer

    def set_rules(self, **changes: Any) -> SalesRules:
        self.rules = msgspec.convert(
            {**msgspec.structs.asdict(self.rules), **changes}, SalesRules, strict=False
        )
        return self.rules

    def set_delivery_block(self, vbeln: str, code: str = "01") -> None:
        """VBAK-LIFSK (``""``: lifted)."""
        if len(code) > 2:
            raise ValueError("a delivery block (LIFSK) has at most 2 characters")
        self.order(vbeln).lifsk = code

    def set_credit_block(self, vbeln: str) -> None:
        self.order(vbeln).cmgst = "B"

    def release_credit(self, vbeln: str) -> None:
        """The credit manager releases the order (VKM3): CMGST D."""
        order = self.order(vbeln)
        if order.cmgst in ("B", "C"):
            order.cmgst = "D"

    def set_billing_block(self, vbeln: str, code: str = "01") -> None:
        """VBAK-FAKSK (``""``: lifted): invoices of the order's deliveries are refused."""
        self.order(vbeln).faksk = code

    def set_incomplete(self, vbeln: str, incomplete: bool = True) -> None:
        self.order(vbeln).incomplete = incomplete

    def order(self, vbeln: str) -> SalesOrder:
        found = self.orders.get(vbeln.zfill(10))
        if found is None:
            raise KeyError(f"no sales document {vbeln}")
        return found

    def orders_by_reference(self, bstkd: str, vbtyp: str = ORDER) -> list[SalesOrder]:
        found = (self.orders[n] for n in self.by_bstnk.get(bstkd[:BSTNK_MAX], ()))
        return [order for order in found if order.vbtyp == vbtyp and order.bstkd == bstkd]

    # --- ORDERS05 ---

    def create_order(self, document: IdocDocument, user: str) -> SalesOrder:
        """The sales order an ORDERS05 IDoc makes, or :class:`Rejected` (status 51)."""
        header = _Header.read(document)
        customer = self._sold_to(header.partners.get("AG", ""))
        area = self._sales_area(header.organisation, customer)
        auart = header.organisation.get("012") or "OR"
        if auart not in self.rules.order_types:
            raise Rejected(NO_ORDER_TYPE, auart)
        bstkd = header.references.get("001", "")
        if bstkd and self.rules.duplicate_po == "error":
            same = [o for o in self.orders_by_reference(bstkd) if o.kunnr == customer.kunnr]
            if same:
                raise Rejected(DUPLICATE_PO, bstkd, same[0].vbeln.lstrip("0"))
        items = [
            self._item(row, segment)
            for row, segment in enumerate(document.segments_named("E1EDP01"), start=1)
        ]
        if not items:
            raise Rejected(NO_ITEMS)
        today = datetime.now(UTC).strftime("%Y%m%d")
        order = SalesOrder(
            vbeln=self._number(ORDER),
            vbtyp=ORDER,
            auart=auart,
            kunnr=customer.kunnr,
            area=area,
            bstkd=bstkd,
            waerk=header.currency,
            audat=header.dates.get("012", today),
            vdatu=header.dates.get("002", today),
            ernam=user,
            items=items,
            lifsk=header.lifsk or customer.delivery_block or self.rules.new_order_delivery_block,
        )
        order.incomplete = self.rules.incomplete_without_price and any(
            item.netpr is None for item in items
        )
        order.cmgst = self._credit_status(customer, order)
        self.add_order(order)
        return order

    def add_order(self, order: SalesOrder) -> None:
        self.orders[order.vbeln] = order
        if order.bstkd:
            self.by_bstnk.setdefault(order.bstnk, []).append(order.vbeln)

    def _sold_to(self, kunnr: str) -> Customer:
        if not kunnr:
            raise Rejected(NO_SOLD_TO)
        customer = self.customers.get(kunnr)
        if customer is None:
            raise Rejected(NO_CUSTOMER, kunnr.lstrip("0") or kunnr)
        return customer

    def _sales_area(self, organisation: dict[str, str], customer: Customer) -> Area:
        given = (
            organisation.get("008", ""),
            organisation.get("007", ""),
            organisation.get("006", ""),
        )
        if not all(given):
            if customer.edsdc is None:
                raise Rejected(NO_SALES_AREA, customer.kunnr.lstrip("0"))
            default = customer.edsdc
            given = (given[0] or default[0], given[1] or default[1], given[2] or default[2])
        known = {_area(a) for a in self.rules.sales_areas}
        if given not in known or (customer.sales_areas and given not in customer.sales_areas):
            raise Rejected(NOT_IN_AREA, customer.kunnr.lstrip("0"), *given)
        return given

    def _item(self, row: int, segment: Segment) -> OrderItem:
        posnr = row * ITEM_STEP
        try:
            return self._read_item(posnr, segment)
        except Rejected as error:
            error.row = row
            raise

    def _read_item(self, posnr: int, segment: Segment) -> OrderItem:
        ids = {s.get("QUALF"): s.get("IDTNR") for s in segment.all("E1EDP19")}
        matnr = ids.get("002", "")
        material = self.master.materials.get(matnr)
        if material is None:
            raise Rejected(NO_MATERIAL, matnr.lstrip("0") or matnr or "?")
        werks, lgort = segment.get("WERKS"), segment.get("LGORT")
        if not werks:
            raise Rejected(NO_PLANT, f"{posnr:06d}")
        plant = self.master.plants.get((matnr, werks))
        if plant is None:
            raise Rejected(NOT_IN_PLANT, matnr.lstrip("0"), werks)
        if material.deleted or plant.deleted:
            raise Rejected(MATERIAL_DELETED, matnr.lstrip("0"))
        if lgort and (werks, lgort) not in self.master.storage_locations:
            raise Rejected(NO_SLOC, werks, lgort)
        quantity = _decimal(segment.get("MENGE"))
        if quantity is None or quantity <= 0:
            raise Rejected(BAD_QUANTITY, f"{posnr:06d}")
        unit = segment.get("MENEE") or material.meins
        if unit != material.meins:
            raise Rejected(BAD_UNIT, unit, matnr.lstrip("0"))
        netpr = _decimal(segment.get("VPREI")) if segment.get("VPREI") else None
        per = _decimal(segment.get("PEINH") or "1") or Decimal(1)
        if segment.get("VPREI") and netpr is None:
            raise Rejected(BAD_PRICE, segment.get("VPREI"), f"{posnr:06d}")
        discount = Decimal(0)
        for condition in segment.all("E1EDP05"):
            amount = _decimal(condition.get("BETRG"))
            if condition.get("ALCKZ") == "-" and amount is not None:
                discount += abs(amount)
        unit_price = netpr / per if netpr is not None else Decimal(0)
        line_ref = next(
            (s.get("BELNR") for s in segment.all("E1EDP02") if s.get("QUALF") == "044"), ""
        )
        return OrderItem(
            posnr=posnr,
            matnr=matnr,
            kwmeng=quantity,
            meins=material.meins,
            werks=werks,
            lgort=lgort,
            netpr=None if netpr is None else unit_price,
            netwr=unit_price * quantity - discount,
            line_ref=line_ref,
        )

    # --- status (VBUK / VBUP) ---

    def delivered(self, order: SalesOrder, item: OrderItem) -> Decimal:
        """What deliveries took of an order item (returns: what the returns delivery took)."""
        category = RETURNS_DELIVERY if order.vbtyp == RETURNS else DELIVERY
        return sum(
            (
                f.rfmng
                for f in self.flow_from.get(order.vbeln, ())
                if f.posnv == item.posnr and f.vbtyp_n == category
            ),
            Decimal(0),
        )

    def item_status(self, order: SalesOrder, item: OrderItem) -> dict[str, str]:
        """VBUP: LFSTA (delivery), ABSTA (rejection), GBSTA (overall) [DOC-3P: VBUK/VBUP
        field lists; values A not yet, B partly, C completely processed]."""
        done = self.delivered(order, item)
        lfsta = "A" if done == 0 else "C" if done >= item.kwmeng else "B"
        gbsta = "C" if item.rejected or lfsta == "C" else "B" if lfsta == "B" else "A"
        return {
            "LFSTA": lfsta,
            "ABSTA": "C" if item.rejected else "A",
            "GBSTA": gbsta,
            "UVALL": "A" if order.incomplete else "C",
        }

    def header_status(self, order: SalesOrder) -> dict[str, str]:
        """VBUK: GBSTK, LFSTK, ABSTK, CMGST, UVALL/UVVLK (incomplete A, complete C)."""
        statuses = [self.item_status(order, item) for item in order.items]
        live = [s for s, item in zip(statuses, order.items, strict=True) if not item.rejected]
        rejected = len(statuses) - len(live)
        return {
            "GBSTK": _overall(s["GBSTA"] for s in statuses),
            "LFSTK": _overall(s["LFSTA"] for s in live) if live else "C",
            "ABSTK": "A" if not rejected else "C" if not live else "B",
            "CMGST": order.cmgst,
            "UVALL": "A" if order.incomplete else "C",
            "UVVLK": "A" if order.incomplete else "C",
        }

    # --- credit ---

    def _credit_status(self, customer: Customer, order: SalesOrder) -> str:
        if not self.rules.credit_check or customer.credit_limit is None:
            return ""
        total = self.exposure(customer.kunnr) + sum(i.netwr for i in order.items)
        return "B" if total > customer.credit_limit else "A"

    def exposure(self, kunnr: str) -> Decimal:
        """Open order value + delivered but not billed + billed, less credit memos."""
        value = Decimal(0)
        for order in self.orders.values():
            if order.kunnr != kunnr or order.vbtyp != ORDER:
                continue
            for item in order.items:
                if not item.rejected and item.kwmeng:
                    value += item.netwr * (item.kwmeng - self.delivered(order, item)) / item.kwmeng
        for delivery in self.deliveries.values():
            if delivery.kunnr == kunnr and delivery.vbtyp == DELIVERY:
                value += self.unbilled_value(delivery)
        for billing in self.billings.values():
            if billing.kunag == kunnr:
                value += billing.netwr if billing.vbtyp == INVOICE else -billing.netwr
        return value

    def unbilled_value(self, delivery: Delivery) -> Decimal:
        billed = {f.posnv for f in self.flow_from.get(delivery.vbeln, ()) if f.vbtyp_n == INVOICE}
        value = Decimal(0)
        for item in delivery.items:
            if item.posnr not in billed:
                value += self.item_value(item.vgbel, item.vgpos, item.lfimg)
        return value

    def item_value(self, vbeln: str, posnr: int, quantity: Decimal) -> Decimal:
        """The net value of ``quantity`` of an order item (its value shared pro rata)."""
        order = self.orders.get(vbeln)
        item = order.item(posnr) if order else None
        if item is None or not item.kwmeng:
            return Decimal(0)
        return (item.netwr * quantity / item.kwmeng).quantize(Decimal("0.01"))

    # --- numbering and flow ---

    def _number(self, category: str) -> str:
        number = self._next[category]
        self._next[category] += 1
        return f"{number:010d}"

    def number(self, category: str) -> str:
        return self._number(category)

    def link(
        self,
        before: tuple[str, int, str],
        after: tuple[str, int, str],
        quantity: Decimal,
        unit: str,
    ) -> None:
        """A VBFA row from ``before`` (VBELN, POSNR, VBTYP) to ``after``."""
        row = Flow(*before, *after, quantity, unit, datetime.now(UTC).strftime("%Y%m%d"))
        self.flow.append(row)
        self.flow_from.setdefault(row.vbelv, []).append(row)
        self.flow_to.setdefault(row.vbeln, []).append(row)

    def following(self, vbeln: str, category: str) -> Iterator[Flow]:
        return (f for f in self.flow_from.get(vbeln, ()) if f.vbtyp_n == category)


@dataclass
class _Header:
    currency: str
    lifsk: str
    organisation: dict[str, str]
    dates: dict[str, str]
    partners: dict[str, str]
    references: dict[str, str]

    @classmethod
    def read(cls, document: IdocDocument) -> _Header:
        head = document.segment("E1EDK01") or Segment("E1EDK01")

        def pairs(name: str, key: str, value: str) -> dict[str, str]:
            return {s.get(key): s.get(value) for s in document.segments_named(name)}

        return cls(
            currency=head.get("CURCY"),
            lifsk=head.get("LIFSK"),
            organisation=pairs("E1EDK14", "QUALF", "ORGID"),
            dates=pairs("E1EDK03", "IDDAT", "DATUM"),
            partners=pairs("E1EDKA1", "PARVW", "PARTN"),
            references=pairs("E1EDK02", "QUALF", "BELNR"),
        )


def _area(text: str) -> Area:
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"a sales area is VKORG/VTWEG/SPART, not {text!r}")
    return parts[0], parts[1], parts[2]


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _overall(values: Iterable[str]) -> str:
    seen = set(values)
    if not seen or seen == {"C"}:
        return "C"
    return "A" if seen == {"A"} else "B"


def sap_date(day: date) -> str:
    return day.strftime("%Y%m%d")
