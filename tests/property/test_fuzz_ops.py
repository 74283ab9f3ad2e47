"""Whatever arrives from another replica, apply_ops either applies it or raises a CaresyncError, and a refused
batch changes nothing. Hypothesis mutates valid ops (wrong types, missing and extra keys, odd values) and
also throws arbitrary JSON at it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caresync import CaresyncError, Replica
from caresync.testing import FakeClock

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
KEYS = ["v", "kind", "origin", "seq", "hlc", "eid", "actor", "at", "body"]


def _valid_ops() -> list[dict[str, Any]]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Replica.open(Path(tmp) / "src.db", actor="clerk", now_ms=FakeClock()) as src,
    ):
        t = src.tickets.submit(title="Septic tank", kind="repair", grid="changnan/dorm/3")
        src.tickets.edit(t.id, title="Septic tank blocked", priority="high")
        src.tickets.accept(t.id, assignee="li")
        src.tickets.note(t.id, "called the plumber")
        r = src.residents.register(name="Old Wang", grid="changnan/dorm/3", phone="138 0000 0000")
        src.visits.record(resident_id=r.id, outcome="well")
        p = src.parcels.register(code="P-1", grid="changnan/dorm/3")
        src.parcels.hop(p.id, "dropped")
        return src.export_ops()


VALID = _valid_ops()


@st.composite
def mutated_batches(draw: st.DrawFn) -> list[Any]:
    ops = [dict(o, body=dict(o["body"])) for o in VALID]
    for _ in range(draw(st.integers(1, 4))):
        op = ops[draw(st.integers(0, len(ops) - 1))]
        if not isinstance(op, dict):
            continue
        how = draw(st.sampled_from(["set", "drop", "extra", "body_set", "body_drop", "replace_op"]))
        if how == "set":
            op[draw(st.sampled_from(KEYS))] = draw(json_values)
        elif how == "drop":
            op.pop(draw(st.sampled_from(KEYS)), None)
        elif how == "extra":
            op[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        elif how == "body_set" and isinstance(op.get("body"), dict):
            keys = [*op["body"], "x"]
            op["body"][draw(st.sampled_from(keys))] = draw(json_values)
        elif how == "body_drop" and isinstance(op.get("body"), dict) and op["body"]:
            op["body"].pop(draw(st.sampled_from(sorted(op["body"]))))
        elif how == "replace_op":
            ops[ops.index(op)] = draw(json_values)
    return draw(st.permutations(ops))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.one_of(mutated_batches(), st.lists(json_values, max_size=5)))
def test_apply_ops_refuses_cleanly_or_applies(batch: list[Any]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Replica.open(Path(tmp) / "dst.db", actor="dst", now_ms=FakeClock()) as dst,
    ):
        before = dst.state_digest()
        try:
            dst.apply_ops(batch)
        except CaresyncError:
            assert dst.state_digest() == before
            assert dst.op_count() == 0
        # whatever happened, the replica still works and answers queries
        dst.tickets.submit(title="still works", kind="errand", grid="changnan")
        dst.conflicts()
        dst.tickets.list(include_deleted=True)
        dst.parcels.list(include_deleted=True)
