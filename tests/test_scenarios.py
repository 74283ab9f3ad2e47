"""The field's conflict stories, end to end: each converges, is visible in conflicts(), and a later edit settles it."""

from __future__ import annotations

import pytest

from caresync import Conflict, IntentError, Replica, TicketStatus
from caresync.testing import FakeClock

from .conftest import ReplicaFactory

GRID = "changnan/teachers-dorm/3"


def _pair(make_replica: ReplicaFactory) -> tuple[Replica, Replica, str]:
    station = make_replica("station", actor="clerk-zhang")
    phone = make_replica("phone", actor="grid-li", clock=FakeClock(start_ms=1_796_083_200_000 + 5_000))
    ticket = station.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID, channel="walk_in")
    phone.sync_with(station)
    return station, phone, ticket.id


def _only(conflicts: list[Conflict], field: str) -> Conflict:
    found = [c for c in conflicts if c.field == field]
    assert len(found) == 1, conflicts
    return found[0]


def test_two_workers_accept_the_same_ticket_offline(make_replica: ReplicaFactory) -> None:
    station, phone, tid = _pair(make_replica)
    station.tickets.accept(tid, assignee="grid-wang")
    phone.tickets.accept(tid, assignee="grid-li")
    station.sync_with(phone)

    assert station.state_digest() == phone.state_digest()
    ticket = station.tickets.get(tid)
    assert ticket.status is TicketStatus.ACCEPTED
    status = _only(ticket.conflicts, "status")
    assert {v.actor for v in status.values} == {"clerk-zhang", "grid-li"}
    assert {v.device for v in status.values} == {station.id, phone.id}
    assignee = _only(ticket.conflicts, "assignee")
    assert {v.value for v in assignee.values} == {"grid-wang", "grid-li"}
    assert {c.entity_id for c in phone.conflicts()} == {tid}

    # the station decides: grid-li keeps it and starts; both conflicts are settled by ordinary later edits
    station.tickets.edit(tid, assignee="grid-li")
    station.tickets.start(tid)
    phone.sync_with(station)
    for replica in (station, phone):
        settled = replica.tickets.get(tid)
        assert settled.conflicts == []
        assert settled.assignee == "grid-li"
        assert settled.status is TicketStatus.IN_PROGRESS
    assert station.conflicts() == phone.conflicts() == []


def test_one_resolves_while_another_cancels(make_replica: ReplicaFactory) -> None:
    station, phone, tid = _pair(make_replica)
    station.tickets.accept(tid, assignee="grid-li")
    phone.sync_with(station)
    phone.tickets.resolve(tid, resolution="cleared the pipe")
    station.tickets.cancel(tid, reason="resident withdrew the request")
    phone.sync_with(station)

    assert station.state_digest() == phone.state_digest()
    ticket = phone.tickets.get(tid)
    conflict = _only(ticket.conflicts, "status")
    # the phone's resolve is later by HLC (its clock is 5 s ahead), so it was folded second and no longer fit
    applied = {v.value: v.applied for v in conflict.values}
    assert applied == {"cancel": True, "resolve": False}
    assert ticket.status is TicketStatus.CANCELLED
    # nothing is lost: both transitions are in the history
    assert [h.action for h in ticket.history].count("resolve") == 1

    station.tickets.reopen(tid, reason="it was fixed after all")  # saw both: settles the conflict
    phone.sync_with(station)
    for replica in (station, phone):
        assert replica.tickets.get(tid).conflicts == []
        assert replica.tickets.get(tid).status is TicketStatus.ACCEPTED


def test_transitions_made_without_seeing_each_other_conflict_even_when_valid(make_replica: ReplicaFactory) -> None:
    station, phone, tid = _pair(make_replica)
    station.tickets.accept(tid, assignee="grid-li")
    phone.sync_with(station)
    station.tickets.start(tid)
    phone.tickets.resolve(tid)
    phone.sync_with(station)
    ticket = station.tickets.get(tid)
    assert ticket.status is TicketStatus.RESOLVED  # start then resolve is a valid sequence ...
    conflict = _only(ticket.conflicts, "status")  # ... but nobody saw both: a person should look
    assert all(v.applied for v in conflict.values)
    station.resolve(conflict)
    phone.sync_with(station)
    assert phone.tickets.get(tid).conflicts == []
    assert phone.tickets.get(tid).status is TicketStatus.RESOLVED


