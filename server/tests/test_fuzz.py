"""Fuzzing /v1/push and /v1/pull with hypothesis: random JSON, op-shaped objects with wrong types, huge numbers,
unknown kinds, missing fields, damaged compact batches. Never a 5xx; whatever was stored before stays as it was;
every answer's counts match what the store gained; a valid push still works at the end."""

from __future__ import annotations

import json
from typing import Any

import pytest
from caresync.core.ops import KNOWN_KINDS
from caresync.errors import CaresyncError
from caresync.sync.wire import MEDIA_TYPE, encode_envelope
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from caresync_server.storage import ops as ops_table
from support import GRID, START_MS, ReplicaFactory, Server, own_ops

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "\x00", "\ud800", "ticket.set", "T-0000000000000000-1", "changnan/dorm/3"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
OP_KEYS = ["v", "kind", "origin", "seq", "hlc", "eid", "actor", "at", "body"]


@pytest.fixture
def fuzzed(server: Server, make_replica: ReplicaFactory) -> tuple[Server, str, str, list[dict[str, Any]]]:
    station = make_replica("station")
    token = server.enroll("station")
    wang = station.residents.register(name="Old Wang", grid=GRID, phone="+86 138 0000 0000")
    ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID, resident_id=wang.id)
    station.tickets.edit(ticket.id, title="Leak on floor 3")
    station.tickets.accept(ticket.id, assignee="grid-li")
    station.tickets.note(ticket.id, "Plumber booked")
    station.visits.record(resident_id=wang.id, outcome="well")
    parcel = station.parcels.register(code="P-1", grid=GRID, resident_id=wang.id)
    station.parcels.hop(parcel.id, "dropped")
    ops = own_ops(station)
    assert server.push(token, station.id, ops[:6]).status_code == 200
    return server, token, station.id, ops


def _ops_op(base: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Real ops with one field replaced or removed, and op-shaped objects of random values."""
    mutated = st.builds(
        lambda op, key, value, drop: {k: v for k, v in {**op, key: value}.items() if not (drop and k == key)},
        st.sampled_from(base),
        st.sampled_from(OP_KEYS),
        json_values | st.sampled_from(sorted(KNOWN_KINDS)) | st.integers(min_value=2**62, max_value=2**80),
        st.booleans(),
    )
    shaped = st.fixed_dictionaries({}, optional={key: json_values for key in OP_KEYS})
    return mutated | shaped | st.sampled_from(base)


def _near_valid(base: list[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """A run of real ops with one of them given a plausible but different value: another seq, stamp, record,
    device, kind or body. These pass validation and reach forks, gaps, waiting and refused ops."""
    plausible = {
        "seq": st.integers(min_value=1, max_value=len(base) + 3),
        "hlc": st.sampled_from([op["hlc"] for op in base]) | st.integers(min_value=0, max_value=2**63 - 1),
        "at": st.integers(min_value=0, max_value=2**63 + 5),
        "eid": st.sampled_from([op["eid"] for op in base] + ["T-0000000000000001-1", "R-ffffffffffffffff-9"]),
        "origin": st.sampled_from([base[0]["origin"], "0000000000000001"]),
        "kind": st.sampled_from(sorted(KNOWN_KINDS)),
        "body": st.sampled_from([op["body"] for op in base]),
        "actor": st.text(min_size=1, max_size=5),
    }

    @st.composite
    def batch(draw: st.DrawFn) -> list[dict[str, Any]]:
        start = draw(st.integers(min_value=0, max_value=len(base) - 1))
        end = draw(st.integers(min_value=start + 1, max_value=len(base)))
        ops = [dict(op) for op in base[start:end]]
        i = draw(st.integers(min_value=0, max_value=len(ops) - 1))
        key = draw(st.sampled_from(sorted(plausible)))
        ops[i][key] = draw(plausible[key])
        return ops

    return batch()


def _envelopes(replica_id: str, base: list[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Mostly well-formed envelopes carrying damaged ops (so the ops reach the deeper checks), some with damaged
    envelope fields, some any JSON at all."""
    optional = {"pending": json_values, "oldest_unsent_ms": json_values}
    ops = st.lists(_ops_op(base), max_size=6) | _near_valid(base)
    good = st.fixed_dictionaries({"replica": st.just(replica_id), "time_ms": st.just(START_MS), "ops": ops})
    damaged = st.fixed_dictionaries(
        {
            "replica": st.just(replica_id) | json_values,
            "time_ms": st.just(START_MS) | json_values,
            "ops": ops | json_values,
        },
        optional=optional,
    )
    return st.one_of(good, good, good, damaged, json_values)


def _snapshot(server: Server) -> list[tuple[Any, ...]]:
    with server.storage.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(ops_table).order_by(ops_table.c.cursor))]


@given(data=st.data())
@FUZZ
def test_push_never_fails_on_bad_input(fuzzed: tuple[Server, str, str, list[dict[str, Any]]], data: Any) -> None:
    server, token, replica_id, base = fuzzed
    before = _snapshot(server)
    envelope = data.draw(_envelopes(replica_id, base), label="envelope")
    form = data.draw(st.sampled_from(["json", "compact", "bytes"]), label="form")
    headers = {"Authorization": f"Bearer {token}"}
    if form == "bytes":
        kind = data.draw(st.sampled_from(["application/json", MEDIA_TYPE]), label="content type")
        raw = data.draw(st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: b"CS\x01\x01" + b))
        response = server.client.post("/v1/push", content=raw, headers={**headers, "Content-Type": kind})
    else:
        try:
            compact = encode_envelope(envelope) if form == "compact" and isinstance(envelope, dict) else None
        except (CaresyncError, ValueError):
            compact = None  # the compact form cannot hold it (not ops, or text that is not Unicode): send JSON
        if compact is not None:
            response = server.client.post("/v1/push", content=compact, headers={**headers, "Content-Type": MEDIA_TYPE})
        else:
            body = json.dumps(envelope).encode("utf-8", "surrogatepass")
            response = server.client.post("/v1/push", content=body, headers=headers)
    assert response.status_code < 500, response.text
    event(f"{response.status_code} {response.json().get('error', {}).get('code', '')}")
    after = _snapshot(server)
    assert after[: len(before)] == before  # what was stored stays as it was
    if response.status_code == 200:
        assert len(after) - len(before) == response.json()["stored"]
    else:
        assert after == before
        assert set(response.json()["error"]) == {"code", "message", "details"}


@given(
    body=json_values
    | st.fixed_dictionaries({}, optional={k: json_values for k in ("replica", "cursor", "limit", "time_ms")})
)
@FUZZ
def test_pull_never_fails_on_bad_input(fuzzed: tuple[Server, str, str, list[dict[str, Any]]], body: Any) -> None:
    server, token, _, _ = fuzzed
    content = json.dumps(body).encode("utf-8", "surrogatepass")
    response = server.client.post(
        "/v1/pull", content=content, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    assert response.status_code < 500, response.text


def test_after_the_fuzzing_a_valid_push_still_works(fuzzed: tuple[Server, str, str, list[dict[str, Any]]]) -> None:
    server, token, replica_id, base = fuzzed
    answer = server.push(token, replica_id, base)
    assert answer.status_code == 200 and answer.json()["acked"] == [[replica_id, 1, len(base)]]
