"""POST /v1/pull: scope by role and grid, the cursor, paging, limits, compression."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from caresync.trust.signing import verify_ops

from caresync_server import storage
from caresync_server.settings import Settings
from support import GRID, START_MS, ReplicaFactory, Server, keys, own_ops


def _world(server: Server, make_replica: ReplicaFactory) -> dict[str, list[tuple[str, int]]]:
    """A station's day in two grids; returns the op identities by record type."""
    station = make_replica("station")
    token = server.enroll("station-desk")
    wang = station.residents.register(name="Old Wang", grid=GRID)
    station.residents.register(name="Far Away", grid="xinan/lane-1")
    station.tickets.submit(title="Leak", kind="repair", grid=GRID)
    station.tickets.submit(title="Noise", kind="dispute", grid="xinan/lane-1")
    station.visits.record(resident_id=wang.id, outcome="well")
    box = station.mailboxes.add(code="MB-7", name="Lane 7 mailbox", grid="changnan/lane-7")
    station.parcels.register(code="P-1", grid="changnan/lane-7", mailbox_id=box.id)
    station.parcels.register(code="P-2", grid="xinan/lane-1")
    station.workers.add(name="Li", role="grid_worker", grids=[GRID])
    ops = own_ops(station)
    assert server.push(token, station.id, ops).status_code == 200
    by_type: dict[str, list[tuple[str, int]]] = {}
    for op in ops:
        by_type.setdefault(op["kind"].split(".")[0], []).append((op["origin"], op["seq"]))
    return by_type


def test_each_device_pulls_its_roles_record_types_within_its_grids(
    server: Server, make_replica: ReplicaFactory
) -> None:
    ops = _world(server, make_replica)

    devices = iter(range(1, 100))

    def pulled(role: str, *grids: str) -> set[tuple[str, int]]:
        n = next(devices)
        return set(keys(server.pull_all(server.enroll(f"device-{n}", role, *grids), f"{n:016x}")))

    assert pulled("admin", "") == {k for found in ops.values() for k in found}
    assert pulled("grid_worker", "changnan") == {
        ops["resident"][0],
        ops["ticket"][0],
        *ops["visit"],
        *ops["worker"],  # workers belong to no grid: the role alone decides
    }
    assert pulled("knocker", "changnan/dorm") == {ops["resident"][0], *ops["visit"]}
    assert pulled("mediator", "xinan") == {ops["ticket"][1]}  # its disputes: no residents, no other tickets
    assert pulled("mediator", "changnan") == set()  # the repair there is not a dispute
    assert pulled("courier", "changnan/lane-7", "xinan/lane-1") == {*ops["mailbox"], *ops["parcel"]}
    assert pulled("courier", "changnan/lane") == set()  # a prefix of a name is not a parent grid
    assert pulled("station", "changnan/dorm/3") == {
        ops["resident"][0],
        ops["ticket"][0],
        *ops["visit"],
        *ops["worker"],
    }


def test_paging_with_a_small_limit_returns_every_op_once_in_order(server: Server, make_replica: ReplicaFactory) -> None:
    ops = _world(server, make_replica)
    token = server.enroll("reader", "admin", "")
    for limit in (1, 2, 3):
        seen = server.pull_all(token, "f" * 16, limit=limit)
        assert len(seen) == sum(len(v) for v in ops.values())
        assert len(set(keys(seen))) == len(seen)
    first = server.pull(token, "f" * 16, limit=4)
    assert len(first["ops"]) == 4 and first["more"] is True
    rest = server.pull(token, "f" * 16, first["cursor"], limit=1000)
    assert keys(first["ops"] + rest["ops"]) == keys(server.pull(token, "f" * 16)["ops"])


def test_a_narrow_scope_still_moves_the_cursor_past_what_it_may_not_see(
    server: Server, make_replica: ReplicaFactory
) -> None:
    _world(server, make_replica)
    token, reader = server.enroll("courier", "courier", "nowhere"), server.enroll("reader")
    answer = server.pull(token, "a" * 16, limit=2)
    assert answer["ops"] == [] and answer["more"] is False
    assert server.pull(token, "a" * 16, answer["cursor"])["cursor"] == answer["cursor"]
    assert server.pull(reader, "b" * 16, answer["cursor"])["ops"] == []  # it moved past everything there is


def test_the_limit_is_capped_by_the_server(tmp_path: Path, make_replica: ReplicaFactory) -> None:
    server = Server(Settings(database_url=f"sqlite:///{tmp_path / 'capped.db'}", max_pull_limit=3))
    try:
        _world(server, make_replica)
        answer = server.pull(server.enroll("reader"), "a" * 16, limit=1000)
        assert len(answer["ops"]) == 3 and answer["more"] is True
    finally:
        server.close()


def test_a_cursor_never_moves_back(server: Server, make_replica: ReplicaFactory) -> None:
    _world(server, make_replica)
    token = server.enroll("reader")
    end = server.pull(token, "a" * 16)["cursor"]
    ms, _, n = end.partition(".")
    beyond = f"{int(ms) + 10**6}.{n}"  # past the log, as after a restore from an older backup
    answer = server.pull(token, "a" * 16, beyond)
    assert (answer["ops"], answer["cursor"], answer["more"]) == ([], beyond, False)


