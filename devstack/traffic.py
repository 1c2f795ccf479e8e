"""Sample traffic for ``skuflow dev``: realistic contract events at a steady rate.

:class:`SampleEvents` makes the payloads (pure, seeded): mostly ``stock.adjusted`` keyed by SKU,
some ``dispatch.confirmed`` keyed by Amazon order id, and about 1% bad input (broken JSON, a
missing field, an unknown type) so the exception path shows; ~1% of stock events are ghost stock
(an SKU the ERP lacks, or the unmapped location ``LOC-99``). Each dispatch's order goes to an
``on_order`` hook before the event exists; ~2% are due within 2 h, ~0.5% are late, ~1% name an
order item their order lacks. :func:`produce_sample_traffic` sends them with a token bucket and
a bounded number of unacknowledged sends until cancelled.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, NamedTuple

import anyio
import msgspec
from aiokafka import AIOKafkaProducer

__all__ = [
    "BATCH_LOTS",
    "CARRIERS",
    "DISPATCH_SHARE",
    "GHOST_SHARE",
    "ORDER_PREFIXES",
    "SHIPPER_ZONE",
    "UNMAPPED_LOCATION",
    "WAREHOUSES",
    "OnOrder",
    "Sample",
    "SampleEvents",
    "SampleOrder",
    "Scenario",
    "TokenBucket",
    "TrafficStats",
    "opening_serial",
    "produce_sample_traffic",
    "ship_by_for",
]

WAREHOUSES = ("LOC-01", "LOC-02", "LOC-03")
UNMAPPED_LOCATION = "LOC-99"  # a location no ERP warehouse is mapped to
BATCH_LOTS = tuple(f"LOT-{n:03d}" for n in range(1, 41))  # the lots of batch-managed SKUs
GHOST_SHARE = 0.01  # of stock events: half name an SKU not in the ERP, half LOC-99
_REASONS = ("count", "damaged", "found", "receipt", "issue")
_REASON_WEIGHTS = (25, 12, 8, 25, 30)
_MARKETPLACES = ("A1F83G8C2ARO7P", "A1F83G8C2ARO7P", "A1F83G8C2ARO7P", "A1PA6795UKMFR9")
ORDER_PREFIXES = ("026", "202", "203", "204", "205", "206")
CARRIERS = (("Royal Mail", "Tracked 24"), ("Royal Mail", "Tracked 48"), ("DPD", "Next Day"))
SHIPPER_ZONE = timezone(timedelta(hours=1))  # the 3PL reports its local time (CET), with offset
DISPATCH_SHARE = 0.19  # of all events, unless capped (``dispatch_share``)

Kind = Literal["stock", "dispatch", "bad"]
Scenario = Literal["on_time", "at_risk", "missed", "unknown_item"]
_SCENARIOS: tuple[Scenario, ...] = ("on_time", "at_risk", "missed", "unknown_item")
_SCENARIO_WEIGHTS = (96.5, 2.0, 0.5, 1.0)  # percent of dispatches


@dataclass(frozen=True, slots=True)
class SampleOrder:
    """The Amazon order behind a sample dispatch, as the marketplace knows it (with
    ``unknown_item`` the dispatch names an order item id that is not among ``items``)."""

    order_id: str
    marketplace_id: str
    latest_ship_date: datetime  # the dispatch event's ``ship_by``
    items: tuple[tuple[str, str, int], ...]  # (order item id, SKU, quantity ordered)
    scenario: Scenario


OnOrder = Callable[[SampleOrder], None]


class Sample(NamedTuple):
    kind: Kind
    key: bytes
    value: bytes
    order: SampleOrder | None = None  # for a dispatch


@dataclass(slots=True)
class TrafficStats:
    """Counters of a running producer (``produced`` counts acknowledged records)."""

    produced: int = 0
    stock: int = 0
    dispatch: int = 0
    bad: int = 0
    scenarios: Counter[Scenario] = field(default_factory=Counter)  # of the dispatches
    failed: int = 0
    last_error: str | None = None

    def count(self, sample: Sample) -> None:
        if sample.kind == "stock":
            self.stock += 1
        elif sample.kind == "dispatch":
            self.dispatch += 1
        else:
            self.bad += 1
        if sample.order is not None:
            self.scenarios[sample.order.scenario] += 1

    def count_dispatch(self, scenario: Scenario) -> None:
        """A dispatch sent by the order traffic (:mod:`devstack.order_traffic`)."""
        self.dispatch += 1
        self.scenarios[scenario] += 1


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def ship_by_for(rng: random.Random, scenario: Scenario, now: datetime) -> datetime:
    """The latest ship date of an order of ``scenario``: Amazon's end at hh:59:59, 3-7 h
    ahead; at risk: due in under 2 h; missed: already past."""
    ship_by = (now + timedelta(hours=rng.randint(3, 7))).replace(minute=59, second=59)
    if scenario in ("at_risk", "missed"):
        minutes = rng.randint(20, 100) if scenario == "at_risk" else -rng.randint(5, 120)
        ship_by = now + timedelta(minutes=minutes)
    return ship_by.replace(microsecond=0)


def opening_serial(sku: str, location: str, n: int, unique: bool = False) -> str:
    """The ``n``-th opening serial of ``sku`` at ``location``: ``<sku>-S<n>`` (the same names at
    every location, as the B1 simulator books them), or with ``unique`` ``<sku>-<location's last
    two characters>S<n>`` (ECC: a serial number is unique per material, at most 18 characters)."""
    return f"{sku}-{location[-2:]}S{n}" if unique else f"{sku}-S{n}"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choices(string.digits, k=count))


class SampleEvents:
    """Deterministic (per ``seed``) payloads over a catalogue of ``skus`` SKUs.

    Popularity is Zipf-like, so a few SKUs are hot; ~5% of SKUs are batch-managed (``batch_skus``,
    lots from :data:`BATCH_LOTS`), ~3% are serial-managed (``serial_skus``: receipts bring new
    serials, exits take ``<sku>-S0``, ``<sku>-S1``, ... per location, the opening serials
    ``skuflow dev`` books; with ``unique_serials`` ``<sku>-01S0``, ... unique per SKU, see
    :func:`opening_serial`) and ~5% are sold by weight (``weight_skus``: decimal quantities as
    decimal strings).
    ``dispatch_share`` of the events are dispatches; ``on_order`` sees the order of each one
    before :meth:`next` returns it.
    """

    def __init__(
        self,
        skus: int,
        *,
        seed: int = 0,
        run: str = "r0",
        dispatch_share: float = DISPATCH_SHARE,
        on_order: OnOrder | None = None,
        ghost_share: float = GHOST_SHARE,
        unique_serials: bool = False,
    ) -> None:
        if skus < 1:
            raise ValueError("skus must be >= 1")
        if not 0 <= dispatch_share <= 0.99:
            raise ValueError("dispatch_share must be within [0, 0.99]")
        self._dispatch_share, self._on_order = dispatch_share, on_order
        self._ghost_share = ghost_share
        self._unique_serials = unique_serials
        self._issued: Counter[tuple[str, str]] = Counter()  # opening serials taken per place
        self._rng = random.Random(seed)
        self._run = run
        self._seq = itertools.count(1)
        catalogue: set[str] = set()
        while len(catalogue) < skus:
            letters = "".join(self._rng.choices(string.ascii_uppercase, k=3))
            catalogue.add(f"{letters}-{self._rng.randrange(100, 10_000)}")
        self.skus = sorted(catalogue)
        self._rng.shuffle(self.skus)
        self._cumulative = list(itertools.accumulate((rank + 1) ** -0.8 for rank in range(skus)))
        self.serial_skus = frozenset(self.skus[7::33])
        self.batch_skus = frozenset(self.skus[::20]) - self.serial_skus
        self._by_weight = set(self.skus[3::20])
        self.weight_skus = frozenset(self._by_weight)  # decimal quantities (ERP unit KG)

    def _sku(self) -> str:
        point = self._rng.random() * self._cumulative[-1]
        return self.skus[min(bisect.bisect(self._cumulative, point), len(self.skus) - 1)]

    def next(self, now: datetime) -> Sample:
        roll = self._rng.random()
        if roll < 0.01:
            return self._bad(now)
        if roll < 0.01 + self._dispatch_share:
            order, payload = self._dispatch(now)
            if self._on_order is not None:
                self._on_order(order)
            return Sample("dispatch", order.order_id.encode(), msgspec.json.encode(payload), order)
        key, payload = self._stock(now)
        return Sample("stock", key.encode(), msgspec.json.encode(payload))

    def _stock(self, now: datetime) -> tuple[str, dict[str, Any]]:
        rng, n = self._rng, next(self._seq)
        sku, location = self._sku(), rng.choice(WAREHOUSES)
        ghost = rng.random() < self._ghost_share
        if ghost and rng.random() < 0.5:
            sku = f"GHOST-{rng.randrange(1, 10):04d}"
        elif ghost:
            location = UNMAPPED_LOCATION
        reason = rng.choices(_REASONS, _REASON_WEIGHTS)[0]
        units = {
            "count": rng.choice((-1, 1)) * rng.randint(1, 5),
            "damaged": -rng.randint(1, 3),
            "found": rng.randint(1, 3),
            "receipt": rng.choice((6, 12, 24, 48, 120, 240)),
            "issue": -rng.randint(1, 10),
        }[reason]
        quantity: int | Decimal = units
        serials: list[str] = []
        if sku in self.serial_skus:
            quantity = max(-2, min(2, units))
            serials = [self._serial(rng, sku, location, quantity) for _ in range(abs(quantity))]
        elif sku in self._by_weight:
            quantity = Decimal(units) * Decimal(rng.choice(("0.25", "0.5", "1.125", "2.75")))
        batch = None
        if sku in self.batch_skus:
            batch = rng.choice(BATCH_LOTS)
        occurred = now - timedelta(seconds=rng.uniform(0, 3))
        return sku, {
            "type": "stock.adjusted",
            "event_id": f"adj-{self._run}-{n:07d}",
            "occurred_at": _rfc3339(occurred),
            "source": "ims",
            "source_ref": f"IMS-ADJ-{100_000 + n}",
            "sku": sku,
            "warehouse": location,
            "quantity": quantity,
            "reason": reason,
            "batch_number": batch,
            "serial_numbers": serials,
        }

    def _serial(self, rng: random.Random, sku: str, location: str, quantity: int) -> str:
        """A new serial for a receipt; for an exit the location's next opening serial."""
        if quantity > 0:
            return f"SN{_digits(rng, 10)}"
        self._issued[sku, location] += 1
        return opening_serial(sku, location, self._issued[sku, location] - 1, self._unique_serials)

    def _dispatch(self, now: datetime) -> tuple[SampleOrder, dict[str, Any]]:
        rng, n = self._rng, next(self._seq)
        scenario = rng.choices(_SCENARIOS, _SCENARIO_WEIGHTS)[0]
        ship_by = ship_by_for(rng, scenario, now)
        order_id = f"{rng.choice(ORDER_PREFIXES)}-{_digits(rng, 7)}-{_digits(rng, 7)}"
        carrier, method = rng.choice(CARRIERS)
        if carrier == "Royal Mail":
            tracking = f"{rng.choice(('RM', 'TT', 'JD'))}{_digits(rng, 9)}GB"
        else:
            tracking = _digits(rng, 14)
        shipped = now.astimezone(SHIPPER_ZONE)
        skus: list[str] = []
        for _ in range(rng.choices((1, 2, 3), (70, 22, 8))[0]):
            sku = self._sku()
            if sku not in skus and sku not in self._by_weight:
                skus.append(sku)
        skus = skus or [self.skus[0]]
        items = tuple((_digits(rng, 14), sku, rng.choice((1, 1, 1, 2))) for sku in skus)
        lines = [{"order_item_id": i, "sku": sku, "quantity": q} for i, sku, q in items]
        if scenario == "unknown_item":  # the 3PL reports an order item id the order lacks
            lines[0]["order_item_id"] = _digits(rng, 14)
        marketplace = rng.choice(_MARKETPLACES)
        order = SampleOrder(order_id, marketplace, ship_by, items, scenario)
        return order, {
            "type": "dispatch.confirmed",
            "event_id": f"dsp-{self._run}-{n:07d}",
            "occurred_at": _rfc3339(shipped),
            "source": "seko",
            "source_ref": f"SEKO-DSP-{700 + n}",
            "channel": "amazon",
            "order_id": order_id,
            "marketplace_id": marketplace,
            "ship_by": _rfc3339(ship_by),
            "ship_date": _rfc3339(shipped),
            "carrier_code": carrier,
            "carrier_name": None,
            "shipping_method": method,
            "tracking_number": tracking,
            "package_reference_id": "1",
            "warehouse": rng.choice(WAREHOUSES),
            "lines": lines,
        }

    def _bad(self, now: datetime) -> Sample:
        """Broken JSON, a missing required field, or a type this build does not know."""
        key, payload = self._stock(now)
        flaw = self._rng.choice(("broken", "missing", "unknown"))
        if flaw == "broken":
            raw = msgspec.json.encode(payload)
            return Sample("bad", key.encode(), raw[: self._rng.randrange(1, len(raw) - 1)])
        if flaw == "missing":
            del payload[self._rng.choice(("sku", "quantity", "occurred_at", "event_id"))]
        else:
            payload["type"] = "stock.recounted"
        return Sample("bad", key.encode(), msgspec.json.encode(payload))


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens, self._last = 0.0, clock()

    async def take(self) -> int:
        """Wait until at least one token is there; take all whole tokens."""
        while True:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1:
                taken = math.floor(self._tokens)
                self._tokens -= taken
                return taken
            await asyncio.sleep((1 - self._tokens) / self._rate)


