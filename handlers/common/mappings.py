"""Names on the warehouse's side → names in the ERP: SKU → item code, location → warehouse.

Every flow that touches the ERP with the warehouse's names uses the same mapping
(``[mappings]``: ``sku_map`` CSV, ``warehouses``)."""

from __future__ import annotations

from collections.abc import Mapping


class Mappings:
    """IMS/3PL SKU → ERP item code (identity without a map) and location → ERP warehouse."""

    def __init__(self, skus: Mapping[str, str] | None, warehouses: Mapping[str, str]) -> None:
        self._skus = dict(skus) if skus is not None else None
        self._warehouses = dict(warehouses)

    def item_code(self, sku: str) -> str | None:
        return sku if self._skus is None else self._skus.get(sku)

    def warehouse_code(self, location: str) -> str | None:
        if not self._warehouses:
            return location  # no mapping configured: locations are the ERP's codes
        return self._warehouses.get(location)
