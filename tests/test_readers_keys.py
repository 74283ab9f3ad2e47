"""Readers' keys (issue 15, deliverable 1), against a real server process on SQLite and on PostgreSQL, through the
programs where a person would use them.

The issue's scenario: every field device is enrolled before the station has a key; the desk then makes and
registers the station key and grants readers' keys (`caresync station-key ...`); a knocker's round, through the
`caresync` program, shows the residents' names and addresses; another knocker of the grid and a grid worker of
the community read the knocker's note; a courier (through `caresync-courier`) and the server (SQLite file and WAL,
or a `pg_dump`) hold none of the markers, nor does any device's file (values are opened when read, never stored in
clear). Then a knocker's phone is revoked: the desk rotates the grid's key, and what is written afterwards cannot
be opened with the lost phone's keys, while what it could read before still opens with them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from caresync_server.testing import ServerProcess, issue_code

from caresync import Replica, ServerRefusedError
from caresync.trust.keys import is_sealed

GRID = "changnan/dorm/3"
OTHER = "xinan/lane-1"
NAME = "Marker-Name-Rk5 王秀英"
ADDRESS = "Marker-Address-Rk5 教师宿舍3栋401"
OTHER_NAME = "Marker-Other-Rk5 李建国"
KNOCK_NOTE = "Marker-Knock-Rk5 老人说腿疼，药还够三天"
REPORT = "Marker-Report-Rk5 楼道里有人说她摔过一跤"
AFTER_NOTE = "Marker-After-Rk5 新来的志愿者记下：女儿周末回来"
AFTER_ADDRESS = "Marker-Moved-Rk5 教师宿舍3栋502"
XINAN_NOTE = "Marker-Xinan-Rk5 搬来的网格员第一次记录"
MARKERS = [NAME, ADDRESS, OTHER_NAME, KNOCK_NOTE, REPORT, AFTER_NOTE, AFTER_ADDRESS, XINAN_NOTE]
MARKER_PARTS = [m.split(" ", 1)[part] for m in MARKERS for part in (0, 1)]  # each half alone must not show either


def _program(name: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """One of the shipped programs as a real process, JSON out."""
    program = Path(sys.executable).with_name(name)
    done = subprocess.run(
        [str(program), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def _caresync(db: Path, *args: str) -> Any:
    return _program("caresync", "--json", "--db", str(db), *args)


def _raw(*paths: Path) -> bytes:
    """Files as a thief would read them: replicas with their -wal and -shm, and every file of a folder."""
    out = b""
    for path in paths:
        files = sorted(path.rglob("*")) if path.is_dir() else sorted(path.parent.glob(path.name + "*"))
        out += b"".join(p.read_bytes() for p in files if p.is_file())
    return out


def _server_raw(database_url: str, server: ServerProcess) -> bytes:
    """The server's database (the SQLite file with its WAL, or a pg_dump of PostgreSQL) and its log."""
    if database_url.startswith("sqlite:///"):
        raw = _raw(Path(database_url.removeprefix("sqlite:///")))
    else:
        dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
        raw = subprocess.run(["pg_dump", "--data-only", dsn], check=True, capture_output=True).stdout
        assert b"COPY public.grid_key_wraps" in raw and b"COPY public.ops" in raw  # the dump holds both
    return raw + server.log.read_bytes()


def _no_marker(raw: bytes, holder: str) -> None:
    for text in MARKER_PARTS:
        assert text.encode() not in raw, f"{text!r} is readable in {holder}"


def _last_value(device: Replica, eid: str, kind: str, key: str) -> str:
    """The stored (sealed) value of ``key`` in the newest op of ``kind`` on record ``eid``."""
    found = [op["body"][key] for op in device.device_log.ops_of(eid) if op["kind"] == kind]
    value: str = found[-1]
    return value


