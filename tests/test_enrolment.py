"""Enrolment, tokens and scope changes on the device (caresync.sync.enrolment, Replica.enroll / sync / scope_changes),
against the real server app over real storage in-process, and once against a real uvicorn server process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caresync import InvalidInputError, Replica, ServerRefusedError, StationKey, SyncError
from caresync.sync.enrolment import RENEW_BEFORE_MS, renew_token
from caresync.testing import FakeClock
from caresync.trust.codes import check_code, format_code, new_code, normalize_code
from tests.conftest import ReplicaFactory
from tests.server_support import issue_code, register_station_key

fastapi_testclient = pytest.importorskip("fastapi.testclient")
URL = "http://testserver"
LANE_A = "changnan/lane-7"
LANE_B = "changnan/lane-9"
DAY = 86_400_000


class Server:
    """The app over an SQLite file with a clock the test moves, and its storage for the station's commands."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        from caresync_server.app import create_app
        from caresync_server.settings import Settings
        from caresync_server.storage import Storage

        self.database_url = f"sqlite:///{path}"
        self.clock = clock
        settings = Settings(database_url=self.database_url)
        self.client = fastapi_testclient.TestClient(create_app(settings, now_ms=clock))
        self.client.__enter__()
        self.storage = Storage(settings, now_ms=clock)

    def code(self, name: str, role: str, *grids: str) -> str:
        return self.storage.issue_code(name, role, grids).code

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.storage.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "server.db", FakeClock())
    s.storage.set_station_public_key(StationKey.generate().public_key)  # enrolled devices seal their free text
    yield s
    s.close()


def _enrolled(server: Server, make_replica: ReplicaFactory, name: str, role: str, *grids: str, **kw: Any) -> Replica:
    device = make_replica(name, **kw)
    device.enroll(URL, server.code(name, role, *grids), client=server.client)
    return device


def test_codes_are_typable_and_catch_typos() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200
    for code in list(codes)[:50]:
        assert check_code(code) is None and check_code(code.lower().replace("-", " ")) is None
        raw = normalize_code(code)
        assert format_code(raw) == code
        for i in range(len(raw)):  # any one character mistyped is caught
            for other in "0123456789ABCDEFGHJKMNPQRSTVWXYZ":
                if other != raw[i]:
                    assert check_code(raw[:i] + other + raw[i + 1 :]) is not None
    # swapped neighbours are caught, except 0 and Z (values 0 and 31), Luhn mod 32's one blind spot
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    missed = set()
    for position in (0, 6, 13):  # the first, a middle and the last pair of the random part
        for a in alphabet:
            for b in alphabet:
                body = "1" * position + a + b + "1" * (13 - position)
                full = body + alphabet[_check_value(body)]
                assert check_code(full) is None
                swapped = "1" * position + b + a + "1" * (13 - position) + full[-1]
                if a != b and check_code(swapped) is None:
                    missed.add(frozenset((a, b)))
    assert missed == {frozenset("0Z")}
    assert "16 characters" in str(check_code("ABCD"))
    assert "U cannot appear" in str(check_code("U" * 16))


