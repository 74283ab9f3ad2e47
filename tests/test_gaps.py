"""A gap a peer introduced in a device's chain is held, never applied as if complete (issue 16): ops from a peer
that follow a missing op of their device are kept but not applied until the op arrives; ops a replica declined
itself (outside its scope) are no gap, and neither is what a sync server's pull leaves out."""

from __future__ import annotations

from typing import Any

from tests.conftest import ReplicaFactory

GRID = "changnan/dorm/3"


def test_ops_after_an_op_a_peer_dropped_are_held_until_it_arrives(make_replica: ReplicaFactory) -> None:
    a = make_replica("a")
    ticket = a.tickets.submit(title="Leak", kind="repair", grid=GRID)
    a.tickets.accept(ticket.id, assignee="li")
    a.tickets.cancel(ticket.id, reason="the resident fixed it")  # the op a peer drops...
    a.tickets.note(ticket.id, "called back")  # ...and the ops after it
    a.tickets.edit(ticket.id, priority="high")
    ops = a.export_ops()
    dropped = next(op for op in ops if op["kind"] == "ticket.transition" and op["body"]["action"] == "cancel")
    without: list[dict[str, Any]] = [op for op in ops if op is not dropped]

    b = make_replica("b")
    result = b.apply_ops(without)
    assert result.held_back == 2  # the note and the edit: they follow the dropped op
    held = b.tickets.get(ticket.id)
    assert held.status == "accepted" and held.notes == [] and held.priority == "normal"  # nothing as if complete
    assert b.op_count() == len(without)  # kept, to be applied later

    c = make_replica("c")
    c.apply_ops(without)
    result = c.apply_ops([dropped])  # the gap filled: what waited follows on
    got = c.tickets.get(ticket.id)
    assert got.status == "cancelled" and [n.text for n in got.notes] == ["called back"] and got.priority == "high"
    assert c.state_digest() == a.state_digest()

    b.sync_with(a)  # from a peer that holds the whole chain: filled
    assert b.state_digest() == a.state_digest()