async def produce_sample_traffic(
    bootstrap: str,
    stock_topic: str,
    dispatch_topic: str,
    *,
    rate: float,
    skus: int,
    seed: int = 0,
    limit: int | None = None,
    stats: TrafficStats | None = None,
    max_pending: int = 1000,
    dispatch_share: float = DISPATCH_SHARE,
    on_order: OnOrder | None = None,
    events: SampleEvents | None = None,
) -> None:
    """Produce sample events at ``rate`` a second until cancelled (or ``limit`` were sent).

    ``on_order`` is called with the order of every dispatch before that dispatch is sent;
    ``events`` (made by the caller, e.g. to seed the ERP with its catalogue) replaces ``skus``,
    ``seed``, ``dispatch_share`` and ``on_order``.
    At most ``max_pending`` sends are unacknowledged at a time; when the broker falls behind
    the rate drops instead of memory growing. On cancellation pending sends get a few seconds.
    """
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError("rate must be a finite number > 0")
    stats = stats if stats is not None else TrafficStats()
    events = events or SampleEvents(
        skus, seed=seed, run=secrets.token_hex(3), dispatch_share=dispatch_share, on_order=on_order
    )
    topics = {"stock": stock_topic, "dispatch": dispatch_topic}
    bucket = TokenBucket(rate, max(1.0, rate / 10), time.monotonic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="skuflow-dev-traffic", acks=1, linger_ms=10
    )
    pending: set[asyncio.Future[Any]] = set()

    def delivered(future: asyncio.Future[Any]) -> None:
        pending.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            stats.produced += 1
        else:
            stats.failed += 1
            stats.last_error = f"{type(error).__name__}: {error}"

    await producer.start()
    try:
        sent = 0
        while limit is None or sent < limit:
            batch = await bucket.take()
            if limit is not None:
                batch = min(batch, limit - sent)
            now = datetime.now(UTC)
            for _ in range(batch):
                while len(pending) >= max_pending:
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                sample = events.next(now)
                topic = topics.get(sample.kind, stock_topic)
                future = await producer.send(topic, sample.value, key=sample.key)
                pending.add(future)
                future.add_done_callback(delivered)
                stats.count(sample)
                sent += 1
        if pending:
            await asyncio.wait(pending)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await producer.stop()  # flushes what is pending
