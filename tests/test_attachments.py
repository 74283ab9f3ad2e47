"""Attachments on records: photos made small with a thumbnail, signatures, documents; sealed blobs beside the log,
removal, erasure and the collection of blobs no live attachment names."""

from __future__ import annotations

import io
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from caresync import (
    IntentError,
    InvalidInputError,
    MediaSettings,
    NotFoundError,
    Replica,
    StationKey,
    TrustError,
)
from caresync.trust.blobs import CHUNK_SIZE, BlobManifest, chunk_hashes, manifest_of, open_blob, seal_blob

from .conftest import ReplicaFactory

GRID = "changnan/teachers-dorm/3"
KNOWN_TEXT = b"Mediation agreement: Flat 302 keeps the stair light on until 22:00. Signed Li Wei."


def jpeg(
    width: int = 3000, height: int = 2000, *, exif: bool = False, colour: tuple[int, int, int] = (200, 40, 40)
) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    for x in range(0, width, 97):  # some detail, so the JPEG is not trivially small
        image.putpixel((x, (x * 7) % height), (x % 255, 10, 200))
    buffer = io.BytesIO()
    if exif:
        tags = Image.Exif()
        tags[0x010F] = "PhoneMakerCorp"  # Make
        tags[0x0112] = 6  # Orientation: rotate 90 degrees to show upright
        image.save(buffer, "JPEG", exif=tags.tobytes())
    else:
        image.save(buffer, "JPEG")
    return buffer.getvalue()


