"""The station's figures, computed from the records themselves (FIELD.md, "the figures a station reports").

Definitions, for a period ``[start, end)`` and optionally one grid (a ticket's current grid, a visit's
resident's grid, nested grids included):

* *received*: tickets submitted in the period.
* *resolved*: tickets that reached resolved in the period (closed ones included; a reopened ticket counts
  once it is resolved again).
* *satisfaction*: of the resolved tickets that were rated, the share rated 4 or 5.
* *within 48 hours*: of the resolved tickets, the share resolved within 48 hours of submission.
* *on time*: of the resolved tickets, the share resolved by their due time (the SLA).
* *mediated*: disputes with a mediation session held in the period (or, with no session recorded, an
  outcome recorded in the period); *mediation success*: settled over those with an outcome.
* *open*, *overdue*: tickets open at the end of the period (or now, if that is earlier), and those of them
  past their due time.
* *visits*: door-knocks made in the period; *residents overdue*: residents overdue a knock at the end of
  the period (or now, if that is earlier), counting only the knocks made by then.
* *courier transit*: of the time the resolved tickets took, the part their linked parcel (``parcel_id``)
  spent in a courier's hands (from a pick-up or a departure for delivery to the next hand-over).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from caresync.core.domain import OPEN_STATUSES, HopStage, TicketKind, in_grid
from caresync.core.model import Parcel, Resident, Ticket, ms_to_datetime
from caresync.errors import InvalidInputError, NotFoundError
from caresync.field.knock import round_of

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = ["StationReport", "courier_hours", "station_report"]

_HOUR = timedelta(hours=1)
_COURIER_HOLDS = frozenset({HopStage.PICKED_UP, HopStage.OUT_FOR_DELIVERY})


@dataclass(frozen=True)
class StationReport:
    """The station's figures for one period (see the module docstring for each definition).

    Rates are between 0 and 1, or None when nothing was there to count.
    """

    period_start: datetime | None
    period_end: datetime
    grid: str | None
    tickets_received: int
    tickets_resolved: int
    tickets_rated: int
    satisfaction_rate: float | None
    resolved_within_48h_rate: float | None
    resolved_on_time_rate: float | None
    median_hours_to_resolve: float | None
    tickets_open: int
    tickets_overdue: int
    disputes_mediated: int
    disputes_settled: int
    mediation_success_rate: float | None
    visits: int
    residents_served: int
    residents_overdue: int
    courier_transit_hours: float
    courier_transit_share: float | None
    by_kind: dict[str, int]
    by_channel: dict[str, int]
    by_grid: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: times as ISO 8601 text, rates as fractions (0.987 for 98.7%)."""
        data = asdict(self)
        data["period_start"] = None if self.period_start is None else self.period_start.isoformat()
        data["period_end"] = self.period_end.isoformat()
        return data


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _within(moment: datetime | None, start: datetime | None, end: datetime) -> bool:
    return moment is not None and (start is None or moment >= start) and moment < end


def courier_hours(parcel: Parcel, start: datetime, end: datetime) -> float:
    """Hours within ``[start, end)`` that ``parcel`` spent in a courier's hands (picked up, or out for delivery,
    until the next hand-over; still in hand at ``end`` counts up to ``end``)."""
    hops = sorted(parcel.hops, key=lambda h: h.at)
    total = timedelta()
    for i, hop in enumerate(hops):
        if hop.stage not in _COURIER_HOLDS:
            continue
        until = hops[i + 1].at if i + 1 < len(hops) else end
        lo, hi = max(hop.at, start), min(until, end)
        if hi > lo:
            total += hi - lo
    return total / _HOUR