def test_a_knocker_reads_its_round_and_a_revoked_phone_opens_nothing_written_afterwards(
    tmp_path: Path, database_url: str
) -> None:
    codes = {
        name: issue_code(database_url, name, role=role, grids=grids)
        for name, role, grids in (
            ("desk", "station", [""]),
            ("knocker-fang", "knocker", [GRID]),
            ("knocker-li", "knocker", [GRID]),
            ("worker-zhou", "grid_worker", ["changnan"]),
            ("courier-chen", "courier", ["changnan"]),
        )
    }
    server = ServerProcess(database_url, tmp_path).start()
    courier_home = tmp_path / "courier"
    paths = {name: tmp_path / f"{name}.db" for name in ("desk", "fang", "li", "zhou")}
    try:
        with contextlib.ExitStack() as stack:
            # every field device is enrolled before the station has a key
            fang, li, zhou = (
                stack.enter_context(Replica.open(paths[name], actor=name)) for name in ("fang", "li", "zhou")
            )
            for device, name in ((fang, "knocker-fang"), (li, "knocker-li"), (zhou, "worker-zhou")):
                device.enroll(server.url, codes[name])
            _program("caresync-courier", "--home", str(courier_home), "--json", "enroll", server.url,
                     codes["courier-chen"], "--name", "chen")  # fmt: skip
            with Replica.open(paths["desk"], actor="clerk") as desk:
                desk.enroll(server.url, codes["desk"])

            # the desk makes and registers the station key, then grants readers' keys: all through the program
            _caresync(paths["desk"], "station-key", "create")
            _caresync(paths["desk"], "station-key", "register")
            granted = _caresync(paths["desk"], "station-key", "grant")
            made = {(k["role"], k["grid"], k["version"]) for k in granted["made"]}
            assert made == {("knocker", GRID, 1), ("grid_worker", "changnan", 1)}  # readers' grids; no courier's
            readers = {(k["role"], k["grid"]): k["readers"] for k in granted["granted"]}
            assert readers == {("knocker", GRID): sorted([fang.id, li.id]), ("grid_worker", "changnan"): [zhou.id]}

            desk = stack.enter_context(Replica.open(paths["desk"], actor="clerk"))
            wang = desk.residents.register(name=NAME, address=ADDRESS, grid=GRID, knock_every_days=2)
            other = desk.residents.register(name=OTHER_NAME, address="Room 2", grid=OTHER, knock_every_days=2)
            desk.sync()
            for device in (fang, li, zhou):
                assert device.sync().grid_keys.problems == []

            # the knocker's round, through the program, shows whose door to knock
            fang.close()
            shown = _caresync(paths["fang"], "visit", "due", "--grid", GRID, "--all")
            rows = [e for rows in shown["by_building"].values() for e in rows] + shown["flagged"]
            assert [(e["resident_id"], e["name"], e["address"]) for e in rows] == [(wang.id, NAME, ADDRESS)]
            table = _program("caresync", "--db", str(paths["fang"]), "visit", "due", "--grid", GRID, "--all",
                             env={"COLUMNS": "250"})  # fmt: skip
            assert NAME in table and ADDRESS in table
            fang = stack.enter_context(Replica.open(paths["fang"], actor="fang"))

            # the knocker's note reaches the other knocker of the grid and the community's grid worker
            visit = fang.visits.record(resident_id=wang.id, outcome="unwell", note=KNOCK_NOTE)
            fang.sync()
            li.sync()
            zhou.sync()
            assert li.visits.get(visit.id).note == KNOCK_NOTE
            assert zhou.visits.get(visit.id).note == KNOCK_NOTE and zhou.residents.get(wang.id).name == NAME
            assert other.id not in {r.id for r in zhou.residents.list()}  # another community: not held

            # a courier's report: sealed on the handheld to the station and the readers of its grid
            _program("caresync-courier", "--home", str(courier_home), "--json", "report", "sentiment", REPORT,
                     "--grid", GRID)  # fmt: skip
            _program("caresync-courier", "--home", str(courier_home), "--json", "sync")
            desk.sync()

            # a knocker's phone is lost: revoked on the server; the desk rotates the grid's key at its next sync
            env = {"CARESYNC_DATABASE_URL": database_url}
            _program("caresync-server", "revoke", "knocker-fang", "--json", env=env)
            rotated = desk.sync().grid_keys.grants
            assert rotated is not None and rotated.made == [("knocker", GRID, 2)]  # zhou's key stays: zhou is still in
            assert li.sync().grid_keys.learned == 1 and ("knocker", GRID, 2) in li.device_log.readers_keys
            li.residents.note(wang.id, AFTER_NOTE)
            li.sync()
            desk.sync()
            desk.residents.edit(wang.id, address=AFTER_ADDRESS)
            desk.sync()
            li.sync()
            zhou.sync()

            after_note = _last_value(li, wang.id, "resident.note", "text")
            after_address = _last_value(li, wang.id, "resident.set", "value")
            before_note = _last_value(li, visit.id, "visit.create", "note")
            with_fang = fang.device_log
            try:
                fang.sync()
                raise AssertionError("a revoked phone synced")
            except ServerRefusedError as exc:
                assert exc.server_code == "revoked"
            for sealed in (after_note, after_address):  # written after the revocation: the lost phone opens neither
                assert is_sealed(sealed) and with_fang.readable(sealed) == sealed
            assert with_fang.readable(before_note) == KNOCK_NOTE  # what it could read before, it still can
            assert li.residents.get(wang.id).notes[-1].text == AFTER_NOTE and li.residents.get(wang.id).address == (
                AFTER_ADDRESS
            )
            assert zhou.residents.get(wang.id).address == AFTER_ADDRESS  # the community's key was not rotated
            assert desk.residents.get(wang.id).notes[-1].text == AFTER_NOTE  # the station reads everything

            # the grid worker is moved to another community: its old key is rotated, it gets the new grid's
            _program("caresync-server", "scope", "worker-zhou", "--grid", "xinan", "--yes", "--json", env=env)
            moved = desk.sync().grid_keys.grants
            assert moved is not None
            assert sorted(moved.made) == [("grid_worker", "changnan", 2), ("grid_worker", "xinan", 1)]
            assert zhou.sync().grid_keys.learned == 1 and ("grid_worker", "xinan", 1) in zhou.device_log.readers_keys
            desk.residents.note(other.id, XINAN_NOTE)
            desk.sync()
            zhou.sync()
            assert zhou.residents.get(other.id).notes[-1].text == XINAN_NOTE  # written since: it reads it
            assert is_sealed(zhou.residents.get(other.id).name)  # written before xinan had a readers' key: station's

        raws = {
            "the courier's handheld": _raw(courier_home),
            "the server": _server_raw(database_url, server),
            **{f"{name}'s file": _raw(path) for name, path in paths.items()},
        }
        for holder, raw in raws.items():
            _no_marker(raw, holder)
    finally:
        server.stop()


