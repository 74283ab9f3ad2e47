"""Chained signatures: every op signs the link of its device's previous op, so one signature per run of
consecutive ops pins the whole run. Forged and altered ops are still refused and named, wherever they sit in
a run; links are derived where a batch leaves them out, checked against what a replica holds, and kept."""

from __future__ import annotations

import base64
import random
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from caresync import ForgedOpError, OpForkError, Replica
from caresync.core.ops import FORMAT_VERSION, LOST_KIND
from caresync.sync.wire import decode_envelope, encode_envelope
from caresync.testing import key_for, sign
from caresync.trust.signing import (
    ZERO_LINK,
    chain_link,
    failing_signatures,
    signature_needed,
    verify_each,
    verify_ops,
    verify_signed,
)
from tests.conftest import ReplicaFactory

GRID = "changnan/dorm/3"
N = 12


def _source(make_replica: ReplicaFactory, notes: int = N - 1) -> tuple[Replica, list[dict[str, Any]]]:
    a = make_replica("a")
    ticket = a.tickets.submit(title="Leak", kind="repair", grid=GRID)
    for i in range(notes):
        a.tickets.note(ticket.id, f"note {i}")
    return a, a.export_ops()


def _compact(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ops as they arrive in the compact wire form (links left out where they can be derived)."""
    return decode_envelope(encode_envelope({"ops": ops}))["ops"]


def _copy(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(op, body=dict(op["body"])) for op in ops]


def _alter_content(op: dict[str, Any]) -> None:
    if op["kind"] == "ticket.note":
        op["body"]["text"] = "something else"
    else:
        op["body"]["title"] = "something else"


def _alter_sig(op: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(op["sig"]))
    raw[40] ^= 1  # one bit of the signature itself
    op["sig"] = base64.b64encode(bytes(raw)).decode()


def _swap_key(op: dict[str, Any]) -> None:
    raw = base64.b64decode(op["sig"])
    op["sig"] = base64.b64encode(key_for("a curious courier").public_key + raw[32:]).decode()


ALTERATIONS = {
    "content": (_alter_content, "does not match its content"),
    "signature bytes": (_alter_sig, "does not match its content"),
    "key": (_swap_key, "not its device's"),
}


@pytest.mark.parametrize("form", ["json", "compact"])
@pytest.mark.parametrize("how", sorted(ALTERATIONS))
@pytest.mark.parametrize("where", [0, N // 2, N - 1])
def test_an_altered_op_anywhere_in_a_run_is_refused_and_named(
    make_replica: ReplicaFactory, where: int, how: str, form: str
) -> None:
    a, ops = _source(make_replica)
    b = make_replica("b")
    before = b.state_digest()
    alter, why = ALTERATIONS[how]
    batch = _copy(ops)
    alter(batch[where])
    if form == "compact":
        batch = _compact(batch)
    if how == "signature bytes" and where < N - 1:
        # a format 2 link pins the content of the ops before it, not their own signatures: the batch is taken
        # (its content is what the device signed), and the altered signature is found by whoever relies on it
        # alone: this replica before it sends the op to the server, the server before it keeps it
        b.apply_ops(batch)
        assert b.state_digest() == a.state_digest()
        verify_ops(batch)  # fills in the links the compact form leaves out, which a check of each op needs
        assert [(o["origin"], o["seq"]) for o in failing_signatures(batch)] == [(a.id, where + 1)]
        with pytest.raises(ForgedOpError) as info:
            verify_each(batch)
        assert info.value.problems[0][0].startswith(f"op {a.id}:{where + 1} (")
        with pytest.raises(ForgedOpError) as again:  # the server's one pass: links and runs, then each signature
            verify_signed(_copy(batch))
        assert again.value.problems == info.value.problems
        return
    with pytest.raises(ForgedOpError, match="altered on the way, or forged") as info:
        b.apply_ops(batch)
    assert info.value.problems[0][0].startswith(f"op {a.id}:{where + 1} (")
    assert why in info.value.problems[0][1]
    assert b.state_digest() == before and b.op_count() == 0
    # the same, through verify_ops alone, on a batch in another order
    batch = _copy(ops)
    alter(batch[where])
    random.Random(where).shuffle(batch)
    with pytest.raises(ForgedOpError) as info:
        verify_ops(batch)
    assert info.value.problems[0][0].startswith(f"op {a.id}:{where + 1} (")
    b.apply_ops(ops)
    assert b.state_digest() == a.state_digest()


@pytest.mark.parametrize("where", [1, N // 2, N - 1])
def test_an_altered_link_is_refused_and_named(make_replica: ReplicaFactory, where: int) -> None:
    a, ops = _source(make_replica)
    b = make_replica("b")
    for batch in (_copy(ops), _copy(ops[where:])):  # inside a run, and at the start of a batch
        op = next(o for o in batch if o["seq"] == where + 1)
        op["pd"] = bytes(16).hex() if op["pd"] != bytes(16).hex() else "11" * 16
        with pytest.raises(ForgedOpError) as info:
            b.apply_ops(batch)
        assert info.value.problems[0][0].startswith(f"op {a.id}:{where + 1} (")
        assert b.op_count() == 0
    # a link on a device's first op is refused too (it links to nothing)
    first = _copy(ops[:1])
    first[0]["pd"] = "22" * 16
    with pytest.raises(ForgedOpError, match="before its device's first"):
        b.apply_ops(first)


def test_an_altered_link_on_an_op_after_held_ones_is_a_forgery_not_a_fork(make_replica: ReplicaFactory) -> None:
    _, ops = _source(make_replica)
    b = make_replica("b")
    b.apply_ops(ops[:4])
    batch = _copy(ops[4:])
    batch[0]["pd"] = "33" * 16
    with pytest.raises(ForgedOpError):
        b.apply_ops(batch)
    assert b.op_count() == 4


def test_a_run_without_its_link_or_its_predecessor_cannot_be_checked(make_replica: ReplicaFactory) -> None:
    a, ops = _source(make_replica)
    b = make_replica("b")
    unlinked = [{k: v for k, v in op.items() if k != "pd"} for op in ops[5:]]
    with pytest.raises(ForgedOpError, match="lacks the link") as info:
        b.apply_ops(unlinked)
    assert info.value.problems[0][0].startswith(f"op {a.id}:6 (")
    assert b.op_count() == 0
    # once the replica holds the predecessor, the link is derived from it, checked, and stored
    b.apply_ops(ops[:5])
    b.apply_ops(unlinked)
    assert b.state_digest() == a.state_digest()
    assert _links(b) == _links(a)


def _links(r: Replica) -> dict[int, str | None]:
    with closing(sqlite3.connect(r.path)) as db:
        return dict(db.execute("SELECT seq, pd FROM ops ORDER BY seq").fetchall())


def test_reordered_duplicated_and_overlapping_deliveries_are_taken(make_replica: ReplicaFactory) -> None:
    a = make_replica("a")
    ticket = a.tickets.submit(title="Leak", kind="repair", grid=GRID)
    for i in range(99):
        a.tickets.note(ticket.id, f"note {i}")
    ops = a.export_ops()
    assert [op["seq"] for op in ops] == list(range(1, 101))
    b = make_replica("b")
    b.apply_ops(_compact(ops[:50]))  # held 1..50
    overlap = _compact(ops[39:])  # then 40..100: 51's link is derived from 50 in the batch, which b holds
    assert "pd" not in overlap[11]
    assert b.apply_ops(overlap).applied == 50
    assert _links(b) == _links(a) and all(_links(b)[seq] for seq in range(2, 101))
    c = make_replica("c")
    shuffled = _copy(ops) + _copy(ops[10:30])
    random.Random(7).shuffle(shuffled)
    result = c.apply_ops(_compact(shuffled))
    assert (result.applied, result.duplicates) == (100, 20)
    assert c.state_digest() == a.state_digest() and _links(c) == _links(a)


def test_ops_with_gaps_each_carry_their_link_and_fill_in_later(make_replica: ReplicaFactory) -> None:
    a, ops = _source(make_replica)
    b = make_replica("b")
    scoped = _compact(ops[1::3])  # a pull filtered by scope: no op follows its predecessor
    assert all("pd" in op for op in scoped)
    b.apply_ops(scoped)
    b.apply_ops(_compact(ops))  # the rest, later: each new run is checked against the held ops after it
    assert b.state_digest() == a.state_digest() and _links(b) == _links(a)
    c = make_replica("c")
    c.sync_with(b)  # and b passes on what it derived and stored
    assert c.state_digest() == a.state_digest()


def test_a_device_that_signed_two_histories_is_refused(make_replica: ReplicaFactory) -> None:
    a, ops = _source(make_replica)
    key = a.device_key
    other = sign({**_copy(ops[4:5])[0], "body": {"text": "another history"}}, key)  # op 5, signed twice
    follows_other = sign(_copy(ops[5:6])[0], key)  # op 6, signed after the other op 5
    b = make_replica("b")
    # in one batch: op 6 names another op 5 than the one in the batch
    with pytest.raises(OpForkError, match=f"op {a.id}:5"):
        b.apply_ops([*ops[:5], follows_other])
    # against a held predecessor
    b.apply_ops(ops[:5])
    with pytest.raises(OpForkError, match="another op before it than the one this replica holds"):
        b.apply_ops([follows_other])
    # against a held successor
    c = make_replica("c")
    c.apply_ops(ops[:4])
    c.apply_ops(ops[5:])
    with pytest.raises(OpForkError, match=f"op {a.id}:6, held here"):
        c.apply_ops([other])
    assert c.op_count() == N - 1


def test_links_survive_a_redaction(make_replica: ReplicaFactory) -> None:
    station = make_replica("station")
    wang = station.residents.register(name="Old Wang", grid=GRID, phone="138 0000 0000")
    station.residents.note(wang.id, "lives alone")
    station.residents.edit(wang.id, phone="138 0000 1111")
    station.residents.redact(wang.id, reason="asked to be forgotten")
    station.tickets.submit(title="After", kind="repair", grid=GRID)
    ops = station.export_ops()
    assert ops[0]["body"]["name"] is None and "redacted" in ops[0]["body"]
    verify_ops(_compact(ops))
    assert chain_link(ops[0]) == bytes.fromhex(ops[1]["pd"])  # the redacted op's link is what op 2 signed
    b = make_replica("b")
    b.apply_ops(ops[:1])
    b.apply_ops(_compact(ops[1:]))  # op 2's link derived from the redacted op b holds
    assert b.state_digest() == station.state_digest()


def test_the_devices_own_link_is_kept_and_recomputed_when_missing(make_replica: ReplicaFactory) -> None:
    a, _ = _source(make_replica, notes=2)
    path = a.path
    a.close()
    with closing(sqlite3.connect(path)) as db:
        kept = db.execute("SELECT value FROM meta WHERE key = 'chain_link'").fetchone()[0]
        assert kept.startswith(f"{a.id}:3:")
        db.execute("DELETE FROM meta WHERE key = 'chain_link'")
        db.commit()
    with Replica.open(path, actor="a") as again:
        ticket = again.tickets.list()[0]
        again.tickets.note(ticket.id, "after reopening")
        with again.batch():
            again.tickets.note(ticket.id, "in a batch")
        with pytest.raises(RuntimeError), again.batch():
            again.tickets.note(ticket.id, "rolled back")
            raise RuntimeError
        again.tickets.note(ticket.id, "after the rollback")
        ops = again.export_ops()
    assert [op["seq"] for op in ops] == [1, 2, 3, 4, 5, 6]
    verify_ops(_copy(ops))
    verify_ops([{k: v for k, v in op.items() if k != "pd" or op is ops[0]} for op in ops])


def test_hand_made_ops_chain_in_seq_order() -> None:
    key = key_for("hand")
    ops = []
    for seq in (1, 2, 3):
        op = {
            "v": 1,
            "kind": "ticket.note",
            "origin": key.origin,
            "seq": seq,
            "hlc": 1 << 20,
            "eid": f"T-{key.origin}-1",
            "actor": "x",
            "at": 1,
            "body": {"text": str(seq)},
        }
        ops.append(sign(op, key))
    assert "pd" not in ops[0] and ops[1]["pd"] == chain_link(ops[0], ZERO_LINK).hex()
    verify_ops(ops)


def _hand_run(v: int, bodies: list[dict[str, Any]], kind: str = "ticket.note") -> list[dict[str, Any]]:
    key = key_for(f"hand v{v}")
    ops = []
    for seq, body in enumerate(bodies, start=1):
        op = {
            "v": v,
            "kind": kind,
            "origin": key.origin,
            "seq": seq,
            "hlc": seq << 20,
            "eid": f"T-{key.origin}-1",
            "actor": "x",
            "at": 1,
            "body": body,
        }
        ops.append(sign(op, key))
    return ops


@pytest.mark.parametrize("v", [1, 2])
def test_ops_of_either_format_are_checked(v: int) -> None:
    """Format 1 ops sign a digest per body value, format 2 ops their body itself: both pin the content."""
    ops = _hand_run(v, [{"text": f"note {i}"} for i in range(5)])
    verify_ops(_copy(ops))
    for where in range(5):
        batch = _copy(ops)
        batch[where]["body"]["text"] = "altered"
        with pytest.raises(ForgedOpError) as info:
            verify_ops(batch)
        assert info.value.problems[0][0].startswith(f"op {ops[0]['origin']}:{where + 1} (")
        batch = _copy(ops)
        batch[where]["v"] = 3 - v  # claiming the other format changes what the signature must cover
        with pytest.raises(ForgedOpError):
            verify_ops(batch)


def test_a_format_2_signature_does_not_depend_on_the_order_of_keys() -> None:
    body = {"summary": "s", "attendees": ["b", "a"], "extra": {"y": [1, {"q": 2, "p": 1}], "x": None}}
    (op,) = _hand_run(2, [body], kind="ticket.session")
    reordered = dict(
        op, body={"extra": {"x": None, "y": [1, {"p": 1, "q": 2}]}, "attendees": ["b", "a"], "summary": "s"}
    )
    verify_ops([reordered])
    for altered in (
        {**reordered["body"], "attendees": ["a", "b"]},  # list order is content
        {**reordered["body"], "extra": {"x": None, "y": [1, {"p": 1, "q": 3}]}},
        {**reordered["body"], "extra": {"x": 0, "y": [1, {"p": 1, "q": 2}]}},
    ):
        with pytest.raises(ForgedOpError):
            verify_ops([dict(op, body=altered)])


def test_format_2_ops_of_the_redactable_kinds_are_signed_per_value(make_replica: ReplicaFactory) -> None:
    """A redaction erases values of resident ops: their signatures must still check afterwards."""
    a = make_replica("a")
    rid = a.residents.register(name="Zhang Guilan", grid=GRID, phone="13800000000").id
    ops = a.export_ops()
    assert {op["v"] for op in ops} == {4} and FORMAT_VERSION >= 4  # resident ops: format 4, signed per value
    a.residents.redact(rid, fields=["name", "phone"], reason="moved away")
    redacted = a.export_ops()
    assert redacted[0]["body"]["name"] is None and "redacted" in redacted[0]["body"]
    verify_ops(redacted)


def _as_pulled(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ops as a server's pull answer sends them: a signature only on the last op of each run."""
    needed = signature_needed([(op["origin"], op["seq"], op["v"]) for op in ops])
    return [
        op if keep else {k: v for k, v in op.items() if k != "sig"} for op, keep in zip(_copy(ops), needed, strict=True)
    ]


@pytest.mark.parametrize("where", [0, N // 2, N - 1])
def test_a_run_that_travels_with_one_signature_pins_every_op(make_replica: ReplicaFactory, where: int) -> None:
    a, ops = _source(make_replica)
    pulled = _as_pulled(ops)
    assert [("sig" in op) for op in pulled] == [False] * (N - 1) + [True]
    b = make_replica("b")
    before = b.state_digest()
    altered = _copy(pulled)
    _alter_content(altered[where])
    with pytest.raises(ForgedOpError) as info:
        b.apply_ops(_compact(altered))
    assert info.value.problems[0][0].startswith(f"op {a.id}:{N} (")  # the signature that no longer matches
    without_end = _copy(pulled)[:-1]
    with pytest.raises(ForgedOpError, match="altered on the way") as info:
        verify_ops(_copy(without_end))  # as a network pull checks a page: a run left open is refused
    assert "travelled without its signature" in info.value.problems[0][1]
    result = b.apply_ops(without_end)  # from another replica: left out until the op that closes the run comes
    assert (result.applied, result.unchecked) == (0, N - 1)
    assert b.state_digest() == before and b.op_count() == 0
    b.apply_ops(_compact(pulled))
    assert b.state_digest() == a.state_digest()
    assert b.history(ops[0]["eid"])[0].signed_by == a.device_key.public_key.hex()  # known from the run's end


def test_ops_held_without_their_signature_are_sent_on_in_checkable_runs(make_replica: ReplicaFactory) -> None:
    """A replica that holds ops as a pull answer left them (one signature per run) sends them to a peer in runs
    that end at a signed op, whatever its batches cut, and never pushes them to the server (which has them)."""
    a, ops = _source(make_replica, notes=40)
    b, c = make_replica("b"), make_replica("c")
    b.apply_ops(_as_pulled(ops))
    assert b.unsent_count() == 1  # only the signed op: the others came as only a pull answer sends them
    c.sync_with(b, batch_size=7)
    assert c.state_digest() == a.state_digest() and c.op_count() == len(ops)


def test_other_devices_signatures_are_checked_before_they_go_to_the_server(make_replica: ReplicaFactory) -> None:
    a, ops = _source(make_replica)
    b = make_replica("b")
    batch = _copy(ops)
    _alter_sig(batch[3])
    b.apply_ops(batch)
    assert b.unsent_count() == len(ops)
    store = b.device_log.store
    sent = store.unsent(None, limit=100, own=b.id)
    assert [(o["origin"], o["seq"]) for o in sent] == [(a.id, s) for s in range(1, N + 1) if s != 4]
    verify_each(sent)  # every signature that goes out checks
    assert b.unsent_count() == len(ops) - 1 and b.op_count() == len(ops)  # the op stays, left to its device
    c = make_replica("c")
    c.sync_with(b)
    assert c.state_digest() == a.state_digest()


def test_a_run_is_checked_through_the_ops_of_the_batch_already_held(make_replica: ReplicaFactory) -> None:
    """A pull answer that sends again ops a device holds (a widened scope, a resent page) pins the new ops before
    them through them: the run's signature is on its last op, held or not."""
    a, ops = _source(make_replica)
    b = make_replica("b")
    pulled = _as_pulled(ops)
    b.apply_ops(_copy(pulled[5:]))
    assert b.op_count() == N - 5
    result = b.apply_ops(_copy(pulled))
    assert (result.applied, result.duplicates) == (5, N - 5)
    assert b.state_digest() == a.state_digest()
    altered = _as_pulled(ops)
    _alter_content(altered[2])
    c = make_replica("c")
    c.apply_ops(_copy(pulled[5:]))
    with pytest.raises(ForgedOpError):
        c.apply_ops(altered)


def test_signatures_of_a_large_batch_are_checked_on_two_threads_with_the_same_answer(
    make_replica: ReplicaFactory,
) -> None:
    _, ops = _source(make_replica, notes=299)
    batch = _copy(ops)
    for where in (3, 280):
        _alter_sig(batch[where])
    assert [op["seq"] for op in failing_signatures(batch)] == [4, 281]
    assert [op["seq"] for op in failing_signatures(batch[:200])] == [4]


def test_a_lost_op_statement_carries_the_chain_through_and_must_keep_its_signature(
    make_replica: ReplicaFactory,
) -> None:
    """A device's signed "op N is lost" stands in op N's place: the ops after it check through the link it
    declares; one without its own signature, or whose declared link was changed, is refused."""
    a, ops = _source(make_replica, notes=3)
    lost_seq = ops[2]["seq"]
    statement = a.device_log.mark_lost(ops[2])
    assert statement["kind"] == LOST_KIND and statement["body"]["link"] == ops[3]["pd"]
    chain = _copy([*ops[:2], statement, *ops[3:]])
    assert verify_ops(_copy(chain)) == [] and chain_link(statement) == bytes.fromhex(ops[3]["pd"])
    assert verify_ops(_compact(_copy(chain))) == []  # links derived through it in the compact form
    needed = signature_needed([(o["origin"], o["seq"], o["v"]) for o in chain], [o["kind"] for o in chain])
    assert needed[2] and not needed[1]  # it always travels with its signature
    unsigned = _copy(chain)
    del unsigned[2]["sig"]
    with pytest.raises(ForgedOpError, match=f"{a.id}:{lost_seq}"):
        verify_ops(unsigned)
    moved = _copy(chain)
    moved[2]["body"]["link"] = "0" * 32  # another link declared: its own signature no longer matches
    with pytest.raises(ForgedOpError):
        verify_ops(moved)
    assert a.export_ops()[2]["kind"] == LOST_KIND and a.tickets.get(ops[0]["eid"]).notes[1].text == "note 2"
