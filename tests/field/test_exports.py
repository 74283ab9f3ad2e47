"""Exports and trends over real replica files: what each table holds, text that is never a formula, Open311 with
no private detail, and trend figures against a hand-counted week."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook

from caresync import InvalidInputError, Replica
from caresync.field.exports import EXPORTS, csv_bytes, open311_requests, table, write_xlsx
from caresync.field.trends import behind, breakdowns, overdue_requests, trend
from caresync.testing import FakeClock

DAY_MS = 86_400_000
START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
START_MS = int(START.timestamp() * 1000)


def _week(tmp_path: Path) -> tuple[Replica, FakeClock]:
    clock = FakeClock(START_MS + 8 * 3_600_000)
    r = Replica.open(tmp_path / "station.db", actor="desk", now_ms=clock)
    wang = r.residents.register(name='=HYPERLINK("http://x")', grid="c/a/b1", knock_every_days=2)
    for day in range(3):  # day 0: two requests; day 1: one; day 2: none
        for i in range(2 if day == 0 else 1 if day == 1 else 0):
            t = r.tickets.submit(
                title=f"+sum d{day} {i}", kind="repair", grid="c/a/b1" if i == 0 else "c/b/b2", resident_id=wang.id
            )
            r.tickets.accept(t.id, assignee="grid-li" if i == 0 else "grid-wu")
        clock.advance(DAY_MS)
    first = r.tickets.list()[0]  # submitted day 0, resolved on day 3 (72 hours: late), rated 5
    r.tickets.resolve(first.id)
    r.tickets.close(first.id)
    r.tickets.rate(first.id, score=5)
    r.visits.record(resident_id=wang.id, outcome="well", visitor="knocker-wu", note="@cmd")
    return r, clock


def test_every_table_as_csv_and_xlsx_and_text_is_never_a_formula(tmp_path: Path) -> None:
    r, _ = _week(tmp_path)
    with r:
        for name in EXPORTS:
            data = table(r, name, lang="en")
            rows = list(csv.reader(io.StringIO(csv_bytes(data).decode("utf-8-sig"))))
            assert rows[0] == data.headers and len(rows) == len(data.rows) + 1
            buffer = io.BytesIO()
            write_xlsx([data], buffer)
            sheet = load_workbook(io.BytesIO(buffer.getvalue())).active
            assert sheet is not None and sheet.max_row == len(data.rows) + 1
            for row in sheet.iter_rows():
                for cell in row:
                    assert cell.data_type != "f", (name, cell.coordinate, cell.value)
            flat = [c for row in rows for c in row]
            assert not any(c.startswith(("=", "+", "@")) for c in flat), name
        residents = list(csv.reader(io.StringIO(csv_bytes(table(r, "residents")).decode("utf-8-sig"))))
        assert residents[1][0] == '\'=HYPERLINK("http://x")'
        assert load_workbook(_xlsx(table(r, "residents"))).active["A2"].value == '=HYPERLINK("http://x")'
        with pytest.raises(InvalidInputError, match="is not one of"):
            table(r, "secrets")


def _xlsx(data: object) -> io.BytesIO:
    buffer = io.BytesIO()
    write_xlsx([data], buffer)  # type: ignore[list-item]
    buffer.seek(0)
    return buffer


def test_open311_has_structure_only(tmp_path: Path) -> None:
    r, _ = _week(tmp_path)
    with r:
        requests = open311_requests(r)
        assert len(requests) == 3
        assert {q["status"] for q in requests} == {"open", "closed"}
        assert all(
            set(q)
            == {
                "service_request_id",
                "status",
                "status_notes",
                "service_name",
                "service_code",
                "agency_responsible",
                "requested_datetime",
                "updated_datetime",
                "expected_datetime",
            }
            for q in requests
        )
        text = json.dumps(requests)
        assert "HYPERLINK" not in text and "sum d" not in text


def test_trends_by_day_and_week_against_a_hand_count(tmp_path: Path) -> None:
    r, _ = _week(tmp_path)
    with r:
        end = START + timedelta(days=7)
        days = trend(r, start=START, end=end, step="day", tz=UTC)
        assert [p.start.date().isoformat() for p in days][:2] == ["2026-11-02", "2026-11-03"]
        assert [p.figures.received for p in days] == [2, 1, 0, 0, 0, 0, 0]
        assert [p.figures.resolved for p in days] == [0, 0, 0, 1, 0, 0, 0]
        assert days[3].figures.satisfaction_rate == 1.0 and days[3].figures.within_48h_rate == 0.0
        assert days[3].figures.knocks == 1
        [week] = trend(r, start=START, end=end, step="week", tz=UTC)
        assert (week.figures.received, week.figures.resolved, week.figures.knocks) == (3, 1, 1)
        split = breakdowns(r, start=START, end=end)
        assert split.by_grid["c"].received == 3  # the community holds both areas
        assert split.by_grid["c/a"].received == 2 and split.by_grid["c/a/b1"].received == 2
        assert split.by_grid["c/b"].received == 1
        assert split.by_worker["grid-li"].received == 2 and split.by_worker["grid-li"].resolved == 1
        assert split.by_worker["knocker-wu"].knocks == 1
        late = overdue_requests(r, start=START, end=end, now=end)
        assert len(late) == 3  # two open past due at the end, one resolved after its due time
        lists = behind(r, start=START, end=end, now=end)
        assert len(lists.received) == 3 and [t.title for t in lists.resolved] == ["+sum d0 0"]
        assert lists.over_48h == lists.resolved and lists.unhappy == [] and lists.overdue == late
        with pytest.raises(InvalidInputError):
            trend(r, start=end, end=START)