def test_two_edits_of_one_title(make_replica: ReplicaFactory) -> None:
    station, phone, tid = _pair(make_replica)
    station.tickets.edit(tid, title="Septic tank blocked, 30 households")
    phone.tickets.edit(tid, title="Septic tank overflowing")
    station.sync_with(phone)

    assert station.state_digest() == phone.state_digest()
    conflict = _only(station.conflicts(), "title")
    assert conflict.entity_id == tid
    values = {v.value: (v.actor, v.device, v.applied) for v in conflict.values}
    assert values == {
        "Septic tank blocked, 30 households": ("clerk-zhang", station.id, False),
        "Septic tank overflowing": ("grid-li", phone.id, True),  # later by HLC: shown for now
    }
    assert station.tickets.get(tid).title == "Septic tank overflowing"

    station.tickets.edit(tid, title="Septic tank blocked (30 households)")  # saw both values
    phone.sync_with(station)
    assert phone.conflicts() == []
    assert phone.tickets.get(tid).title == "Septic tank blocked (30 households)"


def test_latest_write_by_hlc_is_shown_whatever_the_arrival_order(make_replica: ReplicaFactory) -> None:
    a = make_replica("a", clock=FakeClock(start_ms=1_796_083_200_000))
    b = make_replica("b", clock=FakeClock(start_ms=1_796_083_200_000 + 60_000))
    c = make_replica("c")
    tid = a.tickets.submit(title="first", kind="errand", grid=GRID).id
    b.sync_with(a)
    a.tickets.edit(tid, title="older")
    b.tickets.edit(tid, title="newer")
    c.apply_ops(b.export_ops())  # the newer edit arrives first
    c.apply_ops(a.export_ops())
    assert c.tickets.get(tid).title == "newer"
    a.sync_with(b)
    assert a.tickets.get(tid).title == "newer"
    assert a.state_digest() == b.state_digest()


def test_sequential_edits_and_parallel_edits_of_different_fields_do_not_conflict(
    make_replica: ReplicaFactory,
) -> None:
    station, phone, tid = _pair(make_replica)
    station.tickets.edit(tid, title="one")
    phone.sync_with(station)
    phone.tickets.edit(tid, title="two")  # saw "one": replaces it
    station.tickets.edit(tid, priority="high")  # another field, in parallel
    phone.tickets.note(tid, "called the plumber")
    station.tickets.note(tid, "resident phoned again")
    station.sync_with(phone)
    ticket = station.tickets.get(tid)
    assert ticket.conflicts == []
    assert (ticket.title, ticket.priority.value) == ("two", "high")
    assert sorted(n.text for n in ticket.notes) == ["called the plumber", "resident phoned again"]


