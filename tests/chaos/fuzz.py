"""Fuzzed payloads derived from the real event structs, mixed into valid traffic with a ledger.

The strategies read the schema of :mod:`handlers.common.events` through ``msgspec.inspect`` (field
names, required fields, string and list limits, accepted JSON types, the union's tags), so the
fuzz follows the schema as it changes. Every fuzzed payload says which exception kinds it may
become (``kinds``); a payload with no kinds (valid traffic and its duplicates) must never become
an exception and must take effect exactly once.

Hypothesis generates the corpus deterministically: :func:`draw` runs a ``@given`` collector
with a fixed seed, no example database and only the generate phase — the documented way to get
many examples without ``.example()`` (which warns outside interactive use).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import hypothesis
import msgspec
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from msgspec import inspect as mi

from handlers.common.events import Event, event_type_name
from handlers.dispatch.events import DispatchConfirmed, DispatchLine
from handlers.flows import event_types
from handlers.stock.events import StockAdjusted

T = TypeVar("T")

#: Exception kinds the decode path produces (the router, before any handler).
DECODE_KINDS = frozenset({"undecodable", "schema_violation", "unknown_type", "payload_too_large"})
#: Alerts a schema-valid dispatch raises beside its outcome when its (fuzzed) ship-by is near.
DEADLINE_KINDS = frozenset({"deadline_at_risk", "deadline_missed"})
MARKETPLACE = "A1F83G8C2ARO7P"
#: Strings the fuzz draws from: any UTF-8 encodable character (no lone surrogates).
CHARS = st.characters(codec="utf-8")
#: Same, without U+0000 (for payloads that must reach a handler).
HANDLER_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
MAX_PAYLOAD = 1024 * 1024

STRUCTS: dict[str, type[Event]] = {"stock": StockAdjusted, "dispatch": DispatchConfirmed}
TAGS = frozenset(event_type_name(cls) for cls in event_types())


@dataclass(frozen=True, slots=True)
class Payload:
    """One record to produce: its topic role, key, bytes and what it may become."""

    role: str  # "stock" or "dispatch": which topic
    key: bytes | None
    value: bytes
    case: str  # "valid", "duplicate", "truncated", "wrong_type", ...
    kinds: frozenset[str] = frozenset()  # acceptable exception kinds; empty: must apply

    @property
    def invalid(self) -> bool:
        return bool(self.kinds)


@dataclass
class Catalogue:
    """What the simulators know: items, location → warehouse, registered orders."""

    items: list[str]
    warehouses: dict[str, str]
    orders: list[str] = field(default_factory=list)


# --- the schema, read from the structs -----------------------------------------------------------


def struct_info(cls: type[Any]) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info


def _json_kinds(t: mi.Type) -> set[str]:
    """The JSON value kinds msgspec accepts for ``t``."""
    if isinstance(t, mi.UnionType):
        return set().union(*(_json_kinds(member) for member in t.types))
    if isinstance(t, mi.StrType | mi.DateTimeType):
        return {"str"}
    if isinstance(t, mi.DecimalType):
        return {"str", "int", "float"}
    if isinstance(t, mi.NoneType):
        return {"null"}
    if isinstance(t, mi.ListType):
        return {"array"}
    if isinstance(t, mi.StructType):
        return {"object"}
    if isinstance(t, mi.IntType):
        return {"int"}
    if isinstance(t, mi.BoolType):
        return {"bool"}
    raise TypeError(f"the fuzz does not know {t!r}: teach tests/chaos/fuzz.py")


_VALUES_OF_KIND: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(min_value=-(2**70), max_value=2**70),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "str": st.text(CHARS, max_size=8),
    "array": st.lists(st.integers(), max_size=3),
    "object": st.dictionaries(st.text(CHARS, max_size=5), st.integers(), max_size=3),
}


def wrong_value(t: mi.Type) -> st.SearchStrategy[Any]:
    """A JSON value of a kind msgspec refuses for ``t`` (bool counts apart from int)."""
    accepted = _json_kinds(t)
    return st.one_of(*(v for kind, v in _VALUES_OF_KIND.items() if kind not in accepted))


def _moments() -> st.SearchStrategy[datetime]:
    zones = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
    return st.datetimes(datetime(2020, 1, 1), datetime(2035, 1, 1), timezones=zones)


def valid_value(t: mi.Type, chars: st.SearchStrategy[str] = CHARS) -> st.SearchStrategy[Any]:
    """A schema-valid JSON builtin for ``t`` (whether the ERP or Amazon knows it is another
    matter)."""
    if isinstance(t, mi.UnionType):
        return st.one_of(*(valid_value(member, chars) for member in t.types))
    if isinstance(t, mi.StrType):
        low = max(t.min_length or 0, 1)
        return st.text(chars, min_size=low, max_size=max(low, min(t.max_length or 24, 24)))
    if isinstance(t, mi.DateTimeType):
        return _moments().map(lambda moment: moment.isoformat())
    if isinstance(t, mi.DecimalType):
        quantity = st.integers(min_value=1, max_value=50)
        return st.one_of(quantity, quantity.map(str), quantity.map(lambda q: f"{q}.000"))
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.ListType):
        low, unique = t.min_length or 0, isinstance(t.item_type, mi.StrType)  # serials: unique
        items = valid_value(t.item_type, chars)
        return st.lists(items, min_size=low, max_size=max(low, 2), unique=unique)
    if isinstance(t, mi.StructType):
        return valid_object(t, chars)
    return _VALUES_OF_KIND[sorted(_json_kinds(t))[0]]


def valid_object(
    info: mi.StructType, chars: st.SearchStrategy[str] = CHARS
) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.encode_name: valid_value(f.type, chars) for f in info.fields if f.required}
    optional = {f.encode_name: valid_value(f.type, chars) for f in info.fields if not f.required}
    base = st.fixed_dictionaries(required, optional=optional)
    tag_field, tag = info.tag_field, info.tag
    if tag_field is None:
        return base
    return base.map(lambda obj: {tag_field: tag, **obj})


def encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


# --- mutations: each a strategy of (case, value, kinds) ------------------------------------------


Mutation = tuple[str, bytes, frozenset[str]]


def _field(info: mi.StructType, name: str) -> mi.Field:
    return next(f for f in info.fields if f.encode_name == name)


@st.composite
def truncated(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    raw = encode(draw(valid_object(info)))
    cut = draw(st.integers(min_value=0, max_value=len(raw) - 1))
    return "truncated", raw[:cut], frozenset({"undecodable"})


INVALID_UTF8 = [
    b"\xff",
    b"\x80",
    b"\xc3(",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xfe",
]


@st.composite
def invalid_utf8(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    # string fields (a bad byte in a timestamp or decimal string is a schema violation instead)
    text = {
        f.encode_name
        for f in info.fields
        if "str" in _json_kinds(f.type) and not isinstance(f.type, mi.DateTimeType | mi.DecimalType)
    }
    names = [k for k, v in obj.items() if isinstance(v, str) and (k in text or k == "type")]
    name = draw(st.sampled_from(names))
    marker = "\u2603FUZZ\u2603"
    obj[name] = obj[name] + marker
    bad = draw(st.sampled_from(INVALID_UTF8))
    return "invalid_utf8", encode(obj).replace(marker.encode(), bad), frozenset({"undecodable"})


@st.composite
def wrong_type(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    target = draw(st.sampled_from(info.fields))
    if target.encode_name == "lines" and obj.get("lines") and draw(st.booleans()):
        line_info = struct_info(DispatchLine)
        line_field = draw(st.sampled_from(line_info.fields))
        obj["lines"][0][line_field.encode_name] = draw(wrong_value(line_field.type))
    else:
        obj[target.encode_name] = draw(wrong_value(target.type))
    if draw(st.booleans()):  # the tag itself mistyped
        obj[info.tag_field or "type"] = draw(wrong_value(mi.StrType()))
        return "wrong_type", encode(obj), frozenset({"unknown_type"})
    return "wrong_type", encode(obj), frozenset({"schema_violation"})


@st.composite
def missing_key(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    required = [f.encode_name for f in info.fields if f.required]
    drop = draw(st.sets(st.sampled_from([*required, "type"]), min_size=1, max_size=3))
    for name in drop:
        obj.pop(name, None)
    kinds = frozenset({"unknown_type" if "type" in drop else "schema_violation"})
    return "missing_key", encode(obj), kinds


@st.composite
def huge_field(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    limited = [
        f
        for f in info.fields
        if isinstance(f.type, mi.StrType | mi.ListType) and f.type.max_length is not None
    ]
    target = draw(st.sampled_from(limited))
    assert isinstance(target.type, mi.StrType | mi.ListType)
    assert target.type.max_length is not None
    over = target.type.max_length + draw(st.integers(min_value=1, max_value=3000))
    if isinstance(target.type, mi.StrType):
        obj[target.encode_name] = draw(st.sampled_from("xé\u2603\U0001f4e6")) * over
    else:
        item = draw(valid_value(target.type.item_type))
        obj[target.encode_name] = [item] * over
    return "huge_field", encode(obj), frozenset({"schema_violation"})


def oversized(role: str) -> Mutation:
    """One payload over the worker's 1 MiB limit (padding in an extra field)."""
    pad = "x" * (MAX_PAYLOAD + 1024)
    obj = {"type": event_type_name(STRUCTS[role]), "event_id": "oversized", "padding": pad}
    return "payload_too_large", encode(obj), frozenset({"payload_too_large"})


