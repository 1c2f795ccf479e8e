"""The command line: one clear line on error, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skuflow.cli import main

pytestmark = pytest.mark.timeout(10)


def test_config_check_prints_resolved_settings_with_secrets_redacted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "skuflow.toml"
    config.write_text('[b1]\npassword = "b1-pass-123"\n[engine]\nmax_in_flight = 64\n')
    monkeypatch.setenv("SKUFLOW_LWA_CLIENT_SECRET", "lwa-secret-456")
    monkeypatch.setenv("SKUFLOW_DATABASE_URL", "postgresql://skuflow:db-pass-789@db/skuflow")
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    resolved = json.loads(out)
    assert resolved["engine"]["max_in_flight"] == 64
    assert resolved["b1"]["password"] == "***"
    for secret in ("b1-pass-123", "lwa-secret-456", "db-pass-789"):
        assert secret not in out


def test_an_unknown_key_fails_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "skuflow.toml"
    config.write_text("[engine]\nmax_in_fligth = 3\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("skuflow: error: engine.max_in_fligth: unknown key")


def test_a_broken_sku_map_fails_the_check_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sku_map = tmp_path / "skus.csv"
    sku_map.write_text("sku,item_code\nABC-1,A0001\nABC-1,A0002\n")
    config = tmp_path / "skuflow.toml"
    config.write_text(f'[mappings]\nsku_map = "{sku_map}"\n')
    assert main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "skus.csv:3" in err
