"""The rest of the public API: workers, mailboxes, parcels and visits lookups, times, batches, progress."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from caresync import IntentError, InvalidInputError, Role, TicketStatus

from .conftest import ReplicaFactory

GRID = "changnan/teachers-dorm/3"


def test_workers(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    li = r.workers.add(name="Li Hua", role="grid_worker", grids=[GRID], phone="138 0000 1111")
    r.workers.add(name="Fang Min", role="knocker", grids=["changnan"])
    assert r.workers.get(li.id).role is Role.GRID_WORKER
    assert [w.name for w in r.workers.list(role="knocker")] == ["Fang Min"]
    r.workers.edit(li.id, grids=[GRID, "changnan/lane-7"])
    assert r.workers.get(li.id).grids == [GRID, "changnan/lane-7"]
    with pytest.raises(InvalidInputError, match="role"):
        r.workers.add(name="Zhou", role="boss")


def test_mailboxes_parcels_and_lookups_by_code(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    box = r.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7", location="by the well")
    with pytest.raises(IntentError, match="already registered"):
        r.mailboxes.add(code="MB-07", name="again", grid="changnan/lane-7")
    assert r.mailboxes.get(box.id).location == "by the well"
    assert [m.code for m in r.mailboxes.list(grid="changnan/lane-7")] == ["MB-07"]
    parcel = r.parcels.register(code="P-1", grid="changnan/lane-7", mailbox_id=box.id, summary="pension form")
    r.parcels.hop(parcel.id, "dropped", place="MB-07")
    r.parcels.hop(parcel.id, "picked_up", actor="courier-chen")
    assert r.parcels.by_code("P-1") == r.parcels.get(parcel.id)
    assert r.parcels.by_code("P-404") is None
    assert [p.code for p in r.parcels.list(stage="picked_up", holder="courier-chen")] == ["P-1"]
    assert r.parcels.list(stage="delivered") == []


def test_times_are_aware_datetimes_or_milliseconds(make_replica: ReplicaFactory) -> None:
    r = make_replica("knocker")
    wang = r.residents.register(name="Old Wang", grid=GRID)
    when = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    visit = r.visits.record(resident_id=wang.id, outcome="well", visited_at=when)
    assert r.visits.get(visit.id).visited_at == when
    r.visits.note(visit.id, "brought oranges")
    assert [n.text for n in r.visits.get(visit.id).notes] == ["brought oranges"]
    due = r.tickets.submit(title="x", kind="errand", grid=GRID, due_at=int(when.timestamp() * 1000)).due_at
    assert due == when
    with pytest.raises(InvalidInputError, match="time zone"):
        r.visits.record(resident_id=wang.id, outcome="well", visited_at=datetime(2026, 11, 28, 9, 30))
    assert [x.id for x in r.residents.list(grid=GRID)] == [wang.id]
    assert [h.action for h in r.history(visit.id)] == ["create", "note"]


def test_a_batch_lands_whole_or_not_at_all(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    tid = r.tickets.submit(title="x", kind="repair", grid=GRID).id
    before, count = r.state_digest(), r.op_count()
    with pytest.raises(IntentError), r.batch():
        r.tickets.accept(tid, assignee="li")
        r.tickets.note(tid, "on my way")
        r.tickets.close(tid)  # not resolved: refused, and the whole batch with it
    assert (r.state_digest(), r.op_count()) == (before, count)
    with r.batch():
        r.tickets.accept(tid, assignee="li")
        r.tickets.edit(tid, title="y", priority="high")  # two fields: two ops
    assert r.version_vector() == {r.id: count + 3}
    assert r.tickets.get(tid).status is TicketStatus.ACCEPTED


def test_edit_needs_fields_and_registration_needs_a_name(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    tid = r.tickets.submit(title="x", kind="repair", grid=GRID).id
    with pytest.raises(InvalidInputError, match="name at least one"):
        r.tickets.edit(tid)
    with pytest.raises(InvalidInputError, match="name"):
        r.residents.register(name=None, grid=GRID)  # type: ignore[arg-type]


def test_sync_reports_progress(make_replica: ReplicaFactory) -> None:
    a, b = make_replica("a"), make_replica("b")
    with a.batch():
        for i in range(25):
            a.tickets.submit(title=f"t{i}", kind="errand", grid=GRID)
    seen: list[tuple[int, int]] = []
    report = b.sync_with(a, batch_size=10, progress=lambda done, batch: seen.append((done, batch)))
    assert report.received == 25 and report.sent == 0
    assert seen == [(10, 10), (20, 10), (25, 5)]


def test_confirm_keeps_the_status_and_settles_the_conflict(make_replica: ReplicaFactory) -> None:
    a, b = make_replica("a"), make_replica("b")
    tid = a.tickets.submit(title="x", kind="repair", grid=GRID).id
    b.sync_with(a)
    a.tickets.accept(tid, assignee="li")
    b.tickets.cancel(tid, reason="duplicate")
    a.sync_with(b)
    [conflict] = a.conflicts()
    assert conflict.field == "status"
    shown = a.tickets.get(tid).status
    kept = a.tickets.confirm(tid)
    assert kept.status is shown and kept.conflicts == []
    b.sync_with(a)
    assert b.conflicts() == [] and b.tickets.get(tid).status is shown


def test_a_write_returns_its_record_without_reading_its_history(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    ticket = r.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID)
    for i in range(5):
        r.tickets.edit(ticket.id, title=f"Septic tank blocked, call {i}")
    statements: list[str] = []
    r.device_log.store._db.set_trace_callback(statements.append)  # every statement SQLite runs on the file
    edited = r.tickets.edit(ticket.id, priority="high")
    listed = r.tickets.list()
    assert not [s for s in statements if "FROM ops" in s and "eid" in s]  # no record's history was read back
    assert [h.action for h in edited.history] == ["create", *["set title"] * 5, "set priority"]
    assert [s for s in statements if "FROM ops" in s and "eid" in s]  # read when asked for, from the file
    assert listed == [edited] and listed[0].history == edited.history


def test_a_record_keeps_the_history_it_had_when_it_was_read(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    submitted = r.tickets.submit(title="Stair light out", kind="repair", grid=GRID)
    first = r.tickets.edit(submitted.id, title="Stair light out, floor 3")
    second = r.tickets.edit(submitted.id, priority="high")
    assert [h.action for h in submitted.history] == ["create"]
    assert [h.action for h in first.history] == ["create", "set title"]
    assert [h.action for h in second.history] == ["create", "set title", "set priority"]
    assert first != second and second == r.tickets.get(submitted.id)
    assert second.model_dump()["history"][-1]["details"]["value"] == "high"


def test_a_history_not_asked_for_before_the_replica_closes_cannot_be_read_after(
    make_replica: ReplicaFactory,
) -> None:
    from caresync import StoreError

    r = make_replica("station")
    asked = r.tickets.submit(title="Stair light out", kind="repair", grid=GRID)
    assert len(asked.history) == 1
    not_asked = r.tickets.get(asked.id)
    r.close()
    assert len(asked.history) == 1  # read while open: kept with the record
    with pytest.raises(StoreError, match="could not be read"):
        _ = not_asked.history
