"""The hybrid logical clock, and devices whose wall clocks are wrong by days or years."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from caresync.core.clock import (
    COUNTER_BITS,
    DEFAULT_MAX_FORWARD_MS,
    HybridClock,
    format_hlc,
    hlc_counter,
    hlc_wall_ms,
    pack_hlc,
)
from caresync.testing import FakeClock

from .conftest import ReplicaFactory

T0 = 1_796_083_200_000
DAY = 86_400_000
GRID = "changnan/teachers-dorm/3"


def test_pack_and_format() -> None:
    stamp = pack_hlc(T0, 3)
    assert (hlc_wall_ms(stamp), hlc_counter(stamp)) == (T0, 3)
    assert format_hlc(stamp) == "2026-12-01T00:00:00.000Z+3"
    full = pack_hlc(T0, (1 << COUNTER_BITS) - 1)
    assert hlc_wall_ms(full + 1) == T0 + 1  # the counter carries into the wall time


def test_ticks_increase_even_when_the_wall_clock_stands_still_or_goes_back() -> None:
    now = [T0]
    clock = HybridClock(lambda: now[0])
    a = clock.tick()
    b = clock.tick()
    now[0] -= 5_000
    c = clock.tick()
    assert a < b < c


@given(st.lists(st.tuples(st.integers(-DAY, DAY), st.booleans(), st.integers(0, 2 * DAY)), max_size=40))
def test_tick_is_after_floor_and_observe_is_bounded(steps: list[tuple[int, bool, int]]) -> None:
    now = [T0]
    clock = HybridClock(lambda: now[0])
    for jump, observe, ahead in steps:
        now[0] = max(0, now[0] + jump)
        remote = pack_hlc(now[0] + ahead)
        if observe:
            far = clock.observe(remote)
            assert far == (ahead > DEFAULT_MAX_FORWARD_MS)
        before = clock.last
        stamp = clock.tick(floor=remote)
        assert stamp > remote  # after everything known for the record
        assert stamp > before  # after everything this clock issued or adopted
        # what others show can push the clock at most the bound past its physical time
        assert hlc_wall_ms(clock.last) <= max(now[0] + DEFAULT_MAX_FORWARD_MS, hlc_wall_ms(before) + 1)


def test_device_three_days_ahead_loses_nothing_and_does_not_drag_others(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", actor="clerk-zhang", clock=FakeClock(T0))
    fast = make_replica("fast-phone", actor="grid-li", clock=FakeClock(T0 + 3 * DAY))
    other = make_replica("other", actor="grid-wang", clock=FakeClock(T0 + 1000))

    tid = fast.tickets.submit(title="from the fast phone", kind="repair", grid=GRID).id
    station.sync_with(fast)
    other.sync_with(fast)

    # the station's clock moved at most the bound, not three days
    assert hlc_wall_ms(station.clock.last) <= station.clock.physical_ms() + DEFAULT_MAX_FORWARD_MS
    [anomaly] = station.clock_anomalies()
    assert anomaly.device == fast.id and anomaly.ahead_ms > 2 * DAY

    # an edit made after seeing the fast phone's work sorts after it and wins, though its clock is 3 days behind
    station.tickets.edit(tid, title="edited at the station")
    # work the other device does concurrently is kept as a visible conflict, not lost
    other.tickets.edit(tid, title="edited offline by grid-wang")
    # the station's work on other records is stamped at its own time, not in the fast phone's future
    other_ticket = station.tickets.submit(title="unrelated", kind="errand", grid=GRID)
    assert other_ticket.history[0].hlc < pack_hlc(T0 + DAY)

    for a, b in ((station, fast), (other, fast), (station, other)):
        a.sync_with(b)
    assert len({r.state_digest() for r in (station, fast, other)}) == 1
    [conflict] = station.conflicts()
    assert {v.value for v in conflict.values} == {"edited at the station", "edited offline by grid-wang"}

    # the fast phone is corrected; a later edit after seeing everything settles it
    fast.set_clock_offset(-3 * DAY)
    assert abs(fast.clock.physical_ms() - station.clock.physical_ms()) < 60_000
    fixed = fast.tickets.edit(tid, title="agreed title")
    assert fixed.conflicts == [] and fixed.title == "agreed title"
    assert fixed.history[-1].at < fixed.history[0].at  # people's times are now right (corrected clock)
    station.sync_with(fast)
    assert station.tickets.get(tid).title == "agreed title"


def test_device_two_years_behind_loses_nothing(make_replica: ReplicaFactory) -> None:
    station = make_replica("station", clock=FakeClock(T0))
    slow = make_replica("slow-phone", actor="knocker-fang", clock=FakeClock(T0 - 730 * DAY))
    tid = station.tickets.submit(title="station title", kind="repair", grid=GRID).id
    slow.sync_with(station)

    # the slow phone saw the ticket: its edit sorts after everything it saw and wins
    slow.tickets.edit(tid, title="checked by the knocker")
    slow.tickets.accept(tid, assignee="knocker-fang")
    station.sync_with(slow)
    got = station.tickets.get(tid)
    assert (got.title, got.assignee, got.conflicts) == ("checked by the knocker", "knocker-fang", [])

    # offline and concurrent: the slow phone's value sorts first, but it is kept and shown as a conflict
    station.tickets.edit(tid, title="station again")
    slow.tickets.edit(tid, title="knocker again")
    slow.tickets.note(tid, "written two years in the past, still kept")
    station.sync_with(slow)
    assert station.state_digest() == slow.state_digest()
    [conflict] = station.conflicts()
    assert {v.value for v in conflict.values} == {"station again", "knocker again"}
    assert [n.text for n in station.tickets.get(tid).notes] == ["written two years in the past, still kept"]

    # correcting the offset makes its times right, and the replica remembers the correction
    slow.set_clock_offset(730 * DAY)
    path = slow.path
    slow.close()
    from caresync import Replica

    with Replica.open(path, actor="knocker-fang", now_ms=FakeClock(T0 - 730 * DAY + 10_000)) as reopened:
        assert abs(reopened.clock.physical_ms() - T0) < 60_000
        reopened.tickets.note(tid, "after the correction")
        assert reopened.tickets.get(tid).notes[-1].at.year == 2026
