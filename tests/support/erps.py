"""The ERP under test: SAP Business One or SAP ECC behind one small interface, so that one user
story runs against either simulator through the real wiring (``erp.kind``) and checks the same
things in the same words.

The neutral words: an *item* code, a *location* (the IMS's warehouse, as a stock event names
it), the stock of an item at a location as the simulator holds it, the posting key of every
document the ERP holds (B1 ``JournalMemo``, ECC ``MKPF-XBLNR``) or was sent (a refused one
too), and the faults a story needs, each as the ERP in question shows it:

=====================  ==========================================  ===============================
fault                  SAP Business One                            SAP ECC
=====================  ==========================================  ===============================
locks                  a share of postings refused -2039           the next postings end in IDoc
                                                                   status 51 M3 897 (plant data
                                                                   locked)
lost answers           applied, answered after the client timeout  stored, the connection cut
collisions (no line's  -2035 "This entry already exists",          51 M3 897: names the material,
fault, never bisected) nothing written                             yet is no bad line
frozen item            ``Frozen`` (code -10 "Item ... inactive")   plant status ``MMSTA`` (51 M7
                                                                   162 "... (blocked)")
items held in flight   a posting holds its items ``post_ms``       the IDoc's application holds
                                                                   the plant data ``apply_ms``
                                                                   (IDocs applied in parallel)
=====================  ==========================================  ===============================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import ClassVar

import aiohttp
import anyio
import msgspec

from config.settings import (
    B1Settings,
    EccSettings,
    ErpSettings,
    MappingsSettings,
    Secret,
    Settings,
)
from devstack.sims.b1.server import B1Simulator, RecordedRequest
from devstack.sims.ecc.records import Idoc
from devstack.sims.ecc.server import FINAL, EccSimulator
from handlers.connectors.b1.client import b1_client_from_settings
from handlers.connectors.b1.port import KEY_FIELD, B1Erp
from handlers.connectors.ecc.client import EccClient
from handlers.connectors.ecc.idoc import (
    ControlRecord,
    GoodsMovement,
    MovementItem,
    goods_movement_xml,
    material_number,
)
from handlers.ports.erp import DocumentLine, ErpLocked, StockDocument

ERP_KINDS = ("b1", "ecc")
B1_PASSWORD = "b1-secret"
ECC_SID, ECC_CLIENT, ECC_USER, ECC_PASSWORD = "ECD", "100", "SKUFLOW", "ecc-scenario-secret"
ECC_PARTNER, ECC_PORT, ECC_PLANT = "SKUFLOW", "SKUFLOWPRT", "1000"


class ErpUnderTest(ABC):
    """One ERP simulator seeded for a story; started and stopped in the story's event loop."""

    kind: ClassVar[str]
    #: What an ``erp_rejected`` reason carries when the ERP refuses a frozen item's line.
    frozen_refusal: ClassVar[str]

    def __init__(self, locations: Iterable[str]) -> None:
        #: location → the ERP's warehouse code, as ``[mappings.warehouses]`` has it.
        self.warehouses = {
            location: self._warehouse_code(n) for n, location in enumerate(locations, 1)
        }

    @staticmethod
    @abstractmethod
    def _warehouse_code(n: int) -> str: ...

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    def configure(self, settings: Settings, *, timeout: float) -> Settings:
        """``settings`` posting to this ERP (started): ``erp.kind``, its section, the mapping."""

    @abstractmethod
    def add_item(
        self,
        code: str,
        stock: Mapping[str, int],
        *,
        valid: bool = True,
        batches: bool = False,
    ) -> None:
        """Master data of a stock item and its opening stock per location."""

    @abstractmethod
    def stock(self, item: str, location: str) -> Decimal: ...

    @abstractmethod
    def document_keys(self) -> list[str]:
        """The posting key of every document the ERP holds (twice if posted twice)."""

    @abstractmethod
    def sent_keys(self) -> list[str]:
        """The posting key of every document sent to the ERP, refused ones included."""

    @abstractmethod
    def freeze(self, item: str, frozen: bool = True) -> None: ...

    @abstractmethod
    def lock_storm(self) -> None:
        """From now on postings are refused as locked (B1: 30% of them; ECC: the next 4)."""

    @abstractmethod
    def locks(self) -> int:
        """Postings the ERP refused as locked so far."""

    @abstractmethod
    def lose_answers(self) -> None:
        """From now on postings are applied but their answer never arrives (B1: a fifth of them;
        ECC: the next 3 and a fifth of the others)."""

    @abstractmethod
    def lost_answers(self) -> int:
        """Answers lost so far (B1: looked up by key afterwards; ECC: connections cut)."""

    @abstractmethod
    def collide_next(self, count: int) -> None:
        """The next ``count`` postings refused with an answer that is no line's fault."""

    @abstractmethod
    def collisions(self) -> int: ...

    @abstractmethod
    def hold_items(self, ms: float) -> None:
        """A posting holds its items this long while it is applied."""

    @abstractmethod
    def conflicts(self) -> int:
        """Postings refused because another one held one of their items at the time."""

    @abstractmethod
    def forget_conflicts(self) -> None: ...

    @abstractmethod
    async def post_twice_at_once(self, item: str, location: str) -> list[str]:
        """Two documents of one unit of ``item`` at ``location`` sent at once, past skuflow's
        locks: the outcome of each, ``"ok"`` or ``"locked"``."""


