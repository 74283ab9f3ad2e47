"""The Devices page against a real ``caresync-server`` process: the station desk lists the server's devices,
enrols one (whose code a phone then redeems), changes its scope and revokes it, through the admin API."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import pytest
from caresync_server.testing import ServerProcess, issue_code

from caresync import Replica, ServerRefusedError
from caresync.sync.admin import server_devices

from .support import client, run, running, sign_in


def test_enrol_revoke_and_rescope_devices_from_the_console(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(db, tmp_path).start()
    try:
        with Replica.open(tmp_path / "station.db", actor="desk") as station:
            station.enroll(server.url, issue_code(db, "station-desk", role="station", grids=[""]))

        async def go() -> str:
            with running(tmp_path) as app:
                async with client(app) as http:
                    token = await sign_in(http)
                    listed = await http.get("/devices")
                    assert "station-desk" in listed.text
                    made = await http.post(
                        "/devices/enrol",
                        data={"csrf": token, "name": "phone-grid-li", "role": "grid_worker", "grids": "c/a\nc/b"},
                    )
                    assert made.status_code == 200, (await http.get("/devices")).text[-3000:]
                    code = re.search(r'id="enrol-code">([^<]+)<', made.text)
                    assert code is not None
                    payload = re.search(
                        r'id="enrol-qr" src="data:image/svg\+xml;base64,([^"]+)" alt="([^"]+)"', made.text
                    )
                    assert payload is not None
                    assert base64.b64decode(payload.group(1)).startswith(b"<svg")
                    assert payload.group(2) == (f"caresync:enrol?server={server.url}&amp;code={code.group(1)}")
                    return code.group(1)

        code = run(go())
        with Replica.open(tmp_path / "phone.db", actor="grid-li") as phone:
            found = phone.enroll(server.url, code)
            assert found.grids == ("c/a", "c/b")

        async def manage() -> None:
            with running(tmp_path) as app:
                async with client(app) as http:
                    token = await sign_in(http)
                    today = (await http.get("/")).text
                    stale = today[today.index('id="today-devices"') :]
                    assert "phone-grid-li" in stale and "never" in stale  # enrolled, never synced
                    page = (await http.get("/devices")).text
                    device_id = re.search(r'action="/devices/(\d+)/scope"[^>]*>(?:(?!</tr>).)*', page, re.S)
                    assert device_id is not None
                    phone_row = re.search(r'data-device="phone-grid-li">.*?action="/devices/(\d+)/scope"', page, re.S)
                    assert phone_row is not None
                    ident = phone_row.group(1)
                    changed = await http.post(
                        f"/devices/{ident}/scope", data={"csrf": token, "grids": "c/a", "role": "knocker"}
                    )
                    assert changed.status_code == 303
                    revoked = await http.post(f"/devices/{ident}/revoke", data={"csrf": token})
                    assert revoked.status_code == 303
                    after = (await http.get("/devices")).text
                    assert "revoked" in after

        run(manage())
        with Replica.open(tmp_path / "station.db", actor="desk") as station:
            phone = next(d for d in server_devices(station) if d.name == "phone-grid-li")
            assert phone.revoked and phone.role == "knocker" and phone.grids == ("c/a",)
    finally:
        server.stop()


def test_only_station_and_admin_devices_may_manage_devices(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(db, tmp_path).start()
    try:
        with Replica.open(tmp_path / "phone.db", actor="grid-li") as phone:
            phone.enroll(server.url, issue_code(db, "phone-grid-li", role="grid_worker", grids=["c/a"]))
            with pytest.raises(ServerRefusedError, match="only a station or admin device manages devices"):
                server_devices(phone)
        answer = httpx.get(server.url + "/v1/admin/devices")
        assert answer.status_code == 401
    finally:
        server.stop()
