"""Free text never travels in clear (issue 15), against a real server process on SQLite and on PostgreSQL.

What caresync writes by itself (a knock round's raised request, a courier's report, a rating's comment) carries no
free text in clear; a server with a station key refuses an op that does; a device enrolled before the station key
existed keeps such work, says so, learns the key at its next sync and sends it sealed. Every file is read as a thief
with the disk would read it: replicas with their ``-wal``/``-shm``, the courier's folder, the server's SQLite file
and WAL or a ``pg_dump`` of its PostgreSQL database, and the server's log; distinctive markers, ASCII and Chinese,
must be nowhere.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess, issue_code, register_station_key

from caresync import Replica, ServerRefusedError, StationKey
from caresync.field.knock import raise_ticket
from caresync.sync.bundles.relay import make_bundle, write_bundle
from caresync.testing import FakeClock
from tests.server_support import enroll

GRID = "changnan/dorm/3"
NAME = "Marker-Name-Qx7 王秀英"
ADDRESS = "Marker-Address-Qx7 教师宿舍3栋401"
KNOCK_NOTE = "Marker-Knock-Qx7 屋里没开灯，敲了两次没人应"
REPORT = "Marker-Report-Qx7 楼道堆物起火隐患"
COMMENT = "Marker-Comment-Qx7 师傅很耐心，满意"
KEPT_NOTE = "Marker-Kept-Qx7 老人说儿子很久没回来"
MARKERS = [NAME, ADDRESS, KNOCK_NOTE, REPORT, COMMENT, KEPT_NOTE]
MARKER_PARTS = [m.split(" ", 1)[part] for m in MARKERS for part in (0, 1)]  # each half alone must not show either
DAY = 86_400_000


def _server_bytes(database_url: str, server: ServerProcess) -> bytes:
    """The server's database as a thief would read it (the SQLite file with its WAL, or a pg_dump), and its log."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    else:
        dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
        raw = subprocess.run(["pg_dump", "--data-only", dsn], check=True, capture_output=True).stdout
        assert b"COPY public.ops" in raw  # the dump holds the log
    return raw + server.log.read_bytes()


def _file_bytes(*paths: Path) -> bytes:
    """Replica files with their -wal and -shm, and every file of a folder."""
    out = b""
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else sorted(path.parent.glob(path.name + "*"))
        out += b"".join(p.read_bytes() for p in files if p.is_file())
    return out


def _assert_no_marker(raw: bytes, holder: str) -> None:
    for text in MARKER_PARTS:
        assert text.encode() not in raw, f"{text!r} is readable in {holder}"


