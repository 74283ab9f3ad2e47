"""Attachments in relay bundles: a knocker's phone with no network bundles its photo and a document with its ops;
a courier carries the bundle; the server takes the blobs with the checks of an upload and its sealed answer says
so; the station opens them. Neither the bundle, the courier's bag nor the server's folder holds their bytes."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess
from PIL import Image

from caresync import BundleError, Replica, StationKey
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.relay import deliver, import_answers, write_bundle
from tests.server_support import enroll, issue_code

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
            carried_bytes = b"".join(base64.b64decode(d) for b in bundle["blobs"] for _, d in b["parts"])

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
        data = bytearray(base64.b64decode(altered["blobs"][0]["parts"][0][1]))
        data[100] ^= 1
        altered["blobs"][0]["parts"][0][1] = base64.b64encode(bytes(data)).decode()
        (tmp_path / "altered.bundle").write_text(json.dumps(altered))
        with Bag(tmp_path / "other.db") as bag, pytest.raises(BundleError, match="altered"):
            bag.take(tmp_path / "altered.bundle", now_ms=bundle["created_ms"])
    finally:
        server.stop()


def _round_trip(phone: Replica, tmp_path: Path, token: str, url: str, n: int) -> tuple[dict, object, bytes]:
    """One courier visit: the phone's bundle carried to the server, and the answer carried back and imported;
    returns the bundle, the import, and the bytes that travelled (bundle file, answers file, the courier's bag)."""
    bundle = write_bundle(phone, tmp_path / f"kiosk-{n}.bundle")
    bag_path = tmp_path / f"bag-{n}" / "carried.db"
    bag_path.parent.mkdir()
    with Bag(bag_path) as bag:
        bag.take(tmp_path / f"kiosk-{n}.bundle", now_ms=bundle["created_ms"])
        (done,) = deliver(bag, url, token=token, courier="li", now_ms=bundle["created_ms"])
        assert done.status == "delivered", done.reason
        assert bag.export_answers(phone.id[:6], tmp_path / f"answers-{n}.bundle", now_ms=bundle["created_ms"]) == 1
        travelled = b"".join(p.read_bytes() for p in bag_path.parent.iterdir())
    imported = import_answers(phone, tmp_path / f"answers-{n}.bundle")
    travelled += (tmp_path / f"kiosk-{n}.bundle").read_bytes() + (tmp_path / f"answers-{n}.bundle").read_bytes()
    return bundle, imported, travelled


@contextmanager
def _kiosk_by_courier(tmp_path: Path) -> Iterator[tuple[str, Replica, Replica, str, str]]:
    """A real server, the station desk and a grid's kiosk that reads what the station reads and, once enrolled at
    the station, never goes online again: only couriers carry its work. Yields the server's address, the two
    replicas, and the station's and a courier's tokens."""
    database = f"sqlite:///{tmp_path / 'server.db'}"
    station_token = enroll(database, "station", role="station", grids=[""])
    courier_token = enroll(database, "courier", role="courier", grids=["changnan"])
    kiosk_code = issue_code(database, "kiosk", role="grid_worker", grids=[GRID])
    key = StationKey.generate()
    server = ServerProcess(database, tmp_path, environment={"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")}).start()
    try:
        with (
            Replica.open(tmp_path / "station.db", actor="clerk") as station,
            Replica.open(tmp_path / "kiosk.db", actor="kiosk") as kiosk,
        ):
            station.install_station_key(key)
            kiosk.install_station_key(key)  # the grid's service point: it reads what the station reads
            kiosk.enroll(server.url, kiosk_code)  # at the station, once; from now on only couriers carry its work
            yield server.url, station, kiosk, station_token, courier_token
    finally:
        server.stop()


