"""Bad input: every case is a 4xx in the one error envelope, nothing is stored, and the server keeps serving."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from caresync import Replica
from caresync.core.ops import FORMAT_VERSION
from caresync.sync.wire import MEDIA_TYPE, encode_envelope

from caresync_server.app import create_app
from caresync_server.settings import Settings
from support import GRID, START_MS, Client, ReplicaFactory, Server, own_ops


@dataclass
class World:
    server: Server
    device: Replica
    token: str
    revoked: str
    ops: list[dict[str, Any]]

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def envelope(self, **changes: Any) -> dict[str, Any]:
        return {"replica": self.device.id, "time_ms": START_MS, "ops": self.ops, **changes}

    def with_op(self, **changes: Any) -> dict[str, Any]:
        return self.envelope(ops=[{**self.ops[0], **changes}, *self.ops[1:]])


@pytest.fixture
def world(server: Server, make_replica: ReplicaFactory) -> Iterator[World]:
    device = make_replica("station")
    ticket = device.tickets.submit(title="Leak", kind="repair", grid=GRID)
    device.tickets.edit(ticket.id, title="Leak on floor 3")
    token, revoked = server.enroll("station"), server.enroll("lost")
    server.storage.revoke("lost")
    yield World(server, device, token, revoked, own_ops(device))


Request = tuple[str, str, dict[str, Any]]

CASES: dict[str, tuple[Callable[[World], Request], int, str]] = {
    "malformed JSON": (
        lambda w: ("POST", "/v1/push", {"content": b'{"replica": "ab', "headers": w.auth()}),
        400,
        "invalid_json",
    ),
    "NaN is not JSON": (
        lambda w: ("POST", "/v1/push", {"content": b'{"time_ms": NaN}', "headers": w.auth()}),
        400,
        "invalid_json",
    ),
    "body not UTF-8": (
        lambda w: ("POST", "/v1/push", {"content": b'{"replica": "\xff"}', "headers": w.auth()}),
        400,
        "invalid_json",
    ),
    "deeply nested": (
        lambda w: ("POST", "/v1/push", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": w.auth()}),
        400,
        "invalid_json",
    ),
    "not an object": (lambda w: ("POST", "/v1/push", {"json": [1, 2], "headers": w.auth()}), 422, "invalid_request"),
    "ops missing": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(ops=None), "headers": w.auth()}),
        422,
        "invalid_request",
    ),
    "time_ms a string": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(time_ms="now"), "headers": w.auth()}),
        422,
        "invalid_request",
    ),
    "replica not a replica id": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(replica="Phone 1"), "headers": w.auth()}),
        422,
        "invalid_request",
    ),
    "a huge number": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(pending=10**40), "headers": w.auth()}),
        422,
        "invalid_request",
    ),
    "an op not an object": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(ops=[*w.ops, 5]), "headers": w.auth()}),
        422,
        "invalid_ops",
    ),
    "an op with a wrong type": (
        lambda w: ("POST", "/v1/push", {"json": w.with_op(seq="first"), "headers": w.auth()}),
        422,
        "invalid_ops",
    ),
    "an op missing fields": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(ops=[{"kind": "ticket.set"}]), "headers": w.auth()}),
        422,
        "invalid_ops",
    ),
    "an op from beyond any date": (
        lambda w: ("POST", "/v1/push", {"json": w.with_op(at=2**70), "headers": w.auth()}),
        422,
        "invalid_ops",
    ),
    "an actor with a NUL": (
        lambda w: ("POST", "/v1/push", {"json": w.with_op(actor="clerk\x00zhang"), "headers": w.auth()}),
        422,
        "invalid_ops",
    ),
    "text that is not Unicode (a lone surrogate escaped), refused as it is read": (
        lambda w: (
            "POST",
            "/v1/push",
            {"content": json.dumps(w.with_op(actor="\ud800")).encode(), "headers": w.auth()},
        ),
        400,
        "invalid_json",
    ),
    "a kind that is not Unicode": (
        lambda w: (
            "POST",
            "/v1/push",
            {"content": json.dumps(w.envelope(ops=[{"kind": "\ud800"}])).encode(), "headers": w.auth()},
        ),
        400,
        "invalid_json",
    ),
    "an unknown kind": (
        lambda w: ("POST", "/v1/push", {"json": w.with_op(kind="ticket.teleport"), "headers": w.auth()}),
        422,
        "unknown_kind",
    ),
    "a newer op format": (
        lambda w: ("POST", "/v1/push", {"json": w.with_op(v=FORMAT_VERSION + 1), "headers": w.auth()}),
        422,
        "unknown_kind",
    ),
    "too many ops": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(ops=w.ops[:1] * 5001), "headers": w.auth()}),
        413,
        "batch_too_large",
    ),
    "too many bytes": (
        lambda w: ("POST", "/v1/push", {"content": b" " * (8 * 1024 * 1024 + 1), "headers": w.auth()}),
        413,
        "batch_too_large",
    ),
    "a damaged compact batch": (
        lambda w: (
            "POST",
            "/v1/push",
            {
                "content": encode_envelope(w.envelope())[:-6],
                "headers": {**w.auth(), "Content-Type": MEDIA_TYPE},
            },
        ),
        400,
        "invalid_encoding",
    ),
    "not gzip": (
        lambda w: (
            "POST",
            "/v1/push",
            {"content": b"not gzip", "headers": {**w.auth(), "Content-Encoding": "gzip"}},
        ),
        400,
        "invalid_encoding",
    ),
    "a gzip bomb": (
        lambda w: (
            "POST",
            "/v1/push",
            {"content": gzip.compress(b" " * 80_000_000), "headers": {**w.auth(), "Content-Encoding": "gzip"}},
        ),
        413,
        "batch_too_large",
    ),
    "another content type": (
        lambda w: (
            "POST",
            "/v1/push",
            {"content": b"ops", "headers": {**w.auth(), "Content-Type": "text/plain"}},
        ),
        415,
        "unsupported_media_type",
    ),
    "another content encoding": (
        lambda w: (
            "POST",
            "/v1/push",
            {"json": w.envelope(), "headers": {**w.auth(), "Content-Encoding": "br"}},
        ),
        415,
        "unsupported_media_type",
    ),
    "no token": (lambda w: ("POST", "/v1/push", {"json": w.envelope()}), 401, "unauthorized"),
    "another scheme": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(), "headers": {"Authorization": f"Basic {w.token}"}}),
        401,
        "unauthorized",
    ),
    "a wrong token": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(), "headers": w.auth("not-a-token")}),
        401,
        "unauthorized",
    ),
    "a revoked token": (
        lambda w: ("POST", "/v1/push", {"json": w.envelope(), "headers": w.auth(w.revoked)}),
        403,
        "revoked",
    ),
    "pull without a token": (
        lambda w: ("POST", "/v1/pull", {"json": {"replica": w.device.id, "time_ms": START_MS}}),
        401,
        "unauthorized",
    ),
    "pull with a revoked token": (
        lambda w: ("POST", "/v1/pull", {"json": {"replica": w.device.id, "time_ms": 1}, "headers": w.auth(w.revoked)}),
        403,
        "revoked",
    ),
    "pull malformed JSON": (
        lambda w: (
            "POST",
            "/v1/pull",
            {"content": b'{"replica"', "headers": {**w.auth(), "Content-Type": "application/json"}},
        ),
        400,
        "invalid_json",
    ),
    "pull not JSON": (
        lambda w: ("POST", "/v1/pull", {"content": b"cursor=5", "headers": {**w.auth(), "Content-Type": "text/plain"}}),
        415,
        "unsupported_media_type",
    ),
    "pull with wrong types": (
        lambda w: (
            "POST",
            "/v1/pull",
            {"json": {"replica": w.device.id, "time_ms": START_MS, "limit": "ten"}, "headers": w.auth()},
        ),
        422,
        "invalid_request",
    ),
    "pull with a zero limit": (
        lambda w: (
            "POST",
            "/v1/pull",
            {"json": {"replica": w.device.id, "time_ms": START_MS, "limit": 0}, "headers": w.auth()},
        ),
        422,
        "invalid_request",
    ),
    "pull with a forged cursor": (
        lambda w: (
            "POST",
            "/v1/pull",
            {"json": {"replica": w.device.id, "time_ms": START_MS, "cursor": "-1"}, "headers": w.auth()},
        ),
        400,
        "invalid_cursor",
    ),
    "an unknown path": (lambda w: ("GET", "/v2/push", {}), 404, "not_found"),
    "a wrong method": (lambda w: ("GET", "/v1/push", {"headers": w.auth()}), 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_4xx_in_the_one_envelope_and_changes_nothing(world: World, case: str) -> None:
    make, status, code = CASES[case]
    method, path, kwargs = make(world)
    before = world.server.counts()
    response = world.server.client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "details", "message"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and len(body["error"]["message"]) > 20
    assert isinstance(body["error"]["details"], list)
    assert world.server.counts() == before
    good = world.server.push(world.token, world.device.id, world.ops)  # and the server keeps serving
    assert good.status_code == 200 and good.json()["acked"] == [[world.device.id, 1, 2]]


def test_invalid_ops_are_named_in_the_details(world: World) -> None:
    response = world.server.client.post("/v1/push", json=world.with_op(seq="first"), headers=world.auth())
    [detail] = response.json()["error"]["details"]
    assert detail["field"].startswith("op #0 (ticket.create") and "seq" in detail["field"]
    unknown = world.server.client.post("/v1/push", json=world.with_op(kind="ticket.teleport"), headers=world.auth())
    assert "upgrade the server" in unknown.json()["error"]["message"].lower()


def test_a_method_not_allowed_names_the_allowed_ones(world: World) -> None:
    response = world.server.client.get("/v1/pull")
    assert response.headers["allow"] == "POST"
    assert "POST" in response.json()["error"]["message"]


def test_a_token_for_another_replica_is_refused(world: World, make_replica: ReplicaFactory) -> None:
    world.server.push(world.token, world.device.id, world.ops)
    other = make_replica("copy")
    other.tickets.submit(title="Leak", kind="repair", grid=GRID)
    response = world.server.push(world.token, other.id, own_ops(other))
    assert response.status_code == 403 and response.json()["error"]["code"] == "replica_mismatch"
    assert world.server.counts()["ops"] == 2


def test_health_and_info(world: World) -> None:
    health = world.server.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["database"] == world.server.settings.dialect
    info = world.server.client.get("/v1/info").json()
    assert info["protocol_version"] == 1 and MEDIA_TYPE in info["media_types"]
    assert info["limits"] == {
        "max_batch_ops": 5000,
        "max_body_bytes": 8 * 1024 * 1024,
        "max_pull_limit": 10_000,
        "max_blob_bytes": 64 * 1024 * 1024,
        "max_device_blob_bytes": 4 * 1024 * 1024 * 1024,
    }


def test_health_is_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    settings = Settings(database_url="postgresql+psycopg://nobody@127.0.0.1:9/none")
    client = Client(create_app(settings))
    try:
        response = client.get("/healthz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
        assert "does not answer" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "5"
        pull = client.post("/v1/pull", json={}, headers={"Authorization": "Bearer x"})
        assert pull.status_code == 503
    finally:
        client.close()
