"""The courier's rules in the library and the chain of custody as the station sees it: hops that do not add up
are conflicts to review; a refused action records nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from caresync import InvalidInputError, StationKey
from caresync.cli.courier import cli
from caresync.field import courier, custody
from caresync.testing import FakeClock
from tests.conftest import ReplicaFactory

HOUR = 3_600_000


def _codes(anomalies: list[custody.CustodyAnomaly]) -> list[tuple[str, str]]:
    return sorted((a.parcel_code, a.code) for a in anomalies)


def test_two_couriers_picking_up_one_parcel_and_a_delivery_never_handed_in(make_replica: ReplicaFactory) -> None:
    clock = FakeClock()
    station = make_replica("station", actor="clerk", clock=clock)
    a = make_replica("a", actor="courier-a", clock=clock)
    b = make_replica("b", actor="courier-b", clock=clock)
    box = station.mailboxes.add(code="MB-1", name="Lane 1", grid="changnan/lane-1")
    parcel = station.parcels.register(code="E-1", grid="changnan/lane-1", mailbox_id=box.id)
    station.parcels.hop(parcel.id, "dropped", place="MB-1")
    for r in (a, b):
        r.sync_with(station)
    courier.pickup(a, "E-1", mailbox="MB-1")
    courier.pickup(b, "E-1", mailbox="MB-1")  # offline: neither knows of the other
    station.sync_with(a)
    station.sync_with(b)
    assert ("E-1", "picked_up_twice") in _codes(custody.anomalies(station))

    # a to_station parcel that reaches a door without the station receipting it
    other = station.parcels.register(code="E-2", grid="changnan/lane-1", mailbox_id=box.id)
    station.parcels.hop(other.id, "picked_up", actor="courier-a")
    station.parcels.hop(other.id, "out_for_delivery", actor="courier-a")
    station.parcels.hop(other.id, "delivered", confirm_code="1234", actor="courier-a")
    found = {a.parcel_code: a for a in custody.anomalies(station) if a.code == "delivered_not_handed_in"}
    assert list(found) == ["E-2"] and "courier-a" in found["E-2"].message

    # the same envelope code registered twice, on two handhelds
    courier.pickup(a, "E-3", mailbox="MB-1")
    courier.pickup(b, "E-3", mailbox="MB-1")
    station.sync_with(a)
    station.sync_with(b)
    assert [c for p, c in _codes(custody.anomalies(station)) if p == "E-3"] == ["duplicate_code", "duplicate_code"]


def test_hand_in_is_two_sided_and_a_self_receipt_is_flagged(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk")
    chen = make_replica("chen", actor="chen")
    station.mailboxes.add(code="MB-1", name="Lane 1", grid="changnan/lane-1")
    chen.sync_with(station)
    courier.pickup(chen, "E-1", mailbox="MB-1")
    parcel = courier.handover(chen, "E-1")
    assert custody.handover_pending(parcel) and custody.custodian(parcel) == "chen"
    with pytest.raises(courier.CourierError, match="this very device"):
        courier.confirm_handover(chen, "E-1")
    with pytest.raises(courier.CourierError, match="waits for the station"):
        courier.pickup(chen, "E-1")
    station.sync_with(chen)
    done = courier.confirm_handover(station, "E-1")
    assert not custody.handover_pending(done) and custody.custodian(done) == "clerk"
    assert done.conflicts == [] and custody.anomalies(station) == []

    # a courier who "receipts" their own hand-in with a second hop on their own device is caught
    courier.pickup(chen, "E-2", mailbox="MB-1")
    courier.handover(chen, "E-2")
    parcel_id = chen.parcels.by_code("E-2").id  # type: ignore[union-attr]
    chen.parcels.hop(parcel_id, "handed_in", place="station")
    assert ("E-2", "self_receipted") in _codes(custody.anomalies(chen))


def test_refused_actions_record_nothing(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk")
    chen = make_replica("chen", actor="chen")
    station.mailboxes.add(code="MB-1", name="Lane 1", grid="changnan/lane-1")
    chen.sync_with(station)
    before = chen.op_count()
    with pytest.raises(courier.CourierError, match="cannot seal"):
        courier.pickup(chen, "E-1", mailbox="MB-1", contents="plaintext must never be stored")
    with pytest.raises(courier.CourierError, match="No mailbox"):
        courier.pickup(chen, "E-1", mailbox="MB-404")
    with pytest.raises(courier.CourierError, match="No parcel"):
        courier.deliver(chen, "E-404", confirm_code="1234")
    with pytest.raises(courier.CourierError, match="not a kind of report"):
        courier.report(chen, "gossip", "x", grid="changnan")
    with pytest.raises(InvalidInputError, match="grid"):
        courier.report(chen, "emergency", "fire in the stairwell", grid="/bad//grid")
    assert chen.op_count() == before
    courier.remember_station_key(chen, StationKey.generate().public_key)
    courier.pickup(chen, "E-1", mailbox="MB-1", contents="sealed now")
    with pytest.raises(courier.CourierError, match="not by you"):
        courier.deliver(chen, "E-1", confirm_code="1234")  # picked up, not out for delivery
    with pytest.raises(courier.CourierError, match="already picked_up by chen"):
        courier.pickup(chen, "E-1", mailbox="MB-1")
    station.sync_with(chen)
    with pytest.raises(courier.CourierError, match="not by you"):
        courier.handover(station, "E-1")  # the clerk does not hold it
    on_disk = b"".join(p.read_bytes() for p in chen.path.parent.glob(chen.path.name + "*"))
    assert b"sealed now" not in on_disk and b"plaintext must never" not in on_disk


def test_route_groups_by_mailbox_and_building_due_ones_first(make_replica: ReplicaFactory) -> None:
    clock = FakeClock()
    station = make_replica("station", actor="clerk", clock=clock)
    old_box = station.mailboxes.add(code="MB-OLD", name="Old lane", grid="changnan/lane-1")
    new_box = station.mailboxes.add(code="MB-NEW", name="New lane", grid="changnan/lane-2")
    for code, box in (("N-1", new_box), ("O-1", old_box), ("N-2", new_box)):
        if code == "O-1":
            clock.advance(-30 * HOUR)  # dropped 30 hours before the others
        p = station.parcels.register(code=code, grid=box.grid, mailbox_id=box.id)
        station.parcels.hop(p.id, "dropped", place=box.code)
        if code == "O-1":
            clock.advance(30 * HOUR)
    out = station.parcels.register(code="D-1", grid="changnan/lane-3/7", direction="to_resident")
    station.parcels.hop(out.id, "out_for_delivery", actor="clerk")
    stops = courier.route(station, now_ms=clock.ms)
    assert [(s.action, s.place, s.due) for s in stops] == [
        ("pickup", "MB-OLD", True),
        ("pickup", "MB-NEW", False),
        ("deliver", "changnan/lane-3/7", False),
    ]
    assert [p.code for p in stops[1].parcels] == ["N-1", "N-2"]


@pytest.mark.parametrize(
    ("lang", "args", "expected"),
    [
        ("zh", ["pikup"], "没有这个命令：pikup。你是不是想输入 pickup？"),
        ("en", ["pikup"], "No such command 'pikup'"),
        ("zh", ["deliver", "E-1"], "缺少选项 --confirm。"),
        ("en", ["report", "gossip", "x", "--grid", "a"], "Usage error"),
    ],
)
def test_wrong_commands_get_a_short_message_in_the_language(
    tmp_path: Path, lang: str, args: list[str], expected: str
) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "--lang", lang, *args])
    assert result.exit_code == 2
    assert expected in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_enroll_refuses_a_wrong_address_or_a_mistyped_code_before_sending_anything(tmp_path: Path) -> None:
    bad = CliRunner().invoke(cli, ["--home", str(tmp_path), "enroll", "not-a-url", "X1", "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["error"]["code"] == "bad_url"
    typo = CliRunner().invoke(cli, ["--home", str(tmp_path), "--lang", "en", "enroll", "http://127.0.0.1:9", "K7QM"])
    assert typo.exit_code == 1 and "Traceback" not in typo.output and "code" in typo.output.lower()


def test_the_station_side_bundle_commands(tmp_path: Path, make_replica: ReplicaFactory) -> None:
    from caresync.cli import main as station_cli

    device = make_replica("device")
    device.parcels.register(code="E-1", grid="changnan/lane-1")
    path = str(device.path)
    device.close()
    runner = CliRunner()
    made = runner.invoke(station_cli, ["bundle", "export", str(tmp_path / "d.bundle"), "--db", path, "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["ops"] == 1
    said = runner.invoke(station_cli, ["--lang", "zh", "--db", path, "bundle", "export", str(tmp_path / "e.bundle")])
    assert said.exit_code == 0 and "已把 1 条未发送的变更写入" in said.output
    wrong = runner.invoke(station_cli, ["--lang", "en", "bundle", "import", str(tmp_path / "d.bundle"), "--db", path])
    assert wrong.exit_code == 1 and "give it to a courier" in wrong.output and "Traceback" not in wrong.output
    missing = runner.invoke(
        station_cli, ["bundle", "export", str(tmp_path / "f.bundle"), "--db", str(tmp_path / "no.db")]
    )
    assert missing.exit_code == 1 and not (tmp_path / "no.db").exists()


def test_the_station_checks_that_the_contents_sealed_at_pickup_arrived_intact(make_replica: ReplicaFactory) -> None:
    from caresync import TrustError

    station_key = StationKey.generate()
    station, chen, stray = make_replica("station"), make_replica("chen"), make_replica("stray")
    station.install_station_key(station_key)
    station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
    chen.sync_with(station)
    stray.sync_with(station)
    courier.remember_station_key(chen, station_key.public_key)
    courier.remember_station_key(stray, StationKey.generate().public_key)  # set up with another station's key
    good = courier.pickup(chen, "E-1", mailbox="MB-07", contents="低保证明 for Mrs Zhou")
    bad = courier.pickup(stray, "E-2", mailbox="MB-07", contents="pension form")
    for device in (chen, stray):
        device.sync_with(station)

    assert [c.intact for c in custody.check_contents(station, good.id)] == [True]
    assert [(c.who, c.intact) for c in custody.check_contents(station, bad.id)] == [("stray", False)]
    assert station.parcels.get(good.id).hops[-1].contents == "低保证明 for Mrs Zhou"  # the station reads it
    with pytest.raises(TrustError, match="station device"):
        custody.check_contents(chen, good.id)  # a courier can neither read nor check it

    station.install_station_key(StationKey.generate())  # a rotation: the desk keeps the old key to open what it sealed
    assert [(c.text, c.intact) for c in custody.check_contents(station, good.id)] == [("低保证明 for Mrs Zhou", True)]


def test_a_parcel_for_a_door_taken_out_at_the_station_is_no_custody_conflict(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk")
    chen = make_replica("chen", actor="chen")
    station.parcels.register(code="D-1", grid="changnan/lane-3/7", direction="to_resident")
    station.parcels.register(code="D-2", grid="changnan/lane-3/7", direction="to_resident")
    chen.sync_with(station)
    assert [(s.action, s.place, [p.code for p in s.parcels]) for s in courier.route(chen)] == [
        ("collect", "station", ["D-1", "D-2"])
    ]
    taken = courier.pickup(chen, "D-1")  # registered at the station for a door: it starts there
    assert taken.conflicts == [] and custody.anomalies(chen) == []
    station.sync_with(chen)
    assert custody.anomalies(station) == []
    assert [(s.action, [p.code for p in s.parcels]) for s in courier.route(chen)] == [
        ("collect", ["D-2"]),
        ("deliver", ["D-1"]),
    ]


def test_the_station_records_a_hop_refusing_one_out_of_order(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk")
    door = station.parcels.register(code="D-1", grid="changnan/lane-3/7", direction="to_resident", delivery_code="K7AB")
    before = station.parcels.get(door.id)
    with pytest.raises(courier.CourierError, match=r"D-1 is registered; delivered does not follow .* out_for_delivery"):
        courier.record_hop(station, "D-1", "delivered", confirm_code="K7AB")
    with pytest.raises(courier.CourierError, match="Say why parcel D-1 comes back"):
        courier.record_hop(station, "D-1", "returned")
    assert station.parcels.get(door.id) == before  # refused: nothing recorded
    courier.record_hop(station, "D-1", "out_for_delivery", place="station")
    with pytest.raises(courier.CourierError, match="0000 is not the delivery code"):
        courier.record_hop(station, "D-1", "delivered", confirm_code="0000")
    done = courier.record_hop(station, "D-1", "delivered", confirm_code="K7AB")
    assert [h.stage.value for h in done.hops] == ["out_for_delivery", "delivered"] and done.hops[-1].code_checked
    assert custody.anomalies(station) == []
    courier.record_hop(station, "D-1", "returned", reason="the resident gave it back", anyway=True)
    assert _codes(custody.anomalies(station)) == [("D-1", "custody_conflict")]

    chen = make_replica("chen", actor="chen")
    station.mailboxes.add(code="MB-1", name="Lane 1", grid="changnan/lane-1")
    chen.sync_with(station)
    courier.pickup(chen, "E-1", mailbox="MB-1")
    courier.handover(chen, "E-1")
    station.sync_with(chen)
    with pytest.raises(courier.CourierError, match="caresync parcel receipt E-1"):
        courier.record_hop(station, "E-1", "handed_in")
