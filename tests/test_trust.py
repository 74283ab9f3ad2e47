"""Sealed fields and erasure against the real server (in-process app over real storage): private content is
ciphertext in a field device's file and in the server's database, the station reads it, a content hash proves a
seal intact, and a redaction reaches every replica's op log while every signature still checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caresync import Replica, StationKey, TrustError
from caresync.testing import FakeClock
from caresync.trust.keys import seal_value, unseal_value
from caresync.trust.signing import verify_ops
from tests.conftest import ReplicaFactory
from tests.server_support import enroll, postgres_database

fastapi_testclient = pytest.importorskip("fastapi.testclient")
URL = "http://testserver"
GRID = "changnan/dorm/3"

# What a resident tells a volunteer or a courier: none of it may be readable outside the station's devices.
NAME = "王秀英"
PHONE = "139 2046 7781"
ADDRESS = "Teachers' dorm 3, unit 2, room 401"
NOTE = "Son in Shenzhen; daughter-in-law quarrels about the flat"
SUMMARY = "Pension certification form, signed"
STORY = "Neighbour's renovation cracked the ceiling; they refuse to pay"
PLAINTEXTS = [NAME, PHONE, ADDRESS, NOTE, SUMMARY, STORY]
TITLE = "Ceiling crack dispute"


@contextlib.contextmanager
def _server(database_url: str, folder: Path) -> Iterator[Any]:
    from caresync_server.app import create_app
    from caresync_server.settings import Settings

    settings = Settings(database_url=database_url, server_key_file=str(folder / "server.key"))  # not in the cwd
    with fastapi_testclient.TestClient(create_app(settings, now_ms=FakeClock())) as c:
        yield c


def _raw_bytes(path: Path) -> bytes:
    """The SQLite file with its write-ahead log, as a thief with the disk would read them."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def _field_work(phone: Replica, courier: Replica) -> dict[str, str]:
    """A grid worker's offline round (a resident registered, a note, a dispute told) and a courier's parcel."""
    wang = phone.residents.register(name=NAME, grid=GRID, phone=PHONE, address=ADDRESS, flags=["elderly"])
    phone.residents.note(wang.id, NOTE)
    dispute = phone.tickets.submit(title=TITLE, kind="dispute", grid=GRID, description=STORY)
    parcel = courier.parcels.register(code="P-0417", grid=GRID, summary=SUMMARY)
    return {"resident": wang.id, "ticket": dispute.id, "parcel": parcel.id}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_private_fields_are_ciphertext_on_the_device_and_the_server_and_plain_at_the_station(
    backend: str, tmp_path: Path, make_replica: ReplicaFactory
) -> None:
    station_key = StationKey.generate()
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            database_url = f"sqlite:///{tmp_path / 'server.db'}"
        else:
            database_url = stack.enter_context(postgres_database())
        client = stack.enter_context(_server(database_url, tmp_path))
        phone, courier, station = make_replica("volunteer"), make_replica("courier"), make_replica("station")
        for r in (phone, courier):
            r.set_station_public_key(station_key.public_key)  # what enrolment hands every device
        station.install_station_key(station_key)
        ids = _field_work(phone, courier)
        phone.sync(URL, token=enroll(database_url, "volunteer", role="grid_worker", grids=[GRID]), client=client)
        courier.sync(URL, token=enroll(database_url, "courier", role="courier", grids=[GRID]), client=client)
        station.sync(URL, token=enroll(database_url, "station", role="station", grids=[""]), client=client)

        # the station reads everything as it was told
        wang = station.residents.get(ids["resident"])
        assert (wang.name, wang.phone, wang.address, wang.notes[0].text) == (NAME, PHONE, ADDRESS, NOTE)
        assert station.tickets.get(ids["ticket"]).description == STORY
        assert station.tickets.get(ids["ticket"]).title == TITLE
        assert station.parcels.get(ids["parcel"]).summary == SUMMARY
        assert [e.details.get("text") for e in station.history(ids["resident"])][-1] == NOTE
        # the field device holds only what it cannot read back
        assert phone.residents.get(ids["resident"]).name.startswith("sealed:1:")
        assert phone.residents.get(ids["resident"]).grid == GRID  # routing fields stay in clear

        for r in (phone, courier, station):
            r.close()
        holders = {
            "the volunteer's phone": _raw_bytes(phone.path),
            "the courier's phone": _raw_bytes(courier.path),
            "the station's file": _raw_bytes(station.path),
        }
        if backend == "sqlite":
            holders["the server's database"] = _raw_bytes(tmp_path / "server.db")
        else:
            holders["the server's database"] = _postgres_dump(database_url)
        for holder, raw in holders.items():
            assert b"sealed:1:" in raw, holder  # the test reads real content
            for text in [*PLAINTEXTS, TITLE]:  # titles are free text too: sealed
                assert text.encode() not in raw, f"{text!r} is readable in {holder}"


def _postgres_dump(database_url: str) -> bytes:
    """Every table's rows as text, as someone with a copy of the database would read them."""
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return b"".join(
            str(row).encode() for table in tables for row in conn.execute(f'SELECT * FROM "{table}"').fetchall()
        )


def test_a_device_without_the_station_key_seals_nothing_it_was_not_told_to(make_replica: ReplicaFactory) -> None:
    r = make_replica("kiosk")
    wang = r.residents.register(name=NAME, grid=GRID)
    assert r.residents.get(wang.id).name == NAME  # a replica used alone, with no station: nothing to seal to
    r.set_station_public_key(StationKey.generate().public_key)
    r.residents.edit(wang.id, phone=PHONE)
    assert r.residents.get(wang.id).phone.startswith("sealed:1:")


