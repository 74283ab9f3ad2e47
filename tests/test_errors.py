"""Bad input gets a clear error of caresync's own hierarchy, naming what is wrong, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import caresync
from caresync import (
    CaresyncError,
    ForgedOpError,
    IntentError,
    InvalidInputError,
    InvalidOpError,
    NotFoundError,
    OpForkError,
    Replica,
)
from caresync.testing import key_for, sign
from caresync.trust.signing import verify_ops

from .conftest import ReplicaFactory

GRID = "changnan/teachers-dorm/3"


def test_every_error_is_a_caresync_error_with_a_code() -> None:
    errors = [getattr(caresync, name) for name in caresync.__all__ if name.endswith("Error")]
    assert errors and all(issubclass(e, CaresyncError) for e in errors)
    assert len({e.code for e in errors}) == len(errors)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda r, t: r.tickets.rate(t, score=9), InvalidInputError, "score: must be 1 to 5, got 9"),
        (lambda r, t: r.tickets.close(t), IntentError, "resolve the ticket before returning it"),
        (lambda r, t: r.tickets.rate(t, score=4), IntentError, "close the ticket first"),
        (
            lambda r, t: r.tickets.submit(title="x", kind="plumbing", grid=GRID),
            InvalidInputError,
            "'plumbing' is not a ticket kind",
        ),
        (lambda r, t: r.tickets.get("T-nope"), NotFoundError, "No ticket with id 'T-nope'"),
        (lambda r, t: r.tickets.accept("T-nope", assignee="li"), NotFoundError, "sync to fetch it"),
        (
            lambda r, t: r.tickets.submit(title="x", kind="repair", grid="a//b"),
            InvalidInputError,
            "grid: Value error, 'a//b' is not a grid path",
        ),
        (lambda r, t: r.tickets.submit(title="", kind="repair", grid=GRID), InvalidInputError, "title"),
        (
            lambda r, t: r.tickets.submit(title="x", kind="repair", grid=GRID, channel="pigeon"),
            InvalidInputError,
            "channel",
        ),
        (lambda r, t: r.tickets.edit(t, colour="red"), InvalidInputError, "colour: not a field you can edit"),
        (lambda r, t: r.tickets.edit(t, priority="asap"), InvalidInputError, "priority"),
        (lambda r, t: r.tickets.start(t), IntentError, "accept the ticket first"),
        (
            lambda r, t: r.tickets.submit(title="x", kind="repair", grid=GRID, resident_id="R-nobody"),
            NotFoundError,
            "No resident",
        ),
        (lambda r, t: r.residents.register(name="Wang", grid=GRID, phone="call me"), InvalidInputError, "phone"),
        (lambda r, t: r.visits.record(resident_id="R-nobody", outcome="well"), NotFoundError, "No resident"),
        (lambda r, t: r.parcels.hop("P-nope", "picked_up"), NotFoundError, "No parcel"),
    ],
)
def test_local_calls_that_make_no_sense(
    make_replica: ReplicaFactory, call: Callable[[Replica, str], Any], error: type[CaresyncError], words: str
) -> None:
    r = make_replica("station")
    tid = r.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID).id
    before, count = r.state_digest(), r.op_count()
    with pytest.raises(error) as caught:
        call(r, tid)
    assert words in str(caught.value)
    assert (r.state_digest(), r.op_count()) == (before, count)
    r.tickets.edit(tid, title="still writable")  # the replica keeps working, and no seq was skipped
    assert r.version_vector() == {r.id: count + 1}


def test_delivery_needs_the_confirmation_code(make_replica: ReplicaFactory) -> None:
    r = make_replica("courier")
    parcel = r.parcels.register(code="P-1", grid=GRID, direction="to_resident")
    with pytest.raises(InvalidInputError, match="confirm_code"):
        r.parcels.hop(parcel.id, "delivered")


def _op(**overrides: Any) -> dict[str, Any]:
    op = {
        "v": 1,
        "kind": "ticket.create",
        "origin": "0123456789abcdef",
        "seq": 1,
        "hlc": 5 << 20,
        "eid": "T-0123456789abcdef-1",
        "actor": "clerk",
        "at": 5,
        "body": {"title": "x", "kind": "repair", "channel": "walk_in", "grid": GRID, "due_at": 10},
    }
    op.update(overrides)
    return op


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (_op(seq=0), "seq"),
        (_op(origin="XYZ"), "origin"),
        (_op(body={"title": "x"}), "body.kind"),
        (
            _op(body={"title": "x", "kind": "repair", "channel": "walk_in", "grid": GRID, "due_at": 10, "evil": 1}),
            "evil",
        ),
        (_op(kind="ticket.set", body={"field": "rating", "value": {"score": 9}, "replaces": []}), "score"),
        (_op(kind="ticket.set", body={"field": "title", "value": "x", "replaces": ["not-an-op-id"]}), "replaces"),
        (_op(kind="Ticket.Create!"), "kind"),
        (_op(kind=["ticket.create"]), "kind"),  # found by tests/property/test_fuzz_ops.py
        ("not an object", "must be a JSON object"),
    ],
)
def test_malformed_ops_from_elsewhere_are_refused_whole(make_replica: ReplicaFactory, bad: Any, words: str) -> None:
    r = make_replica("station")
    good = _op(seq=1)
    before = r.state_digest()
    with pytest.raises(InvalidOpError) as caught:
        r.apply_ops([good, {**bad, "seq": bad["seq"] + 1 if bad["seq"] else 0} if isinstance(bad, dict) else bad])
    assert words in str(caught.value)
    assert r.state_digest() == before and r.op_count() == 0


def test_forked_device_is_refused(make_replica: ReplicaFactory) -> None:
    a = make_replica("a")
    b = make_replica("b")
    a.tickets.submit(title="original", kind="repair", grid=GRID)
    b.sync_with(a)
    forked = a.export_ops()[0]
    # signed by the device's own key: a copy of the device restored from a backup made a different op
    forked = sign({**forked, "body": {**forked["body"], "title": "a different op with the same id"}}, a.device_key)
    with pytest.raises(OpForkError, match="restored from a backup"):
        b.apply_ops([forked])
    assert b.state_digest() == a.state_digest()


def test_an_altered_or_forged_op_is_refused_and_changes_nothing(make_replica: ReplicaFactory) -> None:
    a = make_replica("a")
    b = make_replica("b")
    ticket = a.tickets.submit(title="Leak", kind="repair", grid=GRID)
    a.tickets.note(ticket.id, "the plumber comes on Tuesday")
    first, note = a.export_ops()
    before = b.state_digest()
    altered = {**note, "body": {"text": "the plumber never comes"}}
    someone = key_for("a curious courier")
    in_a_name = sign({**note, "origin": someone.origin}, someone)
    in_a_name["origin"] = a.id  # signed with its own key, claiming to be the station's change
    unsigned = {k: v for k, v in note.items() if k != "sig"}
    for bad, why in [
        (altered, "does not match its content"),
        (in_a_name, "not its device's"),
    ]:
        with pytest.raises(ForgedOpError, match="altered on the way, or forged") as info:
            b.apply_ops([first, bad])
        assert info.value.code == "bad_signature"
        assert info.value.problems[0][0] == f"op {a.id}:2 (ticket.note)" and why in info.value.problems[0][1]
        assert b.state_digest() == before and b.op_count() == 0
    # an op without its signature, and without a later op of its device to vouch for it, is left out: it may be
    # the inside of a run whose last op a lossy link dropped, and it is taken when it comes again with that op
    result = b.apply_ops([first, unsigned])
    assert (result.applied, result.unchecked) == (1, 1) and b.op_count() == 1
    with pytest.raises(ForgedOpError, match="travelled without its signature"):
        verify_ops([first, unsigned])  # a server's pull answer never leaves a run open: refused there
    b.apply_ops([first, note])
    assert b.history(ticket.id)[1].signed_by == a.device_key.public_key.hex()


def test_open_needs_an_actor(tmp_path: Any) -> None:
    with pytest.raises(InvalidInputError, match="actor"):
        Replica.open(tmp_path / "x.db", actor=" ")


def test_due_hours_must_name_ticket_kinds(tmp_path: Any) -> None:
    with pytest.raises(InvalidInputError, match="due_hours"):
        Replica.open(tmp_path / "x.db", actor="clerk", due_hours={"plumbing": 3})
    with Replica.open(tmp_path / "y.db", actor="clerk", due_hours={"repair": 24}) as r:
        t = r.tickets.submit(title="x", kind="repair", grid=GRID)
        assert (t.due_at - t.submitted_at).total_seconds() == 24 * 3600
