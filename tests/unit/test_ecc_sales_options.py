"""``[ecc]``'s sales settings: validated, and mirrored into the connector's options."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from config.settings import EccSettings, SettingsError, default_sales_functions
from handlers.connectors.ecc.orders import SalesArea
from handlers.connectors.ecc.sales import SalesOptions, sales_options

pytestmark = pytest.mark.timeout(10)


def test_the_defaults_of_settings_and_options_are_the_same() -> None:
    assert sales_options(EccSettings()) == SalesOptions()


def test_every_sales_setting_reaches_the_connector() -> None:
    settings = EccSettings(
        sales_org="", distribution_channel="", division="", order_type="ZOR",
        sales_functions={**default_sales_functions(), "delivery": "/ACME/SD_DELIVER"},
        rejection_reason="Z1", return_movement_type="653", discount_condition="K007",
        sales_order_wait_seconds=5.0, sales_lock_messages=["V1 042", "VL 046"],
        duplicate_po_messages=["V1 045"],
    )  # fmt: skip
    options = sales_options(settings)
    assert options.area == SalesArea(order_type="ZOR")
    assert options.functions["delivery"] == "/ACME/SD_DELIVER"
    assert (options.rejection_reason, options.return_movement_type) == ("Z1", "653")
    assert (options.discount_condition, options.order_wait_seconds) == ("K007", 5.0)
    assert options.lock_messages == frozenset({"V1 042", "VL 046"})
    assert options.duplicate_po_messages == frozenset({"V1 045"})


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"division": ""}, "all three, or none"),
        ({"sales_org": "10000"}, "at most 4"),
        ({"rejection_reason": ""}, "reason for rejection"),
        ({"return_movement_type": "65"}, "movement type"),
        ({"sales_order_wait_seconds": 0}, "sales_order_wait_seconds"),
        ({"sales_functions": {"delivery": "Z_D"}}, "needs exactly"),
        ({"sales_functions": {**default_sales_functions(), "reject": "Z REJECT"}}, "reject"),
        ({"sales_lock_messages": ["V1042"]}, "CLASS NUMBER"),
    ],
)
def test_sales_settings_are_validated(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises((msgspec.ValidationError, SettingsError), match=problem):
        msgspec.convert({**changes}, EccSettings)
