"""Seko's rules checked before sending (product codes, orders, tracking flags), and the pure
parts of the connector's wire: iHub's artefacts read from the recorded v1 fixtures
(kingandpartners/seko-ruby-api ``spec/fixtures``), the order GUID, the order body, redaction."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from handlers.connectors.seko.client import redact
from handlers.connectors.seko.protocol import (
    Answer,
    DispatchesAnswer,
    GrnAnswer,
    SalesOrder,
    SalesOrderLine,
    StockAnswer,
    decode,
    order_body,
    order_guid,
)
from handlers.connectors.seko.rules import (
    RULES,
    ItemTracking,
    ProductCodeRules,
    SekoTracking,
    Violation,
    order_violations,
    product_code_violations,
)

pytestmark = pytest.mark.timeout(5)


def line(code: str, quantity: int = 1, number: int = 1, lot: str | None = None) -> SalesOrderLine:
    return SalesOrderLine(line_number=number, product_code=code, quantity=quantity, lot_no=lot)


def so(*lines: SalesOrderLine, number: str = "SO-1", dc: str = "DCIW01") -> SalesOrder:
    return SalesOrder(number=number, dc=dc, lines=lines)


def rules_of(violations: Sequence[Violation]) -> list[str]:
    return [v.rule for v in violations]


# --- product codes ---


def test_a_plain_code_passes() -> None:
    assert product_code_violations("ABC-123_x.9") == []


def test_codes_over_the_limit_are_too_long() -> None:
    (violation,) = product_code_violations("X" * 101)
    assert (violation.rule, violation.detail) == (
        "product_code.too_long",
        "101 characters, at most 100",
    )
    assert product_code_violations("X" * 100) == []


@pytest.mark.parametrize("code", ['12"MUG', "A|B", "A,B", "A\tB", "A\x00B"])
def test_quotes_pipes_commas_and_control_characters_are_refused(code: str) -> None:
    assert rules_of(product_code_violations(code)) == ["product_code.character"]


def test_surrounding_whitespace_and_empty_codes_are_refused() -> None:
    assert rules_of(product_code_violations(" A-1")) == ["product_code.whitespace"]
    assert rules_of(product_code_violations("")) == ["product_code.empty"]


def test_the_rule_set_is_configurable() -> None:
    strict = ProductCodeRules(max_length=6, forbidden="/", ascii_only=True)
    assert rules_of(product_code_violations("ÄB/1234", strict)) == [
        "product_code.too_long",
        "product_code.character",
        "product_code.non_ascii",
    ]
    assert product_code_violations("A|B", strict) == []


def test_every_rule_is_described() -> None:
    assert all(RULES.values())
    assert {"product_code.character", "tracking.batches", "order.duplicate_product"} <= set(RULES)


# --- orders ---


def test_a_good_order_passes() -> None:
    assert order_violations(so(line("A1"), line("B2", 3, 2))) == []


def test_one_line_per_product_code_without_case() -> None:
    (violation,) = order_violations(so(line("A1"), line("a1", number=2)))
    assert (violation.item, violation.rule) == ("a1", "order.duplicate_product")


def test_line_numbers_quantities_and_lines() -> None:
    found = order_violations(so(line("A1", 0), line("B2", 2, 1)))
    assert rules_of(found) == ["order.quantity", "order.duplicate_line"]
    assert rules_of(order_violations(so())) == ["order.no_lines"]


@pytest.mark.parametrize("number", ["", "X" * 51, "SO/1", 'SO"1', "SO?1", " SO1"])
def test_order_numbers_must_fit_seko_and_the_cancellation_path(number: str) -> None:
    assert rules_of(order_violations(so(line("A1"), number=number))) == ["order.number"]


def test_an_order_needs_a_dc() -> None:
    assert rules_of(order_violations(so(line("A1"), dc=" "))) == ["order.facility"]


def test_a_bad_product_code_is_named_on_its_order() -> None:
    (violation,) = order_violations(so(line("A1"), line("B|2", number=2)))
    assert (violation.item, violation.rule) == ("B|2", "product_code.character")


# --- tracking flags ---


def test_the_erp_and_seko_must_agree_on_batches_and_serials() -> None:
    products = {"lot-1": SekoTracking(lot_controlled=True), "SER-1": SekoTracking()}
    items = {"LOT-1": ItemTracking(batches=True), "ser-1": ItemTracking(serials=True)}
    found = order_violations(
        so(line("LOT-1"), line("SER-1", number=2)), products=products, items=items
    )
    assert [(v.item, v.rule) for v in found] == [("SER-1", "tracking.serials")]
    assert found[0].detail == (
        "the ERP manages serial numbers; Seko's SerialNumberControlled is false"
    )


def test_a_batch_item_unknown_to_seko_as_lot_controlled_breaks_traceability() -> None:
    (violation,) = order_violations(
        so(line("A1")),
        products={"A1": SekoTracking()},
        items={"A1": ItemTracking(batches=True)},
    )
    assert violation.rule == "tracking.batches"


def test_a_product_not_loaded_at_seko_is_unknown_when_the_catalogue_is_given() -> None:
    assert rules_of(order_violations(so(line("A1")), products={})) == ["product.unknown"]
    assert order_violations(so(line("A1"))) == []  # no catalogue: not checked


def test_a_requested_lot_needs_a_lot_controlled_product() -> None:
    found = order_violations(so(line("A1", lot="L7")), products={"A1": SekoTracking()})
    assert rules_of(found) == ["tracking.lot_requested"]


# --- the wire ---


def test_one_dispatch_comes_as_an_object_and_is_read_as_a_list() -> None:
    raw = (
        b'{"Response":{"CallStatus":{"Code":0,"Message":{},"Success":true},'
        b'"List":{"DispatchLineItem":{"DCCode":"DCSOM01",'
        b'"GUID":"2b5e52cc-fb6f-4ea4-b8cf-cf64e3a2b8db"}}}}'
    )
    (dispatch,) = decode(raw, DispatchesAnswer).list_.items
    assert (dispatch.dc, dispatch.guid) == ("DCSOM01", "2b5e52cc-fb6f-4ea4-b8cf-cf64e3a2b8db")
    status = decode(raw, Answer).call_status
    assert status is not None
    assert (status.success, status.message) == (True, "")  # {} read as empty


def test_the_grn_fixture_reads_empty_objects_as_absent() -> None:
    raw = (
        b'{"Response":{"CallStatus":{"Code":0,"Message":{},"Success":true},"List":{'
        b'"GRNResponseItem":[{"ArrivalTimestamp":"2014-10-10T15:45:12Z","CurrentStatus":'
        b'"Confirmed","DCCode":{},"GRNQuantity":10,"GRNType":{},"GUID":"5b2d","HBRef":{},'
        b'"LineItemGUID":"9213","LineItemNumber":1,"ProductCode":{}}]}}}'
    )
    (grn,) = decode(raw, GrnAnswer).list_.items
    assert (grn.quantity, grn.line_number, grn.dc, grn.product_code) == (10, 1, None, "")
    assert grn.arrived_at is not None
    assert grn.arrived_at.year == 2014


def test_a_product_code_sent_as_a_number_is_read_as_text() -> None:
    raw = (
        b'{"CallStatus":{"Success":true,"Code":0,"Message":""},"List":{"StockQuantityLineItem"'
        b':[{"ProductCode":100015,"DCCode":"DC1","LocationType":"Available Stock","Quantity":10}]}}'
    )
    (row,) = decode(raw, StockAnswer).list_.rows
    assert (row.product_code, row.quantity) == ("100015", 10)


def test_the_order_guid_follows_the_content_not_the_case_of_codes() -> None:
    one = so(line("a1", 2))
    assert order_guid(one) == order_guid(so(line("A1", 2)))
    assert order_guid(one) != order_guid(so(line("A1", 3)))
    assert order_guid(SalesOrder(number="X", dc="D", lines=(), guid="given")) == "given"


def test_the_order_body_is_v4_unwrapped_with_texts_as_strings() -> None:
    body = order_body(so(line("007", 2, lot="L1"), number="000123"))
    assert body["SalesOrder"]["SalesOrderNumber"] == "000123"
    assert body["SalesOrderHeader"] == {"DCCode": "DCIW01"}
    assert body["List"]["SalesOrderLineItem"] == [
        {"LineNumber": 1, "ProductCode": "007", "Quantity": 2, "LotNo": "L1"}
    ]
    assert "Request" not in body


def test_redaction_hides_the_key_and_any_query_secret() -> None:
    text = "GET /api/x?api_key=s3cr3t-key&dc=D1 failed; token=other and s3cr3t-key"
    assert redact(text, "s3cr3t-key") == "GET /api/x?api_key=***&dc=D1 failed; token=*** and ***"
