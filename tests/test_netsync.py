"""The network sync client against the real server app in-process (real storage, real HTTP semantics through
Starlette's test client): convergence, resuming, refusals, tokens, clock correction, progress."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from caresync import Replica, ServerRefusedError, SyncError, SyncProgress
from caresync.store.devicelog import DeviceLog
from caresync.testing import FakeClock
from tests.conftest import ReplicaFactory
from tests.netsync_support import FlakyTransport, all_ops, random_work
from tests.server_support import enroll

fastapi_testclient = pytest.importorskip("fastapi.testclient")
URL = "http://testserver"
GRID = "changnan/dorm/3"
DAY = 86_400_000


class Server:
    """The server app over an SQLite file, and a way to enrol devices and to talk to it."""

    def __init__(self, path: Path, now_ms: Any = None) -> None:
        from caresync_server.app import create_app
        from caresync_server.settings import Settings

        self.database_url = f"sqlite:///{path}"
        kwargs = {"now_ms": now_ms} if now_ms is not None else {}
        self.client = fastapi_testclient.TestClient(create_app(Settings(database_url=self.database_url), **kwargs))
        self.client.__enter__()  # runs the app's start-up (creates the tables)

    def enroll(self, name: str, role: str = "station", grids: list[str] | None = None) -> str:
        return enroll(self.database_url, name, role=role, grids=[""] if grids is None else grids)

    def flaky(self, rng: random.Random, cut: float) -> tuple[httpx.Client, FlakyTransport]:
        transport = FlakyTransport(rng, cut, inner=self.client._transport)
        return httpx.Client(transport=transport, base_url=URL), transport

    def devices(self) -> list[Any]:
        from caresync_server.settings import Settings
        from caresync_server.storage import Storage

        storage = Storage(Settings(database_url=self.database_url))
        try:
            return list(storage.devices())
        finally:
            storage.close()

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def _requests(replica: Replica, count: int) -> None:
    """``count`` new requests on ``replica``, in one transaction."""
    with replica.batch():
        for i in range(count):
            replica.tickets.submit(title=f"Request {i}", kind="repair", grid=GRID)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server.db", now_ms=FakeClock())  # the devices' fake clocks start at the same time
    yield s
    s.close()


def test_each_push_batch_reports_what_still_waits_after_it(server: Server, make_replica: ReplicaFactory) -> None:
    from caresync.sync.wire import decode_envelope

    phone = make_replica("phone")
    token = server.enroll("phone")
    wang = phone.residents.register(name="Old Wang", grid=GRID)  # a resident: no ticket number to settle first
    with phone.batch():
        for i in range(9):
            phone.residents.note(wang.id, f"visit {i}")
    held = sorted(phone.export_ops({}, limit=100), key=lambda o: (o["hlc"], o["origin"], o["seq"]))
    sent: list[dict[str, Any]] = []

    def capture(request: httpx.Request) -> None:
        if request.url.path == "/v1/push":
            sent.append(decode_envelope(request.read()))

    client = httpx.Client(transport=server.client._transport, base_url=URL, event_hooks={"request": [capture]})
    result = phone.sync(URL, token=token, client=client, push_batch=4)
    assert result.pushed == 10 and result.unsent == 0
    assert [len(e["ops"]) for e in sent] == [4, 4, 2]
    for k, envelope in enumerate(sent, start=1):  # what is left once batch k is in: the ops after its last
        rest = held[4 * k :]
        assert envelope["pending"] == len(rest)
        assert envelope["oldest_unsent_ms"] == (min(o["at"] for o in rest) if rest else None)


def test_two_devices_converge_through_the_server(server: Server, make_replica: ReplicaFactory) -> None:
    station, phone = make_replica("station"), make_replica("phone")
    ts, tp = server.enroll("station"), server.enroll("phone")
    t = station.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID)
    phone.residents.register(name="Old Wang", grid=GRID)

    first = station.sync(URL, token=ts, client=server.client)
    assert (first.pushed, first.pulled, first.unsent) == (2, 0, 0)  # the ticket, and its short number
    second = phone.sync(URL, token=tp, client=server.client)
    assert (second.pushed, second.pulled) == (1, 2)
    station.sync(URL, token=ts, client=server.client)

    assert phone.tickets.get(t.id).title == "Septic tank blocked"
    assert station.state_digest() == phone.state_digest()
    phone.tickets.note(t.id, "called the plumber")  # made after the last sync: still pending on the device
    health = {d.name: d for d in server.devices()}
    assert (health["station"].pending, health["phone"].pending) == (0, 0)  # what waits once the batch is in
    with phone.batch():
        for i in range(5):
            phone.tickets.note(t.id, f"update {i}")
    phone.sync(URL, token=tp, client=server.client, push_batch=4)
    assert [d.pending for d in server.devices() if d.name == "phone"] == [0]
    again = phone.sync(URL, token=tp, client=server.client)
    assert (again.pushed, again.pulled, again.already_held) == (0, 0, 0)


def test_concurrent_edits_meet_on_the_server_as_a_conflict(server: Server, make_replica: ReplicaFactory) -> None:
    a, b = make_replica("a"), make_replica("b")
    ta, tb = server.enroll("a"), server.enroll("b")
    t = a.tickets.submit(title="Leak", kind="repair", grid=GRID)
    a.sync(URL, token=ta, client=server.client)
    b.sync(URL, token=tb, client=server.client)
    a.tickets.edit(t.id, title="Leak on floor 3")
    b.tickets.edit(t.id, title="Leak in the basement")
    for r, tok in ((a, ta), (b, tb), (a, ta)):
        r.sync(URL, token=tok, client=server.client)
    [conflict] = a.conflicts()
    assert {v.value for v in conflict.values} == {"Leak on floor 3", "Leak in the basement"}
    a.resolve(conflict, "Leak on floor 3")
    a.sync(URL, token=ta, client=server.client)
    b.sync(URL, token=tb, client=server.client)
    assert b.conflicts() == [] and a.state_digest() == b.state_digest()


def test_a_link_cut_at_every_batch_boundary_loses_and_doubles_nothing(
    server: Server, make_replica: ReplicaFactory
) -> None:
    rng = random.Random(3)
    devices = [make_replica(f"d{i}") for i in range(3)]
    tokens = [server.enroll(f"d{i}") for i in range(3)]
    for d in devices:
        random_work(d, rng, 40)
    offline = set().union(*(all_ops(d) for d in devices))
    cuts = 0
    for _ in range(60):  # keep syncing over a link that drops half the answers, until nothing is left to move
        for d, tok in zip(devices, tokens, strict=True):
            client, transport = server.flaky(rng, cut=0.5)
            with client, contextlib.suppress(SyncError):
                d.sync(URL, token=tok, push_batch=5, pull_batch=7, retries=0, client=client)
            cuts += transport.cuts
        made = set().union(*(all_ops(d) for d in devices))  # the offline work, and the numbers syncs gave it
        if all(all_ops(d) == made and d.unsent_count() == 0 for d in devices):
            break
    assert cuts > 10 and offline <= made
    assert len({d.state_digest() for d in devices}) == 1
    assert all(all_ops(d) == made for d in devices)


class CutAfter(httpx.BaseTransport):
    """Lets ``n`` requests through, then the link is gone."""

    def __init__(self, inner: httpx.BaseTransport, n: int) -> None:
        self.inner, self.left = inner, n

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.left == 0:
            raise httpx.ConnectError("no signal (test)", request=request)
        self.left -= 1
        return self.inner.handle_request(request)


def test_a_cut_pull_resumes_from_its_last_committed_batch(server: Server, make_replica: ReplicaFactory) -> None:
    src, dst = make_replica("src"), make_replica("dst")
    ts, td = server.enroll("src"), server.enroll("dst")
    src.sync(URL, token=ts, client=server.client)  # set up: a block of numbers, so the requests get short ones
    _requests(src, 60)
    src.sync(URL, token=ts, client=server.client)

    pulls: list[int] = []
    # the device's description (the station key), the block of ticket numbers and 3 pulls, then gone
    link = httpx.Client(transport=CutAfter(server.client._transport, 5), base_url=URL)
    with link as client, pytest.raises(SyncError, match="Cannot reach the sync server"):
        dst.sync(URL, token=td, pull_batch=10, retries=0, client=client, progress=lambda p: pulls.append(p.done))
    assert dst.op_count() == 30 == pulls[-1]
    rest = dst.sync(URL, token=td, pull_batch=10, client=server.client)
    assert rest.pulled == 30  # the 30 already committed were not fetched again
    assert dst.state_digest() == src.state_digest()


def test_refused_ops_are_kept_with_the_reason_and_do_not_block_the_rest(
    server: Server, make_replica: ReplicaFactory
) -> None:
    courier, station = make_replica("courier"), make_replica("station")
    tc = server.enroll("courier", role="courier", grids=[GRID])
    ts = server.enroll("station")
    wang = courier.residents.register(name="Not a courier's job", grid=GRID)
    parcel = courier.parcels.register(code="P-7", grid=GRID)
    courier.parcels.hop(parcel.id, "picked_up")

    result = courier.sync(URL, token=tc, client=server.client)
    assert [r.record for r in result.refused] == [wang.id]
    assert result.refused[0].code == "forbidden" and "courier" in result.refused[0].reason
    assert result.pushed == 2 and result.unsent == 0
    assert [r.op for r in courier.refusals()] == [r.op for r in result.refused]
    assert courier.residents.get(wang.id).name == "Not a courier's job"  # kept on the device

    station.sync(URL, token=ts, client=server.client)
    assert station.parcels.get(parcel.id).stage == "picked_up"
    with pytest.raises(Exception, match=wang.id):
        station.residents.get(wang.id)

    assert courier.sync(URL, token=tc, client=server.client).refused == []  # not pushed again by itself
    assert courier.retry_refused() == 1
    again = courier.sync(URL, token=tc, client=server.client)
    assert [r.record for r in again.refused] == [wang.id]  # the server's answer is the same


def test_a_revoked_or_unknown_token_is_refused_and_nothing_is_lost(
    server: Server, make_replica: ReplicaFactory
) -> None:
    phone = make_replica("phone")
    token = server.enroll("phone")
    phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
    with pytest.raises(ServerRefusedError) as unknown:
        phone.sync(URL, token="not-a-token", client=server.client)
    assert unknown.value.status == 401
    from caresync_server.settings import Settings
    from caresync_server.storage import Storage

    storage = Storage(Settings(database_url=server.database_url))
    storage.revoke("phone")
    storage.close()
    with pytest.raises(ServerRefusedError) as revoked:
        phone.sync(URL, token=token, client=server.client)
    assert revoked.value.server_code == "revoked" and revoked.value.status == 403
    assert phone.unsent_count() == 1


def test_an_unreachable_server_is_a_sync_error_after_the_retries(make_replica: ReplicaFactory) -> None:
    from caresync_server.testing import free_port

    phone = make_replica("phone")
    phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
    with pytest.raises(SyncError, match="work is kept on this device"):
        phone.sync(f"http://127.0.0.1:{free_port()}", token="t", retries=2, backoff_s=0.01)
    assert phone.unsent_count() == 1


def test_a_device_clock_years_off_is_corrected_by_the_server(tmp_path: Path, make_replica: ReplicaFactory) -> None:
    server_clock = FakeClock()
    server = Server(tmp_path / "server.db", now_ms=server_clock)
    try:
        ahead = make_replica("ahead", clock=FakeClock(server_clock() + 3 * DAY))
        behind = make_replica("behind", clock=FakeClock(server_clock() - 730 * DAY))
        ta, tb = server.enroll("ahead"), server.enroll("behind")
        a = ahead.sync(URL, token=ta, client=server.client)
        b = behind.sync(URL, token=tb, client=server.client)
        assert a.clock_offset_ms is not None and abs(a.clock_offset_ms + 3 * DAY) < 5_000
        assert b.clock_offset_ms is not None and abs(b.clock_offset_ms - 730 * DAY) < 5_000
        for r in (ahead, behind):
            t = r.tickets.submit(title="Stamped right", kind="repair", grid=GRID)
            assert abs(r.tickets.get(t.id).submitted_at.timestamp() * 1000 - server_clock()) < 5_000
    finally:
        server.close()


def test_progress_reports_both_phases(server: Server, make_replica: ReplicaFactory) -> None:
    a, b = make_replica("a"), make_replica("b")
    ta, tb = server.enroll("a"), server.enroll("b")
    a.sync(URL, token=ta, client=server.client)  # set up: a block of numbers, so the requests get short ones
    _requests(a, 12)
    seen: list[SyncProgress] = []
    a.sync(URL, token=ta, client=server.client, push_batch=5, progress=seen.append)
    assert [(p.phase, p.done, p.total) for p in seen if p.phase == "push"] == [
        ("push", 5, 12),
        ("push", 10, 12),
        ("push", 12, 12),
    ]
    seen.clear()
    b.sync(URL, token=tb, client=server.client, pull_batch=5, progress=seen.append)
    assert [p.done for p in seen if p.phase == "pull"][-1] == 12


def test_ops_relayed_from_another_replica_reach_the_server(server: Server, make_replica: ReplicaFactory) -> None:
    """A device out of coverage hands its work to one that syncs (``sync_with``); the server gets it."""
    offline, carrier, station = make_replica("offline"), make_replica("carrier"), make_replica("station")
    offline.sync(URL, token=server.enroll("offline"), client=server.client)  # set up at the station, then away
    tc, ts = server.enroll("carrier"), server.enroll("station")
    t = offline.tickets.submit(title="Written where there is no signal", kind="repair", grid=GRID)
    carrier.sync_with(offline)
    carrier.sync(URL, token=tc, client=server.client)
    station.sync(URL, token=ts, client=server.client)
    assert station.tickets.get(t.id).title == "Written where there is no signal"


def test_a_server_without_its_database_is_a_sync_error_and_nothing_is_lost(
    tmp_path: Path, make_replica: ReplicaFactory
) -> None:
    from caresync_server.app import create_app
    from caresync_server.settings import Settings

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'missing' / 'server.db'}"))
    phone = make_replica("phone")
    phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
    with fastapi_testclient.TestClient(app) as client, pytest.raises(SyncError, match="has a problem"):
        phone.sync(URL, token="t", client=client, retries=0)
    assert phone.unsent_count() == 1


@pytest.mark.parametrize(
    ("header", "wait"), [("5", 5.0), ("0.25", 0.25), ("600", 30.0), ("-3", 0.0), ("Wed, 21 Oct 2026 07:28:00 GMT", 0.0)]
)
def test_a_busy_servers_retry_after_is_honoured_within_bounds(header: str, wait: float) -> None:
    from caresync.sync._http import _retry_after

    assert _retry_after(httpx.Response(503, headers={"Retry-After": header})) == wait
    assert _retry_after(httpx.Response(503)) == 0.0


def test_ops_waiting_for_another_device_do_not_wedge_the_rest_of_the_queue(
    server: Server, make_replica: ReplicaFactory
) -> None:
    """B edits a ticket it got from A by hand (no server), before A ever synced: the server cannot place A's
    create nor B's edit yet ("waiting"), but B's other work, in later batches, still goes through."""
    a, b, station = make_replica("a"), make_replica("b"), make_replica("station")
    ta, tb, ts = server.enroll("a"), server.enroll("b"), server.enroll("station")
    b.sync(URL, token=tb, client=server.client)  # set up: a block of numbers, so its requests get short ones
    t = a.tickets.submit(title="Written by A", kind="repair", grid=GRID)
    b.sync_with(a)
    b.tickets.edit(t.id, title="Edited by B")
    _requests(b, 8)

    first = b.sync(URL, token=tb, client=server.client, push_batch=3)
    assert first.waiting >= 2 and first.pushed == 8 and first.unsent == 2  # A's create and B's edit wait
    a.sync(URL, token=ta, client=server.client)  # A comes online: its create is placed
    second = b.sync(URL, token=tb, client=server.client, push_batch=3)
    assert second.unsent == 0 and second.waiting == 0
    station.sync(URL, token=ts, client=server.client)
    assert station.tickets.get(t.id).title == "Edited by B"
    assert len(station.tickets.list()) == 9


def test_a_sync_brings_short_ticket_numbers_no_other_device_gets(server: Server, make_replica: ReplicaFactory) -> None:
    desk, phone = make_replica("desk"), make_replica("phone")
    before = desk.tickets.submit(title="Before any sync", kind="repair", grid=GRID)
    assert before.number == f"{desk.id}-1"  # offline and never synced: a provisional number, unique to the device
    desk_token = server.enroll("desk")
    desk.sync(URL, token=desk_token, client=server.client)
    assert desk.tickets.get(before.id).number == "1000"  # the first sync gave it a short one
    phone.sync(URL, token=server.enroll("phone"), client=server.client)
    assert phone.tickets.get(before.id).number == "1000"  # and every replica shows it
    assert phone.tickets.get(before.id).former_numbers == [f"{desk.id}-1"]
    numbers = {r.id: [r.numbers.peek()] for r in (desk, phone)}
    assert numbers == {desk.id: ["1001"], phone.id: ["1100"]}
    taken = [desk.tickets.submit(title=f"Desk {i}", kind="repair", grid=GRID).number for i in range(84)]
    assert taken[0] == "1001" and taken[-1] == "1084"
    desk.sync(URL, token=desk_token, client=server.client)  # 15 left: a new block is reserved
    assert [(b.start, b.count) for b in desk.numbers.blocks()] == [(1000, 100), (1200, 100)]
    assert phone.tickets.submit(title="Phone", kind="repair", grid=GRID).number == "1100"


def test_tickets_numbered_offline_get_short_numbers_at_the_next_sync_on_every_device(
    server: Server, make_replica: ReplicaFactory
) -> None:
    """A knocker's phone raises requests with no block (provisional numbers); its next sync gives them short
    numbers from a server block, no other device's numbers, and the station sees the short ones."""
    knocker, desk = make_replica("knocker"), make_replica("desk")
    desk_token, knocker_token = server.enroll("desk"), server.enroll("knocker", "knocker", [GRID])
    raised = [knocker.tickets.submit(title=f"r{i}", kind="repair", grid=GRID) for i in range(3)]
    assert [t.number for t in raised] == [f"{knocker.id}-{i}" for i in (1, 2, 3)]
    desk_own = desk.tickets.submit(title="desk", kind="repair", grid=GRID)
    desk.sync(URL, token=desk_token, client=server.client)
    knocker.sync(URL, token=knocker_token, client=server.client)
    desk.sync(URL, token=desk_token, client=server.client)
    shown = {t.id: t.number for t in desk.tickets.list()}
    assert [shown[t.id] for t in raised] == ["1100", "1101", "1102"]  # the knocker's block, not the desk's
    assert shown[desk_own.id] == "1000" and knocker.tickets.provisional() == []
    assert [knocker.tickets.get(t.id).number for t in raised] == ["1100", "1101", "1102"]
    from caresync.replica import find_ticket

    assert find_ticket(desk, f"{knocker.id}-3").id == raised[2].id  # the number the resident was told still works