def test_two_couriers_pick_up_one_parcel_offline(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    courier_a = make_replica("courier-a")
    courier_b = make_replica("courier-b")
    mailbox = station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
    parcel = station.parcels.register(code="P-0001", grid="changnan/lane-7", mailbox_id=mailbox.id)
    station.parcels.hop(parcel.id, "dropped", place="MB-07")
    for courier in (courier_a, courier_b):
        courier.sync_with(station)
    courier_a.parcels.hop(parcel.id, "picked_up")
    courier_b.parcels.hop(parcel.id, "picked_up")
    station.sync_with(courier_a)
    station.sync_with(courier_b)
    got = station.parcels.get(parcel.id)
    custody = _only(got.conflicts, "custody")
    assert {v.actor for v in custody.values} == {"courier-a", "courier-b"}
    assert [h.stage.value for h in got.hops] == ["dropped", "picked_up", "picked_up"]
    with pytest.raises(IntentError, match="next hand-over"):
        station.resolve(custody)
    courier_a.sync_with(station)
    courier_a.parcels.hop(parcel.id, "handed_in", place="station")
    station.sync_with(courier_a)
    assert station.parcels.get(parcel.id).conflicts == []
    assert station.parcels.get(parcel.id).stage is not None
    assert station.parcels.get(parcel.id).holder == "courier-a"


def test_custody_hop_out_of_order_is_kept_and_flagged(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    parcel = station.parcels.register(code="P-0002", grid="changnan", direction="to_resident")
    got = station.parcels.hop(parcel.id, "delivered", confirm_code="7731")  # never handed in
    assert got.stage is not None and got.stage.value == "delivered"
    assert _only(got.conflicts, "custody").values[0].applied is False


def test_escalation_goes_to_the_parent_grid(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    tid = station.tickets.submit(title="Neighbour quarrel", kind="dispute", grid=GRID).id
    assert station.tickets.escalate(tid, reason="needs the area").grid == "changnan/teachers-dorm"
    assert station.tickets.escalate(tid).grid == "changnan"
    before = station.op_count()
    with pytest.raises(IntentError, match="top grid"):
        station.tickets.escalate(tid)
    assert station.op_count() == before
    assert station.tickets.list(grid="changnan")[0].id == tid


def test_lifecycle_to_rating_with_history(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk-zhang")
    resident = station.residents.register(name="Grandma Liu", grid=GRID, flags=["lives_alone", "elderly"])
    t = station.tickets.submit(
        title="Leaking roof", kind="repair", grid=GRID, resident_id=resident.id, channel="door_knock"
    )
    assert (t.due_at - t.submitted_at).total_seconds() == 48 * 3600
    station.tickets.accept(t.id, assignee="grid-li", actor="grid-li")
    station.tickets.start(t.id, actor="grid-li")
    station.tickets.resolve(t.id, resolution="patched", actor="grid-li")
    station.tickets.close(t.id)
    rated = station.tickets.rate(t.id, score=5, comment="very quick")
    assert rated.status is TicketStatus.CLOSED
    assert rated.rating is not None and rated.rating.score == 5
    assert rated.resolved_at is not None and rated.closed_at is not None
    assert [(h.action, h.actor) for h in rated.history] == [
        ("create", "clerk-zhang"),
        ("accept", "grid-li"),
        ("start", "grid-li"),
        ("resolve", "grid-li"),
        ("close", "clerk-zhang"),
        ("set rating", "clerk-zhang"),
    ]
    assert all(h.device == station.id for h in rated.history)
    assert station.tickets.list(resident_id=resident.id)[0].id == t.id


def test_dispute_mediation_record(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    tid = station.tickets.submit(title="Renovation noise", kind="dispute", grid=GRID).id
    station.tickets.add_party(tid, name="Mr Chen", side="renovating")
    station.tickets.add_party(tid, name="Ms Zhou", side="downstairs")
    station.tickets.accept(tid, assignee="peacemaker-hu")
    station.tickets.record_session(
        tid, mediator="Teacher Hu", summary="agreed to work 9:00-17:00 only", attendees=["Mr Chen", "Ms Zhou"]
    )
    station.tickets.resolve(tid)
    with pytest.raises(IntentError, match="outcome"):
        station.tickets.close(tid)
    station.tickets.set_outcome(tid, "settled", mediator="Teacher Hu")
    closed = station.tickets.close(tid)
    assert closed.outcome is not None and closed.outcome.value == "settled"
    assert [p.name for p in closed.parties] == ["Mr Chen", "Ms Zhou"]
    assert closed.sessions[0].attendees == ["Mr Chen", "Ms Zhou"]
    other = station.tickets.submit(title="Bulb", kind="repair", grid=GRID).id
    with pytest.raises(IntentError, match="not a dispute"):
        station.tickets.add_party(other, name="X")


def test_visits_and_deletion(make_replica: ReplicaFactory) -> None:
    knocker = make_replica("knocker", actor="knocker-fang")
    resident = knocker.residents.register(name="Old Wang", grid=GRID, knock_every_days=3)
    visit = knocker.visits.record(resident_id=resident.id, outcome="no_answer", note="knocked twice")
    assert visit.visitor == "knocker-fang"
    ticket = knocker.tickets.submit(
        title="Old Wang did not answer",
        kind="early_warning",
        grid=GRID,
        channel="door_knock",
        resident_id=resident.id,
        visit_id=visit.id,
    )
    knocker.visits.edit(visit.id, ticket_id=ticket.id)
    assert knocker.visits.list(resident_id=resident.id)[0].ticket_id == ticket.id
    assert (ticket.due_at - ticket.submitted_at).total_seconds() == 24 * 3600  # early warnings: 24 h
    knocker.tickets.delete(ticket.id)
    assert knocker.tickets.list() == []
    assert knocker.tickets.list(include_deleted=True)[0].deleted
    knocker.tickets.restore(ticket.id)
    assert [t.id for t in knocker.tickets.list()] == [ticket.id]