def test_two_desks_granting_at_once_end_with_keys_every_reader_holds(tmp_path: Path, database_url: str) -> None:
    from caresync.sync import stationkey
    from caresync.sync._http import Link
    from caresync.sync.enrolment import current_token
    from caresync.sync.gridkeys import grant_grid_keys

    codes = {
        name: issue_code(database_url, name, role=role, grids=grids)
        for name, role, grids in (("desk-a", "station", [""]), ("desk-b", "station", [""]), ("fang", "knocker", [GRID]))
    }
    server = ServerProcess(database_url, tmp_path).start()
    try:
        with contextlib.ExitStack() as stack:
            a, b, fang = (stack.enter_context(Replica.open(tmp_path / f"{n}.db", actor=n)) for n in codes)
            for device, name in ((a, "desk-a"), (b, "desk-b"), (fang, "fang")):
                device.enroll(server.url, codes[name])
            stationkey.create_station_key(a)
            stationkey.register_station_key(a)
            key = a.station_key
            assert key is not None
            b.install_station_key(key)  # a second station PC, with the station's key
            fang.sync()
            links = [Link(server.url, str(current_token(d)), None, 0, 0.1, 30) for d in (a, b)]
            stale = links[1].get("/v1/grid-keys")  # desk B reads before desk A publishes
            assert grant_grid_keys(a, links[0]).made == [("knocker", GRID, 1)]
            with pytest.raises(ServerRefusedError) as clash:  # B made version 1 too, with another key
                grant_grid_keys(b, links[1], stale)
            assert clash.value.server_code == "grid_key_conflict"
            assert b.sync().grid_keys.problems == []  # its next grant takes the next version instead
            fang.sync()
            assert [v for role, grid, v in fang.device_log.readers_keys] == [1, 2]
            a.sync()  # desk A learns version 2 and seals to it; the knocker opens it
            resident = a.residents.register(name=NAME, grid=GRID)
            a.sync()
            fang.sync()
            assert fang.residents.get(resident.id).name == NAME
            for link in links:
                link.close()
    finally:
        server.stop()