def test_answers_carry_blobs_back_to_a_device_that_never_goes_online_and_large_blobs_ride_several_bundles(
    tmp_path: Path,
) -> None:
    with _kiosk_by_courier(tmp_path) as (url, station, kiosk, station_token, courier_token):
        resident = station.residents.register(name="Zhang Min", grid=GRID)
        ticket = station.tickets.submit(title="Septic tank", kind="repair", grid=GRID, resident_id=resident.id)
        photo_bytes = _noise_jpeg(1200, 900)
        photo = station.attachments.add(ticket.id, photo_bytes)
        papers = KNOWN_TEXT + os.urandom(5 * 1024 * 1024)  # over 4 MiB sealed: more than one answer carries
        document = station.attachments.add(ticket.id, papers, kind="document")
        station.sync(url, token=station_token)

        # down: the first answer brings the ops and, within 4 MiB, the blobs its attach ops name
        _, first, travelled = _round_trip(kiosk, tmp_path, courier_token, url, 1)
        assert first.blob_chunks > 0 and first.more  # the document did not fit whole
        assert kiosk.attachments.held(photo.id) and not kiosk.attachments.held(document.id)
        missing = kiosk.device_log.blobs.missing(document.blob)
        assert 0 < len(missing) < len(kiosk.device_log.blobs.state(document.blob).manifest.chunks)
        bundle, second, more_bytes = _round_trip(kiosk, tmp_path, courier_token, url, 2)
        assert bundle["wants"] == [{"id": document.blob, "op": document.id, "need": missing}]
        assert second.blob_chunks == len(missing) and not second.more  # only what was missing, resumed
        travelled += more_bytes
        assert Image.open(io.BytesIO(kiosk.attachments.open(photo.id))).size == (1200, 900)
        assert kiosk.attachments.open(document.id) == papers

        # up: the kiosk's own large document is split over bundles, each taking up where the server got to
        visit = kiosk.visits.record(resident_id=resident.id, outcome="needs_help")
        own = kiosk.attachments.add(visit.id, KNOWN_TEXT + os.urandom(6 * 1024 * 1024), kind="document")
        chunks = len(kiosk.device_log.blobs.state(own.blob).manifest.chunks)
        sent: list[int] = []
        for n in range(3, 8):
            bundle, _, more_bytes = _round_trip(kiosk, tmp_path, courier_token, url, n)
            travelled += more_bytes
            carried = [int(k) for b in bundle.get("blobs", ()) if b["id"] == own.blob for k, _ in b["parts"]]
            assert not set(carried) & set(sent)  # no chunk the server said it holds rides again
            sent += carried
            if kiosk.device_log.blobs.unsent() == []:
                break
        assert sorted(sent) == list(range(chunks)) and n >= 4  # several bundles, each chunk once
        station.sync(url, token=station_token)
        assert station.attachments.open(own.id)[: len(KNOWN_TEXT)] == KNOWN_TEXT

        # a removal: the kiosk deletes its copy when the answer brings it, and its next bundle says so, which
        # is when the server (that carried the photo to it) deletes its own
        station.attachments.remove(photo.id)
        station.sync(url, token=station_token)

        def on_server() -> set[str]:
            return {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}

        assert {photo.blob, photo.thumb} <= on_server()
        _round_trip(kiosk, tmp_path, courier_token, url, 10)
        assert not {photo.blob, photo.thumb} & kiosk.device_log.blobs.held()
        assert {photo.blob, photo.thumb} <= on_server()
        bundle, _, _ = _round_trip(kiosk, tmp_path, courier_token, url, 11)
        assert sorted(bundle["deleted"]) == sorted([photo.blob, photo.thumb])
        assert not {photo.blob, photo.thumb} & on_server() and document.blob in on_server()
        assert kiosk.device_log.blobs.deleted() == []  # the server's signed answer said it heard

    for piece in (photo_bytes[3000:3064], photo_bytes[-3064:-3000], KNOWN_TEXT[:32], b"13907981234"):
        assert piece not in travelled


def test_a_device_that_wants_thumbnails_only_gets_only_thumbnails_in_answers_until_it_wants_more(
    tmp_path: Path,
) -> None:
    with _kiosk_by_courier(tmp_path) as (url, station, kiosk, station_token, courier_token):
        kiosk.attachments.pull_mode = "thumbs"  # a phone short of space and of courier visits
        resident = station.residents.register(name="Zhang Min", grid=GRID)
        ticket = station.tickets.submit(title="Septic tank", kind="repair", grid=GRID, resident_id=resident.id)
        photo = station.attachments.add(ticket.id, _noise_jpeg(1200, 900))
        document = station.attachments.add(ticket.id, KNOWN_TEXT, kind="document")  # no thumbnail
        station.sync(url, token=station_token)
        thumb_chunks = len(station.device_log.blobs.state(photo.thumb).manifest.chunks)

        # the first answer brings the ops and the thumbnail their attach ops name, nothing else
        _, first, _ = _round_trip(kiosk, tmp_path, courier_token, url, 1)
        assert first.blob_chunks == thumb_chunks and not first.more
        assert kiosk.attachments.held(photo.id, thumbnail=True)
        assert not kiosk.attachments.held(photo.id) and not kiosk.attachments.held(document.id)
        assert kiosk.device_log.blobs.held() == {photo.thumb}
        assert kiosk.attachments.open(photo.id, thumbnail=True) == station.attachments.open(
            photo.id, thumbnail=True
        )
        # nothing more is asked for or carried while it wants thumbnails only
        bundle, second, _ = _round_trip(kiosk, tmp_path, courier_token, url, 2)
        assert "wants" not in bundle and second.blob_chunks == 0

        kiosk.attachments.pull_mode = "eager"  # back at the station's charger: the full picture and the papers
        bundle, third, _ = _round_trip(kiosk, tmp_path, courier_token, url, 3)
        assert sorted(w["id"] for w in bundle["wants"]) == sorted([photo.blob, document.blob])
        assert third.blob_chunks > 0 and not third.more
        assert kiosk.attachments.open(photo.id) == station.attachments.open(photo.id)
        assert kiosk.attachments.open(document.id) == KNOWN_TEXT
