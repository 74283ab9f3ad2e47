"""POST /v1/push: storing, idempotence, forks and gaps, waiting and refused ops, device health."""

from __future__ import annotations

from typing import Any

import pytest
from caresync import Replica
from caresync.core.ops import FORMAT_VERSION
from caresync.testing import sign

from support import GRID, START_MS, ReplicaFactory, Server, keys, own_ops

DAY = 86_400_000


def _answer(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("compact", [False, True], ids=["json", "compact"])
def test_pushed_ops_are_pulled_by_another_device_and_converge(
    server: Server, make_replica: ReplicaFactory, compact: bool
) -> None:
    station, phone = make_replica("station"), make_replica("phone")
    ts, tp = server.enroll("station"), server.enroll("phone", "grid_worker", "changnan/dorm")
    wang = station.residents.register(name="Old Wang", grid=GRID, flags=["elderly"])
    ticket = station.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID, resident_id=wang.id)
    station.tickets.edit(ticket.id, title="Septic tank blocked, 30 households")
    ops = own_ops(station)

    answer = _answer(server.push(ts, station.id, ops, compact=compact))
    assert answer["stored"] == 3 and answer["duplicates"] == 0
    assert answer["acked"] == [[station.id, 1, 3]]
    assert answer["refused"] == [] and answer["waiting"] == []

    pulled = server.pull(tp, phone.id, compact=compact)
    assert keys(pulled["ops"]) == keys(ops) and pulled["more"] is False
    phone.apply_ops(pulled["ops"])
    assert phone.state_digest() == station.state_digest()
    assert phone.tickets.get(ticket.id).title == "Septic tank blocked, 30 households"
    assert server.pull(tp, phone.id, pulled["cursor"])["ops"] == []
    assert server.pull(ts, station.id)["ops"] == []  # a device never gets its own ops back