def _courier(home: Path, *args: str) -> dict[str, object]:
    """The courier's handheld program as a real process."""
    program = Path(sys.executable).with_name("caresync-courier")
    done = subprocess.run(
        [str(program), "--home", str(home), "--json", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_what_caresync_writes_itself_carries_no_free_text_in_clear(tmp_path: Path, database_url: str) -> None:
    key = StationKey.generate()
    register_station_key(database_url, key.public_key)
    codes = {
        "knocker": issue_code(database_url, "knocker-fang", role="knocker", grids=[GRID]),
        "worker": issue_code(database_url, "worker-li", role="grid_worker", grids=[GRID]),
        "courier": issue_code(database_url, "courier-chen", role="courier", grids=["changnan"]),
    }
    station_token = enroll(database_url, "desk", role="station", grids=[""])
    server = ServerProcess(database_url, tmp_path).start()
    clock = FakeClock()
    try:
        with contextlib.ExitStack() as stack:
            station = stack.enter_context(Replica.open(tmp_path / "station.db", actor="clerk", now_ms=clock))
            knocker = stack.enter_context(Replica.open(tmp_path / "knocker.db", actor="fang", now_ms=clock))
            worker = stack.enter_context(Replica.open(tmp_path / "worker.db", actor="li", now_ms=clock))
            station.install_station_key(key)
            knocker.enroll(server.url, codes["knocker"])
            worker.enroll(server.url, codes["worker"])

            wang = station.residents.register(name=NAME, address=ADDRESS, grid=GRID, knock_every_days=2)
            station.sync(server.url, token=station_token)
            knocker.sync()
            for _ in range(2):  # two knocks nobody answers: the round flags her
                knocker.visits.record(resident_id=wang.id, outcome="no_answer", note=KNOCK_NOTE)
                clock.advance(DAY)
            raised = raise_ticket(knocker, wang.id)
            assert raised.title.startswith("sealed:1:")  # a title is free text: sealed like any other

            # the knocker has no network: its work goes as a bundle in a courier's bag, with the courier's report
            write_bundle(knocker, tmp_path / "knocker.bundle")
            courier_home = tmp_path / "courier"
            _courier(courier_home, "enroll", server.url, codes["courier"], "--name", "chen")
            assert _courier(courier_home, "carry", "import", str(tmp_path / "knocker.bundle"))["new"] is True
            reported = _courier(courier_home, "report", "sentiment", REPORT, "--grid", GRID)
            delivered = _courier(courier_home, "sync")
            assert delivered["unsent"] == 0 and delivered["relayed"][0]["stored"] == 4  # type: ignore[index]
            knocker.sync()

            station.sync(server.url, token=station_token)
            opened = station.tickets.get(raised.id)  # the station reads the raised request: from structure only
            assert opened.title == f"Resident {wang.id} ({GRID}) did not answer two knocks in a row"
            assert opened.description == KNOCK_NOTE
            report = station.tickets.get(str(reported["id"]))
            assert report.title == f"Outdoor report: what residents are saying in {GRID}"
            assert report.description == REPORT
            for step in ("accept", "resolve", "close"):
                getattr(station.tickets, step)(raised.id, **({"assignee": "li"} if step == "accept" else {}))
            rated = station.tickets.rate(raised.id, score=5, comment=COMMENT)
            assert rated.rating is not None and rated.rating.comment == COMMENT
            station.sync(server.url, token=station_token)
            worker.sync()
            seen = worker.tickets.get(raised.id).rating
            assert seen is not None and seen.score == 5  # the score travels in clear, for the figures
            assert seen.comment is not None and seen.comment.startswith("sealed:1:")
            assert worker.residents.get(wang.id).name.startswith("sealed:1:")
        holders = {
            "the station's file": _file_bytes(tmp_path / "station.db"),
            "the knocker's phone": _file_bytes(tmp_path / "knocker.db"),
            "the grid worker's phone": _file_bytes(tmp_path / "worker.db"),
            "the courier's handheld and bag": _file_bytes(courier_home),
            "the knocker's bundle": _file_bytes(tmp_path / "knocker.bundle"),
            "the server": _server_bytes(database_url, server),
        }
        for holder, raw in holders.items():
            assert b"sealed:1:" in raw, holder  # the test reads real content
            _assert_no_marker(raw, holder)
    finally:
        server.stop()


def test_the_server_refuses_free_text_in_clear_naming_the_field(tmp_path: Path, database_url: str) -> None:
    key = StationKey.generate()
    register_station_key(database_url, key.public_key)
    token = enroll(database_url, "script", role="station", grids=[""])
    server = ServerProcess(database_url, tmp_path).start()
    try:
        with Replica.open(tmp_path / "script.db", actor="script") as script:  # no key: writes what it is given
            script.tickets.submit(title=REPORT, kind="repair", grid=GRID)
            with pytest.raises(ServerRefusedError) as refused:
                script.sync(server.url, token=token)
            assert refused.value.server_code == "unsealed_field" and refused.value.status == 422
            assert "body.title" in str(refused.value)
            kept = script.device_log.store.own_unsent(script.id)
            assert [op["kind"] for op in kept][:1] == ["ticket.create"]  # kept on the device, never dropped
            assert script.station_public_key == key.public_key  # learned from GET /v1/device, for what follows
            made = script.tickets.submit(title="Sealed this time", kind="repair", grid=GRID)
            assert made.title.startswith("sealed:1:")
            with pytest.raises(ServerRefusedError):  # the old op is still in clear: the batch is refused whole
                script.sync(server.url, token=token)
        _assert_no_marker(_server_bytes(database_url, server), "the server")
    finally:
        server.stop()


def test_a_device_enrolled_before_the_station_key_keeps_its_free_text_then_seals_and_sends_it(
    tmp_path: Path, database_url: str
) -> None:
    code = issue_code(database_url, "knocker-fang", role="knocker", grids=[GRID])
    station_token = enroll(database_url, "desk", role="station", grids=[""])
    server = ServerProcess(database_url, tmp_path).start()
    key = StationKey.generate()
    try:
        with (
            Replica.open(tmp_path / "knocker.db", actor="fang") as knocker,
            Replica.open(tmp_path / "station.db", actor="clerk") as station,
        ):
            station.install_station_key(key)
            resident = station.residents.register(name="Sealed name", grid=GRID)
            station.sync(server.url, token=station_token)
            knocker.enroll(server.url, code)  # no station key registered yet
            assert knocker.station_public_key is None
            knocker.sync()
            knocker.visits.record(resident_id=resident.id, outcome="well")  # structure only: may go
            knocker.residents.note(resident.id, KEPT_NOTE)  # free text: kept
            knocker.visits.record(resident_id=resident.id, outcome="unwell")  # after it: kept too (no holes)
            first = knocker.sync()
            assert (first.pushed, first.held, first.unsent) == (1, 2, 2)
            assert len(make_bundle(knocker)["ops"]) == 0  # nor put in a bundle for a courier
            assert knocker.export_ops({}) and all(
                op["origin"] != knocker.id or op["seq"] < 3 for op in knocker.export_ops({})
            )  # nor given to a peer
            _assert_no_marker(_server_bytes(database_url, server), "the server, before the key")

            register_station_key(database_url, key.public_key)  # the station registers its key late
            second = knocker.sync()  # learns it from GET /v1/device, seals what it kept, sends it
            assert knocker.station_public_key == key.public_key
            assert (second.pushed, second.held, second.unsent) == (2, 0, 0)
            station.sync(server.url, token=station_token)
            notes = station.residents.get(resident.id).notes
            assert [n.text for n in notes] == [KEPT_NOTE]  # sealed to the station, which reads it
            assert len(station.visits.list()) == 2
        _assert_no_marker(_server_bytes(database_url, server), "the server")
        _assert_no_marker(_file_bytes(tmp_path / "station.db"), "the station's file")
        # the knocker's own file: the note it kept was rewritten sealed, and the old bytes overwritten
        _assert_no_marker(_file_bytes(tmp_path / "knocker.db"), "the knocker's phone")
    finally:
        server.stop()
