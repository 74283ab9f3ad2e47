"""Who may do what: the role table, and which records a device's grids cover.

A first, simple table (the trust work will deepen it): for each role, the op kinds its devices may make and the
record types they may read, both within the device's grids. Grids nest by path: a device enrolled for
``changnan/dorm`` covers ``changnan/dorm`` and everything under it (``changnan/dorm/3``), and a device
enrolled for :data:`EVERYWHERE` (the empty grid) covers every grid. Worker records belong to no grid: the role
alone decides who reads and writes them (:data:`GLOBAL_TYPES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from caresync import EntityType, Role
from caresync.ops import KNOWN_KINDS

__all__ = [
    "EVERYWHERE",
    "GLOBAL_TYPES",
    "PERMISSIONS",
    "ROLE_TABLE",
    "Permissions",
    "covers",
]

#: The grid that covers every grid: for a station or an admin that sees the whole city.
EVERYWHERE = ""
#: Record types outside the grid tree: the role table alone decides who reads and writes them.
GLOBAL_TYPES: frozenset[str] = frozenset({EntityType.WORKER.value})

#: Per role: (op kinds it may write, record types it may read). Patterns as in shells; ``!`` excludes.
ROLE_TABLE: Mapping[Role, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Role.ADMIN: (("*",), ("*",)),
    Role.STATION: (("*",), ("*",)),
    Role.GRID_WORKER: (
        ("ticket.*", "resident.*", "visit.*", "!resident.redact"),
        ("ticket", "resident", "visit", "worker"),
    ),
    Role.KNOCKER: (("visit.*", "resident.note", "ticket.create", "ticket.note"), ("resident", "visit")),
    Role.MEDIATOR: (("ticket.*",), ("ticket", "resident")),
    Role.COURIER: (("parcel.*",), ("parcel", "mailbox")),
}


@dataclass(frozen=True)
class Permissions:
    """What one role may do, expanded from :data:`ROLE_TABLE`."""

    writes: frozenset[str]
    """Op kinds."""
    reads: frozenset[str]
    """Record types."""


def _expand(patterns: Iterable[str], names: Iterable[str]) -> frozenset[str]:
    chosen: set[str] = set()
    pool = sorted(names)
    for pattern in patterns:
        if pattern.startswith("!"):
            chosen -= {n for n in pool if fnmatchcase(n, pattern[1:])}
        else:
            chosen |= {n for n in pool if fnmatchcase(n, pattern)}
    return frozenset(chosen)


#: The table, expanded against the op kinds and record types this caresync knows.
PERMISSIONS: Mapping[Role, Permissions] = {
    role: Permissions(
        writes=_expand(writes, KNOWN_KINDS),
        reads=_expand(reads, (t.value for t in EntityType)),
    )
    for role, (writes, reads) in ROLE_TABLE.items()
}


def covers(grids: Iterable[str], grid: str) -> bool:
    """True when one of ``grids`` is ``grid`` itself, an ancestor of it, or :data:`EVERYWHERE`."""
    return any(g == EVERYWHERE or grid == g or grid.startswith(g + "/") for g in grids)
