"""Attachments in relay bundles: a knocker's phone with no network bundles its photo and a document with its ops;
a courier carries the bundle; the server takes the blobs with the checks of an upload and its sealed answer says
so; the station opens them. Neither the bundle, the courier's bag nor the server's folder holds their bytes."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess
from PIL import Image

from caresync import BundleError, Replica, StationKey
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.relay import deliver, import_answers, write_bundle
from tests.server_support import enroll

GRID = "changnan/dorm/3"
KNOWN_TEXT = b"Doctor's note for Zhang Min: diabetic, insulin twice a day, daughter in Shenzhen 13907981234"


def _noise_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_bundle_carries_blobs_sealed_and_the_server_takes_them_checked(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    tokens = {
        name: enroll(database, name, role=role, grids=grids)
        for name, role, grids in [
            ("station", "station", [""]),
            ("knocker", "knocker", [GRID]),
            ("courier", "courier", ["changnan"]),
        ]
    }
    key = StationKey.generate()
    server = ServerProcess(database, tmp_path, environment={"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")}).start()
    try:
        with (
            Replica.open(tmp_path / "station.db", actor="clerk") as station,
            Replica.open(tmp_path / "knocker.db", actor="wu") as phone,
        ):
            station.install_station_key(key)
            resident = station.residents.register(name="Zhang Min", grid=GRID)
            station.sync(server.url, token=tokens["station"])
            phone.set_station_public_key(key.public_key)
            phone.sync(server.url, token=tokens["knocker"])  # once, at the station's wifi

            # offline: a knock with a photo, and the doctor's note, bundled for a courier
            visit = phone.visits.record(resident_id=resident.id, outcome="needs_help", photo=_noise_jpeg(1200, 900))
            note = phone.attachments.add(visit.id, KNOWN_TEXT, kind="document")
            photo = visit.attachments[0]
            bundle = write_bundle(phone, tmp_path / "knock.bundle")
            assert sorted(b["id"] for b in bundle["blobs"]) == sorted([photo.blob, photo.thumb, note.blob])
            carried_bytes = b"".join(base64.b64decode(b["data"]) for b in bundle["blobs"])

            bag_path = tmp_path / "courier" / "carried.db"
            bag_path.parent.mkdir()
            with Bag(bag_path) as bag:
                bag.take(tmp_path / "knock.bundle", now_ms=bundle["created_ms"])
                (done,) = deliver(bag, server.url, token=tokens["courier"], courier="li", now_ms=bundle["created_ms"])
                assert done.status == "delivered" and done.stored == len(bundle["ops"])
                assert bag.export_answers(phone.id[:6], tmp_path / "answers.bundle", now_ms=bundle["created_ms"]) == 1
            imported = import_answers(phone, tmp_path / "answers.bundle")
            assert imported.acked == len(bundle["ops"])
            assert phone.device_log.blobs.unsent() == []  # the server's signed answer said it holds them all

            result = station.sync(server.url, token=tokens["station"])
            assert result.blobs.downloaded == 3
            opened = station.attachments.open(photo.id)
            assert Image.open(io.BytesIO(opened)).size == (1200, 900)
            assert station.attachments.open(note.id) == KNOWN_TEXT

            again = phone.sync(server.url, token=tokens["knocker"])  # nothing left to send, nothing sent twice
            assert again.blobs.chunks_sent == 0

        server_files = b"".join(p.read_bytes() for p in (tmp_path / "blobs").rglob("*") if p.is_file())
        for where, raw in (
            ("the bundle", (tmp_path / "knock.bundle").read_bytes() + carried_bytes),
            ("the courier's bag", b"".join(p.read_bytes() for p in bag_path.parent.iterdir())),
            ("the server's blob folder", server_files),
            ("the server's database", b"".join(p.read_bytes() for p in tmp_path.glob("server.db*"))),
        ):
            assert KNOWN_TEXT[:32] not in raw, where
            assert b"13907981234" not in raw, where
            assert opened[4000:4064] not in raw and opened[-4064:-4000] not in raw, where

        # a bundle whose blob was altered on the way is refused whole: the device's signature covers the blobs
        altered = json.loads((tmp_path / "knock.bundle").read_bytes())
        data = bytearray(base64.b64decode(altered["blobs"][0]["data"]))
        data[100] ^= 1
        altered["blobs"][0]["data"] = base64.b64encode(bytes(data)).decode()
        (tmp_path / "altered.bundle").write_text(json.dumps(altered))
        with Bag(tmp_path / "other.db") as bag, pytest.raises(BundleError, match="altered"):
            bag.take(tmp_path / "altered.bundle", now_ms=bundle["created_ms"])
    finally:
        server.stop()