def test_a_replayed_batch_is_acknowledged_and_stored_once(server: Server, make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    for i in range(5):
        station.tickets.submit(title=f"Request {i}", kind="repair", grid=GRID)
    ops = own_ops(station)
    first = _answer(server.push(token, station.id, ops))
    counts = server.counts()
    again = _answer(server.push(token, station.id, ops, compact=True))
    assert (first["stored"], first["duplicates"]) == (5, 0)
    assert (again["stored"], again["duplicates"]) == (0, 5)
    assert again["acked"] == first["acked"] == [[station.id, 1, 5]]
    assert server.counts() == counts
    twice = _answer(server.push(token, station.id, ops[:2] + ops[:2]))  # one op twice in a batch: once
    assert (twice["stored"], twice["duplicates"]) == (0, 2)


def test_an_op_reusing_an_identity_is_a_fork_and_nothing_is_stored(
    server: Server, make_replica: ReplicaFactory
) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    _answer(server.push(token, station.id, own_ops(station)))
    station.tickets.edit(ticket.id, title="Leak on floor 3")
    edit = own_ops(station)[-1]
    counts = server.counts()
    forged = sign(  # a validly signed op that reuses an identity: a copy of the device restored from a backup
        {**own_ops(station)[0], "body": {**own_ops(station)[0]["body"], "title": "Something else"}}, station.device_key
    )

    response = server.push(token, station.id, [forged, edit])
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "op_fork" and f"{station.id}:1" in error["message"]
    assert error["details"][0]["op"] == f"{station.id}:1"
    assert server.counts() == counts  # the valid edit in the same batch was not stored either
    assert _answer(server.push(token, station.id, [edit]))["stored"] == 1


def test_a_gap_in_the_pushing_devices_own_ops_is_refused_naming_the_expected_seq(
    server: Server, make_replica: ReplicaFactory
) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    for i in range(5):
        station.tickets.submit(title=f"Request {i}", kind="repair", grid=GRID)
    ops = own_ops(station)
    _answer(server.push(token, station.id, ops[:2]))
    counts = server.counts()

    response = server.push(token, station.id, ops[3:])
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "seq_gap" and f"{station.id}:3" in error["message"]
    assert error["details"][0]["expected_seq"] == 3
    assert server.counts() == counts
    assert _answer(server.push(token, station.id, ops[2:]))["acked"] == [[station.id, 3, 5]]


def test_an_op_on_a_record_the_server_does_not_know_waits(server: Server, make_replica: ReplicaFactory) -> None:
    station, phone = make_replica("station"), make_replica("phone")
    ts, tp = server.enroll("station"), server.enroll("phone", "grid_worker", "changnan")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    phone.sync_with(station)  # the phone got the ticket from the station directly, not through the server
    phone.tickets.note(ticket.id, "Water in the stairwell")
    phone.residents.register(name="Grandma Liu", grid=GRID)

    answer = _answer(server.push(tp, phone.id, own_ops(phone)))
    assert answer["stored"] == 1 and answer["acked"] == [[phone.id, 2, 2]]
    assert answer["waiting"] == [{"op": f"{phone.id}:1", "reason": f"record {ticket.id} is not on the server yet"}]
    _answer(server.push(ts, station.id, own_ops(station)))
    again = _answer(server.push(tp, phone.id, own_ops(phone)))
    assert (again["stored"], again["duplicates"], again["waiting"]) == (1, 1, [])
    assert again["acked"] == [[phone.id, 1, 2]]


def test_relayed_ops_wait_after_a_gap_and_for_a_device_that_never_synced(
    server: Server, make_replica: ReplicaFactory
) -> None:
    maker, carrier = make_replica("maker"), make_replica("carrier")
    tm, tc = server.enroll("maker"), server.enroll("carrier", "courier", "changnan")
    for i in range(3):
        maker.tickets.submit(title=f"Request {i}", kind="repair", grid=GRID)
    made = own_ops(maker)

    unbound = _answer(server.push(tc, carrier.id, made))  # the maker's replica is not bound to a device yet
    assert unbound["stored"] == 0 and len(unbound["waiting"]) == 3
    assert "has not synced with this server yet" in unbound["waiting"][0]["reason"]

    server.pull(tm, maker.id)  # the maker syncs once: its replica is now bound
    gap = _answer(server.push(tc, carrier.id, made[1:]))  # the carrier relays 2 and 3 but not 1
    assert gap["stored"] == 0 and gap["acked"] == []
    assert [w["op"] for w in gap["waiting"]] == [f"{maker.id}:2", f"{maker.id}:3"]
    assert f"change {maker.id}:1 of the same device" in gap["waiting"][0]["reason"]

    full = _answer(server.push(tc, carrier.id, made))  # relayed ops are allowed by the maker's role
    assert full["stored"] == 3 and full["acked"] == [[maker.id, 1, 3]]


def test_ops_the_origin_device_may_not_make_are_refused_and_the_rest_flows(
    server: Server, make_replica: ReplicaFactory
) -> None:
    courier = make_replica("courier")
    token = server.enroll("courier", "courier", GRID)
    resident = courier.residents.register(name="Not a courier's job", grid=GRID)  # seq 1
    courier.residents.edit(resident.id, phone="139 0000 0000")  # seq 2: builds on seq 1
    parcel = courier.parcels.register(code="P-7", grid=GRID)  # seq 3
    courier.parcels.hop(parcel.id, "picked_up")  # seq 4
    outside = courier.parcels.register(code="P-8", grid="changnan/lane-7")  # seq 5: outside its grid
    courier.parcels.hop(outside.id, "picked_up")  # seq 6: builds on seq 5
    ops = own_ops(courier)

    answer = _answer(server.push(token, courier.id, ops))
    assert answer["stored"] == 2 and answer["acked"] == [[courier.id, 1, 6]]
    refused = {r["op"]: r for r in answer["refused"]}
    assert refused[f"{courier.id}:1"]["code"] == "forbidden"
    reason = refused[f"{courier.id}:1"]["reason"]
    assert "courier" in reason and "resident.create" in reason
    assert refused[f"{courier.id}:2"]["code"] == "depends_on_refused"
    assert f"{courier.id}:1" in refused[f"{courier.id}:2"]["reason"]
    assert (
        refused[f"{courier.id}:5"]["code"] == "forbidden" and "changnan/lane-7" in refused[f"{courier.id}:5"]["reason"]
    )
    assert refused[f"{courier.id}:6"]["code"] == "depends_on_refused"
    assert server.counts()["refusals"] == 4

    again = _answer(server.push(token, courier.id, ops))  # the same answer every time
    assert sorted(again["refused"], key=lambda r: r["op"]) == sorted(answer["refused"], key=lambda r: r["op"])
    assert again["duplicates"] == 2
    courier.parcels.hop(parcel.id, "handed_in")  # seq 7: contig moved past the refused ops, no gap
    later = _answer(server.push(token, courier.id, own_ops(courier)[6:]))
    assert later["stored"] == 1 and later["acked"] == [[courier.id, 7, 7]]


def test_a_later_edit_on_a_refused_record_from_another_device_is_refused_too(
    server: Server, make_replica: ReplicaFactory
) -> None:
    courier, phone = make_replica("courier"), make_replica("phone")
    tc, tp = server.enroll("courier", "courier", GRID), server.enroll("phone", "grid_worker", "changnan")
    resident = courier.residents.register(name="Not a courier's job", grid=GRID)
    _answer(server.push(tc, courier.id, own_ops(courier)))
    phone.sync_with(courier)
    phone.residents.edit(resident.id, phone="139 0000 0000")
    phone.residents.register(name="Old Wang", grid=GRID)
    answer = _answer(server.push(tp, phone.id, own_ops(phone)))
    assert [(r["op"], r["code"]) for r in answer["refused"]] == [(f"{phone.id}:1", "depends_on_refused")]
    assert answer["stored"] == 1


def test_grid_scope_and_role_limits_for_each_role(server: Server, make_replica: ReplicaFactory) -> None:
    knocker, station = make_replica("knocker"), make_replica("station")
    tk, ts = server.enroll("knocker", "knocker", "changnan/dorm"), server.enroll("station")
    wang = station.residents.register(name="Old Wang", grid=GRID)
    far = station.residents.register(name="Far Away", grid="xinan/lane-1")
    _answer(server.push(ts, station.id, own_ops(station)))
    knocker.sync_with(station)
    knocker.visits.record(resident_id=wang.id, outcome="well")  # allowed: visits of residents in its grid
    knocker.residents.note(wang.id, "Needs a new walking stick")  # allowed: resident.note
    knocker.visits.record(resident_id=far.id, outcome="well")  # outside its grid
    knocker.residents.edit(wang.id, phone="+86 138 0000 0000")  # resident.set: not a knocker's
    answer = _answer(server.push(tk, knocker.id, own_ops(knocker)))
    assert answer["stored"] == 2
    codes = {r["op"]: r["code"] for r in answer["refused"]}
    assert codes == {f"{knocker.id}:3": "forbidden", f"{knocker.id}:4": "forbidden"}


def test_a_revoked_devices_relayed_ops_are_refused(server: Server, make_replica: ReplicaFactory) -> None:
    lost, carrier = make_replica("lost"), make_replica("carrier")
    tl, tc = server.enroll("lost"), server.enroll("carrier")
    server.pull(tl, lost.id)
    lost.tickets.submit(title="Made before the phone was lost", kind="repair", grid=GRID)
    server.storage.revoke("lost")
    answer = _answer(server.push(tc, carrier.id, own_ops(lost)))
    assert [r["code"] for r in answer["refused"]] == ["origin_revoked"]


def test_records_move_with_residents_and_escalations(server: Server, make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    ts = server.enroll("station")
    building = server.enroll("building", "grid_worker", "changnan/dorm/3")
    area = server.enroll("area", "grid_worker", "changnan/dorm")
    lane = server.enroll("lane", "grid_worker", "changnan/lane-7")
    wang = station.residents.register(name="Old Wang", grid=GRID)
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    station.visits.record(resident_id=wang.id, outcome="well")
    _answer(server.push(ts, station.id, own_ops(station)))
    assert len(server.pull_all(building, "b" * 16)) == 3 and server.pull_all(lane, "c" * 16) == []
    cursors = {t: server.pull(t, r)["cursor"] for t, r in ((building, "b" * 16), (area, "a" * 16), (lane, "c" * 16))}

    station.residents.edit(wang.id, grid="changnan/lane-7")  # Old Wang moved house
    station.residents.note(wang.id, "Moved to lane 7")
    station.visits.record(resident_id=wang.id, outcome="well")
    station.tickets.escalate(ticket.id, reason="Needs the whole dormitory")  # to the parent grid, changnan/dorm
    station.tickets.note(ticket.id, "Plumber booked")
    _answer(server.push(ts, station.id, own_ops(station)))

    def seen(token: str, replica_id: str) -> list[str]:
        return [op["kind"] for op in server.pull(token, replica_id, cursors[token])["ops"]]

    # both sides see a move; after it, only the new side sees the record
    assert seen(building, "b" * 16) == ["resident.set", "ticket.transition"]
    assert seen(area, "a" * 16) == ["resident.set", "ticket.transition", "ticket.note"]
    assert seen(lane, "c" * 16) == ["resident.set", "resident.note", "visit.create"]


def test_a_redaction_erases_personal_fields_on_the_server_too(server: Server, make_replica: ReplicaFactory) -> None:
    # the late device's note sorts before the redaction: its clock is a minute behind the station's
    station, late = make_replica("station", start_ms=START_MS + 60_000), make_replica("late")
    ts, tl = server.enroll("station"), server.enroll("late")
    wang = station.residents.register(name="Old Wang", grid=GRID, phone="+86 138 0000 0000")
    late.sync_with(station)
    late.residents.note(wang.id, "Lives with a cat")  # written before the redaction, pushed after it
    _answer(server.push(ts, station.id, own_ops(station)))  # stored, then erased by a later redaction
    station.residents.redact(wang.id, fields=["phone", "notes"], reason="Resident asked")
    _answer(server.push(ts, station.id, own_ops(station)))
    server.pull(tl, late.id)
    _answer(server.push(tl, late.id, own_ops(late)))
    ops = {op["kind"]: op for op in server.pull_all(server.enroll("reader"), "d" * 16)}
    assert ops["resident.create"]["body"]["phone"] is None
    assert ops["resident.create"]["body"]["name"] == "Old Wang"
    assert ops["resident.note"]["body"]["text"] is None
    again = _answer(server.push(tl, late.id, own_ops(late)))  # the unredacted copy is still the same op
    assert again["duplicates"] == 1


def test_each_push_reports_the_devices_health(server: Server, make_replica: ReplicaFactory) -> None:
    phone = make_replica("phone")
    token = server.enroll("phone", "grid_worker", "changnan")
    phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
    answer = _answer(
        server.push(token, phone.id, own_ops(phone), time_ms=START_MS - 3 * DAY, pending=7, oldest_unsent_ms=123)
    )
    assert abs(answer["clock_offset_ms"] - 3 * DAY) < 1000
    assert answer["server_time_ms"] - answer["clock_offset_ms"] == START_MS - 3 * DAY
    [health] = server.storage.devices()
    assert (health.replica_id, health.pending, health.oldest_unsent_ms) == (phone.id, 7, 123)
    assert health.clock_offset_ms == answer["clock_offset_ms"] and health.last_sync_at is not None


def test_a_device_moves_records_within_its_grids_or_up(server: Server, make_replica: ReplicaFactory) -> None:
    phone = make_replica("phone")
    token = server.enroll("phone", "grid_worker", "changnan/dorm/3")
    up = phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
    away = phone.tickets.submit(title="Noise", kind="dispute", grid=GRID)
    wang = phone.residents.register(name="Old Wang", grid=GRID)
    phone.tickets.escalate(up.id, reason="Needs the area's plumber")  # seq 4: up to changnan/dorm
    phone.tickets.escalate(away.id)  # seq 5: forged below to another community
    phone.residents.edit(wang.id, grid="xinan/lane-1")  # seq 6: moved out of the device's grids
    ops = own_ops(phone)
    ops[4] = sign({**ops[4], "body": {**ops[4]["body"], "to_grid": "xinan"}}, phone.device_key)
    ops[5] = sign(dict(ops[5]), phone.device_key)  # chained to the changed op 5, as the device would have
    answer = _answer(server.push(token, phone.id, ops))
    assert answer["stored"] == 4
    refused = {r["op"]: r for r in answer["refused"]}
    assert set(refused) == {f"{phone.id}:5", f"{phone.id}:6"}
    assert all(r["code"] == "forbidden" and "up to a parent grid" in r["reason"] for r in refused.values())


def test_ops_naming_a_record_of_another_type_are_refused(server: Server, make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    wang = station.residents.register(name="Old Wang", grid=GRID)
    station.visits.record(resident_id=wang.id, outcome="well")
    station.residents.note(wang.id, "Fine")
    ops = own_ops(station)
    key = station.device_key
    ops[2] = sign({**ops[2], "body": {**ops[2]["body"], "resident_id": ticket.id}}, key)  # a visit of a ticket
    ops[3] = sign({**ops[3], "eid": ticket.id}, key)  # a resident note on a ticket
    answer = _answer(server.push(token, station.id, ops))
    assert answer["stored"] == 2
    assert [(r["op"], r["code"]) for r in answer["refused"]] == [
        (f"{station.id}:3", "wrong_record"),
        (f"{station.id}:4", "wrong_record"),
    ]


def _links(server: Server, origin: str) -> dict[int, str | None]:
    """The links the server stored for ``origin``'s ops (read as a station device that sees everything)."""
    reader = server.storage.authenticate(server.enroll("reader"))
    page = server.storage.pull(reader, "f" * 16, 0, 10_000, 0, START_MS)
    return {row[1]: row[10] for row in page.rows if row[0] == origin}


def test_links_are_derived_stored_and_pulled_where_they_cannot_be_derived(
    server: Server, make_replica: ReplicaFactory
) -> None:
    from caresync.trust.signing import chain_link

    station, phone = make_replica("station"), make_replica("phone")
    ts, tp = server.enroll("station"), server.enroll("phone", "grid_worker", GRID)
    here = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    away = station.tickets.submit(title="Noise", kind="repair", grid="xinan")
    for i in range(3):
        station.tickets.note(here.id, f"here {i}")
        station.tickets.note(away.id, f"away {i}")
    ops = own_ops(station)
    assert _answer(server.push(ts, station.id, ops[:4], compact=True))["stored"] == 4  # links 2-4 derived
    assert _answer(server.push(ts, station.id, ops[4:], compact=True))["stored"] == 4  # link 5 sent
    stored = _links(server, station.id)
    assert stored == {op["seq"]: op.get("pd") for op in ops}
    assert stored[2] == chain_link(ops[0]).hex()
    # the phone sees one ticket: every other op, each sent with its link, and each checks
    for compact in (True, False):
        pulled = server.pull(tp, phone.id, compact=compact)["ops"]
        assert [op["seq"] for op in pulled] == [1, 3, 5, 7]
        assert all(("pd" in op) == (op["seq"] > 1) for op in pulled)
    phone.apply_ops(pulled)
    assert phone.tickets.get(here.id).title == "Leak"


def _a_run_of_notes(server: Server, make_replica: ReplicaFactory) -> tuple[Replica, str, list[dict[str, Any]]]:
    """A station device with a ticket and five notes on it (six ops in a run), its token, and the ops."""
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    for i in range(5):
        station.tickets.note(ticket.id, f"note {i}")
    return station, token, own_ops(station)


def test_a_forged_op_inside_a_run_is_refused_whole_and_named(server: Server, make_replica: ReplicaFactory) -> None:
    station, token, ops = _a_run_of_notes(server, make_replica)
    counts = server.counts()
    for compact in (False, True):
        altered = [dict(op) for op in ops]
        altered[2] = {**altered[2], "body": {"text": "never said"}}
        response = server.push(token, station.id, altered, compact=compact)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "bad_signature" and f"op {station.id}:3 (ticket.note)" in error["details"][0]["field"]
    assert server.counts() == counts


def test_ops_signed_after_another_history_are_a_fork(server: Server, make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    station.tickets.note(ticket.id, "first")
    station.tickets.note(ticket.id, "second")
    ops = own_ops(station)
    other = sign({**ops[1], "body": {"text": "another history"}}, station.device_key)
    follows_other = sign(dict(ops[2]), station.device_key)
    counts = server.counts()
    response = server.push(token, station.id, [ops[0], ops[1], follows_other])
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "op_fork" and error["details"][0]["op"] == f"{station.id}:2"
    assert server.counts() == counts
    assert other["seq"] == 2


def test_an_op_that_follows_another_op_than_the_one_held_is_a_fork(
    server: Server, make_replica: ReplicaFactory
) -> None:
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    station.tickets.note(ticket.id, "first")
    station.tickets.note(ticket.id, "second")
    ops = own_ops(station)
    assert _answer(server.push(token, station.id, ops[:2]))["stored"] == 2
    sign({**ops[1], "body": {"text": "another history"}}, station.device_key)  # op 2, signed twice
    follows_other = sign(dict(ops[2]), station.device_key)  # op 3, chained to the other op 2
    counts = server.counts()
    for compact in (False, True):
        response = server.push(token, station.id, [follows_other], compact=compact)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "op_fork" and error["details"][0]["op"] == f"{station.id}:2"
    assert server.counts() == counts
    assert _answer(server.push(token, station.id, ops[2:]))["stored"] == 1  # the op the device really made


def test_every_signature_the_server_keeps_is_checked(server: Server, make_replica: ReplicaFactory) -> None:
    """A run's last signature pins the content of the ops before it, not their own signatures; the server keeps
    those and sends each on alone where a pull filtered by scope breaks the run, so it checks every one."""
    import base64

    station, token, ops = _a_run_of_notes(server, make_replica)
    counts = server.counts()
    raw = bytearray(base64.b64decode(ops[2]["sig"]))
    raw[50] ^= 1
    flipped = {**ops[2], "sig": base64.b64encode(bytes(raw)).decode()}
    unsigned = {k: v for k, v in ops[2].items() if k != "sig"}
    for bad, why in ((flipped, "does not match its content"), (unsigned, "travelled without its signature")):
        for compact in (False, True):
            response = server.push(token, station.id, [*ops[:2], bad, *ops[3:]], compact=compact)
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "bad_signature"
            assert f"op {station.id}:3 (ticket.note)" in error["details"][0]["field"]
            assert why in error["details"][0]["problem"]
    assert server.counts() == counts


def test_a_forged_signature_in_a_large_batch_is_refused_whole(server: Server, make_replica: ReplicaFactory) -> None:
    """From 256 ops on, each op's own signature is checked on two threads, against the messages the check of the
    batch's links built: a bad one refuses the whole batch, named."""
    import base64

    station = make_replica("station")
    token = server.enroll("station")
    with station.batch():
        ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
        for i in range(299):
            station.tickets.note(ticket.id, f"note {i}")
    ops = own_ops(station)
    assert len(ops) == 300
    counts = server.counts()
    raw = bytearray(base64.b64decode(ops[250]["sig"]))
    raw[50] ^= 1
    altered = [*ops[:250], {**ops[250], "sig": base64.b64encode(bytes(raw)).decode()}, *ops[251:]]
    for compact in (False, True):
        response = server.push(token, station.id, altered, compact=compact)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "bad_signature"
        assert f"op {station.id}:251 (ticket.note)" in error["details"][0]["field"]
    assert server.counts() == counts
    assert _answer(server.push(token, station.id, ops))["stored"] == 300


def test_pull_answers_carry_one_signature_per_run(server: Server, make_replica: ReplicaFactory) -> None:
    from caresync.sync.wire import MEDIA_TYPE, decode_envelope

    station, reader, phone = make_replica("station"), make_replica("reader"), make_replica("phone")
    ts, tr, tp = server.enroll("station"), server.enroll("reader"), server.enroll("phone", "grid_worker", GRID)
    here = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    away = station.tickets.submit(title="Noise", kind="repair", grid="xinan")
    for i in range(4):
        station.tickets.note(here.id, f"here {i}")
        station.tickets.note(away.id, f"away {i}")
    assert _answer(server.push(ts, station.id, own_ops(station)))["stored"] == 10
    for compact in (True, False):
        everything = server.pull(tr, reader.id, compact=compact)["ops"]
        assert [("sig" in op) for op in everything] == [False] * 9 + [True]
        filtered = server.pull(tp, phone.id, compact=compact)["ops"]
        assert [op["seq"] for op in filtered] == [1, 3, 5, 7, 9]
        assert all("sig" in op for op in filtered)  # no op of the phone's follows another: each is a run
    reader.apply_ops(everything)
    phone.apply_ops(filtered)
    assert reader.state_digest() == station.state_digest()
    assert phone.tickets.get(here.id).title == "Leak"
    # the compact format follows what the device says it reads; a device from before format 3 gets format 2
    body = {"replica": reader.id, "cursor": "", "limit": 100, "time_ms": START_MS, "format": FORMAT_VERSION}
    for accept, fmt in ((MEDIA_TYPE, 2), (f"{MEDIA_TYPE};format=3", 3), (f"{MEDIA_TYPE};format=9", 2)):
        headers = {"Authorization": f"Bearer {tr}", "Accept": accept}
        response = server.client.post("/v1/pull", json=body, headers=headers)
        assert response.content[2] == fmt
        assert [("sig" in op) for op in decode_envelope(response.content)["ops"]] == [False] * 9 + [True]


def test_a_push_finds_ops_by_identity_without_scanning_the_log(server: Server, make_replica: ReplicaFactory) -> None:
    """A push reads the held ops next to its runs, the ops it may repeat and their refusals by ``(origin, seq)``:
    each must be a search of that index, not a scan of the whole log at every push (SQLite answers a row-value
    IN list with a scan)."""
    import sqlite3

    from sqlalchemy import event

    if server.settings.dialect != "sqlite":
        pytest.skip("the plans read here are SQLite's")
    station = make_replica("station")
    token = server.enroll("station")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    for i in range(5):
        station.tickets.note(ticket.id, f"note {i}")
    ops = own_ops(station)
    assert _answer(server.push(token, station.id, ops[:3]))["stored"] == 3
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany:
            statements.append((statement, parameters))

    engine = server.app.state.caresync.storage.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        # ops 2 and 3 again (held: read to compare), then 4 to 6 (the held op 3 is read for its link)
        assert _answer(server.push(token, station.id, ops[1:]))["stored"] == 3
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    by_identity = [(s, p) for s, p in statements if "seq = ?" in s or "seq) IN" in s]
    assert len(by_identity) >= 2, statements  # the neighbours' links and the held ops compared
    with sqlite3.connect(server.settings.database_url.removeprefix("sqlite:///")) as conn:
        plans = {s: " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {s}", p)) for s, p in by_identity}
    conn.close()
    assert not {s: plan for s, plan in plans.items() if "SCAN ops" in plan or "SCAN refusals" in plan}, plans
