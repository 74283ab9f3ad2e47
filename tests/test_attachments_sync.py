"""Attachments through a real sync server process: blobs go apart from the ops, chunk by chunk, checked, resumed
after a cut, never sent twice, fetched as each device's pull mode says; the server keeps them on disk within its
limits, answers 4xx over them, cannot read them, and deletes the ones no live attachment names."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from caresync_server.testing import ServerProcess
from PIL import Image

from caresync import NotFoundError, Replica, StationKey, SyncError, SyncProgress, TrustError
from caresync.testing import FakeClock
from caresync.trust.blobs import CHUNK_SIZE
from tests.netsync_support import FlakyTransport
from tests.server_support import enroll

GRID = "changnan/teachers-dorm/3"
KNOWN_TEXT = b"Legal aid papers: Li Wei, flat 302, owes 4,800 yuan in back rent since March. CASEMARKER"


def _server(database_url: str, tmp_path: Path, **env: str) -> ServerProcess:
    environment = {"CARESYNC_BLOB_DIR": str(tmp_path / "blobs"), **env}
    return ServerProcess(database_url, tmp_path, environment=environment).start()


def noisy_photo(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _device(tmp_path: Path, name: str, key: StationKey, *, reads: bool) -> Replica:
    replica = Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock())
    if reads:
        replica.install_station_key(key)
    else:
        replica.set_station_public_key(key.public_key)
    return replica


def _server_bytes(database_url: str, tmp_path: Path) -> bytes:
    out = b""
    for path in sorted((tmp_path / "blobs").rglob("*")):
        if path.is_file():
            out += path.read_bytes()
    if database_url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            db = tmp_path / f"server.db{suffix}"
            if db.exists():
                out += db.read_bytes()
    return out


def test_blobs_sync_through_the_server_by_pull_mode_and_the_server_cannot_read_them(
    database_url: str, tmp_path: Path
) -> None:
    key = StationKey.generate()
    knocker_token = enroll(database_url, "knocker-wu", role="knocker", grids=[GRID])
    station_token = enroll(database_url, "station-desk", role="station", grids=[""])
    server = _server(database_url, tmp_path)
    try:
        station = _device(tmp_path, "station", key, reads=True)
        knocker = _device(tmp_path, "knocker", key, reads=False)
        knocker.attachments.pull_mode = "thumbs"
        resident = station.residents.register(name="Zhang Min", grid=GRID)
        station.sync(server.url, token=station_token)
        knocker.sync(server.url, token=knocker_token)
        visit = knocker.visits.record(resident_id=resident.id, outcome="unwell", note="fell in the kitchen")
        photo = knocker.attachments.add(visit.id, noisy_photo(1600, 1200), caption="how she was found")
        seen: list[SyncProgress] = []
        result = knocker.sync(server.url, token=knocker_token, progress=seen.append)
        assert result.blobs.uploaded == 2 and result.blobs.chunks_sent >= 2
        assert any(p.phase == "blobs_up" and p.done == p.total for p in seen)
        result = station.sync(server.url, token=station_token)
        assert result.blobs.downloaded == 2
        station_photo = station.attachments.open(photo.id)
        assert Image.open(io.BytesIO(station_photo)).size == (1600, 1200)
        # the station's own document, on the visit: the knocker's phone pulls only thumbnails
        document = station.attachments.add(visit.id, KNOWN_TEXT, kind="document", caption="CASEMARKER papers")
        thumbed = station.attachments.add(visit.id, noisy_photo(900, 600))
        station.sync(server.url, token=station_token)
        result = knocker.sync(server.url, token=knocker_token)
        assert result.blobs.downloaded == 1  # the new photo's thumbnail: not the document, not the photo
        assert not knocker.attachments.held(document.id) and not knocker.attachments.held(thumbed.id)
        assert knocker.attachments.held(thumbed.id, thumbnail=True)
        assert knocker.attachments.fetch(document.id, url=server.url, token=knocker_token)  # on demand: lazy
        with pytest.raises(TrustError, match="sealed to the station"):
            knocker.attachments.open(document.id)  # whole here now, and still unreadable to a knocker
        again = knocker.sync(server.url, token=knocker_token)
        assert (again.blobs.chunks_sent, again.blobs.chunks_received) == (0, 0)  # nothing moves twice
        raw = _server_bytes(database_url, tmp_path)
        assert station_photo[3000:3064] not in raw and station_photo[-3064:-3000] not in raw
        assert KNOWN_TEXT not in raw and b"CASEMARKER" not in raw
        # removal: the blobs go from every device as it syncs, and from the server once every device that held
        # them has synced past the removal (the knocker held the thumbnail: its next sync tells the server)
        station.attachments.remove(thumbed.id)
        station.sync(server.url, token=station_token)
        blob_files = {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
        assert thumbed.blob not in blob_files and thumbed.thumb in blob_files
        knocker.sync(server.url, token=knocker_token)
        assert thumbed.thumb not in knocker.device_log.blobs.held()
        knocker.sync(server.url, token=knocker_token)
        blob_files = {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}
        assert thumbed.blob not in blob_files and thumbed.thumb not in blob_files
        assert {photo.blob, photo.thumb, document.blob} <= blob_files
        assert thumbed.thumb not in knocker.device_log.blobs.held()
        # erasure of the resident: the photos of the knocks at her door go too, from the server and the devices
        station.residents.redact(resident.id, reason="asked to be forgotten")
        station.sync(server.url, token=station_token)
        knocker.sync(server.url, token=knocker_token)
        knocker.sync(server.url, token=knocker_token)  # it held the thumbnails and the document
        assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
        assert station.device_log.blobs.held() == knocker.device_log.blobs.held() == set()
    finally:
        server.stop()


def test_the_server_refuses_blobs_over_its_limits_and_blobs_no_op_names(database_url: str, tmp_path: Path) -> None:
    key = StationKey.generate()
    token = enroll(database_url, "station-desk", role="station", grids=[""])
    courier_token = enroll(database_url, "courier-li", role="courier", grids=[GRID])
    limits = {"CARESYNC_MAX_BLOB_BYTES": "600000", "CARESYNC_MAX_DEVICE_BLOB_BYTES": "900000"}
    server = _server(database_url, tmp_path, **limits)
    try:
        station = _device(tmp_path, "station", key, reads=True)
        ticket = station.tickets.submit(title="Leak", kind="repair", grid=GRID)
        small = station.attachments.add(ticket.id, os.urandom(500_000), kind="document")
        big = station.attachments.add(ticket.id, os.urandom(700_000), kind="document")
        result = station.sync(server.url, token=token)
        assert result.blobs.uploaded == 1
        assert [(r.blob, r.code) for r in result.blobs.refused] == [(big.blob, "blob_too_large")]
        over = station.attachments.add(ticket.id, os.urandom(450_000), kind="document")
        result = station.sync(server.url, token=token)  # the refused one is offered again, and refused again
        assert sorted((r.blob, r.code) for r in result.blobs.refused) == sorted(
            [(big.blob, "blob_too_large"), (over.blob, "quota_exceeded")]
        )
        state = station.device_log.blobs.state(small.blob)
        assert state is not None
        offer = {"op": small.id, "size": state.manifest.size, "chunks": state.manifest.chunks}
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {courier_token}"}) as http:
            # a courier may not see a ticket's ops: to it the blob does not exist
            answer = http.post(f"/v1/blobs/{small.blob}", json=offer)
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "unknown_blob")
            answer = http.get(f"/v1/blobs/{small.blob}/chunks/0", params={"op": small.id})
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "unknown_blob")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
            answer = http.post(f"/v1/blobs/{small.blob}", json={**offer, "chunks": offer["chunks"][::-1]})
            assert answer.status_code == 422  # a chunk list that is not the blob's
            answer = http.put(f"/v1/blobs/{small.blob}/chunks/0", content=os.urandom(CHUNK_SIZE))
            assert (answer.status_code, answer.json()["error"]["code"]) == (422, "damaged_chunk")
            answer = http.put(f"/v1/blobs/{'0' * 64}/chunks/0", content=b"x")
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "unknown_blob")
            answer = http.get(f"/v1/blobs/{small.blob}", params={"op": small.id})
            assert answer.status_code == 200 and answer.json()["complete"] is True
    finally:
        server.stop()


def test_a_cut_link_resumes_blob_transfers_without_sending_a_chunk_twice(database_url: str, tmp_path: Path) -> None:
    key = StationKey.generate()
    token = enroll(database_url, "station-a", role="station", grids=[""])
    other_token = enroll(database_url, "station-b", role="station", grids=[""])
    server = _server(database_url, tmp_path)
    rng = random.Random(20)
    try:
        a = _device(tmp_path, "a", key, reads=True)
        b = _device(tmp_path, "b", key, reads=True)
        ticket = a.tickets.submit(title="Papers for legal aid", kind="legal_aid", grid=GRID)
        data = os.urandom(8 * CHUNK_SIZE + 1000)
        added = a.attachments.add(ticket.id, data, kind="document")
        for device, device_token in ((a, token), (b, other_token)):
            for _ in range(200):
                transport = FlakyTransport(rng, cut=0.3)
                with httpx.Client(transport=transport, timeout=30) as client, contextlib.suppress(SyncError):
                    device.sync(server.url, token=device_token, retries=0, client=client)
                with contextlib.suppress(NotFoundError):  # a cut pull may not have brought the attach op yet
                    if device.device_log.blobs.unsent() == [] and device.attachments.held(added.id):
                        break
        assert b.attachments.open(added.id) == data
        received, served = _counts(database_url, added.blob)
        assert received == 9  # each of the 9 chunks reached the server once, however often the link dropped
        assert served >= 9
    finally:
        server.stop()


def _counts(database_url: str, blob_id: str) -> tuple[int, int]:
    """How many chunk bodies the server received for a blob, and how many it handed out (its own counters)."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT received, served FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            row = conn.execute("SELECT received, served FROM blobs WHERE id = %s", (blob_id,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_pull_mode_is_set_from_the_program_and_kept(tmp_path: Path) -> None:
    """A knocker's phone is told to fetch thumbnails only with `caresync sync --attachments thumbs`, not Python;
    the file keeps the mode for the syncs after."""
    database_url = f"sqlite:///{tmp_path / 'server.db'}"
    key = StationKey.generate()
    knocker_token = enroll(database_url, "knocker-wu", role="knocker", grids=[GRID])
    station_token = enroll(database_url, "station-desk", role="station", grids=[""])
    server = _server(database_url, tmp_path)
    program = str(Path(sys.executable).parent / "caresync")
    knocker_file = tmp_path / "knocker.db"
    _device(tmp_path, "knocker", key, reads=False).close()

    def knocker_sync(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [program, "sync", str(knocker_file), "--server", server.url, "--token", knocker_token, "--json", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    try:
        with _device(tmp_path, "station", key, reads=True) as station:
            resident = station.residents.register(name="Zhang Min", grid=GRID)
            visit = station.visits.record(resident_id=resident.id, outcome="unwell")
            photo = station.attachments.add(visit.id, noisy_photo(1600, 1200))
            station.sync(server.url, token=station_token)
        assert knocker_sync("--attachments", "thumbs")["attachments"] == "thumbs"
        with Replica.open(knocker_file, actor="knocker", read_only=True) as knocker:
            assert knocker.attachments.held(photo.id, thumbnail=True) and not knocker.attachments.held(photo.id)
        assert knocker_sync()["attachments"] == "thumbs"  # kept in the file
        assert knocker_sync("--attachments", "eager")["attachments"] == "eager"
        with Replica.open(knocker_file, actor="knocker", read_only=True) as knocker:
            assert knocker.attachments.held(photo.id)
    finally:
        server.stop()
