"""Chaos scenarios: fixtures and the end-of-run table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.report import REPORT, ChaosReport

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def chaos_report() -> ChaosReport:
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.rows:
        return
    terminalreporter.section("chaos")
    terminalreporter.write_line(REPORT.markdown())
    REPORT.write(ROOT / ".cache" / "chaos.md")
