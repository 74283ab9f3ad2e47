"""Knock rounds, the review queue and ticket SLAs, through the library."""

from __future__ import annotations

from datetime import timedelta

import pytest

from caresync import IntentError, NotFoundError
from caresync.core.model import ms_to_datetime
from caresync.field.knock import knock_round, raise_ticket
from caresync.field.review import review_queue, settle
from caresync.field.sla import is_overdue, sla_sorted
from caresync.testing import FakeClock
from tests.conftest import ReplicaFactory

DORM = "changnan/dorm/3"
DAY = 86_400_000


def test_knock_round_due_overdue_and_flags(make_replica: ReplicaFactory) -> None:
    clock = FakeClock()
    station = make_replica("station", clock=clock)
    t0 = ms_to_datetime(clock.ms)
    reg = station.residents.register
    wang = reg(name="Old Wang", grid=DORM, knock_every_days=2)
    liu = reg(name="Grandma Liu", grid=DORM, knock_every_days=7)
    zhou = reg(name="Auntie Zhou", grid="changnan/lane-7", knock_every_days=3)
    hu = reg(name="Uncle Hu", grid="changnan/lane-7", knock_every_days=1)
    reg(name="Mr Chen", grid=DORM)  # no cadence: never on a round
    station.workers.add(name="knocker-fang", role="knocker", grids=["changnan/lane-7"])
    station.visits.record(resident_id=liu.id, outcome="well", visited_at=t0 + timedelta(days=1))
    station.visits.record(resident_id=zhou.id, outcome="no_answer", visited_at=t0 + timedelta(days=1))
    station.visits.record(resident_id=zhou.id, outcome="no_answer", visited_at=t0 + timedelta(days=2))
    station.visits.record(resident_id=hu.id, outcome="unwell", visited_at=t0 + timedelta(hours=12))
    ma = reg(name="Granny Ma", grid=DORM, knock_every_days=30)  # one unanswered knock after a good one: no flag
    station.visits.record(resident_id=ma.id, outcome="well", visited_at=t0 + timedelta(hours=1))
    station.visits.record(resident_id=ma.id, outcome="no_answer", visited_at=t0 + timedelta(hours=2))

    at = t0 + timedelta(days=3, hours=1)
    everyone = knock_round(station, now=at)
    assert [e.resident_id for e in everyone.flagged] == [hu.id, zhou.id]  # flagged first, soonest due first
    assert ma.id not in [e.resident_id for e in everyone.entries]  # not flagged, not due for 30 days
    assert everyone.flagged[1].flags == ["no_answer_twice"] and everyone.flagged[0].flags == ["unwell"]
    [wang_due] = everyone.by_building[DORM]  # Liu checked a day in: due on day 8, not listed
    assert (wang_due.resident_id, wang_due.state, wang_due.overdue_days) == (wang.id, "overdue", 1)
    assert everyone.count("overdue") == 2  # Wang (due day 2) and Hu (checked at 12 h, daily); Zhou only due
    assert {e.resident_id: e.state for e in everyone.entries}[zhou.id] == "due"
    assert {e.resident_id: e.state for e in everyone.entries}[hu.id] == "overdue"
    with_ok = knock_round(station, now=at, include_ok=True)
    assert liu.id in [e.resident_id for e in with_ok.entries]
    fang = knock_round(station, knocker="knocker-fang", now=at)
    assert {e.resident_id for e in fang.entries} == {zhou.id, hu.id}
    assert knock_round(station, knocker="knocker-fang", grid=DORM, now=at).entries == []
    with pytest.raises(IntentError, match="No worker 'nobody'"):
        knock_round(station, knocker="nobody")


