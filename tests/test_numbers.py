"""Ticket numbers: blocks first, then a fallback that two offline devices can never share."""

from __future__ import annotations

import pytest

from caresync import EntityType, IntentError, InvalidInputError, Replica
from tests.conftest import ReplicaFactory

GRID = "changnan/dorm/3"


def test_blocks_are_used_in_order_then_the_fallback(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk")
    desk.numbers.add_block(1000, 2)
    desk.numbers.add_block(5000, 1)
    numbers = [desk.tickets.submit(title=f"t{i}", kind="repair", grid=GRID).number for i in range(5)]
    assert numbers == ["1000", "1001", "5000", f"{desk.id}-1", f"{desk.id}-2"]
    assert [(b.start, b.used, b.left) for b in desk.numbers.blocks()] == [(1000, 2, 0), (5000, 1, 0)]
    assert desk.numbers.peek() == f"{desk.id}-3"


def test_two_offline_devices_never_share_a_number(make_replica: ReplicaFactory) -> None:
    a, b = make_replica("a"), make_replica("b")
    for replica in (a, b):
        for i in range(3):
            replica.tickets.submit(title=f"t{i}", kind="repair", grid=GRID)
    a.sync_with(b)
    numbers = [t.number for t in a.tickets.list()]
    assert len(numbers) == 6 and len(set(numbers)) == 6
    assert sorted(numbers) == sorted(t.number for t in b.tickets.list())


def test_a_failed_submit_gives_its_number_back(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk")
    desk.numbers.add_block(7, 5)
    with pytest.raises(InvalidInputError):
        desk.tickets.submit(title="", kind="repair", grid=GRID)
    assert desk.tickets.submit(title="ok", kind="repair", grid=GRID).number == "7"


def test_bad_or_overlapping_blocks_are_refused(make_replica: ReplicaFactory) -> None:
    desk = make_replica("desk")
    desk.numbers.add_block(100, 10)
    with pytest.raises(IntentError, match="overlaps the block 100-109"):
        desk.numbers.add_block(109, 5)
    with pytest.raises(InvalidInputError, match="count"):
        desk.numbers.add_block(200, 0)
    assert [b.start for b in desk.numbers.blocks()] == [100]


def test_a_ticket_is_found_by_number_id_or_the_end_of_a_fallback_number(make_replica: ReplicaFactory) -> None:
    from caresync import NotFoundError
    from caresync.replica import find_ticket

    desk, phone = make_replica("desk"), make_replica("phone")
    desk.numbers.add_block(1000, 1)
    first = desk.tickets.submit(title="a", kind="repair", grid=GRID)
    mine = phone.tickets.submit(title="b", kind="repair", grid=GRID)
    desk.sync_with(phone)
    assert find_ticket(desk, "1000").id == first.id and find_ticket(desk, first.id).id == first.id
    assert mine.number == f"{phone.id}-1"
    assert find_ticket(desk, f"{phone.id[-4:]}-1").id == mine.id
    with pytest.raises(NotFoundError, match="'1001'"):
        find_ticket(desk, "1001")
    with pytest.raises(NotFoundError):
        find_ticket(desk, f"{phone.id[-4:]}-2")
    desk.tickets.submit(title="c", kind="repair", grid=GRID)  # the block is used up: the fallback
    assert find_ticket(desk, f"{desk.id}-1").title == "c"
    assert find_ticket(desk, f"{desk.id[-6:]}-1").title == "c"


def _number(replica: Replica, ticket_id: str, number: str) -> None:
    """A ``ticket.number`` op made by hand, as no library call makes one for another device's ticket."""
    log = replica.device_log
    state = log.state(EntityType.TICKET, ticket_id)
    log.emit("ticket.number", ticket_id, {"number": number}, actor="clerk", state=state)


def test_a_provisional_number_is_replaced_once_and_only_by_the_tickets_own_device(
    make_replica: ReplicaFactory,
) -> None:
    """The fold takes a ``ticket.number`` op only from the ticket's own device, only while the number is
    provisional, and only the first: a ticket is numbered once, whatever order the ops arrive in."""
    from caresync.core.ids import op_id
    from caresync.core.merge import fold

    phone, desk = make_replica("phone"), make_replica("desk")
    ticket = phone.tickets.submit(title="Raised at the door", kind="repair", grid=GRID)
    provisional = ticket.number
    desk.sync_with(phone)
    desk.numbers.add_block(500, 5)
    _number(desk, ticket.id, "500")  # not the ticket's device: every fold ignores it
    assert desk.tickets.get(ticket.id).number == provisional
    phone.numbers.add_block(700, 5)
    assert phone.device_log.renumber() == [(provisional, "700")]
    assert phone.device_log.renumber() == [] and phone.tickets.provisional() == []  # nothing provisional is left
    _number(phone, ticket.id, "701")  # a second one: ignored
    desk.sync_with(phone)
    for replica in (phone, desk):
        shown = replica.tickets.get(ticket.id)
        assert (shown.number, shown.former_numbers) == ("700", [provisional])
        assert "number" in [h.action for h in shown.history]
    ops = desk.device_log.ops_of(ticket.id)
    assert len([o for o in ops if o["kind"] == "ticket.number"]) == 3
    forward = fold("ticket", ticket.id, ops)
    backward = fold("ticket", ticket.id, list(reversed(ops)))
    assert forward == backward and forward["f"]["number"][0][0] == op_id(phone.id, 2)


def test_a_number_two_tickets_share_is_refused_naming_both(make_replica: ReplicaFactory) -> None:
    """Old data, numbered from blocks typed by hand, can hold one number twice: a lookup by it names both."""
    from caresync.replica import find_ticket

    desk, phone = make_replica("desk"), make_replica("phone")
    desk.numbers.add_block(1000, 1)
    phone.numbers.add_block(1000, 1)
    a = desk.tickets.submit(title="Septic tank", kind="repair", grid=GRID)
    b = phone.tickets.submit(title="Stair light", kind="repair", grid=GRID)
    desk.sync_with(phone)
    with pytest.raises(IntentError, match="belongs to 2 tickets") as refused:
        find_ticket(desk, "1000")
    assert a.id in str(refused.value) and b.id in str(refused.value)
    assert find_ticket(desk, a.id).title == "Septic tank"


def test_a_ticket_number_op_from_another_kind_of_value_is_refused(make_replica: ReplicaFactory) -> None:
    """Only a block number (digits) can replace a provisional one."""
    phone = make_replica("phone")
    ticket = phone.tickets.submit(title="t", kind="repair", grid=GRID)
    with pytest.raises(InvalidInputError, match="number"):
        _number(phone, ticket.id, f"{phone.id}-9")
    assert phone.tickets.get(ticket.id).number == ticket.number