def test_json_answers_are_gzipped_when_the_device_accepts_it(server: Server, make_replica: ReplicaFactory) -> None:
    _world(server, make_replica)
    token = server.enroll("reader")
    body = {"replica": "a" * 16, "cursor": "", "limit": 100, "time_ms": START_MS}
    headers = {"Authorization": f"Bearer {token}"}
    zipped = server.client.post("/v1/pull", json=body, headers={**headers, "Accept-Encoding": "gzip"})
    plain = server.client.post("/v1/pull", json=body, headers={**headers, "Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert zipped.json()["ops"] == plain.json()["ops"]  # httpx inflates the gzipped one
    assert int(zipped.headers["content-length"]) < len(plain.content)


def test_a_pull_binds_the_replica_and_reports_the_clock(server: Server, make_replica: ReplicaFactory) -> None:
    token = server.enroll("phone", "knocker", GRID)
    body = {"replica": "a" * 16, "cursor": "", "time_ms": START_MS - 5_000}
    answer = server.client.post("/v1/pull", json=body, headers={"Authorization": f"Bearer {token}"}).json()
    assert answer["server_time_ms"] - answer["clock_offset_ms"] == START_MS - 5_000
    [device] = server.storage.devices()
    assert device.replica_id == "a" * 16 and device.clock_offset_ms == answer["clock_offset_ms"]
    other = server.client.post(
        "/v1/pull", json={**body, "replica": "b" * 16}, headers={"Authorization": f"Bearer {token}"}
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "replica_mismatch"


def test_the_compact_answer_is_chosen_by_the_accept_header(server: Server, make_replica: ReplicaFactory) -> None:
    _world(server, make_replica)
    token = server.enroll("reader")
    body = {"replica": "a" * 16, "cursor": "", "time_ms": START_MS}
    for accept, media in (
        ("application/x-caresync-batch, application/json;q=0.5", "application/x-caresync-batch"),
        ("application/x-caresync-batch;q=0, application/json", "application/json"),
        ("*/*", "application/json"),
    ):
        response = server.client.post(
            "/v1/pull", json=body, headers={"Authorization": f"Bearer {token}", "Accept": accept}
        )
        assert response.headers["content-type"].split(";")[0] == media
    compact, plain = server.pull(token, "a" * 16, compact=True), server.pull(token, "a" * 16)
    assert all("pd" in op for op in plain["ops"] if op["seq"] > 1)
    assert any("pd" not in op for op in compact["ops"] if op["seq"] > 1)  # left out where it can be derived
    verify_ops(compact["ops"])  # which derives them
    assert (compact["ops"], compact["cursor"], compact["more"]) == (plain["ops"], plain["cursor"], plain["more"])


def test_cursors_never_repeat_after_a_restore_from_an_older_backup(
    tmp_path: Path, make_replica: ReplicaFactory
) -> None:
    """The server's database goes back in time; the devices' cursors do not. New ops must still reach them."""
    server = Server(Settings(database_url=f"sqlite:///{tmp_path / 'server.db'}"))
    try:
        station, phone = make_replica("station"), make_replica("phone")
        ts, tp, reader = server.enroll("station"), server.enroll("phone"), server.enroll("reader")
        backup = sqlite3.connect(tmp_path / "backup.db")
        station.tickets.submit(title="Before the backup", kind="repair", grid=GRID)
        server.push(ts, station.id, own_ops(station))
        with closing(sqlite3.connect(tmp_path / "server.db")) as live:
            live.backup(backup)
        station.tickets.submit(title="After the backup", kind="repair", grid=GRID)
        server.push(ts, station.id, own_ops(station))
        cursor = server.pull(reader, "a" * 16)["cursor"]  # the reader has both

        with closing(sqlite3.connect(tmp_path / "server.db")) as live:
            backup.backup(live)  # restored: the second ticket is gone from the server
        backup.close()
        server.clock.advance(1000)
        server.pull(tp, phone.id)
        phone.tickets.submit(title="After the restore", kind="repair", grid=GRID)
        assert server.push(tp, phone.id, own_ops(phone)).json()["stored"] == 1
        pulled = server.pull(reader, "a" * 16, cursor)["ops"]
        assert [op["body"]["title"] for op in pulled] == ["After the restore"]
    finally:
        server.close()


def test_a_pull_examines_a_bounded_window(
    server: Server, make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = _world(server, make_replica)
    monkeypatch.setattr(storage, "PULL_SCAN_WINDOW", 3)
    token = server.enroll("courier", "courier", "xinan")  # sees one op of the log: the parcel in xinan
    pages = []
    cursor = ""
    while True:
        answer = server.pull(token, "c" * 16, cursor, limit=1)
        pages.append(keys(answer["ops"]))
        cursor = answer["cursor"]
        if not answer["more"]:
            break
    assert pages[:2] == [[], []]  # 9 ops in the log: the first two windows of 3 hold nothing it may see
    assert [k for page in pages for k in page] == [ops["parcel"][1]]