def _check_value(body: str) -> int:
    """The check character's value of a 15-character body (found by trying each one)."""
    return next(v for v, ch in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ") if check_code(body + ch) is None)


def test_enrol_once_then_sync_with_no_arguments(server: Server, make_replica: ReplicaFactory) -> None:
    station_key = StationKey.generate()
    server.storage.set_station_public_key(station_key.public_key)
    desk = _enrolled(server, make_replica, "desk", "station", "")
    chen = _enrolled(server, make_replica, "chen", "courier", LANE_A)
    found = chen.enrolment()
    assert found is not None and found.role == "courier" and found.grids == (LANE_A,)
    assert found.server_url == URL and found.station_public_key == station_key.public_key
    assert desk.enrolment() is not None and make_replica("nobody").enrolment() is None

    parcel = desk.parcels.register(code="P-1", grid=LANE_A)
    assert desk.sync(client=server.client).pushed == 1
    assert chen.sync(client=server.client).pulled == 1
    chen.parcels.hop(parcel.id, "picked_up", place="lane 7 mailbox")
    assert chen.sync(client=server.client).pushed == 1
    desk.sync(client=server.client)
    assert desk.parcels.get(parcel.id).stage == "picked_up"

    with pytest.raises(InvalidInputError, match="code"):
        make_replica("typo").enroll(URL, "ABCD-EFGH", client=server.client)
    twice = server.code("twice", "knocker", LANE_A)
    make_replica("first").enroll(URL, twice, client=server.client)
    with pytest.raises(ServerRefusedError) as used:  # a code works once
        make_replica("second").enroll(URL, twice, client=server.client)
    assert used.value.server_code == "invalid_code" and "new one" in str(used.value)
    with pytest.raises(SyncError, match="not enrolled"):
        make_replica("loose").sync(client=server.client)
    with pytest.raises(InvalidInputError, match="enrolled with"):
        chen.sync("http://elsewhere", client=server.client)


def test_a_replica_from_before_device_keys_enrols_under_its_keys_fingerprint(
    server: Server, make_replica: ReplicaFactory
) -> None:
    old = make_replica("old")
    old.device_log.store.sql("DELETE FROM meta WHERE key = 'device_key'")  # a file from before devices had keys
    old.device_log.store.set_meta("replica_id", "0123456789abcdef")
    old.close()
    reopened = make_replica("old")
    assert reopened.id == reopened.device_key.origin != "0123456789abcdef"
    reopened.enroll(URL, server.code("old", "knocker", LANE_A), client=server.client)
    assert reopened.enrolment() is not None


def test_an_expired_token_is_renewed_on_the_next_sync_and_no_work_is_lost(
    server: Server, make_replica: ReplicaFactory
) -> None:
    device_clock = FakeClock()
    fang = _enrolled(server, make_replica, "fang", "grid_worker", "changnan", clock=device_clock)
    fang.sync(client=server.client)
    before = fang.device_log.store.get_meta("server_token")
    server.clock.advance(45 * DAY)  # the server's month passes; the phone's clock does not know
    with fang.batch():
        for i in range(5):
            fang.tickets.submit(title=f"Stairwell light {i}", kind="repair", grid=LANE_A)
    result = fang.sync(client=server.client)  # 401 token_expired, renewed with the device key, then synced
    assert result.pushed == 5 and result.unsent == 0
    after = fang.device_log.store.get_meta("server_token")
    assert after != before
    found = fang.enrolment()
    assert found is not None and found.token_expires_at.timestamp() * 1000 > server.clock.ms + 29 * DAY

    device_clock.ms = server.clock.ms + 30 * DAY - RENEW_BEFORE_MS + DAY  # close to expiry: renewed before it
    fang.sync(client=server.client)
    assert fang.device_log.store.get_meta("server_token") not in (before, after)


def test_a_revoked_device_is_cut_off_keeps_its_work_and_cannot_renew(
    server: Server, make_replica: ReplicaFactory
) -> None:
    phone = _enrolled(server, make_replica, "lost-phone", "knocker", LANE_A)
    phone.sync(client=server.client)
    phone.tickets.submit(title="Report", kind="repair", grid=LANE_A)
    server.storage.revoke("lost-phone")
    with pytest.raises(ServerRefusedError) as refused:
        phone.sync(client=server.client)
    assert refused.value.server_code == "revoked" and "revoked" in str(refused.value)
    with pytest.raises(ServerRefusedError) as renewal:
        renew_token(phone, client=server.client)
    assert renewal.value.server_code == "revoked"
    assert phone.unsent_count() == 1  # its work stays on the device


def test_a_shrunk_scope_pushes_unsent_work_then_purges_and_logs(server: Server, make_replica: ReplicaFactory) -> None:
    desk = _enrolled(server, make_replica, "desk", "station", "")
    mine = [desk.parcels.register(code=f"A{i}", grid=LANE_A).id for i in range(3)]
    theirs = [desk.parcels.register(code=f"B{i}", grid=LANE_B).id for i in range(2)]
    box = desk.mailboxes.add(code="MB-7", name="Lane 7 box", grid=LANE_A)
    desk.sync(client=server.client)
    chen = _enrolled(server, make_replica, "chen", "courier", LANE_A, LANE_B)
    assert chen.sync(client=server.client).pulled == 6

    # offline: hops on both lanes, and a new parcel on the lane chen is about to lose
    chen.parcels.hop(mine[0], "picked_up")
    chen.parcels.hop(theirs[0], "picked_up")
    late = chen.parcels.register(code="A-new", grid=LANE_A)
    assert chen.unsent_count() == 3
    server.storage.set_scope("chen", grids=[LANE_B])  # the courier's route changes

    result = chen.sync(client=server.client)
    assert result.pushed == 1  # the hop on lane B; the lane-A ops are now outside chen's grids
    refused = {r.record for r in result.refused}
    assert refused == {mine[0], late.id} and all(r.code == "forbidden" for r in result.refused)
    held = {p.id for p in chen.parcels.list()}
    assert held == {mine[0], late.id, *theirs}  # lane-A records with unsent (refused) work are kept
    assert chen.mailboxes.list() == []
    assert {r.op for r in chen.refusals()} == {f"{chen.id}:1", f"{chen.id}:3"}  # nothing lost: both still here
    gone = set(mine[1:]) | {box.id}
    assert not chen.device_log.store.sql(f"SELECT 1 FROM ops WHERE eid IN ({','.join('?' * len(gone))})", sorted(gone))
    [change] = chen.scope_changes()
    assert (change.grids_before, change.grids_after) == ((LANE_A, LANE_B), (LANE_B,))
    assert change.purged == {"parcel": 2, "mailbox": 1} and change.kept == sorted([mine[0], late.id])
    enrolment = chen.enrolment()
    assert enrolment is not None and enrolment.grids == (LANE_B,) and enrolment.scope_version == 2

    # the device goes on: its next op follows its last, and the server takes it
    chen.parcels.hop(theirs[1], "picked_up")
    assert chen.sync(client=server.client).pushed == 1
    assert chen.scope_changes() == [change]  # nothing new to log while the kept records still wait

    # back to both lanes: the device pulls again from the start and gets lane A's history back
    server.storage.set_scope("chen", grids=[LANE_A, LANE_B])
    chen.sync(client=server.client)
    assert {p.id for p in chen.parcels.list()} >= set(mine) | set(theirs)
    assert [m.id for m in chen.mailboxes.list()] == [box.id]
    assert len(chen.scope_changes()) == 2


def test_enrol_renew_and_revoke_against_a_real_server_process(tmp_path: Path) -> None:
    from caresync_server.testing import ServerProcess

    database_url = f"sqlite:///{tmp_path / 'server.db'}"
    code = issue_code(database_url, "phone-li", role="grid_worker", grids=["changnan"])
    register_station_key(database_url, StationKey.generate().public_key)
    lifetime_s = 3.0
    server = ServerProcess(
        database_url, tmp_path, environment={"CARESYNC_TOKEN_LIFETIME_DAYS": str(lifetime_s / 86_400)}
    ).start()
    try:
        with Replica.open(tmp_path / "li.db", actor="li") as li:
            li.enroll(server.url, code)
            li.tickets.submit(title="Blocked drain", kind="repair", grid="changnan/dorm/3")
            assert li.sync().pushed == 2  # the ticket, and the short number its first block gave it
            first = li.device_log.store.get_meta("server_token")
            time.sleep(lifetime_s + 0.5)  # the token expires: the next sync renews it with the device key
            li.tickets.submit(title="Broken lamp", kind="repair", grid="changnan/dorm/3")
            assert li.sync().pushed == 1
            assert li.device_log.store.get_meta("server_token") != first
            from caresync_server.settings import Settings
            from caresync_server.storage import Storage

            storage = Storage(Settings(database_url=database_url))
            try:
                storage.revoke("phone-li")
            finally:
                storage.close()
            # the same through the caresync command: enrol a file with a code, then sync it with no options
            from click.testing import CliRunner

            from caresync.cli import main

            desk_code = issue_code(database_url, "desk", role="station", grids=[""])
            runner = CliRunner()
            desk_file = str(tmp_path / "desk.db")
            enrolled = runner.invoke(main, ["enroll", desk_file, desk_code.lower(), "--server", server.url])
            assert enrolled.exit_code == 0 and "Enrolled as desk: station in everywhere" in enrolled.output
            synced = runner.invoke(main, ["sync", desk_file, "--json"], env={"CARESYNC_TOKEN": ""})
            assert synced.exit_code == 0, synced.output
            assert json.loads(synced.output)["received"] == 3  # li's two tickets and the number of the first
            again = runner.invoke(main, ["enroll", desk_file, desk_code, "--server", server.url])
            # the server refused the used code: exit code 4, as on the courier's handheld
            assert again.exit_code == 4 and "new one" in again.output and "Traceback" not in again.output

            li.tickets.submit(title="Third", kind="repair", grid="changnan/dorm/3")
            with pytest.raises(ServerRefusedError) as refused:
                li.sync()
            assert refused.value.server_code == "revoked" and li.unsent_count() == 1
    finally:
        server.stop()
