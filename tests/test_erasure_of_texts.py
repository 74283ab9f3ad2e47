"""A resident's erasure reaches the free text of their tickets and visits (issue 16), against a real server process
on SQLite and on PostgreSQL: after ``residents.redact`` and a few syncs, the sealed titles, descriptions, notes,
reasons, visit notes and the party who is the resident are in no file any more (replicas with their -wal/-shm, the
server's SQLite file and WAL, a pg_dump), while the text of other records stays; every signature still checks, for a
device that pulls everything afresh too. Ops of these kinds are written in format 5; a device that does not say it
reads format 5 is not sent them (it could not check their signatures)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import httpx
from caresync_server.testing import ServerProcess, register_station_key

from caresync import Replica, StationKey
from caresync.core.ops import TEXT_FORMAT, TEXT_KINDS
from caresync.testing import FakeClock
from tests.server_support import enroll

GRID = "changnan/dorm/3"


def _server_bytes(database_url: str) -> bytes:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file())
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    raw = subprocess.run(["pg_dump", "--data-only", dsn], check=True, capture_output=True).stdout
    assert b"COPY public.ops" in raw
    return raw


def _replica_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")) if p.is_file())


def _texts(ops: list[dict[str, Any]], eids: set[str], seqs: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """The sealed text values of the ops of ``eids`` (and of the ops ``seqs``) that are of the text kinds."""
    out = []
    for op in ops:
        if op["kind"] not in TEXT_KINDS or (op["eid"] not in eids and op["seq"] not in seqs):
            continue
        for value in op["body"].values():
            items = value.values() if isinstance(value, dict) else [value]
            out += [v for v in items if isinstance(v, str) and v.startswith("sealed:1:")]
    return out


def test_an_erasure_reaches_the_texts_of_the_residents_tickets_and_visits(tmp_path: Path, database_url: str) -> None:
    key = StationKey.generate()
    register_station_key(database_url, key.public_key)
    desk_token = enroll(database_url, "desk", role="station", grids=[""])
    li_token = enroll(database_url, "li", role="grid_worker", grids=[GRID])
    late_token = enroll(database_url, "new-desk", role="station", grids=[""])
    server = ServerProcess(database_url, tmp_path).start()
    clock = FakeClock()
    try:
        with contextlib.ExitStack() as stack:
            desk = stack.enter_context(Replica.open(tmp_path / "desk.db", actor="desk", now_ms=clock))
            li = stack.enter_context(Replica.open(tmp_path / "li.db", actor="li", now_ms=clock))
            desk.install_station_key(key)
            wang = desk.residents.register(name="Wang Guilan", grid=GRID)
            leak = desk.tickets.submit(
                title="Leak in Wang's kitchen",
                description="She cannot climb stairs",
                kind="repair",
                grid=GRID,
                resident_id=wang.id,
            )
            desk.tickets.note(leak.id, "Her son is abroad")
            desk.tickets.rate(
                desk.tickets.close(
                    desk.tickets.resolve(
                        desk.tickets.start(desk.tickets.accept(leak.id, assignee="li").id).id,
                        resolution="fixed the pipe",
                    ).id
                ).id,
                score=4,
                comment="Wang says thanks",
            )
            later = desk.tickets.submit(title="Wang's heater", kind="repair", grid=GRID)
            desk.tickets.edit(later.id, resident_id=wang.id)  # tied to her by a later edit
            desk.tickets.cancel(later.id, reason="Wang went to hospital")
            visit = desk.visits.record(resident_id=wang.id, outcome="unwell", note="Wang coughing badly")
            desk.visits.note(visit.id, "Wang's daughter will call")
            noise = desk.tickets.submit(title="Noise at night", kind="dispute", grid=GRID)  # not about her...
            desk.tickets.add_party(
                noise.id, name="Wang Guilan", side="upstairs", resident_id=wang.id
            )  # ...but she is a party
            desk.tickets.add_party(noise.id, name="Zhao Ming", side="downstairs")
            kept = desk.tickets.submit(title="Stair light out", description="3rd floor", kind="repair", grid=GRID)
            desk.sync(server.url, token=desk_token)
            li.sync(server.url, token=li_token)
            assert li.tickets.get(leak.id).resident_id == wang.id

            ops = desk.export_ops()
            assert TEXT_FORMAT in {op["v"] for op in ops if op["kind"] in TEXT_KINDS and op["eid"] == leak.id}
            party_seq = next(op["seq"] for op in ops if op["kind"] == "ticket.party" and "resident_id" in op["body"])
            erased = _texts(ops, {leak.id, later.id, visit.id}, {party_seq})
            stays = _texts(ops, {kept.id}) + [
                op["body"]["name"] for op in ops if op["kind"] == "ticket.party" and "resident_id" not in op["body"]
            ]
            assert len(erased) >= 10 and len(stays) == 3
            before = [
                _replica_bytes(tmp_path / "desk.db"),
                _replica_bytes(tmp_path / "li.db"),
                _server_bytes(database_url),
            ]
            assert all(v.encode() in raw for v in erased + stays for raw in before)  # the check can see them

            desk.residents.redact(wang.id, reason="asked to be forgotten")
            for _ in range(2):
                desk.sync(server.url, token=desk_token)
                li.sync(server.url, token=li_token)
            late = stack.enter_context(Replica.open(tmp_path / "late.db", actor="new-desk", now_ms=clock))
            late.install_station_key(key)
            late.sync(server.url, token=late_token)  # everything afresh, every signature checked
            for device in (desk, li, late):
                ticket = device.tickets.get(leak.id)
                assert ticket.title == "" and ticket.description is None and ticket.notes[0].text is None
                assert ticket.rating is not None and ticket.rating.score == 4 and ticket.rating.comment is None
                assert device.visits.get(visit.id).note is None
            assert late.tickets.get(kept.id).title == "Stair light out"
            assert [p.name for p in late.tickets.get(noise.id).parties] == ["", "Zhao Ming"]
            assert late.tickets.get(noise.id).title == "Noise at night"

        after = {
            "desk": _replica_bytes(tmp_path / "desk.db"),
            "li": _replica_bytes(tmp_path / "li.db"),
            "late": _replica_bytes(tmp_path / "late.db"),
            "server": _server_bytes(database_url),
        }
        for holder, raw in after.items():
            left = [v[:20] for v in erased if v.encode() in raw]
            assert left == [], f"{len(left)} erased values are still in {holder}'s files"
            assert all(v.encode() in raw for v in stays), holder
    finally:
        server.stop()


def test_a_device_that_reads_format_3_is_not_sent_format_4_ops(tmp_path: Path, database_url: str) -> None:
    desk_token = enroll(database_url, "desk", role="station", grids=[""])
    old_token = enroll(database_url, "old", role="station", grids=[""])
    server = ServerProcess(database_url, tmp_path).start()
    try:
        with Replica.open(tmp_path / "desk.db", actor="desk", now_ms=FakeClock()) as desk:
            wang = desk.residents.register(name="Wang Guilan", grid=GRID)
            leak = desk.tickets.submit(title="Leak", kind="repair", grid=GRID, resident_id=wang.id)
            desk.sync(server.url, token=desk_token)

        def pulled(**extra: int) -> dict[tuple[str, str], int]:
            answer = httpx.post(
                server.url + "/v1/pull",
                json={"replica": "0" * 16, "time_ms": 1, **extra},
                headers={"Authorization": f"Bearer {old_token}"},
            ).json()
            return {(op["kind"], op["eid"]): op["v"] for op in answer["ops"]}

        old = pulled()  # what a replica of the previous release asks (it does not name a format)
        assert old[("resident.create", wang.id)] == 4 and TEXT_FORMAT not in set(old.values())  # format 4: deferred
        assert ("ticket.create", leak.id) not in old  # format 5: its signature is not the one format 3 or 4 checks
        assert pulled(format=TEXT_FORMAT)[("ticket.create", leak.id)] == TEXT_FORMAT
    finally:
        server.stop()