BAD_QUANTITIES: list[Any] = [
    0, "0", "-0.000", 10**9, -(10**9), "1e9", "1E+12", 10**30, "1e-7", 0.0000001, "0.1234567",
    "NaN", "sNaN", "Infinity", "-Infinity", "1e-999999999999", "1e999999999999",
    "1.0000000000000000000000000000001", "12abc", "", " ", "0x10", "--1",
]  # fmt: skip


@st.composite
def out_of_range(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    bad: Any = draw(
        st.one_of(
            st.sampled_from(BAD_QUANTITIES),
            st.integers(min_value=10**9, max_value=10**40).flatmap(
                lambda q: st.sampled_from([q, -q, str(q)])
            ),
            # 7 significant decimal places (a trailing zero would make it 6: valid)
            st.integers(min_value=-(10**10), max_value=10**10)
            .filter(lambda n: n % 10 != 0)
            .map(lambda n: str(Decimal(n).scaleb(-7))),
        )
    )
    if "lines" in obj:  # dispatch: lines must be whole positive units
        bad = draw(st.one_of(st.just(bad), st.sampled_from([-1, "-3", 1.5, "0.25", "2.5000"])))
        obj["lines"][0]["quantity"] = bad
    else:
        obj["quantity"] = bad
    return "out_of_range", encode(obj), frozenset({"schema_violation"})


@st.composite
def unknown_type(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    tag = draw(
        st.one_of(
            st.text(CHARS, max_size=30),
            st.sampled_from(
                ["skuflow.unroutable", "Stock.Adjusted", "stock.adjusted ", "order", "stock\x00"]
            ),
        ).filter(lambda t: t not in TAGS)
    )
    obj["type"] = tag
    return "unknown_type", encode(obj), frozenset({"unknown_type"})


@st.composite
def bad_timestamp(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info))
    stamps = [f.encode_name for f in info.fields if isinstance(f.type, mi.DateTimeType)]
    name = draw(st.sampled_from(stamps))
    obj[name] = draw(
        st.one_of(
            st.datetimes().map(lambda moment: moment.isoformat()),  # no offset
            st.sampled_from(
                [
                    "0001-01-01T00:00:00+23:59",
                    "9999-12-31T23:59:59-23:59",
                    "2026-02-30T00:00:00Z",
                    "2026-11-23 10:15",
                    "yesterday",
                    "",
                    "2026-11-23T25:00:00Z",
                ]
            ),
        )
    )
    return "bad_timestamp", encode(obj), frozenset({"schema_violation"})


@st.composite
def nul_character(draw: st.DrawFn, info: mi.StructType) -> Mutation:
    obj = draw(valid_object(info, HANDLER_CHARS))
    names = [k for k, v in obj.items() if isinstance(v, str) and k != "type"]
    name = draw(st.sampled_from(names))
    obj[name] = obj[name][:100] + "\x00"
    return "nul_character", encode(obj), frozenset({"schema_violation"})


NOT_OBJECT_KINDS = frozenset({"schema_violation", "undecodable"})


def not_object() -> st.SearchStrategy[Mutation]:
    return st.one_of(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(CHARS, max_size=10),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=6,
        ).map(lambda value: ("not_object", encode(value), NOT_OBJECT_KINDS)),
        st.binary(max_size=64)
        .filter(lambda raw: not raw.lstrip().startswith(b"{"))
        .map(lambda raw: ("random_bytes", raw, NOT_OBJECT_KINDS)),
        st.integers(min_value=2_000, max_value=60_000).map(
            lambda depth: ("deep_nesting", b"[" * depth + b"]" * depth, NOT_OBJECT_KINDS)
        ),
    )


