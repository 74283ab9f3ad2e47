"""Knock rounds (一米叮咚): who is due a door-knock, who is overdue, and who needs help now.

Each resident with a knock cadence (``knock_every_days``) should be checked on that often. A knock that was
answered (any outcome but ``no_answer``) counts as a check; a resident never checked counts from the day
they were registered. A resident is *due* from ``last check + cadence`` and *overdue* a day after that.

A resident is *flagged*, and listed first, when the last two knocks went unanswered, or when the last knock
found them unwell or in an emergency: someone must act today. :func:`raise_ticket` turns a flag into a
request in one step (an emergency, or an early warning), linked to the resident and the knock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from caresync.core.domain import OPEN_STATUSES, TicketKind, VisitOutcome, in_grid
from caresync.core.model import Resident, Ticket, Visit, ms_to_datetime
from caresync.errors import IntentError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = ["FLAG_REASONS", "KnockDue", "KnockRound", "knock_round", "raise_ticket", "raised_title", "round_of"]

DueState = Literal["overdue", "due", "ok"]
#: Why a resident is flagged: two unanswered knocks in a row, or what the last knock found.
FLAG_REASONS = ("no_answer_twice", "unwell", "emergency")
_ANSWERED_NOT = frozenset({VisitOutcome.NO_ANSWER})


@dataclass(frozen=True)
class KnockDue:
    """One resident on a knock round: when they were last checked, when the next knock is due, and flags."""

    resident_id: str
    name: str | None
    grid: str
    address: str | None
    knock_every_days: int
    last_visit: Visit | None
    last_checked_at: datetime
    due_at: datetime
    state: DueState
    overdue_days: int
    flags: list[str]
    open_ticket: str | None = None
    """An open request about this resident raised from a knock, if one exists already (don't raise twice)."""

    @property
    def flagged(self) -> bool:
        """True when someone must act on this resident now."""
        return bool(self.flags)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        last = self.last_visit
        return {
            "resident_id": self.resident_id,
            "name": self.name,
            "grid": self.grid,
            "address": self.address,
            "knock_every_days": self.knock_every_days,
            "last_visit": None
            if last is None
            else {"id": last.id, "at": last.visited_at.isoformat(), "outcome": last.outcome.value, "by": last.visitor},
            "last_checked_at": self.last_checked_at.isoformat(),
            "due_at": self.due_at.isoformat(),
            "state": self.state,
            "overdue_days": self.overdue_days,
            "flags": list(self.flags),
            "open_ticket": self.open_ticket,
        }


@dataclass(frozen=True)
class KnockRound:
    """A knock round at one moment: flagged residents first, then the rest grouped by building."""

    at: datetime
    flagged: list[KnockDue]
    by_building: dict[str, list[KnockDue]] = field(default_factory=dict)

    @property
    def entries(self) -> list[KnockDue]:
        """Every resident listed, flagged first, then building by building."""
        return [*self.flagged, *(e for rows in self.by_building.values() for e in rows)]

    def count(self, state: DueState) -> int:
        """How many residents listed are in ``state`` (flagged ones included)."""
        return sum(e.state == state for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "at": self.at.isoformat(),
            "overdue": self.count("overdue"),
            "due": self.count("due"),
            "flagged": [e.to_json() for e in self.flagged],
            "by_building": {b: [e.to_json() for e in rows] for b, rows in self.by_building.items()},
        }


#: A raised request's title by flag reason, built from structure only (the resident's id and grid, never a name:
#: free text written by caresync itself must not carry a resident's private details).
_TITLES = {
    "emergency": "Emergency found at the door of resident {resident} ({grid})",
    "unwell": "Resident {resident} ({grid}) was unwell at the last knock",
    "no_answer_twice": "Resident {resident} ({grid}) did not answer two knocks in a row",
}


def _registered_at(resident: Resident) -> datetime:
    return min((h.at for h in resident.history if h.kind.endswith(".create")), default=resident.history[0].at)


def _flags(visits: list[Visit]) -> list[str]:
    """Flags from one resident's visits, newest first."""
    if not visits:
        return []
    last = visits[0].outcome
    if last is VisitOutcome.EMERGENCY:
        return ["emergency"]
    if last is VisitOutcome.UNWELL:
        return ["unwell"]
    if len(visits) >= 2 and all(v.outcome is VisitOutcome.NO_ANSWER for v in visits[:2]):
        return ["no_answer_twice"]
    return []


def _grids_of_knocker(replica: Replica, knocker: str) -> list[str]:
    for worker in replica.workers.list():
        if knocker in (worker.id, worker.name):
            if not worker.grids:
                raise IntentError(
                    f"Worker {worker.name} has no grids; give them grids first.",
                    key="worker.no_grids",
                    fields={"name": worker.name},
                )
            return worker.grids
    raise IntentError(
        f"No worker {knocker!r} on this device: add them with their grids (caresync worker add), or sync.",
        key="worker.not_found",
        fields={"name": knocker},
    )


def knock_round(
    replica: Replica,
    *,
    knocker: str | None = None,
    grid: str | None = None,
    now: datetime | None = None,
    include_ok: bool = False,
) -> KnockRound:
    """Who is due a knock, for one knocker's grids or one grid (or everyone).

    Args:
        replica: the replica to read.
        knocker: a worker's id or name; their grids are the round.
        grid: a grid path; residents in it or nested in it.
        now: the moment to compute for (default: this device's clock).
        include_ok: also list residents not due yet.

    Returns:
        Flagged residents first (most overdue first), then due and overdue residents by building.

    Raises:
        IntentError: the knocker is unknown here or has no grids.
    """
    at = now or ms_to_datetime(replica.clock.physical_ms())
    grids = _grids_of_knocker(replica, knocker) if knocker else []
    if grid and knocker:  # the part of the knocker's grids inside ``grid``
        grids = [g if in_grid(g, grid) else grid for g in grids if in_grid(g, grid) or in_grid(grid, g)]
        if not grids:
            return KnockRound(at=at, flagged=[])
    elif grid:
        grids = [grid]
    # a building has no grids inside it: its residents are the exact match (no need to read the whole city)
    building = [grid] if grid and not knocker and grid.count("/") == 2 else []
    return round_of(
        replica.residents.list(grid=building[0]) if building else replica.residents.list(),
        replica.visits.list(),
        replica.tickets.list(),
        grids=grids,
        at=at,
        include_ok=include_ok,
    )


def round_of(
    residents: Iterable[Resident],
    visits: Iterable[Visit],
    tickets: Iterable[Ticket],
    *,
    grids: Sequence[str],
    at: datetime,
    include_ok: bool = False,
) -> KnockRound:
    """:func:`knock_round` over records already read (the report reads them once for all its figures).

    ``grids`` limits the round to residents in those grids (nested ones included); empty for everyone.
    """
    by_resident: dict[str, list[Visit]] = defaultdict(list)
    for visit in visits:
        if not visit.deleted:
            by_resident[visit.resident_id].append(visit)
    open_raised: dict[str, str] = {}
    for ticket in tickets:
        if ticket.resident_id and ticket.status in OPEN_STATUSES and ticket.channel.value == "door_knock":
            open_raised.setdefault(ticket.resident_id, ticket.number or ticket.id)
    flagged: list[KnockDue] = []
    buildings: dict[str, list[KnockDue]] = defaultdict(list)
    for resident in residents:
        cadence = resident.knock_every_days
        if resident.deleted or not cadence or (grids and not any(in_grid(resident.grid, g) for g in grids)):
            continue
        mine = sorted(by_resident.get(resident.id, []), key=lambda v: (v.visited_at, v.id), reverse=True)
        checked = [v for v in mine if v.outcome not in _ANSWERED_NOT]
        last_checked = checked[0].visited_at if checked else _registered_at(resident)
        due = last_checked + timedelta(days=cadence)
        state: DueState = "overdue" if at >= due + timedelta(days=1) else "due" if at >= due else "ok"
        entry = KnockDue(
            resident_id=resident.id,
            name=resident.name,
            grid=resident.grid,
            address=resident.address,
            knock_every_days=cadence,
            last_visit=mine[0] if mine else None,
            last_checked_at=last_checked,
            due_at=due,
            state=state,
            overdue_days=max(0, (at - due).days),
            flags=_flags(mine),
            open_ticket=open_raised.get(resident.id),
        )
        if entry.flagged:
            flagged.append(entry)
        elif state != "ok" or include_ok:
            buildings[resident.grid].append(entry)
    flagged.sort(key=lambda e: (e.due_at, e.resident_id))
    ordered = {b: sorted(rows, key=lambda e: (e.due_at, e.resident_id)) for b, rows in sorted(buildings.items())}
    return KnockRound(at=at, flagged=flagged, by_building=ordered)


def raise_ticket(
    replica: Replica,
    resident_id: str,
    *,
    titles: Mapping[str, str] | None = None,
    actor: str | None = None,
) -> Ticket:
    """Raises a request about a flagged resident in one step, linked to the resident and their last knock.

    An emergency found at the door becomes an ``emergency`` request on the green channel; an unwell resident
    or two unanswered knocks an ``early_warning``. The knock is linked to the request.

    Args:
        replica: where to record it.
        resident_id: the flagged resident.
        titles: the request's title by flag reason (``no_answer_twice``, ``unwell``, ``emergency``), each
            formatted with ``{resident}`` (the resident's id) and ``{grid}``, never the name; default English
            ones (the station tools pass the clerk's language). The resident's name and the knock's note reach
            the request through its links and its description, sealed like any private field.
        actor: who raised it.

    Raises:
        NotFoundError: no such resident here.
        IntentError: the resident is not flagged, or an open request from a knock exists already.
        InvalidInputError: a title names a field other than ``{resident}`` and ``{grid}``.
    """
    resident = replica.residents.get(resident_id)
    round_ = knock_round(replica, grid=resident.grid, include_ok=True)
    entry = next((e for e in round_.entries if e.resident_id == resident_id), None)
    if entry is None or not entry.flagged:
        raise IntentError(
            f"Resident {resident.name or resident_id} is not flagged (no two unanswered knocks, last knock not unwell"
            " or emergency); submit a ticket instead if help is needed.",
            key="knock.not_flagged",
            fields={"resident": resident.name or resident_id},
        )
    if entry.open_ticket is not None:  # its number (its id before it has one)
        raise IntentError(
            f"Resident {resident.name or resident_id} already has an open request from a knock: {entry.open_ticket}.",
            key="knock.already_raised",
            fields={"resident": resident.name or resident_id, "number": entry.open_ticket},
        )
    reason = entry.flags[0]
    last = entry.last_visit
    assert last is not None  # a flag always comes from a knock
    template = {**_TITLES, **(titles or {})}[reason]
    try:
        title = template.format(resident=resident_id, grid=resident.grid)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInputError(
            "Cannot raise the ticket", [("titles", f"{template!r} may use only {{resident}} and {{grid}} ({exc})")]
        ) from None
    if len(title) > 200:
        raise InvalidInputError("Cannot raise the ticket", [("title", "the title is longer than 200 characters")])
    with replica.batch():
        ticket = replica.tickets.submit(
            title=title,
            kind=TicketKind.EMERGENCY.value if reason == "emergency" else TicketKind.EARLY_WARNING.value,
            grid=resident.grid,
            channel="door_knock",
            resident_id=resident_id,
            visit_id=last.id,
            priority="green",
            description=last.note,
            actor=actor,
        )
        if last.ticket_id is None:
            replica.visits.edit(last.id, ticket_id=ticket.id, actor=actor)
    return replica.tickets.get(ticket.id)


#: The flag reason a raised request came from, by the outcome of the knock it links to.
_REASON_OF_OUTCOME = {
    VisitOutcome.EMERGENCY: "emergency",
    VisitOutcome.UNWELL: "unwell",
    VisitOutcome.NO_ANSWER: "no_answer_twice",
}


def raised_title(replica: Replica, ticket: Ticket, titles: Mapping[str, str] | None = None) -> str | None:
    """The title of a request raised from a knock round (:func:`raise_ticket`), rebuilt from its structure for
    the reader: the reason from the outcome of the knock it links to, the resident's name when this device opens it
    (else their id), in the words of ``titles`` (by reason, with ``{resident}`` and ``{grid}``; the station tools
    pass the reader's language). None for any other request, or when the knock or the resident is not held here:
    show its title then.

    The stored title is built from the same structure at raising time, in the raiser's language, and never holds a
    name (free text written by caresync itself must not carry a resident's private details)."""
    if ticket.channel.value != "door_knock" or not ticket.visit_id or not ticket.resident_id:
        return None
    try:
        visit = replica.visits.get(ticket.visit_id)
        resident = replica.residents.get(ticket.resident_id)
    except NotFoundError:
        return None
    reason = _REASON_OF_OUTCOME.get(visit.outcome)
    if reason is None:
        return None
    name = resident.name if resident.name and not resident.name.startswith(("sealed:1:", "sealed:2:")) else None
    template = {**_TITLES, **(titles or {})}[reason]
    try:
        return template.format(resident=name or ticket.resident_id, grid=ticket.grid)
    except (KeyError, IndexError, ValueError):
        return None
