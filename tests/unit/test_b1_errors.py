"""How Service Layer error answers are classified: -2035 is a collision, not a line rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config.settings import B1Settings, SettingsError, load_settings
from handlers.connectors.b1.errors import (
    B1DuplicateEntry,
    B1Locked,
    B1Rejected,
    B1Unavailable,
    translate,
)

TEXT = "This entry already exists in the following tables (ODBC -2035)"


def answer(code: int | str, message: str, *, v4: bool = False) -> bytes:
    body = message if v4 else {"lang": "en-us", "value": message}
    return json.dumps({"error": {"code": code, "message": body}}).encode()


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(answer(-2035, TEXT), id="v1 number code"),
        pytest.param(answer("-2035", TEXT, v4=True), id="v2 string code"),
        pytest.param(answer(-1, "This entry already exists (ODBC -2035)"), id="code -1, text"),
        pytest.param(answer(-2035, "Esta entrada ya existe en las tablas siguientes"), id="es"),
    ],
)
def test_2035_is_a_duplicate_entry_and_names_no_line(raw: bytes) -> None:
    error = translate("InventoryGenExits", 400, raw, write=True, item_codes=["A", "B", "C"])
    assert isinstance(error, B1DuplicateEntry)
    assert not isinstance(error, (B1Rejected, B1Locked))
    assert error.status == 400
    assert "entry already exists" in str(error)


@pytest.mark.timeout(5)
def test_the_duplicate_entry_keeps_b1s_code_and_text() -> None:
    error = translate("InventoryGenEntries", 400, answer(-2035, TEXT), write=True)
    assert isinstance(error, B1DuplicateEntry)
    assert (error.code, error.message, error.operation) == (-2035, TEXT, "InventoryGenEntries")


@pytest.mark.timeout(5)
def test_2039_stays_a_lock_and_a_line_rejection_stays_a_rejection() -> None:
    locked = answer(-2039, "Another user or another operation modified data (ODBC -2039)")
    assert isinstance(translate("InventoryGenExits", 400, locked, write=True), B1Locked)
    negative = answer(-10, "Quantity falls into negative inventory  [IGE1.ItemCode][line: 2]")
    rejected = translate("InventoryGenExits", 400, negative, write=True, item_codes=["A", "B"])
    assert isinstance(rejected, B1Rejected)
    assert rejected.line == 1


@pytest.mark.timeout(5)
def test_the_collision_codes_are_configurable() -> None:
    raw = answer(-2035, TEXT)
    without = translate("InventoryGenExits", 400, raw, write=True, collision_codes=())
    assert isinstance(without, B1Rejected)  # an operator who wants -2035 back as a rejection
    other = answer(-5002, "Internal error (-5002) occurred")
    assert isinstance(
        translate("InventoryGenExits", 400, other, write=True, collision_codes={-5002}),
        B1DuplicateEntry,
    )


@pytest.mark.timeout(5)
def test_a_2035_code_on_a_server_error_is_an_outage() -> None:
    error = translate("InventoryGenExits", 500, answer(-2035, TEXT), write=True)
    assert isinstance(error, B1Unavailable)
    assert error.ambiguous  # a 5xx write may have been applied: searched before posting again


@pytest.mark.timeout(5)
def test_collision_settings_default_and_load_from_toml(tmp_path: Path) -> None:
    assert B1Settings().collision_codes == frozenset({-2035})
    path = tmp_path / "skuflow.toml"
    path.write_text("[b1]\ncollision_codes = [-2035, -1]\n[stock]\ncollision_retries = 3\n")
    settings = load_settings(path, {})
    assert settings.b1.collision_codes == {-2035, -1}
    assert settings.stock.collision_retries == 3
    path.write_text("[stock]\ncollision_retries = -1\n")
    with pytest.raises(SettingsError, match=r"stock\.collision_retries: must be >= 0"):
        load_settings(path, {})
