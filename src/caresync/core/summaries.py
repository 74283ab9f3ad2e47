"""Lines of a list: the fields a list shows of each record, read from the replica's columns.

A list of 10,000 records must not build 10,000 records (their states parsed, their models validated); a
:class:`TicketSummary` or :class:`ResidentSummary` holds what the lists show, read straight from the materialised
columns of the replica file (``Replica.tickets.summaries()``, ``Replica.residents.summaries()``). The values are
the ones the whole record shows (the same folded state wrote both); ``get`` gives the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from caresync.core.domain import OPEN_STATUSES
from caresync.core.ids import is_provisional

__all__ = ["ParcelSummary", "ResidentSummary", "TicketSummary"]

_OPEN = frozenset(s.value for s in OPEN_STATUSES)


def _moment(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(frozen=True, slots=True)
class TicketSummary:
    """A ticket as a list shows it: its number, title, kind, status, grid, assignee and times."""

    id: str
    number: str | None
    title: str
    kind: str
    channel: str
    status: str
    priority: str
    grid: str
    assignee: str | None
    resident_id: str | None
    submitted_at: datetime | None
    due_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    rating: int | None
    """The resident's score, 1 to 5 (``get`` gives the comment too)."""
    outcome: str | None
    conflicts: int
    deleted: bool

    #: The columns of the ``tickets`` table these come from, in field order after ``id``.
    COLUMNS = (
        "number",
        "title",
        "kind",
        "channel",
        "status",
        "priority",
        "grid",
        "assignee",
        "resident_id",
        "submitted_at",
        "due_at",
        "resolved_at",
        "closed_at",
        "rating",
        "outcome",
        "conflicts",
        "deleted",
    )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> TicketSummary:
        """One row of ``SELECT id, <COLUMNS>``."""
        (eid, number, title, kind, channel, status, priority, grid, assignee, resident, submitted, due, resolved,
         closed, rating, outcome, conflicts, deleted) = row  # fmt: skip
        return cls(
            id=eid,
            number=number,
            title=title or "",
            kind=kind,
            channel=channel,
            status=status,
            priority=priority or "normal",
            grid=grid,
            assignee=assignee,
            resident_id=resident,
            submitted_at=_moment(submitted),
            due_at=_moment(due) or datetime.fromtimestamp(0, tz=UTC),
            resolved_at=_moment(resolved),
            closed_at=_moment(closed),
            rating=rating,
            outcome=outcome,
            conflicts=int(conflicts),
            deleted=bool(deleted),
        )

    @property
    def is_open(self) -> bool:
        """Submitted, accepted or in progress."""
        return self.status in _OPEN

    @property
    def number_provisional(self) -> bool:
        """True while the number is this device's own (``<device>-<n>``), before a block from the server."""
        return self.number is not None and is_provisional(self.number)

    def is_overdue(self, now: datetime) -> bool:
        """Still open and past its due time."""
        return self.is_open and self.due_at < now

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """Plain JSON data (times ISO 8601 with their offset); ``overdue`` as of ``now`` when given."""
        data: dict[str, Any] = {
            "id": self.id,
            "number": self.number,
            "number_provisional": self.number_provisional,
            "title": self.title,
            "kind": self.kind,
            "channel": self.channel,
            "status": self.status,
            "priority": self.priority,
            "grid": self.grid,
            "assignee": self.assignee,
            "resident_id": self.resident_id,
            "submitted_at": _iso(self.submitted_at),
            "due_at": _iso(self.due_at),
            "resolved_at": _iso(self.resolved_at),
            "closed_at": _iso(self.closed_at),
            "rating": self.rating,
            "outcome": self.outcome,
            "conflicts": self.conflicts,
        }
        if now is not None:
            data["overdue"] = self.is_overdue(now)
        return data


@dataclass(frozen=True, slots=True)
class ResidentSummary:
    """A resident as a list shows them: name, grid, address, phone, flags, knock cadence."""

    id: str
    name: str | None
    grid: str
    flags: list[str]
    knock_every_days: int | None
    conflicts: int
    deleted: bool
    address: str | None
    phone: str | None
    birth_year: int | None

    #: The columns of the ``residents`` table these come from, in field order after ``id``.
    COLUMNS = ("name", "grid", "flags", "knock_every_days", "conflicts", "deleted")
    #: The fields read from the stored state (no column of their own), in field order after the columns.
    FIELDS = ("address", "phone", "birth_year")

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ResidentSummary:
        """One row of ``SELECT id, <COLUMNS>, <FIELDS>``."""
        eid, name, grid, flags, every, conflicts, deleted, address, phone, birth_year = row
        return cls(
            id=eid,
            name=name,
            grid=grid,
            flags=[f for f in (flags or "").split(",") if f],
            knock_every_days=every,
            conflicts=int(conflicts),
            deleted=bool(deleted),
            address=address,
            phone=phone,
            birth_year=birth_year,
        )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "id": self.id,
            "name": self.name,
            "grid": self.grid,
            "address": self.address,
            "phone": self.phone,
            "flags": self.flags,
            "knock_every_days": self.knock_every_days,
            "birth_year": self.birth_year,
            "conflicts": self.conflicts,
        }


@dataclass(frozen=True, slots=True)
class ParcelSummary:
    """A parcel as a courier's route shows it: its code, where it is in its chain, and since when."""

    id: str
    code: str
    grid: str
    stage: str | None
    """The last hop's stage (``picked_up``, ...); None while only registered."""
    holder: str | None
    resident_id: str | None
    mailbox_id: str | None
    conflicts: int
    deleted: bool
    direction: str
    since_ms: int
    """When its last hop was made, else when it was registered (ms since 1970)."""

    #: The columns of the ``parcels`` table these come from, in field order after ``id``.
    COLUMNS = ("code", "grid", "stage", "holder", "resident_id", "mailbox_id", "conflicts", "deleted")
    #: The fields read from the stored state, after the columns.
    FIELDS = ("direction",)
    #: The JSON paths read from the stored state, after the fields: the last hop's time, else the creation's.
    PATHS = ("$.c.hops[#-1][5]|$.created[2]",)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ParcelSummary:
        """One row of ``SELECT id, <COLUMNS>, <FIELDS>, <PATHS>``."""
        eid, code, grid, stage, holder, resident, mailbox, conflicts, deleted, direction, since = row
        return cls(
            id=eid,
            code=code,
            grid=grid,
            stage=stage,
            holder=holder,
            resident_id=resident,
            mailbox_id=mailbox,
            conflicts=int(conflicts),
            deleted=bool(deleted),
            direction=direction or "to_station",
            since_ms=int(since or 0),
        )
