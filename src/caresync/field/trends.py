"""The station's figures over time and by who and where: trends per day or week, per worker and per grid, and
the requests behind the overdue figure.

The definitions are the report's (:mod:`caresync.reports`): a request is *received* when submitted, *resolved*
once it reached resolved; *satisfaction* is the share of rated requests rated 4 or 5; *within 48 hours* is from
submission to resolution. A grid's figures include every grid nested in it, so an area's totals hold its
buildings' and a community's its areas'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from caresync.core.model import Ticket, Visit
from caresync.errors import InvalidInputError

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = ["Behind", "Breakdown", "Figures", "TrendPoint", "behind", "breakdowns", "overdue_requests", "trend"]

Step = Literal["day", "week"]
_48H = timedelta(hours=48)


@dataclass(frozen=True)
class Figures:
    """The figures of one bucket (a day, a week, a worker, a grid)."""

    received: int = 0
    resolved: int = 0
    rated: int = 0
    happy: int = 0
    within_48h: int = 0
    knocks: int = 0
    open: int = 0
    overdue: int = 0

    @property
    def satisfaction_rate(self) -> float | None:
        """Rated 4 or 5 out of those rated; None when none were rated."""
        return self.happy / self.rated if self.rated else None

    @property
    def within_48h_rate(self) -> float | None:
        """Resolved within 48 hours of submission out of those resolved; None when none were."""
        return self.within_48h / self.resolved if self.resolved else None


@dataclass(frozen=True)
class TrendPoint:
    """One day or week of a trend: it starts at ``start`` (midnight, the station's zone) and lasts one step."""

    start: datetime
    figures: Figures


@dataclass(frozen=True)
class Breakdown:
    """Figures per worker (the assignee) and per grid (nested grids included) for one period."""

    by_worker: dict[str, Figures]
    by_grid: dict[str, Figures]


def _in(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


def _figures(
    tickets: Iterable[Ticket], visits: Iterable[Visit], start: datetime, end: datetime, now: datetime
) -> Figures:
    received = resolved = rated = happy = within = opened = overdue = 0
    as_of = min(end, now)
    for t in tickets:
        received += _in(t.submitted_at, start, end)
        if _in(t.resolved_at, start, end) and t.resolved_at is not None:
            resolved += 1
            within += (t.resolved_at - t.submitted_at) <= _48H
            if t.rating is not None:
                rated += 1
                happy += t.rating.score >= 4
        if t.is_open and t.submitted_at < as_of:
            opened += 1
            overdue += t.due_at < as_of
    knocks = sum(_in(v.visited_at, start, end) for v in visits)
    return Figures(received, resolved, rated, happy, within, knocks, opened, overdue)


def _midnight(moment: datetime, tz: tzinfo | None) -> datetime:
    local = moment.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def trend(
    replica: Replica,
    *,
    start: datetime,
    end: datetime,
    step: Step = "day",
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> list[TrendPoint]:
    """Figures per day (or per week, from Monday) from ``start`` to ``end``, in the station's zone ``tz``.

    Raises:
        InvalidInputError: times without a zone, a period that ends before it starts, or an unknown step.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInputError("Cannot make the trend", [("period", "times must carry their time zone")])
    if end <= start:
        raise InvalidInputError("Cannot make the trend", [("period", "it ends before it starts")])
    if step not in ("day", "week"):
        raise InvalidInputError("Cannot make the trend", [("step", f"{step!r} is not day or week")])
    now = now or end
    tickets = replica.tickets.list()
    visits = replica.visits.list()
    bucket = _midnight(start, tz)
    if step == "week":
        bucket -= timedelta(days=bucket.weekday())
    size = timedelta(days=7 if step == "week" else 1)
    points = []
    while bucket < end:
        nxt = (bucket + size).astimezone(tz).replace(hour=0)  # a day is midnight to midnight, across clock changes
        points.append(TrendPoint(bucket, _figures(tickets, visits, max(bucket, start), min(nxt, end), now)))
        bucket = nxt
    return points


def _grids_of(grid: str) -> list[str]:
    parts = grid.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def breakdowns(replica: Replica, *, start: datetime, end: datetime, now: datetime | None = None) -> Breakdown:
    """Figures per assignee and per grid for the period; a grid's figures include its nested grids'."""
    now = now or end
    tickets = replica.tickets.list()
    residents = {r.id: r.grid for r in replica.residents.list(include_deleted=True)}
    visits = replica.visits.list()
    by_worker: dict[str, list[Ticket]] = defaultdict(list)
    by_grid: dict[str, list[Ticket]] = defaultdict(list)
    visits_by_grid: dict[str, list[Visit]] = defaultdict(list)
    for t in tickets:
        if t.assignee:
            by_worker[t.assignee].append(t)
        for g in _grids_of(t.grid):
            by_grid[g].append(t)
    for v in visits:
        for g in _grids_of(residents.get(v.resident_id, "")):
            if g:
                visits_by_grid[g].append(v)
    knocks_by_worker: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        knocks_by_worker[v.visitor].append(v)
    workers = sorted(set(by_worker) | set(knocks_by_worker))
    grids = sorted(set(by_grid) | set(visits_by_grid))
    return Breakdown(
        by_worker={w: _figures(by_worker[w], knocks_by_worker[w], start, end, now) for w in workers},
        by_grid={g: _figures(by_grid[g], visits_by_grid[g], start, end, now) for g in grids},
    )


def overdue_requests(replica: Replica, *, start: datetime, end: datetime, now: datetime | None = None) -> list[Ticket]:
    """The requests behind the overdue figure: open past their due time at the end of the period, or resolved
    within the period after it; most late first."""
    now = now or end
    as_of = min(end, now)
    late = []
    for t in replica.tickets.list():
        if t.is_open and t.due_at < as_of and t.submitted_at < as_of:
            late.append((as_of - t.due_at, t))
        elif _in(t.resolved_at, start, end) and t.resolved_at is not None and t.resolved_at > t.due_at:
            late.append((t.resolved_at - t.due_at, t))
    late.sort(key=lambda pair: (-pair[0].total_seconds(), pair[1].id))
    return [t for _, t in late]


@dataclass(frozen=True)
class Behind:
    """The requests behind the period's figures, each list oldest first."""

    received: list[Ticket]
    resolved: list[Ticket]
    unhappy: list[Ticket]
    """Resolved in the period and rated 1 to 3: what pulls satisfaction down."""
    over_48h: list[Ticket]
    """Resolved in the period more than 48 hours after submission."""
    overdue: list[Ticket]
    """As :func:`overdue_requests` gives them (most late first)."""


def behind(replica: Replica, *, start: datetime, end: datetime, now: datetime | None = None) -> Behind:
    """The requests each figure of the period counts, by the report's definitions."""
    tickets = sorted(replica.tickets.list(), key=lambda t: (t.submitted_at, t.id))
    resolved = [t for t in tickets if _in(t.resolved_at, start, end)]
    return Behind(
        received=[t for t in tickets if _in(t.submitted_at, start, end)],
        resolved=resolved,
        unhappy=[t for t in resolved if t.rating is not None and t.rating.score < 4],
        over_48h=[t for t in resolved if t.resolved_at is not None and t.resolved_at - t.submitted_at > _48H],
        overdue=overdue_requests(replica, start=start, end=end, now=now),
    )
