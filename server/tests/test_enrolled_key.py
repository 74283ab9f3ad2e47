"""The secrets a device keeps, and the key it enrolled with (issue 16), against a real server process.

* An enrolled device's replica file holds its signing seed and its token: the file, its -wal and its -shm are its
  owner's only (0600), and a file made before that is tightened when it is opened.
* Push and relay check each op's signature against the whole key the device enrolled with, not only against the
  64-bit fingerprint that is its replica id: the server's record of the enrolled key is set to another key of the
  same origin (what a fingerprint collision would give an attacker), and the device's genuine ops are then
  refused, pushed or relayed.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from caresync import Replica, StationKey
from caresync.sync.bundles.relay import make_bundle
from caresync.sync.enrolment import current_token
from caresync.testing import FakeClock
from caresync.trust.keys import DeviceKey
from sqlalchemy import text

from caresync_server.settings import Settings
from caresync_server.storage import Storage
from caresync_server.testing import ServerProcess, enroll, issue_code, register_station_key
from support import GRID, own_ops


class Station:
    """A real server process over SQLite, and a way to reach its database."""

    def __init__(self, workdir: Path) -> None:
        self.url = f"sqlite:///{workdir / 'server.db'}"
        register_station_key(self.url, StationKey.generate().public_key)  # devices seal their free text
        self.courier = enroll(self.url, "courier-zhao", role="courier", grids=[""])
        self.process = ServerProcess(self.url, workdir).start()

    def rebind_key(self, device: str, key: DeviceKey) -> None:
        """Sets the key the server holds for ``device``, as a fingerprint collision would let an attacker sign."""
        storage = Storage(Settings(database_url=self.url))
        try:
            with storage.engine.begin() as conn:
                conn.execute(
                    text("UPDATE devices SET public_key = :k WHERE name = :n"), {"k": key.public_key.hex(), "n": device}
                )
        finally:
            storage.close()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    server = Station(tmp_path)
    yield server
    server.process.stop()


def _enrolled(station: Station, tmp_path: Path, name: str) -> Replica:
    device = Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock(1_796_083_200_000))
    device.enroll(station.process.url, issue_code(station.url, name, role="grid_worker", grids=[GRID]))
    return device


def _modes(path: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.glob(path.name + "*") if p.is_file()}


def test_an_enrolled_devices_replica_file_is_its_owners_only(station: Station, tmp_path: Path) -> None:
    device = _enrolled(station, tmp_path, "phone-grid-li")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        device.sync()
        path = tmp_path / "phone-grid-li.db"
        modes = _modes(path)
        assert {"phone-grid-li.db", "phone-grid-li.db-wal", "phone-grid-li.db-shm"} <= set(modes), modes
        assert set(modes.values()) == {0o600}, modes
    finally:
        device.close()


def test_a_replica_file_made_open_to_others_is_tightened_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Replica.open(path, actor="old").close()
    path.chmod(0o644)
    device = Replica.open(path, actor="old")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        assert set(_modes(path).values()) == {0o600}, _modes(path)
    finally:
        device.close()


def test_a_push_signed_by_another_key_than_the_enrolled_one_is_refused(station: Station, tmp_path: Path) -> None:
    device = _enrolled(station, tmp_path, "phone-grid-li")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        station.rebind_key("phone-grid-li", DeviceKey.generate())
        body = {"replica": device.id, "time_ms": 1_796_083_200_000, "ops": own_ops(device)}
        headers = {"Authorization": f"Bearer {current_token(device)}"}
        answer = httpx.post(station.process.url + "/v1/push", json=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "bad_signature"
        assert "enrolled with" in answer.json()["error"]["message"]
    finally:
        device.close()


def test_a_bundle_signed_by_another_key_than_the_enrolled_one_is_refused(station: Station, tmp_path: Path) -> None:
    device = _enrolled(station, tmp_path, "kiosk")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        bundle = make_bundle(device)
    finally:
        device.close()
    station.rebind_key("kiosk", DeviceKey.generate())
    answer = httpx.post(
        station.process.url + "/v1/relay",
        json={"bundle": bundle},
        headers={"Authorization": f"Bearer {station.courier}"},
    ).json()
    assert answer["status"] == "refused" and answer["code"] == "bundle_forged", answer
    assert "enrolled with" in answer["reason"]
