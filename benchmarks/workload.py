"""The benchmark workload: N field ops over R records, generated deterministically from a seed.

R tickets are created once each, then ``N - R`` set-field ops are spread over them at random (seeded),
each changing one of ``title``, ``description`` or ``priority``. Every case replays the same plan, so the
rows of the table measure the same logical work.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "GRID",
    "KIND",
    "PRIORITIES",
    "Edit",
    "Plan",
    "make_plan",
]

FIELDS = ("title", "description", "priority")
PRIORITIES = ("low", "normal", "high", "green")
KIND = "repair"
GRID = "changnan/dorm/3"


@dataclass(frozen=True, slots=True)
class Edit:
    """One set-field op: record ``index`` gets ``field = value``."""

    index: int
    field: str
    value: str


@dataclass(frozen=True)
class Plan:
    """The whole workload: one title per created record, then the edits in order."""

    titles: list[str]
    edits: list[Edit]

    @property
    def records(self) -> int:
        """How many records are created."""
        return len(self.titles)

    @property
    def ops(self) -> int:
        """How many ops the plan writes: one per create plus one per edit."""
        return len(self.titles) + len(self.edits)

    def final_values(self) -> list[dict[str, str | None]]:
        """What each record's fields hold once every op of the plan is applied, in order."""
        out: list[dict[str, str | None]] = [
            {"title": t, "description": None, "priority": "normal"} for t in self.titles
        ]
        for e in self.edits:
            out[e.index][e.field] = e.value
        return out

    def last_edited(self) -> int:
        """The index of the record edited last (or the last one created), for spot checks."""
        return self.edits[-1].index if self.edits else self.records - 1


def make_plan(ops: int, records: int, seed: int) -> Plan:
    """Builds the plan of ``ops`` ops over ``min(records, ops)`` records, reproducibly from ``seed``."""
    if ops < 1 or records < 1:
        raise ValueError("ops and records must be at least 1")
    records = min(records, ops)
    rng = random.Random(seed)
    titles = [f"Ticket {i}: septic tank blocked" for i in range(records)]
    edits: list[Edit] = []
    for j in range(ops - records):
        index = rng.randrange(records)
        field = rng.choice(FIELDS)
        if field == "title":
            value = f"Ticket {index}: title rev {j}"
        elif field == "description":
            value = f"Ticket {index}: the resident called again (call {j}); pipe still leaking"
        else:
            value = rng.choice(PRIORITIES)
        edits.append(Edit(index, field, value))
    return Plan(titles, edits)
