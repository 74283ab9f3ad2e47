"""Per-device hourly limits (issue 16): a device that sends more requests, bytes or ops in an hour than the
server's settings allow is answered 429 ``rate_limited`` in the error envelope, with ``Retry-After``, and nothing
of the refused request is stored; another device is not held back. Against a real server process."""

from __future__ import annotations

from pathlib import Path

import httpx
from caresync.core.ops import FORMAT_VERSION

from caresync_server.testing import ServerProcess, enroll
from support import GRID, START_MS, own_ops, replica


def _push(server: ServerProcess, token: str, replica_id: str, ops: list[dict[str, object]]) -> httpx.Response:
    envelope = {"replica": replica_id, "time_ms": START_MS, "ops": ops}
    return httpx.post(server.url + "/v1/push", json=envelope, headers={"Authorization": f"Bearer {token}"})


def _pull(server: ServerProcess, token: str, replica_id: str) -> httpx.Response:
    body = {"replica": replica_id, "time_ms": START_MS, "format": FORMAT_VERSION}
    return httpx.post(server.url + "/v1/pull", json=body, headers={"Authorization": f"Bearer {token}"})


def _refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and error["details"][0]["field"] == what
    assert 3000 <= int(response.headers["retry-after"]) <= 3600  # the rest of the device's hour


def test_a_device_over_its_hourly_limits_is_answered_429_and_others_are_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    busy = enroll(url, "busy-phone", role="station", grids=[""])
    calm = enroll(url, "calm-phone", role="station", grids=[""])
    limits = {
        "CARESYNC_DEVICE_REQUESTS_PER_HOUR": "6",
        "CARESYNC_DEVICE_OPS_PER_HOUR": "5",
        "CARESYNC_DEVICE_BYTES_PER_HOUR": "40000",
    }
    device = replica(tmp_path, "busy")
    other = replica(tmp_path, "calm")
    server = ServerProcess(url, tmp_path, environment=limits).start()
    try:
        for n in range(6):
            device.residents.register(name=f"Resident {n}", grid=GRID)
        ops = own_ops(device)
        assert _push(server, busy, device.id, ops[:4]).status_code == 200  # request 1, ops 4
        _refused(_push(server, busy, device.id, ops[4:6]), "ops")  # request 2: 6 ops would pass 5
        assert len(_pull(server, calm, other.id).json()["ops"]) == 4  # the refused ops were not stored
        assert _push(server, busy, device.id, ops[4:5]).status_code == 200  # request 3: 5 ops, at the limit

        big = httpx.post(  # request 4: bytes over 40,000 (a body the server refuses before it reads a JSON value)
            server.url + "/v1/pull",
            content=b'{"replica": "' + device.id.encode() + b'", "time_ms": 1' + b" " * 40_000 + b"}",
            headers={"Authorization": f"Bearer {busy}", "Content-Type": "application/json"},
        )
        _refused(big, "bytes")
        for _ in range(3):  # requests 4 to 6 (the refused one was not counted)
            assert _pull(server, busy, device.id).status_code == 200
        _refused(_pull(server, busy, device.id), "requests")
        health = httpx.get(server.url + "/healthz")
        assert health.status_code == 200  # a route without a device token is not counted
        assert _pull(server, calm, other.id).status_code == 200  # the other device is not held back
    finally:
        device.close()
        other.close()
        server.stop()