def structural(info: mi.StructType) -> st.SearchStrategy[Mutation]:
    """Every schema-level mutation of one event family (the decode path refuses them all)."""
    return st.one_of(
        truncated(info),
        invalid_utf8(info),
        wrong_type(info),
        missing_key(info),
        huge_field(info),
        out_of_range(info),
        unknown_type(info),
        bad_timestamp(info),
        nul_character(info),
        not_object(),
    )


# --- domain-level bad input: schema-valid, refused by the handlers -------------------------------


def ghost_stock(catalogue: Catalogue) -> st.SearchStrategy[Mutation]:
    """Schema-valid adjustments for an unknown SKU or an unmapped location (any characters:
    they travel into OData URLs and PostgreSQL)."""
    info = struct_info(StockAdjusted)
    known = set(catalogue.items)
    sku = st.text(HANDLER_CHARS, min_size=1, max_size=40).filter(lambda s: s not in known)
    location = st.text(HANDLER_CHARS, min_size=1, max_size=20).filter(
        lambda s: s not in catalogue.warehouses
    )

    def unknown_sku(obj: dict[str, Any], value: str) -> Mutation:
        obj = {
            **obj,
            "sku": value,
            "warehouse": sorted(catalogue.warehouses)[0],
            "serial_numbers": [],
        }
        return "unknown_sku", encode(obj), frozenset({"unknown_sku"})

    def unmapped(obj: dict[str, Any], value: str) -> Mutation:
        obj = {**obj, "sku": catalogue.items[0], "warehouse": value, "serial_numbers": []}
        return "unmapped_warehouse", encode(obj), frozenset({"unmapped_warehouse"})

    base = valid_object(info, HANDLER_CHARS)
    return st.one_of(
        st.builds(unknown_sku, base, sku),
        st.builds(unmapped, base, location),
    )


