"""Ticket numbers: blocks first, then a fallback that two offline devices can never share."""

from __future__ import annotations

import pytest

from caresync import IntentError, InvalidInputError
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
