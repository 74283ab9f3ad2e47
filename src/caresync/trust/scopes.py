"""Who may hold and change what: the one role table, and the record scopes it gives a device.

:data:`ROLE_TABLE` is declarative: per role, one :class:`Rule` per record type the role may read or change. The
sync server enforces it on push (which ops a device may make) and on pull (which ops leave the server); a device
uses the same table to purge what it may no longer hold when its scope shrinks (:mod:`caresync.sync.enrolment`); and
docs/security.md prints it (:func:`role_table_markdown`, kept in step by a test).

Scopes are grids: paths ``community/area/building``. A device enrolled for ``changnan/dorm`` covers that grid and
everything under it; one enrolled for :data:`EVERYWHERE` (the empty grid) covers every grid. Worker records
belong to no grid (:data:`GLOBAL_TYPES`): the role alone decides who holds them. A rule may also require a
record attribute: a mediator holds only tickets of kind ``dispute``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from caresync.core.domain import EntityType, Role, in_grid
from caresync.core.ops import KNOWN_KINDS

__all__ = [
    "EVERYWHERE",
    "GLOBAL_TYPES",
    "ROLE_TABLE",
    "RecordScope",
    "Rule",
    "covers",
    "may_read",
    "may_write",
    "role_table_markdown",
    "rule_for",
]

#: The grid that covers every grid: for a station or an admin that sees the whole city.
EVERYWHERE = ""
#: Record types outside the grid tree: the role table alone decides who reads and writes them.
GLOBAL_TYPES: frozenset[str] = frozenset({EntityType.WORKER.value})


@dataclass(frozen=True)
class Rule:
    """What one role may do with one record type, within the device's grids."""

    record: str
    """The record type (:class:`~caresync.core.domain.EntityType` value)."""
    read: bool = False
    """May hold the records and pull their ops."""
    write: tuple[str, ...] = ()
    """The actions it may make (the part of the op kind after the dot); shell patterns, ``!`` excludes."""
    kind: str | None = None
    """Only records whose ``kind`` is this (tickets: a mediator holds disputes only)."""

    def actions(self) -> frozenset[str]:
        """The op kinds of :attr:`write`, expanded against the kinds this library knows."""
        names = sorted(k.partition(".")[2] for k in KNOWN_KINDS if k.startswith(self.record + "."))
        chosen: set[str] = set()
        for pattern in self.write:
            if pattern.startswith("!"):
                chosen -= {n for n in names if fnmatchcase(n, pattern[1:])}
            else:
                chosen |= {n for n in names if fnmatchcase(n, pattern)}
        return frozenset(f"{self.record}.{n}" for n in chosen)


def _everything() -> tuple[Rule, ...]:
    return tuple(Rule(t.value, read=True, write=("*",)) for t in EntityType)


#: The role table: the only place that says who may hold and change what.
ROLE_TABLE: Mapping[Role, tuple[Rule, ...]] = {
    Role.ADMIN: _everything(),
    Role.STATION: _everything(),
    Role.GRID_WORKER: (
        Rule("ticket", read=True, write=("*",)),
        Rule("resident", read=True, write=("*", "!redact")),
        Rule("visit", read=True, write=("*",)),
        Rule("worker", read=True),
    ),
    Role.MEDIATOR: (Rule("ticket", read=True, write=("*",), kind="dispute"),),
    Role.KNOCKER: (
        Rule("resident", read=True, write=("note",)),
        Rule("visit", read=True, write=("*",)),
        Rule("ticket", write=("create", "note", "number")),
    ),
    Role.COURIER: (
        Rule("parcel", read=True, write=("*",)),
        Rule("mailbox", read=True),
        # an outdoor report (early warning, emergency, sentiment), never read; and its short number later
        Rule("ticket", write=("create", "number")),
    ),
}


def rule_for(role: Role | str, record: str) -> Rule | None:
    """The rule of ``role`` for record type ``record``, or None when the role may do nothing with it."""
    for rule in ROLE_TABLE[Role(role)]:
        if rule.record == record:
            return rule
    return None


def covers(grids: Iterable[str], grid: str) -> bool:
    """True when one of ``grids`` is ``grid`` itself, an ancestor of it, or :data:`EVERYWHERE`."""
    return any(g == EVERYWHERE or in_grid(grid, g) for g in grids)


@dataclass(frozen=True)
class RecordScope:
    """What decides whether a device may hold a record: its type, its grid, and its kind (tickets)."""

    type: str
    grid: str | None
    kind: str | None = None


def _in_scope(rule: Rule, grids: Iterable[str], record: RecordScope) -> bool:
    if rule.kind is not None and record.kind != rule.kind:
        return False
    if record.type in GLOBAL_TYPES:
        return True
    return record.grid is not None and covers(grids, record.grid)


def may_read(role: Role | str, grids: Iterable[str], record: RecordScope) -> bool:
    """True when a device of ``role`` enrolled for ``grids`` may hold ``record`` and pull its ops."""
    rule = rule_for(role, record.type)
    return rule is not None and rule.read and _in_scope(rule, grids, record)


def may_write(role: Role | str, grids: Iterable[str], kind: str, record: RecordScope) -> bool:
    """True when such a device may make an op of ``kind`` on ``record`` (as the record is before the op)."""
    rule = rule_for(role, record.type)
    return rule is not None and kind in rule.actions() and _in_scope(rule, grids, record)


def role_table_markdown() -> str:
    """The role table as a markdown table (docs/security.md prints it; a test keeps the two in step)."""
    types = [t.value for t in EntityType]
    lines = ["| role | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for role in Role:
        cells = []
        for record in types:
            rule = rule_for(role, record)
            if rule is None:
                cells.append("-")
                continue
            actions = sorted(k.partition(".")[2] for k in rule.actions())
            full = len(actions) == len([k for k in KNOWN_KINDS if k.startswith(record + ".")])
            parts = ["read" if rule.read else "no read"]
            if actions:
                parts.append("write: every kind" if full else "write: " + ", ".join(actions))
            if rule.kind is not None:
                parts.append(f"only kind {rule.kind}")
            cells.append("; ".join(parts))
        lines.append(f"| `{role.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