def unknown_orders(catalogue: Catalogue) -> st.SearchStrategy[Mutation]:
    """Schema-valid dispatch confirmations Amazon refuses (unknown order, any characters in the
    order id: it goes into a URL path) or no connector takes (another channel)."""
    info = struct_info(DispatchConfirmed)
    known = set(catalogue.orders)
    order_id = st.text(HANDLER_CHARS, min_size=1, max_size=40).filter(lambda s: s not in known)
    channel = st.text(HANDLER_CHARS, min_size=1, max_size=12).filter(lambda s: s != "amazon")
    base = valid_object(info, HANDLER_CHARS)

    def unknown_order(obj: dict[str, Any], value: str) -> Mutation:
        obj = {**obj, "channel": "amazon", "order_id": value}
        return "unknown_order", encode(obj), DEADLINE_KINDS | {"marketplace_rejected"}

    def other_channel(obj: dict[str, Any], value: str) -> Mutation:
        kinds = DEADLINE_KINDS | {"unsupported_channel"}
        return "unsupported_channel", encode({**obj, "channel": value}), kinds

    return st.one_of(
        st.builds(unknown_order, base, order_id), st.builds(other_channel, base, channel)
    )


def fuzz_cases(catalogue: Catalogue) -> st.SearchStrategy[Payload]:
    """One fuzzed payload of either family, with a key taken from the valid traffic's keys half
    of the time (so bad input shares partitions and lanes with good input)."""
    keys = st.one_of(
        st.sampled_from([item.encode() for item in catalogue.items]),
        st.none(),
        st.binary(max_size=16),
    )
    order_keys = st.one_of(
        st.sampled_from([o.encode() for o in catalogue.orders] or [b"171-0000000-0000000"]),
        st.none(),
    )

    def payload(role: str, mutation: Mutation, key: bytes | None) -> Payload:
        case, value, kinds = mutation
        return Payload(role, key, value, case, kinds)

    stock, dispatch = struct_info(StockAdjusted), struct_info(DispatchConfirmed)
    branches = [
        # weights: schema-level bad input 70%, schema-valid input the handlers refuse 30%
        *[st.builds(payload, st.just("stock"), structural(stock), keys)] * 4,
        *[st.builds(payload, st.just("dispatch"), structural(dispatch), order_keys)] * 3,
        *[st.builds(payload, st.just("stock"), ghost_stock(catalogue), keys)] * 2,
        st.builds(payload, st.just("dispatch"), unknown_orders(catalogue), order_keys),
    ]
    return st.integers(min_value=0, max_value=len(branches) - 1).flatmap(lambda i: branches[i])


def draw(strategy: st.SearchStrategy[T], count: int, seed: int) -> list[T]:
    """``count`` examples of ``strategy``, the same ones for the same seed."""
    found: list[T] = []
    while len(found) < count:

        @hypothesis.settings(
            max_examples=count - len(found),
            database=None,
            phases=[Phase.generate],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )
        @hypothesis.seed(seed)
        @hypothesis.given(strategy)
        def collect(value: T) -> None:
            found.append(value)

        before = len(found)
        collect()
        if len(found) == before:
            raise RuntimeError("hypothesis produced no examples")
        seed += 1
    return found[:count]


