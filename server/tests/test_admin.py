"""The admin endpoints (``/v1/admin/devices``) on SQLite and PostgreSQL: only station and admin devices may use
them; they list, enrol, re-scope and revoke devices as the admin commands do."""

from __future__ import annotations

from typing import Any

import pytest

from support import Server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_station_device_lists_enrols_rescopes_and_revokes(server: Server) -> None:
    desk = server.enroll("station-desk", "station")
    listed = server.client.get("/v1/admin/devices", headers=_auth(desk))
    assert listed.status_code == 200
    assert [d["name"] for d in listed.json()["devices"]] == ["station-desk"]
    made = server.client.post(
        "/v1/admin/devices", json={"name": "phone-li", "role": "grid_worker", "grids": ["c/a"]}, headers=_auth(desk)
    )
    assert made.status_code == 200, made.text
    body: dict[str, Any] = made.json()
    assert body["device"]["role"] == "grid_worker" and body["device"]["grids"] == ["c/a"] and body["code"]
    assert body["code"] not in str(server.storage.devices())  # only its hash is kept
    ident = body["device"]["id"]
    changed = server.client.request(
        "PUT", f"/v1/admin/devices/{ident}/scope", json={"grids": ["c/b"], "role": "knocker"}, headers=_auth(desk)
    )
    assert changed.status_code == 200
    assert changed.json()["grids"] == ["c/b"] and changed.json()["scope_version"] == 2
    revoked = server.client.post("/v1/admin/devices/phone-li/revoke", headers=_auth(desk))
    assert revoked.status_code == 200 and revoked.json()["revoked_at_ms"] is not None
    itself = server.client.post("/v1/admin/devices/station-desk/revoke", headers=_auth(desk))
    assert itself.status_code == 422


@pytest.mark.parametrize("role", ["courier", "knocker", "grid_worker", "mediator"])
def test_other_roles_are_forbidden(server: Server, role: str) -> None:
    token = server.enroll(f"device-{role}", role, "c/a")
    for method, url, body in (
        ("GET", "/v1/admin/devices", None),
        ("POST", "/v1/admin/devices", {"name": "x", "role": "courier", "grids": [""]}),
        ("POST", f"/v1/admin/devices/device-{role}/revoke", None),
        ("PUT", f"/v1/admin/devices/device-{role}/scope", {"grids": [""]}),
    ):
        answer = server.client.request(method, url, json=body, headers=_auth(token))
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
    assert server.client.get("/v1/admin/devices").status_code == 401
    assert [d.name for d in server.storage.devices()] == [f"device-{role}"]


def test_bad_requests_are_refused_and_change_nothing(server: Server) -> None:
    admin = server.enroll("admin-desk", "admin")
    for body in (
        {"name": "x", "role": "wizard", "grids": [""]},
        {"name": "admin-desk", "role": "courier", "grids": [""]},
        {"name": "", "role": "courier", "grids": [""]},
        {"name": "y", "role": "courier", "grids": []},
    ):
        answer = server.client.post("/v1/admin/devices", json=body, headers=_auth(admin))
        assert answer.status_code == 422, body
    missing = server.client.post("/v1/admin/devices/nobody/revoke", headers=_auth(admin))
    assert missing.status_code == 422 and "nobody" in missing.json()["error"]["message"]
    assert [d.name for d in server.storage.devices()] == ["admin-desk"]
