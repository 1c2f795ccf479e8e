"""Property: whatever bytes arrive, decode + validate never raises and gives an event or a
precise reason (no network; the strategies are the bad-input scenario's, tests/chaos/fuzz.py).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.common.events import Event, quantity_problem
from handlers.common.router import DomainRouter
from handlers.dispatch.events import DispatchConfirmed
from handlers.flows import default_families
from handlers.stock.events import StockAdjusted
from tests.chaos.fuzz import (
    CHARS,
    DECODE_KINDS,
    HANDLER_CHARS,
    TAGS,
    Catalogue,
    Mutation,
    Payload,
    fuzz_cases,
    struct_info,
    structural,
    valid_object,
)
from worker.exceptions import encode_headers, storable
from worker.messages import DecodeFailure, Message

ROUTER = DomainRouter(default_families())
CATALOGUE = Catalogue(["FZ000", "FZ001"], {"LOC-01": "01"}, ["171-0000000-0000001"])
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def decode(value: bytes) -> Any:
    message = Message(
        topic="t", partition=0, offset=0, key=None, value=value, headers=(), timestamp_ms=0
    )
    return ROUTER.decode(message)


def assert_precise(result: Any) -> None:
    """An event of a known family, or a failure of a decode kind with a reason naming where."""
    if isinstance(result, Event):
        assert isinstance(result, StockAdjusted | DispatchConfirmed)
        assert ROUTER.describe(result).ordering_key
        return
    assert isinstance(result, DecodeFailure), result
    assert result.kind in DECODE_KINDS
    assert result.reason.strip()
    if result.kind == "schema_violation":
        assert "`" in result.reason, result.reason  # names the field / path / expected type
    if result.kind == "unknown_type":
        assert "type" in result.reason, result.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARS, max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(CHARS, max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.timeout(60)
@FAST
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert_precise(decode(raw))


@pytest.mark.timeout(60)
@FAST
@given(
    st.dictionaries(st.text(CHARS, max_size=12), json_values, max_size=12),
    st.sampled_from(sorted(TAGS)),
)
def test_arbitrary_json_objects_of_a_known_type_never_raise(obj: dict[str, Any], tag: str) -> None:
    assert_precise(decode(msgspec.json.encode({**obj, "type": tag})))


@pytest.mark.timeout(60)
@FAST
@given(st.sampled_from(["stock", "dispatch"]).flatmap(lambda role: structural(_info(role))))
def test_every_schema_mutation_is_refused_with_its_kind(mutation: Mutation) -> None:
    case, value, kinds = mutation
    result = decode(value)
    assert isinstance(result, DecodeFailure), (case, value[:300], result)
    assert result.kind in kinds, (case, value[:300], result)
    assert_precise(result)


@pytest.mark.timeout(60)
@FAST
@given(st.sampled_from(["stock", "dispatch"]).flatmap(lambda r: valid_object(_info(r), CHARS)))
def test_schema_valid_objects_decode_unless_a_string_holds_nul(obj: dict[str, Any]) -> None:
    result = decode(msgspec.json.encode(obj))
    if "\x00" in msgspec.json.encode(obj).decode("unicode_escape", "ignore"):
        assert isinstance(result, DecodeFailure)
        assert result.kind == "schema_violation"
        assert "U+0000" in result.reason
    else:
        assert isinstance(result, StockAdjusted | DispatchConfirmed), result


@pytest.mark.timeout(60)
@FAST
@given(fuzz_cases(CATALOGUE))
def test_handler_level_bad_input_decodes_and_schema_level_does_not(payload: Payload) -> None:
    result = decode(payload.value)
    assert_precise(result)
    if payload.kinds & DECODE_KINDS:
        assert isinstance(result, DecodeFailure)
        assert result.kind in payload.kinds
    else:  # unknown SKU, unmapped location, unknown order, other channel: the handler's call
        assert isinstance(result, StockAdjusted | DispatchConfirmed), result


def _info(role: str) -> Any:
    return struct_info(StockAdjusted if role == "stock" else DispatchConfirmed)


# --- regressions the fuzz found ------------------------------------------------------------------

ADJUSTMENT = (
    b'{"type":"stock.adjusted","event_id":"e1","occurred_at":"2026-01-01T00:00:00Z",'
    b'"source":"ims","source_ref":"r","sku":"A","warehouse":"LOC-01","quantity":1,"reason":"x"}'
)


@pytest.mark.parametrize(
    ("old", "new", "kind", "says"),
    [
        # raw invalid UTF-8 inside a string raised UnicodeDecodeError out of the fetch loop
        (b'"A"', b'"A\xff"', "undecodable", "UTF-8"),
        (b'"A"', b'"A\xed\xa0\x80"', "undecodable", "UTF-8"),
        (b'"A"', b'"A\xc0\xaf"', "undecodable", "UTF-8"),
        # deep nesting in an ignored extra field raised RecursionError
        (b"{", b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b",", "undecodable", "deeply"),
        # U+0000 reached PostgreSQL text columns (unwritable: retried forever)
        (b'"A"', b'"A\\u0000"', "schema_violation", "$.sku"),
        (b'"e1"', b'"e\\u00001"', "schema_violation", "$.event_id"),
        # normalize() underflowed / rounded: both passed the 6-decimal-places rule
        (b'"quantity":1', b'"quantity":"1e-999999999999"', "schema_violation", "decimal places"),
        (b'"quantity":1', b'"quantity":"1.0000000000000000000000000000001"', "schema_violation",
         "decimal places"),
        # a timestamp UTC cannot hold: astimezone()/fromtimestamp() raised in the deadline watch
        (b'"2026-01-01T00:00:00Z"', b'"0001-01-01T00:00:00+23:59"', "schema_violation",
         "$.occurred_at"),
        (b'"2026-01-01T00:00:00Z"', b'"9999-12-31T23:59:59-23:59"', "schema_violation",
         "$.occurred_at"),
    ],
)  # fmt: skip
def test_regressions(old: bytes, new: bytes, kind: str, says: str) -> None:
    result = decode(ADJUSTMENT.replace(old, new, 1))
    assert isinstance(result, DecodeFailure), result
    assert result.kind == kind
    assert says in result.reason


def test_a_literal_backslash_u0000_text_is_not_a_nul() -> None:
    result = decode(ADJUSTMENT.replace(b'"x"', b'"\\\\u0000"'))
    assert isinstance(result, StockAdjusted)
    assert result.reason == "\\u0000"


def test_trailing_zeros_and_ordinary_places_still_pass() -> None:
    for text in ("1.50000000000", "0.000001", "-2.000000000000000000000000000000000"):
        assert quantity_problem(Decimal(text), allow_negative=True) is None
    assert quantity_problem(Decimal("0.0000001"), allow_negative=True) is not None


def test_dispatch_deadline_out_of_utc_range_is_refused() -> None:
    obj = msgspec.json.decode(_valid_dispatch())
    obj["ship_by"] = "0001-01-01T00:00:00+05:00"
    result = decode(msgspec.json.encode(obj))
    assert isinstance(result, DecodeFailure)
    assert "$.ship_by" in result.reason


def _valid_dispatch() -> bytes:
    return (
        b'{"type":"dispatch.confirmed","event_id":"d1","occurred_at":"2026-01-01T00:00:00Z",'
        b'"source":"seko","source_ref":"s","channel":"amazon","order_id":"171-1",'
        b'"marketplace_id":"M","ship_by":"2026-01-02T00:00:00Z","ship_date":"2026-01-01T00:00:00Z",'
        b'"carrier_code":"Royal Mail","tracking_number":"T","package_reference_id":"1",'
        b'"warehouse":"LOC-01","lines":[{"order_item_id":"i","sku":"S","quantity":1}]}'
    )


def test_valid_dispatch_fixture_decodes() -> None:
    assert isinstance(decode(_valid_dispatch()), DispatchConfirmed)


@given(st.text(HANDLER_CHARS | st.just("\x00"), max_size=20))
def test_text_stored_in_postgresql_never_holds_nul(text: str) -> None:
    assert "\x00" not in storable(text)
    assert storable(text) == text or "\x00" in text
    assert "\\u0000" in encode_headers([(text + "\x00", b"v")])