def test_a_content_hash_taken_at_capture_proves_the_seal_intact() -> None:
    station = StationKey.generate()
    sealed, taken = seal_value(station.public_key, {"asks": SUMMARY})
    value, found = unseal_value(station, sealed)
    assert (value, found) == ({"asks": SUMMARY}, taken)
    again, other = seal_value(station.public_key, {"asks": SUMMARY})
    assert again != sealed and other != taken  # salted: the hash in clear does not reveal a guessable value
    tampered = sealed[:-8] + ("A" if sealed[-8] != "A" else "B") + sealed[-7:]
    with pytest.raises(TrustError, match="altered"):
        unseal_value(station, tampered)
    with pytest.raises(TrustError, match="another station"):
        unseal_value(StationKey.generate(), sealed)


def test_a_redaction_reaches_every_replica_and_the_server_and_signatures_still_check(
    tmp_path: Path, make_replica: ReplicaFactory
) -> None:
    station_key = StationKey.generate()
    database_url = f"sqlite:///{tmp_path / 'server.db'}"
    with _server(database_url, tmp_path) as client:
        station, knocker, worker = make_replica("station"), make_replica("knocker"), make_replica("worker")
        tokens = {
            "station": enroll(database_url, "station", role="station", grids=[""]),
            "knocker": enroll(database_url, "knocker", role="knocker", grids=[GRID]),
            "worker": enroll(database_url, "worker", role="grid_worker", grids=[GRID]),
        }
        replicas = {"station": station, "knocker": knocker, "worker": worker}
        station.install_station_key(station_key)
        for r in (knocker, worker):
            r.set_station_public_key(station_key.public_key)

        def sync_all() -> None:
            for name, r in replicas.items():
                r.sync(URL, token=tokens[name], client=client)

        wang = station.residents.register(name=NAME, grid=GRID, phone=PHONE, address=ADDRESS, knock_every_days=2)
        sync_all()
        knocker.residents.note(wang.id, NOTE)
        knocker.visits.record(resident_id=wang.id, outcome="well")
        sync_all()
        sealed_phone = worker.residents.get(wang.id).phone
        assert sealed_phone is not None and sealed_phone.startswith("sealed:1:")
        worker.residents.edit(wang.id, phone="138 0000 1111")  # made offline, arrives after the redaction

        station.residents.redact(wang.id, reason="moved to her son's in Shenzhen and asked to be forgotten")
        sync_all()
        sync_all()
        for name, r in replicas.items():
            record = r.residents.get(wang.id)
            assert (record.name, record.phone, record.address) == (None, None, None), name
            assert [n.text for n in record.notes] == [None], name
            assert len(r.residents.list()) == 1 and len(r.visits.list()) == 1, name  # reports still count them
            ops = r.export_ops(limit=10_000)
            verify_ops(ops)  # every signature still checks after the erasure
            log = repr(ops)
            assert sealed_phone not in log, name
            assert not any(text in log for text in PLAINTEXTS), name
        for r in replicas.values():
            r.close()
            assert sealed_phone.encode() not in _raw_bytes(r.path), f"the erased phone is still on disk in {r.path}"
    assert sealed_phone.encode() not in _raw_bytes(tmp_path / "server.db")


def test_a_value_sealed_to_several_readers_opens_with_any_of_them_and_nothing_else() -> None:
    from caresync import DeviceKey, InvalidInputError
    from caresync.trust.gridkeys import GridKey, unwrap_grid_key, wrap_grid_key
    from caresync.trust.keys import MAX_READERS, is_sealed

    station = StationKey.generate()
    knockers, workers, outsider = (GridKey.generate("changnan/dorm/3", "knocker", 1), GridKey.generate("changnan",
                                   "grid_worker", 1), GridKey.generate("xinan", "knocker", 1))  # fmt: skip
    sealed, digest = seal_value([station.public_key, knockers.public_key, workers.public_key], "王秀英 Rk-Unit")
    assert sealed.startswith("sealed:2:") and is_sealed(sealed)
    for key in (station, knockers, workers):
        assert unseal_value(key, sealed) == ("王秀英 Rk-Unit", digest)
    with pytest.raises(TrustError, match="other readers"):
        unseal_value(outsider, sealed)
    raw = bytearray(__import__("base64").b64decode(sealed[9:]))
    raw[-1] ^= 1  # one bit of the ciphertext: every reader refuses it
    tampered = "sealed:2:" + __import__("base64").b64encode(bytes(raw)).decode()
    for key in (station, knockers):
        with pytest.raises(TrustError):
            unseal_value(key, tampered)
    assert seal_value([station.public_key], "x")[0].startswith("sealed:1:")  # one reader: the station's form
    with pytest.raises(InvalidInputError):
        seal_value([GridKey.generate("a", "knocker", i + 1).public_key for i in range(MAX_READERS + 1)], "x")

    device, other = DeviceKey.generate(), DeviceKey.generate()
    wrap = wrap_grid_key(knockers, device.public_key)
    assert unwrap_grid_key(device, wrap, [knockers.publish(station)]).secret == knockers.secret
    with pytest.raises(TrustError, match="not for it"):
        unwrap_grid_key(other, wrap, [knockers.publish(station)])
    with pytest.raises(TrustError, match="did not publish"):  # a wrap of a key the station did not publish
        unwrap_grid_key(device, wrap, [GridKey.generate("changnan/dorm/3", "knocker", 1).publish(station)])
    published = knockers.publish(station)
    assert published.signed_by(station.signing_public_key)
    assert not published.signed_by(StationKey.generate().signing_public_key)
