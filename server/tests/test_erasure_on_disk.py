"""Erasure reaches the server's disk (issue 16): after a resident's personal data is redacted, no erased value
is left in the raw bytes of the server's SQLite file, its -wal or its -shm, however many syncs follow (a real
server process; the values are read from the device's own ops before the redaction)."""

from __future__ import annotations

import json
from pathlib import Path

from caresync import Replica
from caresync.testing import FakeClock

from caresync_server.testing import ServerProcess, enroll
from support import GRID, START_MS, own_ops


def _on_disk(database: Path) -> bytes:
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())


def test_after_a_redaction_no_erased_value_is_left_in_the_servers_files(tmp_path: Path) -> None:
    database = tmp_path / "server.db"
    url = f"sqlite:///{database}"
    token = enroll(url, "station-desk", role="station", grids=[""])
    server = ServerProcess(url, tmp_path).start()
    desk = Replica.open(tmp_path / "desk.db", actor="desk", now_ms=FakeClock(START_MS))
    try:
        wang = desk.residents.register(
            name="Wang Guilan", grid=GRID, phone="+86 138 1234 5678", address="Teachers' dormitory 3-2-401"
        )
        desk.residents.edit(wang.id, phone="+86 139 8765 4321")
        desk.sync(server.url, token=token)
        erased = [
            str(value)
            for op in own_ops(desk)
            if op["eid"] == wang.id
            for key, value in op["body"].items()
            if key in ("name", "phone", "address") or (key == "value" and op["body"].get("field") == "phone")
        ]
        assert len(erased) == 4 and all(v.encode() in _on_disk(database) for v in erased)

        desk.residents.redact(wang.id, reason="moved away, asked to be forgotten")
        desk.sync(server.url, token=token)
        for n in range(3):  # more syncs, as the attack did
            desk.tickets.submit(title=f"Stair light {n}", kind="repair", grid=GRID)
            desk.sync(server.url, token=token)
        raw = _on_disk(database)
        left = [v for v in erased if v.encode() in raw or json.dumps(v).encode() in raw]
        assert left == [], left
    finally:
        desk.close()
        server.stop()