def test_a_sync_finds_provisional_numbers_without_reading_every_tickets_state(
    server: Server, make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    """Every sync looks for this device's provisionally numbered tickets; on a replica holding many tickets it
    must read those alone (through the partial index of provisional numbers), not scan the tickets table."""
    import sqlite3

    desk = make_replica("desk")
    token = server.enroll("desk")
    _requests(desk, 300)
    desk.sync(URL, token=token, client=server.client)  # a block for all 300: none provisional any more
    assert desk.tickets.provisional() == []
    late = desk.tickets.submit(title="late", kind="repair", grid=GRID)  # numbered from the block
    statements: list[str] = []
    desk.device_log.store._db.set_trace_callback(statements.append)  # every statement SQLite runs on the file
    desk.sync(URL, token=token, client=server.client)
    desk.device_log.store._db.set_trace_callback(None)
    assert desk.tickets.get(late.id).number == late.number == "1300"  # the sync pushed it, numbered as it was
    read = [s for s in statements if "FROM tickets" in s]
    assert read, "the sync no longer looks for provisional numbers at all"
    with sqlite3.connect(desk.path) as conn:  # how SQLite runs each of them on the real file
        plans = {s: " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {s}")) for s in read}
    conn.close()
    scans = {s: plan for s, plan in plans.items() if "SCAN tickets" in plan and "ix_tickets_provisional" not in plan}
    assert not scans
    assert any("ix_tickets_provisional" in plan for plan in plans.values())