def test_a_flag_raises_one_ticket_in_one_step(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    wang = station.residents.register(name="Old Wang", grid=DORM, knock_every_days=2)
    liu = station.residents.register(name="Grandma Liu", grid=DORM, knock_every_days=2)
    station.visits.record(resident_id=wang.id, outcome="no_answer")
    with pytest.raises(IntentError, match="not flagged"):
        raise_ticket(station, wang.id)  # one unanswered knock is not yet a flag
    last = station.visits.record(resident_id=wang.id, outcome="no_answer", note="lights off")
    ticket = raise_ticket(station, wang.id)
    assert (ticket.kind.value, ticket.channel.value, ticket.priority.value) == ("early_warning", "door_knock", "green")
    assert (ticket.resident_id, ticket.visit_id, ticket.description) == (wang.id, last.id, "lights off")
    assert station.visits.get(last.id).ticket_id == ticket.id
    with pytest.raises(IntentError, match="already has an open request"):
        raise_ticket(station, wang.id)
    station.visits.record(resident_id=liu.id, outcome="emergency")
    assert raise_ticket(station, liu.id).kind.value == "emergency"
    with pytest.raises(NotFoundError):
        raise_ticket(station, "R-0000000000000000-1")


def test_review_queue_levels_and_settling_by_pick(make_replica: ReplicaFactory) -> None:
    station, phone = make_replica("station"), make_replica("phone", actor="grid-li")
    ticket = station.tickets.submit(title="Septic tank", kind="repair", grid=DORM)
    phone.sync_with(station)
    station.tickets.edit(ticket.id, title="Septic tank blocked")
    phone.tickets.edit(ticket.id, title="Septic tank overflowing")
    station.tickets.edit(ticket.id, description="30 households")  # different fields: merged, for information
    phone.tickets.edit(ticket.id, priority="high")
    liu = station.residents.register(name="Grandma Liu", grid=DORM)
    station.residents.edit(liu.id, phone="138 0000 1234")  # two fields on one device: nothing to review
    station.residents.edit(liu.id, knock_every_days=3)
    station.sync_with(phone)
    items = review_queue(station)
    conflicts = [i for i in items if i.needs_decision]
    parallel = [i for i in items if not i.needs_decision]
    [c] = conflicts
    assert c.key == f"{ticket.number}#title" and c.label.startswith(f"{ticket.number} Septic tank")
    assert {(ch.value, ch.actor, ch.device) for ch in c.changes} == {
        ("Septic tank blocked", "station", station.id),
        ("Septic tank overflowing", "grid-li", phone.id),
    }
    assert sum(ch.shown for ch in c.changes) == 1
    [p] = parallel
    assert p.entity_id == ticket.id and {ch.field for ch in p.changes} == {"description", "priority"}
    assert review_queue(station, parallel=False) == conflicts
    pick = [ch.value for ch in c.changes].index("Septic tank overflowing") + 1
    settle(station, c.key, pick=pick)
    assert station.tickets.get(ticket.id).title == "Septic tank overflowing"
    assert [i for i in review_queue(station) if i.needs_decision] == []
    phone.sync_with(station)
    assert phone.conflicts() == []  # the decision syncs like any other change
    with pytest.raises(NotFoundError, match="No unresolved conflict"):
        settle(station, c.key)


def test_overdue_tickets_come_first(make_replica: ReplicaFactory) -> None:
    clock = FakeClock()
    station = make_replica("station", clock=clock)
    slow = station.tickets.submit(title="Bench", kind="repair", grid=DORM)  # due in 48 h
    clock.advance(DAY)
    urgent = station.tickets.submit(title="Smoke", kind="emergency", grid=DORM)  # due in 2 h
    late = station.tickets.submit(title="Lift", kind="repair", grid=DORM, due_at=clock.ms - 1000)
    now = ms_to_datetime(clock.ms + 3 * 3_600_000)
    assert [is_overdue(t, now) for t in (slow, urgent, late)] == [False, True, True]
    assert [t.id for t in sla_sorted([slow, urgent, late], now)] == [late.id, urgent.id, slow.id]


def test_a_dispute_closes_only_with_an_outcome(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    noise = station.tickets.submit(title="Noise", kind="dispute", grid=DORM)
    station.tickets.resolve(noise.id)
    with pytest.raises(IntentError, match="record the mediation outcome"):
        station.tickets.close(noise.id)
    station.tickets.set_outcome(noise.id, "settled")
    assert station.tickets.close(noise.id).status.value == "closed"
