"""A server database from before schema version 4, whose blob tables servers made on first use, migrated by
`caresync-server init` on SQLite and PostgreSQL: the blob tables are then the schema's (made, or brought to their
full shape, rows kept), the blobs held before still download, new ones upload, and a removal still reaches the
server's folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess
from PIL import Image
from sqlalchemy import create_engine, inspect, text

from caresync import Replica, StationKey
from caresync.testing import FakeClock
from tests.server_support import enroll

GRID = "changnan/teachers-dorm/3"


def _photo(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (320, 240), os.urandom(320 * 240 * 3)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue() + bytes([seed])


def _desk(tmp_path: Path, name: str, key: StationKey) -> Replica:
    replica = Replica.open(tmp_path / f"{name}.db", actor=name, now_ms=FakeClock())
    replica.install_station_key(key)
    return replica


def _take_back(database_url: str, shape: str) -> None:
    """Rewrites the server's database as an older server left it: ``none``, schema version 3 that never saw a
    blob request (no blob tables); ``early``, schema version 2 with the blob tables the first attachments server
    made on first use (no ``resident``, ``dropped`` or their indexes, no ``blob_holders``; no readers' keys'
    tables either); ``first-use``, schema version 3 with the blob tables as the last server before version 4 made
    them on first use (the shape they have now)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            version = "3"
            if shape == "none":
                for table in ("blob_holders", "blob_chunks", "blobs"):
                    conn.execute(text(f"DROP TABLE {table}"))
            elif shape == "early":
                conn.execute(text("DROP TABLE blob_holders"))
                for index in ("blobs_by_resident", "blobs_dropped"):
                    conn.execute(text(f"DROP INDEX {index}"))
                for column in ("resident", "dropped"):
                    conn.execute(text(f"ALTER TABLE blobs DROP COLUMN {column}"))
                conn.execute(text("DROP TABLE grid_key_wraps"))
                conn.execute(text("DROP TABLE grid_keys"))
                version = "2"
            conn.execute(text(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'"))
    finally:
        engine.dispose()


def _blob_files(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()}


@pytest.mark.parametrize("shape", ["none", "early"])
def test_an_older_servers_database_is_migrated_and_its_blobs_still_go_up_and_down(
    database_url: str, tmp_path: Path, shape: str
) -> None:
    key = StationKey.generate()
    station_token = enroll(database_url, "station-desk", role="station", grids=[""])
    reader_token = enroll(database_url, "second-desk", role="station", grids=[""])
    environment = {"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")}
    station, reader = _desk(tmp_path, "station", key), _desk(tmp_path, "reader", key)
    try:
        reader.attachments.pull_mode = "eager"
        server = ServerProcess(database_url, tmp_path, environment=environment).start()
        try:
            resident = station.residents.register(name="Zhang Min", grid=GRID)
            old = None if shape == "none" else station.attachments.add(resident.id, _photo(1), caption="before")
            assert station.sync(server.url, token=station_token).blobs.uploaded == (0 if old is None else 2)
        finally:
            server.stop()
        _take_back(database_url, shape)

        init = subprocess.run(  # what the operator runs after installing the new server (docs/deployment.md)
            [sys.executable, "-m", "caresync_server", "init", "--json"],
            cwd=tmp_path,
            env={**os.environ, "CARESYNC_DATABASE_URL": database_url, **environment},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert init.returncode == 0, init.stderr
        assert json.loads(init.stdout)["schema_version"] == 4
        engine = create_engine(database_url)
        try:
            found = inspect(engine)
            assert {"blobs", "blob_chunks", "blob_holders"} <= set(found.get_table_names())
            assert {"resident", "dropped"} <= {c["name"] for c in found.get_columns("blobs")}
            assert {"blobs_by_resident", "blobs_dropped"} <= {i["name"] for i in found.get_indexes("blobs")}
            assert {i["name"] for i in found.get_indexes("blob_holders")} == {"blob_holders_by_device"}
            with engine.connect() as conn:
                held = conn.execute(text("SELECT count(*) FROM blobs")).scalar_one()
                version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one()
            assert (held, version) == (0 if old is None else 2, "4")  # the rows of the blobs held are kept
        finally:
            engine.dispose()

        server = ServerProcess(database_url, tmp_path, environment=environment).start()
        try:
            new = station.attachments.add(resident.id, _photo(2), caption="after")
            assert station.sync(server.url, token=station_token).blobs.uploaded == 2
            reader.sync(server.url, token=reader_token)
            assert reader.attachments.open(new.id) == station.attachments.open(new.id)
            if old is not None:
                assert reader.attachments.open(old.id) == station.attachments.open(old.id)
                assert {old.blob, old.thumb} <= _blob_files(tmp_path)
                station.attachments.remove(old.id)  # dropped (the new column), kept while the reader holds it
                station.sync(server.url, token=station_token)
                assert {old.blob, old.thumb} <= _blob_files(tmp_path)
                reader.sync(server.url, token=reader_token)  # sees the removal, deletes its copy
                reader.sync(server.url, token=reader_token)  # says so: the server's copy goes
                assert not {old.blob, old.thumb} & _blob_files(tmp_path)
            assert {new.blob, new.thumb} <= _blob_files(tmp_path)
        finally:
            server.stop()
    finally:
        station.close()
        reader.close()


def test_blob_tables_an_older_server_made_in_full_are_taken_as_they_are(database_url: str, tmp_path: Path) -> None:
    """The last server before version 4 made the blob tables whole on first use: the migration keeps them and
    their rows, and makes nothing twice."""
    enroll(database_url, "station-desk", role="station", grids=[""])
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO blobs (id, size, chunks, eid, op, device, held, received, served, complete, "
                    "created_at, resident) VALUES (:id, 1, :chunks, 'res-1', 'a:1', 1, 1, 1, 0, 1, 0, 'res-1')"
                ),
                {"id": "ab" * 32, "chunks": "cd" * 32},
            )
            conn.execute(text("INSERT INTO blob_holders (blob, device) VALUES (:id, 1)"), {"id": "ab" * 32})
        _take_back(database_url, "first-use")
        init = subprocess.run(
            [sys.executable, "-m", "caresync_server", "init", "--json"],
            cwd=tmp_path,
            env={**os.environ, "CARESYNC_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert init.returncode == 0, init.stderr
        assert json.loads(init.stdout)["schema_version"] == 4
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT b.id, b.resident, h.device FROM blobs b JOIN blob_holders h ON h.blob = b.id")
            )
            assert [tuple(r) for r in rows] == [("ab" * 32, "res-1", 1)]
    finally:
        engine.dispose()
