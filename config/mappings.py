"""The SKU map: a `sku,item_code` CSV read into {sku: item_code}."""

import csv
from pathlib import Path
from typing import TextIO

from config.base import SettingsError

__all__ = ["load_sku_map"]


def load_sku_map(path: Path) -> dict[str, str]:
    """Read a `sku,item_code` CSV into {sku: item_code}; errors name `path:line`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            return _parse_sku_map(file, str(path))
    except FileNotFoundError:
        raise SettingsError(str(path), "SKU map file not found") from None
    except OSError as exc:
        raise SettingsError(str(path), f"cannot read SKU map: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(str(path), "SKU map is not UTF-8") from None


def _parse_sku_map(file: TextIO, where: str) -> dict[str, str]:
    rows = csv.reader(file)
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    try:
        header = [cell.strip() for cell in next(rows, [])]
        if header != ["sku", "item_code"]:
            raise SettingsError(f"{where}:1", "expected the header 'sku,item_code'")
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise SettingsError(f"{where}:{line}", f"expected 2 columns, got {len(row)}")
            sku, item_code = (cell.strip() for cell in row)
            if not sku:
                raise SettingsError(f"{where}:{line}", "blank sku")
            if not item_code:
                raise SettingsError(f"{where}:{line}", f"blank item_code for sku {sku!r}")
            if sku in mapping:
                raise SettingsError(
                    f"{where}:{line}", f"duplicate sku {sku!r} (first on line {first_line[sku]})"
                )
            mapping[sku] = item_code
            first_line[sku] = line
    except csv.Error as exc:
        raise SettingsError(f"{where}:{rows.line_num}", f"malformed CSV: {exc}") from None
    return mapping
