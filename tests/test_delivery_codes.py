"""Delivery codes: the station sets a resident's code (kept only as a salted hash), the courier's delivery is
refused with a wrong one and records nothing, the code is never readable from files or ops; through the library
and through the installed ``caresync-courier``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caresync import Replica
from caresync.errors import InvalidInputError
from caresync.field import courier
from caresync.trust.codes import delivery_code_check, delivery_code_matches
from tests.conftest import ReplicaFactory

CODE = "Q7K4M2"


def _raw(replica: Replica) -> bytes:
    """Every byte the replica keeps on disk (the database, its -wal and -shm) and every op it would send."""
    on_disk = b"".join(p.read_bytes() for p in replica.path.parent.glob(replica.path.name + "*"))
    return on_disk + json.dumps(replica.export_ops()).encode()


def _out_for_delivery(replica: Replica, code: str, **register: str) -> None:
    replica.parcels.register(code=code, grid="changnan/b-3", direction="to_resident", **register)
    courier.pickup(replica, code)


@settings(max_examples=10, deadline=None)
@given(st.from_regex(r"[0-9A-Za-z]{4,12}", fullmatch=True), st.from_regex(r"[0-9A-Za-z]{4,12}", fullmatch=True))
def test_a_check_matches_its_code_only(code: str, other: str) -> None:
    check = delivery_code_check(code)
    assert delivery_code_matches(check, code) and delivery_code_matches(check, f" {code.lower()} ")
    assert delivery_code_matches(check, other) == (other.upper() == code.upper())
    assert code not in check and check != delivery_code_check(code)  # salted: the same code never hashes alike


def test_a_wrong_code_is_refused_and_records_nothing(make_replica: ReplicaFactory) -> None:
    chen = make_replica("chen", actor="chen")
    _out_for_delivery(chen, "E-1", delivery_code=CODE)
    before = chen.op_count()
    with pytest.raises(courier.CourierError, match="not the delivery code for parcel E-1") as refused:
        courier.deliver(chen, "E-1", confirm_code="0000")
    assert "不是邮件 E-1 的取件确认码" in refused.value.in_language("zh")
    with pytest.raises(InvalidInputError, match="not the delivery code"):
        chen.parcels.hop(chen.parcels.by_code("E-1").id, "delivered", confirm_code="0000")  # type: ignore[union-attr]
    assert chen.op_count() == before
    delivered = courier.deliver(chen, "E-1", confirm_code=CODE.lower())
    assert delivered.stage is not None and delivered.stage.value == "delivered"
    assert delivered.hops[-1].code_checked and delivered.hops[-1].confirm_code is None
    assert CODE.encode() not in _raw(chen) and CODE.lower().encode() not in _raw(chen)


def test_the_station_sets_a_code_later_and_it_travels_as_a_hash(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk")
    chen = make_replica("chen", actor="chen")
    parcel = station.parcels.register(code="E-2", grid="changnan/b-3", direction="to_resident")
    assert parcel.delivery_code_check is None
    station.parcels.set_delivery_code(parcel.id, "WQ4417")
    replaced = station.parcels.set_delivery_code(parcel.id, "WQ8826")  # a new slip replaces the old code
    assert replaced.delivery_code_check is not None
    with pytest.raises(InvalidInputError, match="4 to 12 letters or digits"):
        station.parcels.set_delivery_code(parcel.id, "12")
    chen.sync_with(station)
    courier.pickup(chen, "E-2")
    with pytest.raises(courier.CourierError, match="not the delivery code"):
        courier.deliver(chen, "E-2", confirm_code="WQ4417")
    assert courier.deliver(chen, "E-2", confirm_code="WQ8826").hops[-1].code_checked
    for replica in (station, chen):
        assert b"WQ4417" not in _raw(replica) and b"WQ8826" not in _raw(replica)


def test_a_parcel_with_no_code_set_keeps_the_old_rule(make_replica: ReplicaFactory) -> None:
    chen = make_replica("chen", actor="chen")
    _out_for_delivery(chen, "E-3")
    delivered = courier.deliver(chen, "E-3", confirm_code="1234")
    assert delivered.hops[-1].confirm_code == "1234" and not delivered.hops[-1].code_checked


def test_the_installed_courier_refuses_a_wrong_code_in_both_languages(tmp_path: Path) -> None:
    exe = shutil.which("caresync-courier", path=str(Path(sys.executable).parent))
    assert exe is not None, "caresync-courier is not installed beside this Python"
    home = tmp_path / "home"
    home.mkdir()
    with Replica.open(home / "courier.db", actor="courier") as replica:
        _out_for_delivery(replica, "E-5001", delivery_code="ZK7731")
        before = replica.op_count()
    env = {**os.environ, "CARESYNC_HOME": str(home)}
    env.pop("CARESYNC_LANG", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)
        assert "Traceback" not in done.stderr + done.stdout
        return done

    en = run("--lang", "en", "deliver", "E-5001", "--confirm", "1234")
    assert en.returncode == 1 and "1234 is not the delivery code for parcel E-5001" in en.stderr
    zh = run("--lang", "zh", "deliver", "E-5001", "--confirm", "1234")
    assert zh.returncode == 1 and "不是邮件 E-5001 的取件确认码" in zh.stderr
    as_json = run("--json", "deliver", "E-5001", "--confirm", "1234")
    assert json.loads(as_json.stdout)["error"]["code"] == "courier_refused"
    with Replica.open(home / "courier.db", actor="courier") as replica:
        assert replica.op_count() == before
    ok = run("--lang", "en", "deliver", "E-5001", "--confirm", "ZK7731")
    assert ok.returncode == 0 and "delivery code matched" in ok.stdout and "ZK7731" not in ok.stdout
    on_disk = b"".join(p.read_bytes() for p in home.glob("courier.db*"))
    assert b"ZK7731" not in on_disk


def test_two_stations_setting_a_code_at_once_agree_on_one(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk", actor="clerk")
    office = make_replica("office", actor="li")
    parcel = desk.parcels.register(code="E-4", grid="changnan/b-3", direction="to_resident")
    office.sync_with(desk)
    desk.parcels.set_delivery_code(parcel.id, "1111")
    office.parcels.set_delivery_code(parcel.id, "2222")
    desk.sync_with(office)
    office.sync_with(desk)
    check = desk.parcels.get(parcel.id).delivery_code_check
    assert check is not None and office.parcels.get(parcel.id).delivery_code_check == check
    # salt and hash travel as one value: exactly one of the two codes opens it, never a mix of both
    assert [delivery_code_matches(check, c) for c in ("1111", "2222")].count(True) == 1


def test_codes_travel_through_a_real_server(tmp_path: Path) -> None:
    from caresync_server.testing import ServerProcess

    from tests.server_support import enroll

    database = f"sqlite:///{tmp_path / 'server.db'}"
    station_token = enroll(database, "station-d", role="station", grids=[""])
    courier_token = enroll(database, "courier-d", role="courier", grids=["changnan"])
    process = ServerProcess(database, tmp_path).start()
    try:
        with (
            Replica.open(tmp_path / "desk.db", actor="clerk") as desk,
            Replica.open(tmp_path / "chen.db", actor="chen") as chen,
        ):
            desk.parcels.register(code="E-5", grid="changnan/b-3", direction="to_resident", delivery_code="ZX5150")
            desk.sync(process.url, token=station_token)
            chen.sync(process.url, token=courier_token)
            courier.pickup(chen, "E-5")
            with pytest.raises(courier.CourierError, match="not the delivery code"):
                courier.deliver(chen, "E-5", confirm_code="ZX5151")
            assert courier.deliver(chen, "E-5", confirm_code="ZX5150").hops[-1].code_checked
            chen.sync(process.url, token=courier_token)
            desk.sync(process.url, token=station_token)
            assert desk.parcels.by_code("E-5").stage.value == "delivered"  # type: ignore[union-attr]
    finally:
        process.stop()
    assert b"ZX5150" not in b"".join(p.read_bytes() for p in tmp_path.glob("server.db*"))
