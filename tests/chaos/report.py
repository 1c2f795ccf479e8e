"""The chaos table: one row per fault scenario, printed at the end of the run.

Every scenario ends with an independent check against a ledger of what was produced and
reports what it found as a :class:`ChaosRow`, with the ERP it posted to (a scenario that runs
against both ERPs has a row for each, and the table ends with lost and duplicated per ERP).
``make chaos`` (and the short versions inside ``make test``) print the collected rows as a
Markdown table at the end of the session and write it to ``.cache/chaos.md`` so the README can
carry the latest one. A scenario that checks ERP documents of several kinds (the order flow:
orders, deliveries, invoices, returns) also reports a :class:`KindRow` per kind: a second
table, lost and duplicated per ERP document kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ChaosRow:
    scenario: str
    erp: str  #: the ERP the scenario posted to: "b1" or "ecc"
    events: int
    faults: str  #: what was injected, e.g. "12 SIGKILLs" or "B1 down 40 s"
    lost: int
    duplicated: int
    exceptions: int
    recovery_s: float | None = None  #: time from the last fault to everything settled

    def cells(self) -> list[str]:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        return [
            self.scenario,
            ERP_NAMES.get(self.erp, self.erp),
            f"{self.events:,}",
            self.faults,
            str(self.lost),
            str(self.duplicated),
            f"{self.exceptions:,}",
            recovery,
        ]


@dataclass(frozen=True, slots=True)
class KindRow:
    """One ERP document kind of a scenario: documents expected, found, lost, duplicated."""

    scenario: str
    erp: str
    kind: str  #: e.g. "deliveries"
    expected: int
    found: int
    lost: int
    duplicated: int

    def cells(self) -> list[str]:
        numbers = (f"{self.expected:,}", f"{self.found:,}", str(self.lost), str(self.duplicated))
        return [self.scenario, ERP_NAMES.get(self.erp, self.erp), self.kind, *numbers]


ERP_NAMES = {"b1": "SAP B1", "ecc": "SAP ECC"}
HEADER = [
    "scenario",
    "ERP",
    "events",
    "faults injected",
    "lost",
    "duplicated",
    "exceptions",
    "recovery s",
]


KIND_HEADER = ["scenario", "ERP", "document", "expected", "found", "lost", "duplicated"]


@dataclass
class ChaosReport:
    rows: list[ChaosRow] = field(default_factory=list)
    kinds: list[KindRow] = field(default_factory=list)

    def add(self, row: ChaosRow) -> None:
        self.rows.append(row)

    def add_kind(self, row: KindRow) -> None:
        self.kinds.append(row)

    def markdown(self) -> str:
        lines = _table(HEADER, [row.cells() for row in self.rows])
        lines += ["", self.per_erp()]
        if self.kinds:
            lines += ["", *_table(KIND_HEADER, [row.cells() for row in self.kinds])]
        return "\n".join(lines)

    def per_erp(self) -> str:
        """Lost and duplicated summed per ERP, e.g. "SAP B1: 4 scenarios, 0 lost, 0
        duplicated; SAP ECC: 2 scenarios, 0 lost, 0 duplicated"."""
        totals: dict[str, list[int]] = {}
        for row in self.rows:
            total = totals.setdefault(row.erp, [0, 0, 0])
            total[0] += 1
            total[1] += row.lost
            total[2] += row.duplicated
        return "; ".join(
            f"{ERP_NAMES.get(erp, erp)}: {count} scenario{'s' if count != 1 else ''}, "
            f"{lost} lost, {duplicated} duplicated"
            for erp, (count, lost, duplicated) in totals.items()
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.markdown() + "\n")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


#: The session's report (one pytest process); the chaos conftest prints and writes it.
REPORT = ChaosReport()
