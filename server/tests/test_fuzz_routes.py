"""Fuzzing every route of a real server process (issue 16): hypothesis draws the route, who asks (a station, a
courier, a grid worker, no token, a made-up one), the body (structured: the route's own fields with random
values, numbers far beyond a BIGINT, nesting hundreds deep; or raw bytes), its content type and whether it is
gzipped. Never a 5xx; every refusal is the one error envelope; the server's peak resident memory stays bounded.
The run in CI is small; ``pytest --soak`` runs a long one."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from caresync.sync.wire import MEDIA_TYPE, encode_envelope
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import GRID, START_MS, Live

MIB = 1024 * 1024

#: Every route, and the fields its body (or query) has.
ROUTES: dict[tuple[str, str], list[str]] = {
    ("POST", "/v1/push"): ["replica", "time_ms", "pending", "oldest_unsent_ms", "ops"],
    ("POST", "/v1/pull"): ["replica", "cursor", "limit", "time_ms"],
    ("POST", "/v1/relay"): ["courier", "bundle", "carried_since_ms", "handoffs"],
    ("POST", "/v1/enroll"): ["code", "public_key"],
    ("POST", "/v1/token"): ["replica", "time_ms", "signature"],
    ("POST", "/v1/numbers"): ["count"],
    ("PUT", "/v1/station-key"): ["public_key"],
    ("GET", "/v1/device"): [],
    ("GET", "/v1/relays"): ["limit"],
    ("GET", "/v1/info"): [],
    ("GET", "/healthz"): [],
    ("GET", "/v1/admin/devices"): [],
    ("POST", "/v1/admin/devices"): ["name", "role", "grids"],
    ("POST", "/v1/admin/devices/2/revoke"): [],
    ("PUT", "/v1/admin/devices/2/scope"): ["grids", "role"],
}
OP_KEYS = ["v", "kind", "origin", "seq", "hlc", "eid", "actor", "at", "body", "sig", "pd"]
BUNDLE_KEYS = ["caresync_bundle", "type", "id", "origin", "public_key", "created_ms", "expires_ms", "cursor"]
BUNDLE_KEYS += ["receipts", "ops", "sig"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 0, -1, 1])
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "0123456789abcdef", "1.2", "ab" * 32, "ticket.set", GRID, "sealed:1:AAAA"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


values = json_values | st.integers(min_value=0, max_value=300).map(_nested)
ops = st.lists(st.fixed_dictionaries({}, optional={key: values for key in OP_KEYS}), max_size=4)
bundles = st.fixed_dictionaries({}, optional={key: values for key in BUNDLE_KEYS} | {"ops": ops})
big = st.sampled_from([2**63 - 1, 2**63, -1, 2**70, START_MS]) | st.integers(min_value=-(2**80), max_value=2**80)
handoff = st.fixed_dictionaries(
    {"answer": st.just("ab"), "bundle": st.just("0123456789abcdef"), "origin": st.just("0123456789abcdef")},
    optional={"exported_ms": big},
)
handoffs = st.lists(
    handoff | st.fixed_dictionaries({}, optional={key: values for key in ("answer", "bundle", "origin")}),
    max_size=4,
)


def _fields(route: tuple[str, str]) -> st.SearchStrategy[Any]:
    special = {"ops": ops | values, "bundle": bundles | values, "handoffs": handoffs | values}
    special |= {"carried_since_ms": big | values, "time_ms": big | values, "count": big | values, "limit": big | values}
    fields = {key: special.get(key, values) for key in ROUTES[route]}
    return st.fixed_dictionaries(fields) | st.fixed_dictionaries({}, optional=fields)


@st.composite
def requests(draw: st.DrawFn, route: tuple[str, str]) -> tuple[str | None, dict[str, Any]]:
    """Whose token, and httpx's arguments for a request to ``route``."""
    method = route[0]
    who = draw(st.sampled_from(["station", "courier", "worker"]) | st.sampled_from([None, "made-up"]))
    if method == "GET":
        query = draw(st.dictionaries(st.sampled_from(["limit", "x"]), st.text(max_size=25) | st.integers().map(str)))
        return who, {"params": query}
    kind = draw(st.sampled_from(["fields", "deep"]) | st.sampled_from(["value", "raw", "compact"]))
    if kind == "deep":  # nested far deeper than any parser's recursion limit
        depth = draw(st.sampled_from([150, 250, 1000, 100_000]))
        body = draw(st.sampled_from([b"[", b'{"a":'])) * depth + b"1" + draw(st.sampled_from([b"]", b"}"])) * depth
    elif kind == "fields":
        body = json.dumps(draw(_fields(route))).encode()
    elif kind == "value":
        body = json.dumps(draw(values)).encode()
    elif kind == "compact":
        try:
            body = encode_envelope({"replica": "0123456789abcdef", "time_ms": START_MS, "ops": []})
        except Exception:
            body = b"CS\x03\x01"
        cut = draw(st.integers(min_value=0, max_value=len(body)))
        body = body[:cut] + draw(st.binary(max_size=40))
    else:
        body = draw(st.binary(max_size=300))
    headers = {"Content-Type": draw(st.just("application/json") | st.sampled_from([MEDIA_TYPE, "text/plain", ""]))}
    if draw(st.booleans()):
        body = gzip.compress(body)
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "gzip", "br", "GZIP"]))
    return who, {"content": body, "headers": headers}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = Live(tmp_path_factory.mktemp("fuzz-routes"))
    yield server
    server.close()


def _send(live: Live, method: str, path: str, who: str | None, args: dict[str, Any]) -> httpx.Response:
    headers = dict(args.pop("headers", {}))
    if who is not None:
        headers["Authorization"] = f"Bearer {live.tokens.get(who, 'not-a-token')}"
    return live.http.request(method, path, headers=headers, **args)


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], error


def _fuzz(live: Live, route: tuple[str, str], examples: int) -> None:
    _, peak_before = live.process.memory()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(requests(route))
    def run(request: tuple[str | None, dict[str, Any]]) -> None:
        who, args = request
        _check(_send(live, *route, who, args))

    run()
    _, peak_after = live.process.memory()
    assert peak_after - peak_before < 96 * MIB, (peak_before, peak_after)
    assert live.http.get("/healthz").status_code == 200


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_no_route_answers_a_5xx_or_grows_without_bound(live: Live, route: tuple[str, str]) -> None:
    _fuzz(live, route, 80)


@pytest.mark.soak
@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_no_route_answers_a_5xx_or_grows_without_bound_soak(live: Live, route: tuple[str, str]) -> None:
    _fuzz(live, route, 5_000)


def test_the_fuzzed_server_still_syncs(live: Live, tmp_path: Path) -> None:
    from caresync import Replica
    from caresync.testing import FakeClock

    device = Replica.open(tmp_path / "after.db", actor="after", now_ms=FakeClock(START_MS))
    try:
        device.residents.register(name="Old Wang", grid=GRID)
        device.sync(live.process.url, token=live.tokens["station"])
        assert device.unsent_count() == 0
    finally:
        device.close()
