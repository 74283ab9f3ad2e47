"""The console's background sync against a real ``caresync-server`` process: work another device sends to the
server reaches the console's pages by itself, the status line says when the desk last synced, and a server
that stops answering is shown, not hidden."""

from __future__ import annotations

import time
from pathlib import Path

from caresync_server.testing import ServerProcess, issue_code

from caresync import Replica
from caresync.sync.stationkey import create_station_key, register_station_key

from .support import client, run, running, sign_in


def _until(check: object, timeout_s: float = 60) -> None:
    """Waits (bounded) until ``check()`` is true; the assertion is on the state reached, not on the time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("the state was not reached")


def test_background_sync_brings_other_devices_work_to_the_pages(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(db, tmp_path).start()
    try:
        with Replica.open(tmp_path / "station.db", actor="desk") as station:
            station.enroll(server.url, issue_code(db, "station-desk", role="station", grids=[""]))
            create_station_key(station)  # the phone seals the request to it; the desk opens it
            register_station_key(station)
        with Replica.open(tmp_path / "phone.db", actor="grid-li") as phone:
            phone.enroll(server.url, issue_code(db, "phone-grid-li", role="grid_worker", grids=["c/a"]))
            made = phone.tickets.submit(title="Lift stuck on floor 3", kind="repair", grid="c/a/b1")
            assert phone.sync().pushed == 2
        raw = b"".join(f.read_bytes() for f in tmp_path.glob("server.db*"))
        assert b"Lift stuck" not in raw  # sealed on the phone, opened only at the desk
        number = made.number or made.id

        async def go() -> None:
            with running(tmp_path, sync_interval_s=1) as app:
                console = app.state.console
                _until(lambda: console.worker.status.last_ok_ms is not None)
                async with client(app) as http:
                    await sign_in(http)
                    page = await http.get("/requests")
                    assert "Lift stuck on floor 3" in page.text
                    assert "syncs every 1 s" in page.text
                    assert "last synced" in page.text
                    state = (await http.get("/_state")).json()
                    assert state["generation"] == console.worker.generation
                    detail = await http.get(f"/requests/{number}")
                    assert detail.status_code == 200
                    server.stop()
                    before = console.worker.status.last_try_ms
                    _until(lambda: console.worker.status.last_try_ms != before and console.worker.status.last_error)
                    page = await http.get("/")
                    assert "sync failed" in page.text

        run(go())
    finally:
        server.stop()


def test_work_held_for_want_of_a_station_key_is_shown(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(db, tmp_path).start()
    try:
        with Replica.open(tmp_path / "station.db", actor="desk") as station:
            station.enroll(server.url, issue_code(db, "station-desk", role="station", grids=[""]))

        async def go() -> None:
            with running(tmp_path, sync_interval_s=1) as app:
                console = app.state.console
                async with client(app) as http:
                    token = await sign_in(http)
                    form = {
                        "csrf": token,
                        "title": "Broken door",
                        "kind": "repair",
                        "channel": "walk_in",
                        "grid": "c/a/b",
                        "priority": "normal",
                    }
                    assert (await http.post("/intake", data=form)).status_code == 303
                    _until(lambda: console.worker.status.held > 0)
                    page = await http.get("/")
                    assert "held here until the station key is known" in page.text

        run(go())
    finally:
        server.stop()