# --- valid traffic and the ledger ----------------------------------------------------------------


@dataclass
class Traffic:
    """Everything to produce, in order, and what the systems of record must show after it."""

    payloads: list[Payload]
    expected_stock: dict[tuple[str, str], int]  # (item, ERP warehouse) → net movement
    expected_orders: list[str]  # each confirmed exactly once

    def count(self, predicate: Callable[[Payload], bool]) -> int:
        return sum(1 for p in self.payloads if predicate(p))


def stock_event(n: int, sku: str, location: str, quantity: int, rng: random.Random) -> bytes:
    event = StockAdjusted(
        event_id=f"fz-adj-{n}", occurred_at=datetime.now(UTC), source="ims",
        source_ref=f"IMS-{n}", sku=sku, warehouse=location, quantity=Decimal(quantity),
        reason=rng.choice(["count", "damaged", "found", "receipt"]),
    )  # fmt: skip
    obj = msgspec.to_builtins(event)
    if rng.random() < 0.3:
        obj["quantity"] = quantity  # a JSON number instead of a decimal string
    if rng.random() < 0.1:  # unknown extra fields are ignored (contract)
        obj[f"x_{rng.randrange(1000)}"] = rng.choice([None, 1, "extra", [1, {"a": "b"}]])
    return encode(obj)


def dispatch_event(order_id: str, rng: random.Random) -> bytes:
    now = datetime.now(UTC)
    event = DispatchConfirmed(
        event_id=f"fz-dsp-{order_id}", occurred_at=now, source="seko",
        source_ref=f"SEKO-{order_id}", channel="amazon", order_id=order_id,
        marketplace_id=MARKETPLACE, ship_by=now + timedelta(days=3), ship_date=now,
        carrier_code="Royal Mail", shipping_method="Tracked 24",
        tracking_number=f"RM{rng.randrange(10**9):09d}GB", package_reference_id="1",
        warehouse="LOC-01",
        lines=[msgspec.convert({"order_item_id": f"{order_id}-1", "sku": "ABC-123",
                                "quantity": 1}, type=DispatchLine)],
    )  # fmt: skip
    return encode(event)


def traffic(
    catalogue: Catalogue,
    *,
    fuzzed: int,
    valid_stock: int,
    seed: int,
    duplicates: float = 0.05,
    oversized_payloads: int = 0,
) -> Traffic:
    """Valid adjustments (stock never goes below zero at 1000 opening), one valid dispatch per
    registered order, exact and same-id duplicates of both, and ``fuzzed`` hypothesis payloads,
    interleaved at random (a valid event's duplicate always comes after it)."""
    rng = random.Random(seed)
    valid: list[Payload] = []
    expected: dict[tuple[str, str], int] = {}
    locations = sorted(catalogue.warehouses)
    for n in range(valid_stock):
        sku, location = rng.choice(catalogue.items), rng.choice(locations)
        quantity = rng.choice([-3, -2, -1, 1, 2, 5])
        place = (sku, catalogue.warehouses[location])
        expected[place] = expected.get(place, 0) + quantity
        value = stock_event(n, sku, location, quantity, rng)
        valid.append(Payload("stock", sku.encode(), value, "valid"))
    valid += [
        Payload("dispatch", order.encode(), dispatch_event(order, rng), "valid")
        for order in catalogue.orders
    ]
    bad = draw(fuzz_cases(catalogue), fuzzed, seed)
    bad += [Payload(role, None, value, case, kinds)
            for role in ("stock",) * oversized_payloads
            for case, value, kinds in [oversized(role)]]  # fmt: skip
    # Interleave: valid events keep their relative order; bad input lands anywhere.
    stream: list[Payload] = list(valid)
    for payload in bad:
        stream.insert(rng.randrange(len(stream) + 1), payload)
    # Duplicates go after their original (same key: same partition, so after it in the log).
    for original in rng.sample(valid, int(len(valid) * duplicates)):
        at = stream.index(original)
        copy = original.value
        if original.role == "stock" and rng.random() < 0.5:  # same event id, other content
            obj = msgspec.json.decode(copy)
            obj["quantity"] = 999
            copy = encode(obj)
        duplicate = Payload(original.role, original.key, copy, "duplicate")
        stream.insert(rng.randrange(at + 1, len(stream) + 1), duplicate)
    return Traffic(stream, expected, list(catalogue.orders))


def by_case(payloads: list[Payload]) -> Iterator[tuple[str, int]]:
    counts: dict[str, int] = {}
    for p in payloads:
        counts[p.case] = counts.get(p.case, 0) + 1
    yield from sorted(counts.items())