class B1UnderTest(ErpUnderTest):
    kind = "b1"
    frozen_refusal = "ERP code -10"

    def __init__(self, locations: Iterable[str]) -> None:
        super().__init__(locations)
        self.sim = B1Simulator(password=B1_PASSWORD)

    @staticmethod
    def _warehouse_code(n: int) -> str:
        return f"{n:02d}"

    async def start(self) -> None:
        await self.sim.start()
        self.sim.set_faults(conflict_window_ms=0)

    async def stop(self) -> None:
        await self.sim.stop()

    def configure(self, settings: Settings, *, timeout: float) -> Settings:
        return msgspec.structs.replace(
            settings,
            erp=ErpSettings(kind="b1"),
            b1=self._b1_settings(timeout),
            mappings=MappingsSettings(warehouses=self.warehouses),
        )

    def _b1_settings(self, timeout: float = 30.0) -> B1Settings:
        return B1Settings(url=self.sim.url, password=Secret(B1_PASSWORD), timeout_seconds=timeout)

    def add_item(
        self, code: str, stock: Mapping[str, int], *, valid: bool = True, batches: bool = False
    ) -> None:
        on_hand = {self.warehouses[location]: quantity for location, quantity in stock.items()}
        self.sim.add_item(code, valid=valid, batches=batches, stock=on_hand)

    def stock(self, item: str, location: str) -> Decimal:
        return self.sim.stock(item, self.warehouses[location])

    def document_keys(self) -> list[str]:
        return [str(doc.body.get("JournalMemo")) for doc in self.sim.documents]

    def _posts(self) -> list[RecordedRequest]:
        return [r for r in self.sim.requests if r.method == "POST" and "Inventory" in r.operation]

    def sent_keys(self) -> list[str]:
        return [str(r.body["JournalMemo"]) for r in self._posts()]

    def freeze(self, item: str, frozen: bool = True) -> None:
        self.sim.update_item(item, frozen=frozen)

    def lock_storm(self) -> None:
        self.sim.set_faults(lock_storm_rate=0.3)  # 30% of postings refused as locked (-2039)

    def locks(self) -> int:
        return sum(1 for r in self._posts() if r.status == 400)

    def lose_answers(self) -> None:
        # Applied, then answered 2.5 s later: after the client's timeout (the story's 1 s).
        self.sim.set_faults(timeout_after_apply_ms=2_500, timeout_after_apply_rate=0.2)

    def lost_answers(self) -> int:
        # The poster looks an ambiguous posting up by its key before it posts again.
        return sum(1 for r in self.sim.requests if r.method == "GET" and "Inventory" in r.operation)

    def collide_next(self, count: int) -> None:
        self.sim.set_faults(collision_count=count)  # -2035, nothing written

    def collisions(self) -> int:
        return self.sim.collisions

    def hold_items(self, ms: float) -> None:
        self.sim.set_faults(post_ms=ms)

    def conflicts(self) -> int:
        return self.sim.held_conflicts

    def forget_conflicts(self) -> None:
        self.sim.held_conflicts = 0

    async def post_twice_at_once(self, item: str, location: str) -> list[str]:
        line = DocumentLine(
            item_code=item,
            warehouse_code=self.warehouses[location],
            quantity=Decimal(1),
            sources=("probe",),
        )
        results: list[str] = []
        async with aiohttp.ClientSession() as session:
            erp = B1Erp(b1_client_from_settings(self._b1_settings(), session, key_field=KEY_FIELD))

            async def post(key: str) -> None:
                document = StockDocument(kind="entry", key=key, lines=(line,), remarks=key)
                try:
                    await erp.post_document(document)
                    results.append("ok")
                except ErpLocked:
                    results.append("locked")

            async with anyio.create_task_group() as tg:
                tg.start_soon(post, "PROBE1")
                tg.start_soon(post, "PROBE2")
        return sorted(results)


