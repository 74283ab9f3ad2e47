"""No request makes the server answer a 5xx or do unbounded work (issue 16), against a real server process:
JSON nested deeply, numbers beyond a BIGINT, a gzip bomb (alone and three at once, with the server's peak
resident memory read from /proc), a body of millions of tiny values (plain JSON or compact), 40,000 hand-offs
in one relay request, and hand-offs from a device that never carried the bundle. Each is refused with a 4xx of
the one error envelope."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from caresync import Replica
from caresync.sync.bundles.format import MAX_HANDOFFS, canonical
from caresync.sync.bundles.relay import make_bundle
from caresync.sync.wire import MEDIA_TYPE
from caresync.testing import FakeClock

from caresync_server.testing import enroll
from support import GRID, START_MS, Live

MIB = 1024 * 1024
JSON_ROUTES = ["/v1/push", "/v1/pull", "/v1/relay", "/v1/enroll", "/v1/token", "/v1/numbers"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = Live(tmp_path_factory.mktemp("bounds"))
    yield server
    server.close()


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("shape", ["lists", "objects"])
def test_json_nested_deeply_is_a_400_on_every_route(live: Live, path: str, shape: str) -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth if shape == "lists" else b'{"a":' * depth + b"1" + b"}" * depth
    refused(live.post(path, content=body, headers={"Content-Type": "application/json"}), 400, "invalid_json")
    assert live.http.get("/healthz").status_code == 200


def test_numbers_beyond_a_bigint_on_the_relay_are_a_422(live: Live) -> None:
    handoff = {"answer": "ab", "bundle": "0123456789abcdef", "origin": "0123456789abcdef", "exported_ms": 2**70}
    error = refused(live.post("/v1/relay", json={"bundle": None, "handoffs": [handoff]}), 422, "invalid_request")
    assert any(d["field"] == "handoffs.0.exported_ms" for d in error["details"]), error
    refused(live.post("/v1/relay", json={"bundle": None, "carried_since_ms": 2**70}), 422, "invalid_request")
    refused(live.post("/v1/relay", json={"bundle": None, "handoffs": {}}), 422, "invalid_request")


def _device(live: Live, tmp_path: Path, name: str) -> Replica:
    """An offline device's replica, enrolled (with a token, bound to its replica by one pull)."""
    device = Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock(START_MS))
    live.tokens[name] = enroll(live.process.env["CARESYNC_DATABASE_URL"], name, role="grid_worker", grids=[GRID])
    live.post("/v1/pull", name, json={"replica": device.id, "time_ms": START_MS}).raise_for_status()
    return device


def test_a_bundle_with_a_time_beyond_a_bigint_is_refused_not_a_500(live: Live, tmp_path: Path) -> None:
    device = _device(live, tmp_path, "kiosk-far-future")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        bundle = make_bundle(device, now_ms=START_MS)
        del bundle["sig"]
        bundle["created_ms"] = 2**70  # signed by its device: the bundle is genuine, its clock is not
        bundle["sig"] = device.device_key.sign(canonical(bundle)).hex()
    finally:
        device.close()
    answer = live.post("/v1/relay", "courier", json={"bundle": bundle})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "refused" and answer.json()["code"] == "bundle_invalid", answer.json()


def _bomb(inflated: int) -> bytes:
    """A push body that gzips to some 30 KB per 30 MB: an envelope whose ops list is mostly spaces."""
    head = b'{"replica":"0123456789abcdef","time_ms":1,"ops":['
    return gzip.compress(head + b" " * inflated + b"]}", compresslevel=9)


def test_a_gzip_bomb_is_refused_before_it_inflates(live: Live) -> None:
    bomb = _bomb(30 * MIB)
    assert len(bomb) < 64 * 1024
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    _, peak_before = live.process.memory()
    for path in ("/v1/push", "/v1/relay"):
        refused(live.post(path, content=bomb, headers=headers), 413, "batch_too_large")
    with ThreadPoolExecutor(3) as pool:  # three at once
        answers = list(pool.map(lambda _: live.post("/v1/push", content=bomb, headers=headers), range(3)))
    for answer in answers:
        refused(answer, 413, "batch_too_large")
    _, peak_after = live.process.memory()
    # each is inflated to at most max_body_bytes (8 MiB) before it is refused; before, one took 700 MB
    assert peak_after - peak_before < 64 * MIB, (peak_before, peak_after)


