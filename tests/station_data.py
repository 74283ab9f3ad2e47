"""A week at the station with hand-counted figures, shared by the report and CLI tests.

Every time is a whole number of hours after T0, so the expected figures in the tests can be worked out by
hand from this script (they are written out, never computed by caresync code).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from caresync import Replica
from caresync.core.model import ms_to_datetime
from caresync.testing import FakeClock

HOUR = 3_600_000
DORM = "changnan/dorm/3"
LANE = "changnan/lane-7"


def build_week(path: Path, start_ms: int) -> tuple[Replica, FakeClock, dict[str, str]]:
    """The dataset; the clock is left at T0 + 72 h. Returns the open replica, its clock and the ids by name."""
    clock = FakeClock(start_ms, step_ms=0)
    station = Replica.open(path, actor="clerk-zhang", now_ms=clock)
    t0 = start_ms

    def at(hours: float) -> None:
        clock.ms = t0 + int(hours * HOUR)

    def when(hours: float) -> datetime:
        return ms_to_datetime(t0 + int(hours * HOUR))

    ids: dict[str, str] = {}
    r = station.residents
    ids["A"] = r.register(name="Old Wang", grid=DORM, flags=["lives_alone"], knock_every_days=2).id
    ids["B"] = r.register(name="Grandma Liu", grid=DORM, knock_every_days=7).id
    ids["C"] = r.register(name="Mr Chen", grid=DORM).id
    ids["D"] = r.register(name="Auntie Zhou", grid=LANE, knock_every_days=1).id
    ids["E"] = r.register(name="Uncle Hu", grid=DORM, knock_every_days=1).id
    parcel = station.parcels.register(code="P-1", grid=DORM, summary="pension form")
    tk = station.tickets
    ids["t1"] = tk.submit(title="Tap leaking", kind="repair", grid=DORM, resident_id=ids["A"]).id
    ids["t2"] = tk.submit(title="Stairwell light", kind="repair", grid=DORM, channel="phone").id
    ids["t3"] = tk.submit(title="Pension form", kind="errand", grid=DORM, channel="mailbox", parcel_id=parcel.id).id
    ids["t4"] = tk.submit(title="Renovation noise", kind="dispute", grid=DORM).id
    ids["t5"] = tk.submit(title="Parking quarrel", kind="dispute", grid=LANE).id
    ids["t6"] = tk.submit(title="A wheelchair", kind="wish", grid=LANE, channel="wish_box").id
    ids["t7"] = tk.submit(title="Duplicate", kind="other", grid=DORM).id
    station.visits.record(resident_id=ids["A"], outcome="well", visited_at=when(1), visitor="knocker-fang")
    station.visits.record(resident_id=ids["B"], outcome="no_answer", visited_at=when(2), visitor="knocker-fang")
    station.visits.record(resident_id=ids["D"], outcome="unwell", visited_at=when(3), visitor="knocker-fang")

    at(1)
    station.parcels.hop(parcel.id, "picked_up", place="MB-07", actor="courier-chen")
    at(2)
    tk.record_session(ids["t4"], mediator="Teacher Hu", summary="works 9:00-17:00 only")
    at(3)
    tk.set_outcome(ids["t4"], "settled", mediator="Teacher Hu")
    tk.resolve(ids["t4"])
    tk.close(ids["t4"])
    tk.rate(ids["t4"], score=4)
    tk.cancel(ids["t7"], reason="entered twice")
    at(4)
    station.parcels.hop(parcel.id, "handed_in", place="station", actor="courier-chen")
    at(5)
    tk.record_session(ids["t5"], mediator="Teacher Hu", summary="no agreement")
    tk.set_outcome(ids["t5"], "not_settled")
    at(10)
    tk.resolve(ids["t1"])
    tk.close(ids["t1"])
    tk.rate(ids["t1"], score=5)
    at(20)
    station.parcels.hop(parcel.id, "out_for_delivery", actor="courier-chen")
    at(26)
    station.parcels.hop(parcel.id, "delivered", confirm_code="4821", actor="courier-chen")
    at(30)
    tk.resolve(ids["t3"])
    at(50)
    tk.resolve(ids["t2"])
    tk.close(ids["t2"])
    tk.rate(ids["t2"], score=3)
    at(72)
    return station, clock, ids


def t0_of(start_ms: int) -> datetime:
    """T0 as a datetime."""
    return ms_to_datetime(start_ms)


def hours(n: float) -> timedelta:
    """``n`` hours."""
    return timedelta(hours=n)