def noisy_jpeg(width: int, height: int) -> bytes:
    """A photo of noise: every 64-byte window of it is unique, so finding one in a file proves a leak."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _station(make_replica: ReplicaFactory, name: str = "station") -> tuple[Replica, StationKey]:
    replica = make_replica(name)
    key = StationKey.generate()
    replica.install_station_key(key)
    return replica, key


def _raw(path: Path) -> bytes:
    out = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        extra = Path(str(path) + suffix)
        if extra.exists():
            out += extra.read_bytes()
    return out


def test_a_photo_is_made_small_upright_without_its_metadata_and_has_a_thumbnail(make_replica: ReplicaFactory) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Septic tank blocked", kind="repair", grid=GRID)
    original = jpeg(exif=True)
    added = r.attachments.add(ticket.id, original, caption="the tank, from the yard")
    assert (added.kind, added.media, added.record_id, added.caption) == (
        "photo",
        "image/jpeg",
        ticket.id,
        "the tank, from the yard",
    )
    photo = Image.open(io.BytesIO(r.attachments.open(added.id)))
    assert photo.format == "JPEG"
    assert photo.size == (1067, 1600)  # 3000x2000 turned upright (EXIF orientation 6), longest side 1600
    assert dict(photo.getexif()) == {}  # the phone's make (and any GPS position) is gone
    thumb = Image.open(io.BytesIO(r.attachments.open(added.id, thumbnail=True)))
    assert max(thumb.size) == 256
    assert r.tickets.get(ticket.id).attachments == [added]
    assert r.attachments.list(ticket.id) == [added]
    assert r.attachments.get(added.id) == added
    assert r.attachments.held(added.id) and r.attachments.held(added.id, thumbnail=True)


def test_photo_size_and_quality_are_settings(make_replica: ReplicaFactory) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Stair light", kind="repair", grid=GRID)
    original = jpeg()
    big = r.attachments.add(ticket.id, original)
    r.attachments.media = MediaSettings(longest_side=640, jpeg_quality=40, thumb_side=64)
    small = r.attachments.add(ticket.id, original)
    assert Image.open(io.BytesIO(r.attachments.open(small.id))).size == (640, 427)
    assert max(Image.open(io.BytesIO(r.attachments.open(small.id, thumbnail=True))).size) == 64
    assert small.size < big.size
    with pytest.raises(InvalidInputError, match="jpeg_quality"):
        MediaSettings(jpeg_quality=0)
    with pytest.raises(InvalidInputError, match="thumb_side"):
        MediaSettings(longest_side=100, thumb_side=200)


def test_a_signature_is_kept_as_a_greyscale_image_and_a_document_as_it_is(
    make_replica: ReplicaFactory, tmp_path: Path
) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Noise dispute", kind="dispute", grid=GRID)
    strokes = Image.new("RGBA", (800, 300), (0, 0, 0, 0))
    for x in range(100, 700):
        strokes.putpixel((x, 150 + (x % 40) - 20), (0, 0, 160, 255))
    buffer = io.BytesIO()
    strokes.save(buffer, "PNG")
    signed = r.attachments.add(ticket.id, buffer.getvalue(), kind="signature")
    image = Image.open(io.BytesIO(r.attachments.open(signed.id)))
    assert (signed.media, image.format, image.mode, image.size) == ("image/png", "PNG", "L", (800, 300))
    assert image.getpixel((10, 10)) == 255  # the transparent canvas became white paper, the strokes dark
    assert image.getpixel((400, 150 + (400 % 40) - 20)) < 100
    paper = tmp_path / "agreement.pdf"
    paper.write_bytes(b"%PDF-1.4\n" + KNOWN_TEXT)
    document = r.attachments.add(ticket.id, paper, kind="document", caption="the agreement")
    assert (document.media, document.thumb) == ("application/pdf", None)
    assert r.attachments.open(document.id) == b"%PDF-1.4\n" + KNOWN_TEXT
    written = r.attachments.open(document.id, to=tmp_path / "copy.pdf")
    assert written == tmp_path / "copy.pdf" and written.read_bytes() == paper.read_bytes()
    with pytest.raises(NotFoundError, match="no thumbnail"):
        r.attachments.open(document.id, thumbnail=True)


def test_attachments_go_on_residents_visits_parcels_sessions_and_hops(make_replica: ReplicaFactory) -> None:
    r, _ = _station(make_replica)
    resident = r.residents.register(name="Zhang Min", grid=GRID)
    visit = r.visits.record(resident_id=resident.id, visitor="Knocker Wu", outcome="well")
    parcel = r.parcels.register(code="PX-1", grid=GRID, direction="to_station", resident_id=resident.id)
    r.parcels.hop(parcel.id, "picked_up")
    hop = r.parcels.get(parcel.id).hops[-1]
    dispute = r.tickets.submit(title="Renovation noise", kind="dispute", grid=GRID)
    r.tickets.record_session(dispute.id, mediator="Old Chen", summary="talked for an hour")
    session = r.tickets.get(dispute.id).sessions[-1]
    for record_id, on in ((resident.id, None), (visit.id, None), (parcel.id, hop.op_id), (dispute.id, session.op_id)):
        added = r.attachments.add(record_id, KNOWN_TEXT, kind="document", on=on)
        assert added.on == on and r.attachments.list(record_id) == [added]
    assert r.parcels.get(parcel.id).attachments[0].on == hop.op_id
    with pytest.raises(InvalidInputError, match="on"):
        r.attachments.add(parcel.id, KNOWN_TEXT, kind="document", on=session.op_id)


def test_bad_input_is_refused_and_changes_nothing(make_replica: ReplicaFactory, tmp_path: Path) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Leak", kind="repair", grid=GRID)
    before = (r.op_count(), r.state_digest())
    cases: list[tuple[str, object, dict[str, object], type[Exception], str]] = [
        (ticket.id, b"not an image at all", {}, InvalidInputError, "image"),
        (ticket.id, b"", {"kind": "document"}, InvalidInputError, "empty"),
        (ticket.id, jpeg(64, 64), {"kind": "sticker"}, InvalidInputError, "kind"),
        ("M-0123456789abcdef-1", jpeg(64, 64), {}, InvalidInputError, "record_id"),
        ("T-0123456789abcdef-9", jpeg(64, 64), {}, NotFoundError, "No ticket"),
        (ticket.id, tmp_path / "missing.jpg", {}, InvalidInputError, "cannot be read"),
        (ticket.id, jpeg(64, 64), {"caption": "x" * 201}, InvalidInputError, "caption"),
        (ticket.id, 12345, {}, InvalidInputError, "bytes"),
    ]
    for record_id, data, options, error, words in cases:
        with pytest.raises(error, match=words):
            r.attachments.add(record_id, data, **options)  # type: ignore[arg-type]
    assert (r.op_count(), r.state_digest()) == before
    assert r.device_log.blobs.held() == set()
    with pytest.raises(NotFoundError):
        r.attachments.open("0123456789abcdef:4")
    with pytest.raises(InvalidInputError, match="pull_mode"):
        r.attachments.pull_mode = "sometimes"


def test_removal_collects_the_blob_and_a_concurrent_addition_stays(make_replica: ReplicaFactory) -> None:
    a, key = _station(make_replica, "a")
    b = make_replica("b")
    b.install_station_key(key)
    ticket = a.tickets.submit(title="Broken stair light", kind="repair", grid=GRID)
    first = a.attachments.add(ticket.id, jpeg(800, 600))
    a.sync_with(b)
    assert b.attachments.open(first.id) == a.attachments.open(first.id)
    a.attachments.remove(first.id)  # offline, while b adds another picture
    second = b.attachments.add(ticket.id, jpeg(800, 600, colour=(10, 200, 10)))
    assert a.device_log.blobs.held() == set()  # a's picture went with the removal
    a.sync_with(b)
    for r in (a, b):
        assert [x.id for x in r.attachments.list(ticket.id)] == [second.id]
        assert r.device_log.blobs.held() == {second.blob, second.thumb}
        with pytest.raises(NotFoundError, match="removed"):
            r.attachments.open(first.id)
    assert a.state_digest() == b.state_digest()


def test_a_blob_name_says_nothing_about_the_picture(make_replica: ReplicaFactory) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Leak", kind="repair", grid=GRID)
    same = jpeg(400, 300)
    one, two = r.attachments.add(ticket.id, same), r.attachments.add(ticket.id, same)
    assert one.blob != two.blob and one.thumb != two.thumb  # a fresh key each time: no one can look a photo up
    assert r.attachments.open(one.id) == r.attachments.open(two.id)


def test_blobs_are_sealed_where_they_rest_and_only_the_station_opens_them(make_replica: ReplicaFactory) -> None:
    station, key = _station(make_replica)
    phone = make_replica("knocker")
    phone.set_station_public_key(key.public_key)  # seals to the station, cannot open
    resident = station.residents.register(name="Zhang Min", grid=GRID)
    station.sync_with(phone)
    visit = phone.visits.record(resident_id=resident.id, visitor="Knocker Wu", outcome="well")
    photo = noisy_jpeg(1200, 900)
    added = phone.attachments.add(visit.id, photo, caption="found her well, CAPTIONMARKER")
    paper = phone.attachments.add(visit.id, KNOWN_TEXT, kind="document")
    with pytest.raises(TrustError, match="sealed to the station"):
        phone.attachments.open(added.id)
    phone.sync_with(station)
    opened = station.attachments.open(added.id)
    assert Image.open(io.BytesIO(opened)).size == (1200, 900)
    assert station.attachments.open(paper.id) == KNOWN_TEXT
    assert station.attachments.get(added.id).caption == "found her well, CAPTIONMARKER"
    for r in (phone, station):
        r.close()
        raw = _raw(r.path)
        assert KNOWN_TEXT not in raw
        assert KNOWN_TEXT[:24] not in raw
        assert b"CAPTIONMARKER" not in raw
        assert opened[2000:2064] not in raw  # the photo as made small and sealed is not there in clear
        assert opened[-2064:-2000] not in raw


def test_erasure_removes_a_residents_blobs_from_the_files(make_replica: ReplicaFactory) -> None:
    a, key = _station(make_replica, "a")
    b = make_replica("b")
    b.install_station_key(key)
    resident = a.residents.register(name="Zhang Min", grid=GRID)
    photo = a.attachments.add(resident.id, jpeg(900, 700), caption="at the door")
    knock = a.visits.record(resident_id=resident.id, outcome="unwell", photo=jpeg(600, 400))
    a.sync_with(b)
    sealed = b.device_log.blobs.read(photo.blob)
    assert sealed is not None
    a.residents.redact(resident.id, reason="the resident asked to be forgotten")
    a.sync_with(b)
    later = b.visits.record(resident_id=resident.id, outcome="well", photo=jpeg(300, 200))  # after: it stays
    a.sync_with(b)
    for r in (a, b):
        listed = r.attachments.list(resident.id)
        assert [(x.id, x.erased, x.caption) for x in listed] == [(photo.id, True, None)]
        for erased in (photo.id, knock.attachments[0].id):  # her photo, and the photo of the knock at her door
            with pytest.raises(IntentError, match="erased"):
                r.attachments.open(erased)
        assert r.device_log.blobs.held() == {later.attachments[0].blob, later.attachments[0].thumb}
        assert "attachments" in r.residents.get(resident.id).redacted
        assert r.history(resident.id)  # the signatures of the rewritten ops still check when the history is read
    b.close()
    raw = _raw(b.path)
    assert sealed[:4096] not in raw and sealed[-4096:] not in raw


def test_a_damaged_chunk_is_refused_when_opened(make_replica: ReplicaFactory) -> None:
    r, _ = _station(make_replica)
    ticket = r.tickets.submit(title="Leak", kind="repair", grid=GRID)
    added = r.attachments.add(ticket.id, bytes(range(256)) * 3000, kind="document")  # 768000 bytes: 3 chunks
    assert r.device_log.blobs.state(added.blob) is not None
    with sqlite3.connect(r.path) as conn:
        conn.execute("UPDATE blob_chunks SET data = zeroblob(length(data)) WHERE id = ? AND n = 1", (added.blob,))
    conn.close()
    with pytest.raises(TrustError, match="damaged"):
        r.attachments.open(added.id)


def test_manifests_name_blobs_and_check_every_chunk() -> None:
    key, sealed = seal_blob(b"x" * (CHUNK_SIZE * 2 + 5))
    manifest = manifest_of(sealed)
    assert len(manifest.chunks) == 3 and manifest.chunk_size(2) == len(sealed) - 2 * CHUNK_SIZE
    assert BlobManifest.checked(manifest.id, len(sealed), chunk_hashes(sealed)).id == manifest.id
    with pytest.raises(TrustError, match="not that blob"):
        BlobManifest.checked(manifest.id, len(sealed), list(reversed(chunk_hashes(sealed))))
    with pytest.raises(InvalidInputError, match="does not fit"):
        BlobManifest(len(sealed), manifest.chunks[:2])
    with pytest.raises(TrustError, match="damaged"):
        manifest.check_chunk(0, sealed[1 : CHUNK_SIZE + 1])
    assert open_blob(key, sealed) == b"x" * (CHUNK_SIZE * 2 + 5)
    with pytest.raises(TrustError):
        open_blob(bytes(32), sealed)