def test_a_compact_bomb_is_refused_before_it_inflates(live: Live) -> None:
    import zlib

    from caresync.sync.wire import _DICT_1  # the compact form's preset dictionary

    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _DICT_1)
    body = b"CS\x03\x01" + packer.compress(b" " * (60 * MIB)) + packer.flush()
    _, peak_before = live.process.memory()
    error = refused(live.post("/v1/push", content=body, headers={"Content-Type": MEDIA_TYPE}), 400, "invalid_encoding")
    assert "too large" in error["message"], error
    _, peak_after = live.process.memory()
    assert peak_after - peak_before < 64 * MIB, (peak_before, peak_after)


def test_a_body_of_millions_of_tiny_values_is_refused_before_it_is_parsed(live: Live) -> None:
    body = b'{"replica":"0123456789abcdef","time_ms":1,"ops":[' + b",".join([b"[]"] * 2_500_000) + b"]}"
    assert len(body) < 8 * MIB
    _, peak_before = live.process.memory()
    refused(live.post("/v1/push", content=body, headers={"Content-Type": "application/json"}), 413, "batch_too_large")
    _, peak_after = live.process.memory()
    assert peak_after - peak_before < 64 * MIB, (peak_before, peak_after)


def test_a_compact_batch_of_millions_of_tiny_values_is_refused_before_it_is_parsed(live: Live) -> None:
    """The values inside a compact batch count against the same bound as a plain JSON body's."""
    import zlib

    from caresync.sync.wire import _DICT_1  # the compact form's preset dictionary

    content = b'{"replica":"0123456789abcdef","time_ms":1,"extra":[' + b",".join([b"[]"] * 2_500_000) + b"]}"
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _DICT_1)
    body = b"CS\x03\x01" + packer.compress(content) + packer.flush()
    assert len(content) < 8 * MIB and len(body) < 100_000
    _, peak_before = live.process.memory()
    error = refused(live.post("/v1/push", content=body, headers={"Content-Type": MEDIA_TYPE}), 413, "batch_too_large")
    assert "JSON values" in error["message"], error
    _, peak_after = live.process.memory()
    assert peak_after - peak_before < 64 * MIB, (peak_before, peak_after)


def test_forty_thousand_handoffs_in_one_request_are_refused_at_once(live: Live) -> None:
    handoff = {"answer": "ab", "bundle": "0123456789abcdef", "origin": "0123456789abcdef", "exported_ms": 1}
    body = {"bundle": None, "handoffs": [handoff] * 40_000}
    error = refused(live.post("/v1/relay", "courier", json=body), 422, "invalid_request")
    assert any(d["field"] == "handoffs" for d in error["details"]), error
    body = {"bundle": None, "handoffs": [handoff] * MAX_HANDOFFS}  # the most one request may carry
    assert live.post("/v1/relay", "courier", json=body).json()["handoffs_ignored"] == MAX_HANDOFFS


def _log(live: Live) -> list[dict[str, Any]]:
    response = live.http.get("/v1/relays", headers={"Authorization": f"Bearer {live.tokens['station']}"})
    assert response.status_code == 200, response.text
    relays: list[dict[str, Any]] = response.json()["relays"]
    return relays


def test_handoffs_are_taken_only_from_the_carrier_or_the_device(live: Live, tmp_path: Path) -> None:
    device = _device(live, tmp_path, "kiosk")
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        bundle = make_bundle(device, now_ms=START_MS)
    finally:
        device.close()
    delivered = live.post("/v1/relay", "courier", json={"bundle": bundle, "carried_since_ms": START_MS})
    assert delivered.json()["status"] == "delivered", delivered.text
    answer_id = delivered.json()["answer"]["id"]
    handoff = {"answer": answer_id, "bundle": bundle["id"], "origin": bundle["origin"], "exported_ms": START_MS + 5}
    # a courier that never carried the bundle, and a device it was not for: ignored, nothing in the log
    for stranger in ("other", "worker"):
        answer = live.post("/v1/relay", stranger, json={"bundle": None, "handoffs": [handoff]})
        assert answer.json()["handoffs_ignored"] == 1, answer.text
    # the courier that delivered it, and the device it was for: recorded, once each
    for carrier in ("courier", "courier", "kiosk"):
        answer = live.post("/v1/relay", carrier, json={"bundle": None, "handoffs": [handoff]})
        assert answer.json()["handoffs_ignored"] == 0, answer.text
    [entry] = [r for r in _log(live) if r["bundle"] == bundle["id"]]
    handed = sorted(e["by"] for e in entry["events"] if e["event"] == "answer_handed")
    assert handed == ["courier-zhao", "kiosk"], entry
