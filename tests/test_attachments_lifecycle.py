"""When a blob leaves the server, and erasure reaching every photo of a resident.

- A blob no live attachment names any more stays on the server until every device that held it (sent it, or was
  handed a chunk of it) has synced past the op that dropped it; a revoked device counts as synced.
- Erasing a resident deletes the photos on their tickets and parcels (and of the knocks on their door) from every
  replica, the server's folder and database, and keeps them out of relay bundles and answers.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from pathlib import Path

import httpx
from caresync_server.testing import ServerProcess

from caresync import Replica, StationKey
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.relay import deliver, import_answers, write_bundle
from caresync.testing import FakeClock
from tests.server_support import enroll, issue_code
from tests.test_attachments_sync import noisy_photo

GRID = "changnan/teachers-dorm/3"


def _server(tmp_path: Path) -> tuple[str, ServerProcess]:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    server = ServerProcess(database, tmp_path, environment={"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")})
    return database, server


def _files(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}


def _rows(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "server.db") as conn:
        found = {str(r[0]) for r in conn.execute("SELECT id FROM blobs")}
    conn.close()
    return found


def _device(tmp_path: Path, name: str, key: StationKey) -> Replica:
    replica = Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock())
    replica.install_station_key(key)
    return replica


def test_the_server_keeps_a_dropped_blob_until_every_holder_synced_past_the_drop(tmp_path: Path) -> None:
    key = StationKey.generate()
    database, server = _server(tmp_path)
    tokens = {name: enroll(database, name, role="station", grids=[""]) for name in ("desk", "phone", "lost")}
    admin = enroll(database, "admin", role="admin", grids=[""])
    server.start()
    try:
        desk, phone, lost = (_device(tmp_path, name, key) for name in ("desk", "phone", "lost"))
        ticket = desk.tickets.submit(title="Stair light broken", kind="repair", grid=GRID)
        kept = desk.attachments.add(ticket.id, os.urandom(300_000), kind="document")
        dropped = desk.attachments.add(ticket.id, os.urandom(300_000), kind="document")
        desk.sync(server.url, token=tokens["desk"])
        for device, name in ((phone, "phone"), (lost, "lost")):
            device.sync(server.url, token=tokens[name])
            assert device.attachments.held(dropped.id)

        desk.attachments.remove(dropped.id)
        desk.sync(server.url, token=tokens["desk"])
        desk.sync(server.url, token=tokens["desk"])  # the desk made the removal: it counts as synced
        assert dropped.blob in _files(tmp_path) and dropped.blob in _rows(tmp_path)  # phone and lost hold it

        phone.sync(server.url, token=tokens["phone"])  # receives the removal, deletes its copy
        assert dropped.blob not in phone.device_log.blobs.held()
        assert dropped.blob in _files(tmp_path)  # the server does not know yet that the phone has it
        phone.sync(server.url, token=tokens["phone"])  # its pull cursor is past the removal now
        assert dropped.blob in _files(tmp_path)  # "lost" has not synced: it might still offer or fetch it

        # the lost phone never comes back: the station revokes it, and a revoked device counts as synced
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
            assert http.post("/v1/admin/devices/lost/revoke").status_code == 200
        assert dropped.blob not in _files(tmp_path) and dropped.blob not in _rows(tmp_path)
        assert kept.blob in _files(tmp_path) and kept.blob in _rows(tmp_path)
        assert phone.attachments.held(kept.id) and dropped.blob in lost.device_log.blobs.held()  # offline: untouched
    finally:
        server.stop()


def test_erasure_reaches_the_photos_on_the_residents_tickets_and_parcels_everywhere(tmp_path: Path) -> None:
    key = StationKey.generate()
    database, server = _server(tmp_path)
    desk_token = enroll(database, "desk", role="station", grids=[""])
    worker_token = enroll(database, "worker", role="grid_worker", grids=[GRID])
    courier_token = enroll(database, "courier", role="courier", grids=["changnan"])
    satchel_token = enroll(database, "satchel", role="courier", grids=["changnan"])
    kiosk_code = issue_code(database, "kiosk", role="grid_worker", grids=[GRID])
    server.start()
    try:
        desk, worker, kiosk = (_device(tmp_path, name, key) for name in ("desk", "worker", "kiosk"))
        kiosk.enroll(server.url, kiosk_code)  # at the station, once; it never syncs: couriers carry its bundles
        resident = desk.residents.register(name="Zhang Min", grid=GRID)
        other = desk.residents.register(name="Wang Fang", grid=GRID)
        ticket = desk.tickets.submit(title="Leak", kind="repair", grid=GRID, resident_id=resident.id)
        parcel = desk.parcels.register(code="PX-1", grid=GRID, direction="to_resident", resident_id=resident.id)
        theirs = [
            desk.attachments.add(ticket.id, noisy_photo(800, 600)),
            desk.attachments.add(parcel.id, noisy_photo(640, 480), caption="handed over at the door"),
        ]
        stays = desk.attachments.add(
            desk.tickets.submit(title="Noise", kind="repair", grid=GRID, resident_id=other.id).id,
            noisy_photo(600, 400),
        )
        handheld = Replica.open(tmp_path / "handheld.db", actor="li", now_ms=FakeClock())
        handheld.set_station_public_key(key.public_key)  # a courier's: it holds the parcel's photo, sealed
        satchel = Replica.open(tmp_path / "satchel.db", actor="wu", now_ms=FakeClock())
        satchel.set_station_public_key(key.public_key)  # another courier's, which syncs only by relay afterwards
        desk.sync(server.url, token=desk_token)
        worker.sync(server.url, token=worker_token)
        handheld.sync(server.url, token=courier_token)
        satchel.sync(server.url, token=satchel_token)
        assert satchel.attachments.held(theirs[1].id)
        sealed = {a.blob: desk.device_log.blobs.read(a.blob) for a in theirs}
        assert worker.attachments.held(theirs[0].id) and handheld.attachments.held(theirs[1].id)

        desk.residents.redact(resident.id, reason="asked to be forgotten")
        desk.sync(server.url, token=desk_token)
        for _ in range(2):  # they held them: the second sync tells the server each has the erasure
            worker.sync(server.url, token=worker_token)
            handheld.sync(server.url, token=courier_token)
        dead = {b for a in theirs for b in (a.blob, a.thumb)}
        # the courier's handheld never sees the resident's erasure (its role does not see residents): the server
        # told it to delete the parcel's photo, and it said it did
        assert not dead & handheld.device_log.blobs.held()
        assert handheld.device_log.blobs.deleted() == [] and handheld.attachments.held(theirs[1].id) is False
        assert handheld.sync(server.url, token=courier_token).blobs.waiting == 0  # and never asks for it again
        assert theirs[1].blob in _files(tmp_path)  # the satchel still holds it
        for n in range(2):  # the same through a courier's bag: the answer tells it, the next bundle says it did
            made = write_bundle(satchel, tmp_path / f"satchel-{n}.bundle")
            with Bag(tmp_path / f"satchel-bag-{n}.db") as bag:
                bag.take(tmp_path / f"satchel-{n}.bundle", now_ms=made["created_ms"])
                deliver(bag, server.url, token=courier_token, courier="li", now_ms=made["created_ms"])
                bag.export_answers(satchel.id[:6], tmp_path / f"satchel-{n}.answers", now_ms=made["created_ms"])
            import_answers(satchel, tmp_path / f"satchel-{n}.answers")
            assert not dead & satchel.device_log.blobs.held()
        assert sorted(made["deleted"]) == sorted({theirs[1].blob, theirs[1].thumb})
        assert not dead & (_files(tmp_path) | _rows(tmp_path))
        assert stays.blob in _files(tmp_path)
        for device in (desk, worker):
            assert not dead & device.device_log.blobs.held()
            assert device.attachments.held(stays.id)

        # the kiosk learns of the resident's records only now, through a courier: nothing of their photos rides
        bundle = write_bundle(kiosk, tmp_path / "kiosk.bundle")
        with Bag(tmp_path / "bag.db") as bag:
            bag.take(tmp_path / "kiosk.bundle", now_ms=bundle["created_ms"])
            deliver(bag, server.url, token=courier_token, courier="li", now_ms=bundle["created_ms"])
            bag.export_answers(kiosk.id[:6], tmp_path / "answers.bundle", now_ms=bundle["created_ms"])
        imported = import_answers(kiosk, tmp_path / "answers.bundle")
        assert imported.received > 0 and imported.blob_chunks > 0  # the other resident's photo came
        assert kiosk.attachments.held(stays.id) and not dead & kiosk.device_log.blobs.held()

        raw: dict[str, bytes] = {}
        for name in ("desk", "worker", "kiosk", "handheld", "satchel"):
            raw[name] = b"".join(p.read_bytes() for p in tmp_path.glob(f"{name}.db*"))
        raw["server"] = b"".join(p.read_bytes() for p in tmp_path.glob("server.db*")) + b"".join(
            p.read_bytes() for p in (tmp_path / "blobs").rglob("*") if p.is_file()
        )
        raw["bundles"] = (tmp_path / "answers.bundle").read_bytes() + b"".join(
            p.read_bytes() for p in tmp_path.glob("bag.db*")
        )
        for where, data in raw.items():
            for blob in sealed.values():
                assert blob is not None
                for at in (1000, len(blob) // 2, len(blob) - 200):
                    piece = blob[at : at + 48]
                    assert piece not in data and base64.b64encode(piece[:45]) not in data, where
    finally:
        server.stop()
