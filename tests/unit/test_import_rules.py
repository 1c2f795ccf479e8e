"""The import rules of ``[tool.importlinter]`` hold, and each one fails on a violation.

``make lint`` runs ``lint-imports`` on the tree; here the checker runs on a copy of the source
packages with one deliberate violation added, so a contract that cannot fail would show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("devstack", "skuflow", "handlers", "worker", "config")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source packages (Python files only) and the project's contracts, copied."""
    copy = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            copy / package,
            ignore=lambda _dir, names: [
                n for n in names if not (n.endswith(".py") or "." not in n) or n == "__pycache__"
            ],
        )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        (
            "worker/_violation.py",
            "import handlers.stock.handler\n",
            "the engine knows no domain",
        ),
        (
            "handlers/stock/_violation.py",
            "from handlers.dispatch.handler import DispatchHandler\n",
            "flows (independent of each other)",
        ),
        (
            "handlers/connectors/b1/_violation.py",
            "from handlers.stock.posting import StockPoster\n",
            "flows (independent of each other)",
        ),
        (
            "handlers/connectors/spapi/_violation.py",
            "from handlers.connectors.b1.errors import B1Error\n",
            "never imports another's connector",
        ),
        (
            "devstack/sims/b1/_violation.py",
            "from handlers.ports.erp import ItemMaster\n",
            "shares no code with the worker",
        ),
    ],
    ids=["engine-imports-a-flow", "flow-imports-a-flow", "connector-imports-a-flow",
         "connector-imports-a-connector", "simulator-imports-the-worker"],
)  # fmt: skip
def test_a_deliberate_violation_breaks_its_contract(
    tree: Path, module: str, source: str, broken: str
) -> None:
    bad = tree / module
    bad.write_text(f'"""A deliberate violation."""\n\n{source}')
    try:
        result = _lint(tree)
    finally:
        bad.unlink()
    assert result.returncode != 0
    broken_lines = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert len(broken_lines) == 1, result.stdout
    assert broken in broken_lines[0]