# --- a pull into an empty replica folds its pages in memory ---------------------------------------------------


def _history(server: Server, make_replica: ReplicaFactory) -> Replica:
    """Three devices edit each other's records over several rounds (so a record's ops reach the server out of
    clock order), a resident is redacted; returns a device holding everything the server holds."""
    rng = random.Random(11)
    devices = [make_replica(f"h{i}") for i in range(3)]
    tokens = [server.enroll(f"h{i}") for i in range(3)]
    for _ in range(3):
        for d in devices:
            random_work(d, rng, 25)
        for d, tok in [*zip(devices, tokens, strict=True), (devices[0], tokens[0])]:
            d.sync(URL, token=tok, client=server.client)
    resident = devices[0].residents.list()[0]
    devices[0].residents.redact(resident.id, reason="moved away, asked to be forgotten")
    devices[0].tickets.edit(devices[0].tickets.list()[0].id, title="After the redaction")
    for d, tok in [*zip(devices, tokens, strict=True), (devices[0], tokens[0])]:
        d.sync(URL, token=tok, client=server.client)
    return devices[0]


def _digest_folded_from_log(replica: Replica, tmp_path: Path) -> str:
    """The state digest of a copy of ``replica`` whose every record is folded again from its log."""
    import sqlite3

    from caresync.store.schema import ENTITY_TABLES

    copy = tmp_path / f"refold-{replica.id}.db"
    # SQLite's backup: a consistent copy, log included. (Copying the file after a TRUNCATE checkpoint was not: the
    # store's own checkpointer thread can hold the log then, the checkpoint answers "busy", and the copy misses
    # pages, seen as "no such table" or stale rows under load.)
    with contextlib.closing(sqlite3.connect(replica.path)) as live, contextlib.closing(sqlite3.connect(copy)) as out:
        live.backup(out)
    with contextlib.closing(sqlite3.connect(copy)) as db, db:
        for entity, table in ENTITY_TABLES.items():
            db.execute(f"INSERT OR IGNORE INTO pending (entity, id) SELECT ?, id FROM {table.__tablename__}", (entity,))
            db.execute(f"DELETE FROM {table.__tablename__}")  # nothing of the old rows may survive
    with Replica.open(copy, actor="check") as again:  # opening settles what is pending, from the log
        return again.state_digest()


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every in-memory fold a pull makes, to look at after it."""
    from caresync.sync import netsync

    made: list[Any] = []

    class Spy(netsync._Folded):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(netsync, "_Folded", Spy)
    return made


def test_an_empty_device_folds_its_pull_in_memory_to_the_rows_the_log_gives(
    server: Server, make_replica: ReplicaFactory, folds: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caresync.sync import netsync

    full = _history(server, make_replica)
    fresh, slow = make_replica("fresh"), make_replica("slow")
    token = server.enroll("fresh")
    fresh.sync(URL, token=token, pull_batch=7, client=server.client)
    [fold] = folds
    assert fold.valid and fold.states and fold.spoiled  # some records had ops from their past, or a redaction
    assert any(eid.startswith("R-") for eid in fold.spoiled)  # the redacted resident
    monkeypatch.setattr(netsync, "FOLD_IN_MEMORY_RECORDS", 0)  # the old way: every row folded from the log
    slow.sync(URL, token=server.enroll("slow"), pull_batch=7, client=server.client)
    assert folds[1].count == 0
    monkeypatch.setattr(netsync, "FOLD_IN_MEMORY_RECORDS", 5)  # both ways in one settle
    mixed = make_replica("mixed")
    mixed.sync(URL, token=server.enroll("mixed"), pull_batch=7, client=server.client)
    assert folds[2].count == 5 and len(folds[2].spoiled) > 5
    assert fresh.state_digest() == slow.state_digest() == mixed.state_digest() == full.state_digest()
    assert _digest_folded_from_log(fresh, tmp_path) == fresh.state_digest()
    again = fresh.sync(URL, token=token, client=server.client)  # not empty now: the log way
    assert again.pulled == 0 and len(folds) == 3


def test_a_pull_into_an_empty_device_cut_mid_way_keeps_correct_rows_and_resumes(
    server: Server, make_replica: ReplicaFactory, folds: list[Any], tmp_path: Path
) -> None:
    full = _history(server, make_replica)
    fresh = make_replica("fresh")
    token = server.enroll("fresh")

    cut = CutAfter(server.client._transport, 6)
    with httpx.Client(transport=cut, base_url=URL) as client, pytest.raises(SyncError):
        fresh.sync(URL, token=token, pull_batch=9, retries=0, client=client)
    assert 0 < fresh.op_count() < full.op_count() and folds[0].count
    assert _digest_folded_from_log(fresh, tmp_path) == fresh.state_digest()
    fresh.sync(URL, token=token, pull_batch=9, client=server.client)
    assert fresh.state_digest() == full.state_digest()


def test_a_device_killed_during_an_in_memory_pull_repairs_its_rows_from_the_log(
    server: Server, make_replica: ReplicaFactory, folds: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill skips every ``finally``: the rows of the pages stored so far were never written, but the pages
    left their records marked pending, and opening the file folds them from the log."""
    from caresync.sync import netsync

    full = _history(server, make_replica)
    token = server.enroll("fresh")
    path = tmp_path / "fresh.db"

    class Killed(BaseException):
        pass

    class KillAfter(httpx.BaseTransport):
        def __init__(self, inner: httpx.BaseTransport, n: int) -> None:
            self.inner, self.left = inner, n

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if self.left == 0:
                raise Killed
            self.left -= 1
            return self.inner.handle_request(request)

    monkeypatch.setattr(netsync._Folded, "settle", lambda self, replica: None)  # the kill skips it
    monkeypatch.setattr(DeviceLog, "settle", lambda self: 0)
    fresh = Replica.open(path, actor="fresh", now_ms=FakeClock())
    with httpx.Client(transport=KillAfter(server.client._transport, 5), base_url=URL) as client, pytest.raises(Killed):
        fresh.sync(URL, token=token, pull_batch=9, retries=0, client=client)
    assert folds[0].count
    held = fresh.op_count()
    assert 0 < held < full.op_count()
    assert fresh.device_log.store.sql("SELECT COUNT(*) FROM pending")[0][0] > 0  # rows not written
    fresh.device_log.store.close()  # no settle on the way out, like a kill
    monkeypatch.undo()
    with Replica.open(path, actor="fresh", now_ms=FakeClock()) as reopened:
        assert reopened.device_log.store.sql("SELECT COUNT(*) FROM pending")[0][0] == 0
        assert reopened.op_count() == held
        assert _digest_folded_from_log(reopened, tmp_path) == reopened.state_digest()
        reopened.sync(URL, token=token, client=server.client)
        assert reopened.state_digest() == full.state_digest()


def test_a_pull_interrupted_while_it_folds_a_page_in_memory_writes_its_rows_from_the_log(
    server: Server, make_replica: ReplicaFactory, folds: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caresync.core import merge
    from caresync.sync import netsync

    full = _history(server, make_replica)
    fresh = make_replica("fresh")
    token = server.enroll("fresh")
    calls = []

    def fold_then_stop(state: Any, ops: Any) -> None:
        calls.append(1)
        if len(calls) == 30:  # half-way through a page: some records have it folded, others not
            raise KeyboardInterrupt
        merge.apply_sorted(state, ops)

    monkeypatch.setattr(netsync, "apply_sorted", fold_then_stop)
    with pytest.raises(KeyboardInterrupt):
        fresh.sync(URL, token=token, pull_batch=9, client=server.client)
    assert not folds[0].valid and 0 < fresh.op_count() < full.op_count()
    assert _digest_folded_from_log(fresh, tmp_path) == fresh.state_digest()
    monkeypatch.undo()
    fresh.sync(URL, token=token, client=server.client)
    assert fresh.state_digest() == full.state_digest()
