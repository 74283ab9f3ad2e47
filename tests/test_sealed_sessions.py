"""A mediation session recorded on a device without the station key (a mediator's phone) reads back there:
its sealed attendees show as one sealed text, and the station reads them in full."""

from __future__ import annotations

from caresync.trust.keys import StationKey, is_sealed
from tests.conftest import ReplicaFactory


def test_a_session_recorded_on_a_mediators_phone_reads_back_there(make_replica: ReplicaFactory) -> None:
    key = StationKey(bytes(range(32)))
    phone = make_replica("mediator")
    phone.set_station_public_key(key.public_key)
    ticket = phone.tickets.submit(title="Renovation noise", kind="dispute", grid="changnan/lane-2")
    phone.tickets.record_session(ticket.id, mediator="Teacher Hu", summary="heard both", attendees=["Chen", "Zhou"])
    [session] = phone.tickets.get(ticket.id).sessions
    assert is_sealed(session.summary)
    assert len(session.attendees) == 1 and is_sealed(session.attendees[0])
    assert [t.id for t in phone.tickets.list()] == [ticket.id]

    station = make_replica("station")
    station.install_station_key(key)
    station.sync_with(phone)
    [seen] = station.tickets.get(ticket.id).sessions
    assert seen.attendees == ["Chen", "Zhou"] and seen.summary == "heard both"