def station_report(
    replica: Replica,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    grid: str | None = None,
) -> StationReport:
    """The station's figures from the records on ``replica``.

    Args:
        replica: the replica to read (a station device holds everything it reports on).
        start: the start of the period (aware); None for since the beginning.
        end: the end of the period (aware, excluded); None for now.
        grid: only this grid and the grids nested in it.

    Raises:
        InvalidInputError: a time without a time zone, or a period that ends before it starts.
    """
    now = ms_to_datetime(replica.clock.physical_ms())
    end = end or now
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInputError("Cannot make the report", [(name, "must carry its time zone")])
    if start is not None and end <= start:
        raise InvalidInputError("Cannot make the report", [("to", f"the period ends ({end}) before it starts")])
    as_of = min(end, now)

    def here(g: str) -> bool:
        return grid is None or in_grid(g, grid)

    all_tickets = replica.tickets.list()
    tickets = [t for t in all_tickets if here(t.grid)]
    received = [t for t in tickets if _within(t.submitted_at, start, end)]
    resolved = [t for t in tickets if _within(t.resolved_at, start, end)]
    spans = [(t, t.resolved_at) for t in resolved if t.resolved_at is not None]
    hours = [(t, (done - t.submitted_at) / _HOUR) for t, done in spans]
    total_hours = sum(h for _, h in hours)
    rated = [t for t in resolved if t.rating is not None]
    happy = sum(1 for t in rated if t.rating is not None and t.rating.score >= 4)
    open_now = [t for t in tickets if _open_at(t, as_of, now)]
    transit = _transit(replica, resolved)

    mediated = [t for t in tickets if t.kind is TicketKind.DISPUTE and _mediated_in(t, start, end)]
    with_outcome = [t for t in mediated if t.outcome is not None]
    settled = sum(1 for t in with_outcome if t.outcome is not None and t.outcome.value == "settled")

    residents = {r.id: r for r in replica.residents.list(include_deleted=True)}
    all_visits = replica.visits.list()
    visits = [
        v
        for v in all_visits
        if _within(v.visited_at, start, end) and v.resident_id in residents and here(residents[v.resident_id].grid)
    ]
    served = {t.resident_id for t in received if t.resident_id} | {v.resident_id for v in visits}
    knock = round_of(  # as things stood at the end of the period: later knocks and residents left out
        [r for r in residents.values() if _registered_before(r, as_of)],
        [v for v in all_visits if v.visited_at <= as_of],
        all_tickets,
        grids=[grid] if grid else [],
        at=as_of,
    )
    return StationReport(
        period_start=start,
        period_end=end,
        grid=grid,
        tickets_received=len(received),
        tickets_resolved=len(resolved),
        tickets_rated=len(rated),
        satisfaction_rate=_rate(happy, len(rated)),
        resolved_within_48h_rate=_rate(sum(1 for _, h in hours if h <= 48), len(hours)),
        resolved_on_time_rate=_rate(sum(1 for t, done in spans if done <= t.due_at), len(spans)),
        median_hours_to_resolve=statistics.median(h for _, h in hours) if hours else None,
        tickets_open=len(open_now),
        tickets_overdue=sum(1 for t in open_now if t.due_at < as_of),
        disputes_mediated=len(mediated),
        disputes_settled=settled,
        mediation_success_rate=_rate(settled, len(with_outcome)),
        visits=len(visits),
        residents_served=len(served),
        residents_overdue=knock.count("overdue"),
        courier_transit_hours=transit,
        courier_transit_share=transit / total_hours if total_hours else None,
        by_kind=dict(Counter(t.kind.value for t in received).most_common()),
        by_channel=dict(Counter(t.channel.value for t in received).most_common()),
        by_grid=dict(sorted(Counter(t.grid for t in received).items())),
    )


def _open_at(ticket: Ticket, moment: datetime, now: datetime) -> bool:
    """Whether ``ticket`` was open at ``moment``: its status now, or for a past moment, its transitions up to it."""
    if ticket.submitted_at >= moment:
        return False
    if moment >= now:
        return ticket.status in OPEN_STATUSES
    open_ = True
    for entry in ticket.history:
        if entry.kind == "ticket.transition" and entry.at < moment:
            action = entry.details.get("action")
            if action in ("resolve", "close", "cancel"):
                open_ = False
            elif action == "reopen":
                open_ = True
    return open_


def _registered_before(resident: Resident, moment: datetime) -> bool:
    return any(h.at <= moment for h in resident.history if h.kind.endswith(".create"))


def _mediated_in(ticket: Ticket, start: datetime | None, end: datetime) -> bool:
    if ticket.sessions:
        return any(_within(s.held_at, start, end) for s in ticket.sessions)
    outcome_set = [h.at for h in ticket.history if h.action == "set outcome" and h.details.get("value") is not None]
    return bool(outcome_set) and _within(outcome_set[-1], start, end)


def _transit(replica: Replica, resolved: list[Ticket]) -> float:
    total = 0.0
    for ticket in resolved:
        if ticket.parcel_id is None or ticket.resolved_at is None:
            continue
        try:
            parcel = replica.parcels.get(ticket.parcel_id)
        except NotFoundError:  # the parcel's record has not reached this device: nothing to count
            continue
        total += courier_hours(parcel, ticket.submitted_at, ticket.resolved_at)
    return total
