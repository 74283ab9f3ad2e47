"""Reading the station's report from its records: a few requests are taken, worked, returned (回单) and rated,
a dispute is mediated, a knocker's visit is recorded; then ``caresync.field.reports.station_report`` gives the figures
a station reports (the same as ``caresync report --json``), and ``caresync.field.report_html`` the page for the wall.

Run: python examples/reading_a_report.py [FOLDER]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from caresync import Replica
from caresync.field.report_html import render_html
from caresync.field.reports import station_report
from caresync.testing import FakeClock

HOUR = 3_600_000


def main(folder: Path) -> None:
    grid = "changnan/teachers-dorm/3"
    clock = FakeClock()
    with Replica.open(folder / "station.db", actor="clerk-zhang", now_ms=clock) as station:
        wang = station.residents.register(name="Old Wang", grid=grid, flags=["lives_alone"], knock_every_days=2)
        station.visits.record(resident_id=wang.id, outcome="well", visitor="knocker-fang")
        for title, hours, score in [("Septic tank blocked", 20, 5), ("Stairwell light out", 30, 4), ("Leak", 60, 2)]:
            ticket = station.tickets.submit(title=title, kind="repair", grid=grid, resident_id=wang.id)
            station.tickets.accept(ticket.id, assignee="grid-li")
            clock.advance(hours * HOUR)
            station.tickets.resolve(ticket.id, resolution="done")
            station.tickets.close(ticket.id)
            station.tickets.rate(ticket.id, score=score)
        noise = station.tickets.submit(title="Renovation noise at night", kind="dispute", grid=grid)
        station.tickets.add_party(noise.id, name="Mr Chen", side="renovating")
        station.tickets.record_session(noise.id, mediator="Teacher Hu", summary="works 9:00-17:00 only")
        station.tickets.set_outcome(noise.id, "settled", mediator="Teacher Hu")

        report = station_report(station)
        figures = report.to_json()
        print(
            json.dumps(
                {
                    k: figures[k]
                    for k in (
                        "tickets_received",
                        "tickets_resolved",
                        "satisfaction_rate",
                        "resolved_within_48h_rate",
                        "mediation_success_rate",
                    )
                }
            )
        )
        page = folder / "report.html"
        page.write_text(render_html(report, lang="en"), encoding="utf-8")
        print(f"resolved within 48 hours: {figures['resolved_within_48h_rate']:.0%}; the page: {page}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="caresync-report-")))
