"""The Reports page: the station report for a period, its trends per day and week, figures per worker and per
grid, and the requests behind the overdue figure. The figures are :mod:`caresync.reports`' and
:mod:`caresync.trends`'; the period and the time it was made are in the title."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.pages import number_of
from caresync.console.routing import route
from caresync.errors import InvalidInputError
from caresync.field.reports import station_report
from caresync.field.trends import behind, breakdowns, trend
from caresync.replica import Replica

__all__ = ["period_of"]

_DEFAULT_DAYS = 28


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("Cannot make the report", [(name, f"{text!r} is not a date like 2026-11-29")]) from None


def period_of(page: Page) -> tuple[datetime, datetime]:
    """The period the page's ``from`` and ``to`` dates name (both days included, the station's zone); the last
    four weeks by default."""
    tz = page.console.settings.tz
    today = page.now().astimezone(tz).date()
    last = _day(page.query["to"], "to") if page.query.get("to") else today
    first = _day(page.query["from"], "from") if page.query.get("from") else last - timedelta(days=_DEFAULT_DAYS - 1)
    start = (
        datetime.combine(first, time(0, 0)).astimezone(tz) if tz is None else datetime.combine(first, time(0, 0), tz)
    )
    end_day = last + timedelta(days=1)
    end = (
        datetime.combine(end_day, time(0, 0)).astimezone(tz)
        if tz is None
        else datetime.combine(end_day, time(0, 0), tz)
    )
    if end <= start:
        raise InvalidInputError("Cannot make the report", [("to", "the period ends before it starts")])
    return start, end


@route("/reports")
def reports(page: Page, replica: Replica) -> Response:
    """The report page."""
    start, end = period_of(page)
    now = page.now()
    tz = page.console.settings.tz
    report = station_report(replica, start=start, end=end)
    daily = trend(replica, start=start, end=end, step="day", tz=tz, now=now)
    weekly = trend(replica, start=start, end=end, step="week", tz=tz, now=now)
    split = breakdowns(replica, start=start, end=end, now=now)
    lists = behind(replica, start=start, end=end, now=now)
    return page.render(
        "reports.html",
        report=report,
        start=start,
        last_day=end - timedelta(days=1),
        generated=now,
        daily=daily,
        weekly=weekly,
        split=split,
        lists=lists,
        number_of=number_of,
        peak=max([p.figures.received for p in daily] + [p.figures.resolved for p in daily] + [1]),
        query={"from": start.date().isoformat(), "to": (end - timedelta(days=1)).date().isoformat()},
    )
