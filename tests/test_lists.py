"""Lists read only what they show (issue 17): ``tickets.summaries()`` and ``residents.summaries()`` read the
replica's columns, never a record's stored state or its history, and show exactly what the whole records show
(sealed free text opened on a station, conflicts, deletions); ``ticket list`` and ``resident list`` are drawn from
them. Their speed on 10,000 records is a benchmark row (``lists/10k``), not a timed test."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from caresync import Replica, StationKey
from caresync.cli import main

GRID = "changnan/dorm/3"


def _station(path: Path) -> Replica:
    """A station device with its key installed: the free text it writes is sealed in the file, opened to read."""
    station = Replica.open(path, actor="clerk-zhang")
    station.install_station_key(StationKey.generate())
    for i in range(12):
        who = station.residents.register(
            name=f"Resident {i}", grid=GRID, address=f"{i}-301", phone=f"138 {i:04d}", birth_year=1940 + i
        )
        made = station.tickets.submit(title=f"Stair light {i}", kind="repair", grid=GRID, resident_id=who.id)
        if i % 3 == 0:
            station.tickets.accept(made.id, assignee="grid-li")
        if i % 4 == 0:
            station.residents.edit(who.id, address=f"{i}-502")
    return station


def test_summaries_read_only_the_columns_and_show_what_the_records_show(tmp_path: Path) -> None:
    with _station(tmp_path / "desk.db") as desk, Replica.open(tmp_path / "phone.db", actor="grid-li") as phone:
        phone.sync_with(desk)
        first = desk.tickets.list()[0]
        desk.tickets.edit(first.id, title="Stair light, block 3")
        phone.tickets.edit(first.id, title="Stair light, block 4")  # a conflict: the record shows one value
        desk.sync_with(phone)
        desk.tickets.delete(desk.tickets.list()[1].id)
        raw = (tmp_path / "desk.db").read_bytes()
        assert b"Stair light 5" not in raw and b"Resident 5" not in raw  # sealed at rest, opened to read

        statements: list[str] = []
        desk.device_log.store._db.set_trace_callback(statements.append)
        tickets = desk.tickets.summaries(include_deleted=True)
        residents = desk.residents.summaries()
        desk.device_log.store._db.set_trace_callback(None)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert selects and not any("SELECT state" in s or ", state" in s or "FROM ops" in s for s in selects), selects

        whole = {t.id: t for t in desk.tickets.list(include_deleted=True)}
        assert [t.id for t in tickets] == [t.id for t in sorted(whole.values(), key=lambda t: (t.due_at, t.id))]
        for t in tickets:
            w = whole[t.id]
            assert (t.number, t.title, t.kind, t.channel, t.status, t.priority, t.grid) == (
                w.number,
                w.title,
                w.kind.value,
                w.channel.value,
                w.status.value,
                w.priority.value,
                w.grid,
            )
            assert (t.assignee, t.resident_id, t.due_at, t.submitted_at, t.deleted) == (
                w.assignee,
                w.resident_id,
                w.due_at,
                w.submitted_at,
                w.deleted,
            )
            assert t.conflicts == len(w.conflicts) and t.is_open == w.is_open
        assert sum(t.conflicts for t in tickets) == 1 and sum(t.deleted for t in tickets) == 1
        assert not any(t.title.startswith("sealed:") for t in tickets)
        for r in residents:
            w = desk.residents.get(r.id)
            assert (r.name, r.grid, r.address, r.phone, r.birth_year, r.flags, r.knock_every_days) == (
                w.name,
                w.grid,
                w.address,
                w.phone,
                w.birth_year,
                [f.value for f in w.flags],
                w.knock_every_days,
            )
        assert {r.address for r in residents} >= {"0-502", "1-301"}  # an edited field: its latest value


def test_the_list_commands_draw_from_the_summaries(tmp_path: Path) -> None:
    with _station(tmp_path / "desk.db"):
        pass
    runner = CliRunner(env={"CARESYNC_LANG": "en"})
    listed = runner.invoke(main, ["--db", str(tmp_path / "desk.db"), "ticket", "list"])
    assert listed.exit_code == 0 and "12 tickets, 0 overdue" in listed.stdout
    assert listed.stdout.count("│ Stair light") == 12 and "grid-li" in listed.stdout
    as_json = json.loads(runner.invoke(main, ["--db", str(tmp_path / "desk.db"), "ticket", "list", "--json"]).stdout)
    assert {t["title"] for t in as_json["tickets"]} == {f"Stair light {i}" for i in range(12)}
    assert set(as_json["tickets"][0]) >= {"number", "status", "due_at", "overdue", "assignee", "rating"}
    people = runner.invoke(main, ["--db", str(tmp_path / "desk.db"), "resident", "list", "--lang", "zh"])
    assert people.exit_code == 0 and "居民 12 人" in people.stdout and "│ Resident 4 " in people.stdout
    assert "4-502" in people.stdout and "sealed:" not in people.stdout


def test_parcel_summaries_show_what_the_records_show_and_the_route_uses_them(tmp_path: Path) -> None:
    from caresync.field.courier import route

    with Replica.open(tmp_path / "courier.db", actor="chen") as handheld:
        box = handheld.mailboxes.add(code="MB-07", name="Lane 7 box", grid=GRID)
        made = [handheld.parcels.register(code=f"E-{i}", grid=GRID, mailbox_id=box.id) for i in range(6)]
        handheld.parcels.hop(made[0].id, "picked_up", place="MB-07")
        handheld.parcels.hop(made[1].id, "picked_up", place="MB-07")
        handheld.parcels.hop(made[1].id, "handed_in", place="station")
        statements: list[str] = []
        handheld.device_log.store._db.set_trace_callback(statements.append)
        summaries = handheld.parcels.summaries()
        handheld.device_log.store._db.set_trace_callback(None)
        assert not any("SELECT state" in s or "FROM ops" in s for s in statements), statements
        for p in summaries:
            w = handheld.parcels.get(p.id)
            since = w.hops[-1].at if w.hops else w.history[0].at
            assert (p.code, p.stage, p.holder, p.direction, p.mailbox_id) == (
                w.code,
                None if w.stage is None else w.stage.value,
                w.holder,
                w.direction,
                w.mailbox_id,
            )
            assert p.since_ms == int(since.timestamp() * 1000)
        [stop] = route(handheld)
        assert (stop.action, stop.place) == ("pickup", "MB-07")
        assert [p.code for p in stop.parcels] == ["E-2", "E-3", "E-4", "E-5"]  # the ones still in the box
