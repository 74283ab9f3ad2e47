"""The station report against figures counted by hand from tests/station_data.py, and its HTML page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from caresync import InvalidInputError, Replica
from caresync.field.report_html import render_html
from caresync.field.reports import station_report
from caresync.testing import DEFAULT_START_MS, FakeClock
from tests.conftest import ReplicaFactory
from tests.station_data import DORM, build_week, hours, t0_of

T0 = t0_of(DEFAULT_START_MS)


@pytest.fixture
def week(tmp_path: Path) -> Iterator[Replica]:
    station, _clock, _ids = build_week(tmp_path / "station.db", DEFAULT_START_MS)
    yield station
    station.close()


def test_the_week_by_hand(week: Replica) -> None:
    r = station_report(week, start=T0, end=T0 + hours(72))
    assert r.tickets_received == 7
    assert r.tickets_resolved == 4  # t1 (10 h), t2 (50 h), t3 (30 h), t4 (3 h); t5 and t6 open, t7 cancelled
    assert r.tickets_rated == 3 and r.satisfaction_rate == pytest.approx(2 / 3)  # 5, 3, 4
    assert r.resolved_within_48h_rate == pytest.approx(3 / 4)  # all but t2
    assert r.resolved_on_time_rate == pytest.approx(3 / 4)  # due 48 h after submission; t2 late
    assert r.median_hours_to_resolve == pytest.approx(20)  # median of 3, 10, 30, 50
    assert (r.tickets_open, r.tickets_overdue) == (2, 2)  # t5, t6, both due at 48 h
    assert r.disputes_mediated == 2 and r.disputes_settled == 1
    assert r.mediation_success_rate == pytest.approx(0.5)
    assert r.visits == 3
    assert r.residents_served == 3  # A (ticket and visit), B, D (visits)
    assert r.residents_overdue == 2  # D (daily, checked at 3 h) and E (daily, never checked)
    assert r.courier_transit_hours == pytest.approx(9)  # picked up 1 h -> 4 h, out for delivery 20 h -> 26 h
    assert r.courier_transit_share == pytest.approx(9 / 93)
    assert r.by_kind == {"repair": 2, "dispute": 2, "errand": 1, "wish": 1, "other": 1}
    assert r.by_channel == {"walk_in": 4, "phone": 1, "mailbox": 1, "wish_box": 1}
    assert r.by_grid == {DORM: 5, "changnan/lane-7": 2}
    data = r.to_json()
    for key in (
        "tickets_received",
        "tickets_resolved",
        "satisfaction_rate",
        "resolved_within_48h_rate",
        "median_hours_to_resolve",
        "disputes_mediated",
        "mediation_success_rate",
        "visits",
        "residents_overdue",
        "by_kind",
        "by_channel",
        "by_grid",
    ):
        assert key in data
    assert data["period_start"] == T0.isoformat() and data["period_end"] == (T0 + hours(72)).isoformat()


def test_one_grid_and_a_later_period(week: Replica) -> None:
    dorm = station_report(week, start=T0, end=T0 + hours(72), grid=DORM)
    assert (dorm.tickets_received, dorm.tickets_resolved) == (5, 4)
    assert (dorm.disputes_mediated, dorm.mediation_success_rate) == (1, 1.0)
    assert (dorm.visits, dorm.residents_overdue) == (2, 1)  # A and B; E overdue (D lives in lane 7)
    later = station_report(week, start=T0 + hours(24), end=T0 + hours(72))
    assert later.tickets_received == 0
    assert later.tickets_resolved == 2  # t3 at 30 h, t2 at 50 h
    assert later.median_hours_to_resolve == pytest.approx(40)
    assert later.disputes_mediated == 0 and later.mediation_success_rate is None
    first_day = station_report(week, start=T0, end=T0 + hours(24))
    assert (first_day.tickets_open, first_day.tickets_overdue) == (4, 0)  # t2, t3, t5, t6 (t1, t4 resolved, t7 gone)
    assert first_day.residents_overdue == 0  # E, daily and never checked, is due at 24 h, overdue only at 48 h
    with pytest.raises(InvalidInputError, match="ends"):
        station_report(week, start=T0 + hours(5), end=T0)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.figures: dict[str, str] = {}
        self.rates: list[str] = []
        self.bars: dict[str, str] = {}
        self.scripts = 0
        self._figure: str | None = None
        self._in_num = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "script" or (tag == "link" and a.get("rel") == "stylesheet"):
            self.scripts += 1
        if tag == "div" and a.get("data-figure"):
            self._figure = a["data-figure"]
        if tag == "div" and a.get("class") == "num":
            self._in_num = True
        if tag == "svg" and "data-rate" in a:
            self.rates.append(a["data-rate"] or "")
        if tag == "rect" and a.get("data-key"):
            self.bars[a["data-key"] or ""] = a.get("data-value") or ""

    def handle_data(self, data: str) -> None:
        if self._in_num and self._figure:
            self.figures[self._figure] = data
            self._in_num = False


def test_the_html_page_shows_the_figures_as_svg(week: Replica) -> None:
    page = render_html(station_report(week, start=T0, end=T0 + hours(72)), lang="zh")
    parser = _Page()
    parser.feed(page)
    assert parser.scripts == 0 and "http" not in page  # self-contained: nothing fetched
    assert parser.figures["tickets_received"] == "7"
    assert parser.figures["tickets_resolved"] == "4"
    assert parser.figures["median_hours_to_resolve"] == "20.0"
    assert parser.figures["residents_overdue"] == "2"
    assert parser.tags.count("svg") == 5 + 3  # five ring gauges, three bar charts
    assert [round(float(x), 4) for x in parser.rates[:4]] == [0.6667, 0.75, 0.75, 0.5]
    assert parser.bars["repair"] == "2" and parser.bars["walk_in"] == "4" and parser.bars[DORM] == "5"
    assert "满意率" in page and "66.7%" in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ElementTree.fromstring(svg)  # each chart is well-formed SVG
    english = render_html(station_report(week, start=T0, end=T0 + hours(72)), lang="en")
    assert "Satisfaction" in english and 'lang="en"' in english


def test_figures_at_a_past_moment_ignore_what_happened_after(make_replica: ReplicaFactory) -> None:
    clock = FakeClock(DEFAULT_START_MS, step_ms=0)
    station = make_replica("station", clock=clock)
    hu = station.residents.register(name="Uncle Hu", grid=DORM, knock_every_days=1)
    bench = station.tickets.submit(title="Bench", kind="repair", grid=DORM)  # due at 48 h
    clock.advance(60 * 3_600_000)
    station.visits.record(resident_id=hu.id, outcome="well")  # at 60 h
    station.tickets.resolve(bench.id)  # at 60 h
    then = station_report(station, start=T0, end=T0 + hours(50))
    assert (then.tickets_open, then.tickets_overdue, then.tickets_resolved) == (1, 1, 0)
    assert then.residents_overdue == 1  # due at 24 h, overdue at 48 h: the knock at 60 h came later
    clock.advance(3_600_000)
    now = station_report(station, start=T0)
    assert (now.tickets_open, now.residents_overdue, now.tickets_resolved) == (0, 0, 1)
