"""Nothing wedges and nothing is taken silently (issue 16), with a real server process where one is involved.

* A courier's bag keeps bundles by id and signer: a fake bundle that reuses a genuine bundle's id, signed by
  another device, is taken first, and the genuine one is still taken, delivered, and its work stored.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from caresync import Replica, StationKey
from caresync.core.ops import FORMAT_VERSION
from caresync.sync.bundles.bag import BAG_SCHEMA_VERSION, Bag
from caresync.sync.bundles.format import canonical
from caresync.sync.bundles.relay import deliver, make_bundle
from caresync.testing import FakeClock

from caresync_server.testing import ServerProcess, enroll, issue_code, register_station_key
from support import GRID, START_MS


class Station:
    """A real server process over SQLite with a station and a courier enrolled."""

    def __init__(self, workdir: Path) -> None:
        self.url = f"sqlite:///{workdir / 'server.db'}"
        self.key = StationKey.generate()
        register_station_key(self.url, self.key.public_key)  # devices seal their free text
        self.station = enroll(self.url, "station", role="station", grids=[""])
        self.courier = enroll(self.url, "courier-zhao", role="courier", grids=[""])
        self.process = ServerProcess(self.url, workdir).start()

    def device(self, workdir: Path, name: str) -> Replica:
        device = Replica.open(workdir / f"{name}.db", actor=name, now_ms=FakeClock(START_MS))
        device.enroll(self.process.url, issue_code(self.url, name, role="grid_worker", grids=[GRID]))
        return device


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    server = Station(tmp_path)
    yield server
    server.process.stop()


def _write(path: Path, bundle: dict[str, object]) -> Path:
    path.write_bytes(canonical(bundle))
    return path


def test_a_fake_bundle_with_a_genuine_id_never_shadows_the_genuine_one(station: Station, tmp_path: Path) -> None:
    kiosk = station.device(tmp_path, "kiosk")
    faker = Replica.open(tmp_path / "faker.db", actor="faker", now_ms=FakeClock(START_MS))
    try:
        kiosk.residents.register(name="Old Wang", grid=GRID)
        genuine = make_bundle(kiosk)
        faker.residents.register(name="Nobody", grid=GRID)
        fake = make_bundle(faker)
        del fake["sig"]
        fake["id"] = genuine["id"]  # the genuine bundle's id, signed by the faker's own key: a valid signature
        fake["sig"] = faker.device_key.sign(canonical(fake)).hex()
        now = int(time.time() * 1000)
        with Bag(tmp_path / "bag.db") as bag:
            _, new = bag.take(_write(tmp_path / "fake.json", fake), now_ms=now)
            assert new
            carried, new = bag.take(_write(tmp_path / "genuine.json", genuine), now_ms=now)
            assert new and carried.origin == kiosk.id  # taken, not "already in the bag"
            outcomes = {
                d.origin: d
                for d in deliver(bag, station.process.url, token=station.courier, courier="zhao", now_ms=now)
            }
            assert outcomes[kiosk.id].status == "delivered" and outcomes[kiosk.id].stored == 1
            assert outcomes[faker.id].status == "refused"  # a device the server does not know
            assert bag.get(genuine["id"], origin=kiosk.id).status == "delivered"
    finally:
        kiosk.close()
        faker.close()
    pulled = httpx.post(
        station.process.url + "/v1/pull",
        json={"replica": "0" * 16, "time_ms": START_MS},
        headers={"Authorization": f"Bearer {station.station}"},
    ).json()
    assert [op["kind"] for op in pulled["ops"] if op["origin"] == genuine["origin"]] == ["resident.create"]


def test_a_bag_of_the_previous_version_is_migrated_keeping_its_bundles(tmp_path: Path) -> None:
    device = Replica.open(tmp_path / "kiosk.db", actor="kiosk", now_ms=FakeClock(START_MS))
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        bundle = make_bundle(device)
    finally:
        device.close()
    path = tmp_path / "old-bag.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE bundles (id TEXT PRIMARY KEY, origin TEXT NOT NULL, ops INTEGER NOT NULL, created_ms INTEGER "
        "NOT NULL, expires_ms INTEGER NOT NULL, imported_ms INTEGER NOT NULL, delivered_ms INTEGER, status TEXT NOT "
        "NULL, reason TEXT, body TEXT NOT NULL); PRAGMA user_version = 1;"
    )
    db.execute(
        "INSERT INTO bundles VALUES (?, ?, 1, ?, ?, ?, NULL, 'carried', NULL, ?)",
        (bundle["id"], bundle["origin"], START_MS, bundle["expires_ms"], START_MS, json.dumps(bundle)),
    )
    db.commit()
    db.close()
    with Bag(path) as bag:
        [carried] = bag.carried()
        assert (carried.id, carried.origin, carried.status) == (bundle["id"], bundle["origin"], "carried")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == BAG_SCHEMA_VERSION


def test_peer_to_peer_sync_applies_the_receiving_devices_role_and_grids(station: Station, tmp_path: Path) -> None:
    """A courier's replica that syncs with a grid worker's takes parcels, never tickets or residents; a grid
    worker takes only its own grids from a station's file; the station's file (not enrolled) takes everything."""
    desk = Replica.open(tmp_path / "desk.db", actor="desk", now_ms=FakeClock(START_MS))
    courier = Replica.open(tmp_path / "courier.db", actor="courier", now_ms=FakeClock(START_MS))
    courier.enroll(station.process.url, issue_code(station.url, "courier-chen", role="courier", grids=[GRID]))
    worker = station.device(tmp_path, "phone-grid-li")
    try:
        wang = desk.residents.register(name="Old Wang", grid=GRID, phone="+86 138 0000 0000")
        zhao = desk.residents.register(name="Old Zhao", grid="changnan/other", phone="+86 139 0000 0000")
        ticket = desk.tickets.submit(title="Leak", kind="repair", grid=GRID, resident_id=wang.id)
        desk.tickets.note(ticket.id, "Plumber booked")
        desk.visits.record(resident_id=wang.id, outcome="well")
        desk.visits.record(resident_id=zhao.id, outcome="well")
        parcel = desk.parcels.register(code="P-1", grid=GRID, resident_id=wang.id)

        worker.sync_with(desk)
        assert [r.id for r in worker.residents.list()] == [wang.id]
        assert [t.id for t in worker.tickets.list()] == [ticket.id]
        assert {v.resident_id for v in worker.visits.list()} == {wang.id}
        assert worker.parcels.list() == []  # a grid worker does not hold parcels

        courier.sync_with(worker)
        courier.sync_with(desk)
        assert courier.residents.list() == [] and courier.tickets.list() == [] and courier.visits.list() == []
        assert [p.id for p in courier.parcels.list()] == [parcel.id]

        desk.sync_with(worker)  # the station's own file takes everything, and gives the worker nothing new
        assert len(desk.residents.list()) == 2 and len(worker.residents.list()) == 1
    finally:
        for replica in (desk, courier, worker):
            replica.close()


def test_a_device_with_a_damaged_op_of_its_own_quarantines_it_and_is_not_wedged(
    station: Station, tmp_path: Path
) -> None:
    """One damaged byte in one of a device's own unsent ops: its sync no longer fails (pulls included); the op
    is listed in ``refusals()`` as ``corrupted`` and never sent; a signed statement that it is lost takes its place,
    so the ops the device made before and after it reach the server, and another device checks the chain through
    it."""
    phone = station.device(tmp_path, "phone-grid-li")
    desk = Replica.open(tmp_path / "desk.db", actor="desk", now_ms=FakeClock(START_MS))
    try:
        before = phone.residents.register(name="Old Li", grid=GRID)
        damaged = phone.residents.register(name="Old Wang", grid=GRID)
        after = phone.residents.register(name="Old Zhao", grid=GRID)
        desk.install_station_key(station.key)  # the station's desk: it seals, and reads, with the station key
        sun = desk.residents.register(name="Old Sun", grid=GRID)
        desk.sync(station.process.url, token=station.station)
        phone.close()
        db = sqlite3.connect(tmp_path / "phone-grid-li.db")  # one byte of the file, as a failing card would
        [(origin, seq, raw)] = db.execute("SELECT origin, seq, body FROM ops WHERE eid = ?", (damaged.id,)).fetchall()
        body = json.loads(raw)
        name, middle = body["name"], len(body["name"]) // 2  # the sealed name, still well-formed, one character off
        body["name"] = name[:middle] + ("A" if name[middle] != "A" else "B") + name[middle + 1 :]
        db.execute("UPDATE ops SET body = ? WHERE origin = ? AND seq = ?", (json.dumps(body), origin, seq))
        db.commit()
        db.close()
        phone = Replica.open(tmp_path / "phone-grid-li.db", actor="phone-grid-li", now_ms=FakeClock(START_MS))
        for _ in range(2):  # and again: it stays quarantined, and the sync keeps working
            result = phone.sync()
        [refusal] = phone.refusals()
        assert refusal.code == "corrupted" and refusal.record == damaged.id
        assert any(r.code == "corrupted" for r in result.refused) or result.refused == []
        assert sun.id in {r.id for r in phone.residents.list()}  # the pull went through (the name sealed to the desk)
        held = httpx.post(
            station.process.url + "/v1/pull",
            json={"replica": desk.id, "time_ms": START_MS, "format": FORMAT_VERSION},
            headers={"Authorization": f"Bearer {station.station}"},
        ).json()["ops"]
        lost = f"lost-{phone.id}-{seq}"
        assert [op["eid"] for op in held if op["origin"] == phone.id] == [before.id, lost, after.id]
        assert phone.unsent_count() == 0  # the op after the damaged one went too, behind the lost-op statement
        assert refusal.kind == "resident.create" and "lost" in refusal.reason
        desk.sync(station.process.url, token=station.station)  # the chain checks through the statement
        assert {r.id for r in desk.residents.list()} >= {before.id, after.id} and damaged.id not in {
            r.id for r in desk.residents.list()
        }
        assert damaged.id not in {r.id for r in phone.residents.list()}  # the lost change is gone here too
    finally:
        phone.close()
        desk.close()