class EccUnderTest(ErpUnderTest):
    """ECC with the locations as storage locations of plant 1000, applying IDocs out of
    sequence and in parallel (two IDocs of one material collide on its plant-data lock), with
    short processing delays and polls: a story's IDocs follow each other within milliseconds."""

    kind = "ecc"
    frozen_refusal = "ERP code M7 162"

    def __init__(self, locations: Iterable[str]) -> None:
        super().__init__(locations)
        self.sim = EccSimulator(
            sid=ECC_SID, client=ECC_CLIENT, user=ECC_USER, password=ECC_PASSWORD, seed=15
        )
        self.sim.add_partner(ECC_PARTNER, ECC_PORT)
        for code in self.warehouses.values():
            self.sim.add_storage_location(ECC_PLANT, code.split("/")[1])
        self.sim.set_processing(ordering="parallel", delay_ms=10, tick_ms=5)
        self._forgotten: set[str] = set()

    @staticmethod
    def _warehouse_code(n: int) -> str:
        return f"{ECC_PLANT}/{n:04d}"

    async def start(self) -> None:
        await self.sim.start()

    async def stop(self) -> None:
        await self.sim.stop()

    def configure(self, settings: Settings, *, timeout: float) -> Settings:
        ecc = EccSettings(
            url=self.sim.url, client=ECC_CLIENT, sid=ECC_SID, user=ECC_USER,
            password=Secret(ECC_PASSWORD), sender_port=ECC_PORT, sender_partner=ECC_PARTNER,
            timeout_seconds=timeout, poll_seconds=0.01, poll_max_seconds=0.05,
            application_wait_seconds=10.0, lookup_grace_seconds=timeout + 0.5,
        )  # fmt: skip
        return msgspec.structs.replace(
            settings,
            erp=ErpSettings(kind="ecc"),
            ecc=ecc,
            mappings=MappingsSettings(warehouses=self.warehouses),
        )

    def _place(self, item: str, location: str) -> tuple[str, str, str]:
        plant, sloc = self.warehouses[location].split("/")
        return material_number(item)[1], plant, sloc

    def add_item(
        self, code: str, stock: Mapping[str, int], *, valid: bool = True, batches: bool = False
    ) -> None:
        matnr = material_number(code)[1]
        self.sim.add_material(matnr, [ECC_PLANT], batches=batches, deleted=not valid)
        for location, quantity in stock.items():
            batch = f"{matnr}-OPEN" if batches else ""
            self.sim.set_stock(*self._place(code, location), quantity, batch=batch)

    def stock(self, item: str, location: str) -> Decimal:
        return self.sim.stock(*self._place(item, location))

    def document_keys(self) -> list[str]:
        return [document.xblnr for document in self.sim.documents]

    def sent_keys(self) -> list[str]:
        return [idoc.arckey.rpartition("#")[0] for idoc in self.sim.idocs.values()]

    def freeze(self, item: str, frozen: bool = True) -> None:
        status = "01" if frozen else ""  # MMSTA: any plant status blocks the material
        self.sim.update_plant_data(material_number(item)[1], ECC_PLANT, status=status)

    def lock_storm(self) -> None:
        # 51 M3 897, the plant data locked by another user. Four, not a share: the IDocs of a
        # plant follow each other, so each lock holds the next document back by its backoff.
        self.sim.set_faults(lock_next=4)

    def locks(self) -> int:
        return self.sim.counters["lock_errors"]

    def lose_answers(self) -> None:
        # The next 3 IDoc calls, then a fifth: stored, the connection cut before the answer.
        self.sim.set_faults(lost_answer_next=3, lost_answer_rate=0.2, lost_answer_mode="reset")

    def lost_answers(self) -> int:
        return self.sim.counters["lost_answers"]

    def collide_next(self, count: int) -> None:
        self.sim.set_faults(lock_next=count)

    def collisions(self) -> int:
        return self.sim.counters["lock_errors"]

    def hold_items(self, ms: float) -> None:
        self.sim.set_processing(apply_ms=ms)

    def conflicts(self) -> int:
        """IDocs ECC stored while an earlier IDoc of one of their materials in the plant was
        still in process: two documents of one item in flight at once (whether or not they
        were applied together and collided on the lock, 51 M3 897)."""
        in_process_until: dict[tuple[str, str], datetime] = {}
        count = 0
        for idoc in sorted(self.sim.idocs.values(), key=lambda i: i.sequence):
            stored = idoc.statuses[0].at
            final = (
                idoc.statuses[-1].at if idoc.status in FINAL else datetime.max.replace(tzinfo=UTC)
            )
            places = _plant_materials(idoc)
            if idoc.docnum not in self._forgotten and any(
                in_process_until.get(place, stored) > stored for place in places
            ):
                count += 1
            for place in places:
                in_process_until[place] = max(in_process_until.get(place, final), final)
        return count

    def forget_conflicts(self) -> None:
        self._forgotten = set(self.sim.idocs)

    async def post_twice_at_once(self, item: str, location: str) -> list[str]:
        matnr, plant, sloc = self._place(item, location)
        control = ControlRecord(
            client=ECC_CLIENT, sid=ECC_SID, sender_port=ECC_PORT, sender_partner=ECC_PARTNER
        )
        line = MovementItem(
            material=matnr, plant=plant, storage_location=sloc, move_type="701",
            quantity=Decimal(1), unit="EA", text="probe",
        )  # fmt: skip
        today = datetime.now(UTC)
        self.sim.set_processing(paused=True)  # both stored before the job applies either
        async with aiohttp.ClientSession() as session:
            client = EccClient(
                self.sim.url, ECC_CLIENT, ECC_USER, Secret(ECC_PASSWORD), session, timeout=5
            )
            for docnum, key in enumerate(("PROBE1", "PROBE2"), start=900_001):
                movement = GoodsMovement(
                    key=key, gm_code="05", posting_date=today.date(),
                    document_date=today.date(), items=(line,),
                )  # fmt: skip
                await client.send_idoc(goods_movement_xml(control, docnum, movement, created=today))
        await anyio.sleep(2 * self.sim.processing.delay_ms / 1000)  # both due at the next run
        self.sim.set_processing(paused=False)
        await self.sim.settle()
        return sorted(_outcome(idoc) for idoc in self.sim.idocs.values())


def _plant_materials(idoc: Idoc) -> set[tuple[str, str]]:
    """(plant, material) of every item of a goods-movement IDoc."""
    return {
        (segment.get("PLANT"), segment.get("MATERIAL") or segment.get("MATERIAL_LONG"))
        for top in idoc.document.segments
        for segment in top.walk()
        if segment.name == "E1BP2017_GM_ITEM_CREATE"
    }


def _outcome(idoc: Idoc) -> str:
    last = idoc.statuses[-1]
    if last.status == "51" and (last.stamid, last.stamno) == ("M3", "897"):
        return "locked"
    return "ok" if last.status == "53" else f"{last.status} {last.stamid} {last.stamno}"


def erp_under_test(kind: str, locations: Iterable[str]) -> ErpUnderTest:
    """The ERP of ``kind`` (one of :data:`ERP_KINDS`) with these locations."""
    kinds: dict[str, type[ErpUnderTest]] = {"b1": B1UnderTest, "ecc": EccUnderTest}
    return kinds[kind](locations)
