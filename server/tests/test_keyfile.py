"""The server's signing key lives in a 0600 file of its own, never in its database (issue 16): read on the raw
bytes of the SQLite file and its -wal and -shm, and of a pg_dump; a database from before key files gives its key
to the file and keeps no copy; a server whose key file is missing, open to others or another server's refuses
to start."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from caresync.trust.keys import DeviceKey
from sqlalchemy import create_engine, text

from caresync_server.keyfile import read_key_file
from caresync_server.settings import Settings
from caresync_server.storage import SERVER_KEY_META, Storage
from caresync_server.testing import ServerProcess
from support import postgres_schema


def _cli(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``caresync-server`` in a process of its own, in ``workdir``."""
    return subprocess.run(
        [sys.executable, "-m", "caresync_server", *args],
        cwd=workdir,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _on_disk(database: Path) -> bytes:
    """Every byte the SQLite database keeps on disk: the file, its write-ahead log and its shared memory."""
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())


def _holds(data: bytes, key: DeviceKey) -> bool:
    return key.seed in data or key.seed.hex().encode() in data or key.seed.hex().upper().encode() in data


def test_init_makes_a_0600_key_file_and_the_database_never_holds_the_key(tmp_path: Path) -> None:
    done = _cli(tmp_path, "init")
    assert done.returncode == 0, done.stderr
    key_file = tmp_path / "caresync-server.key"
    assert "caresync-server.key" in done.stdout and "apart from the database" in done.stdout
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = read_key_file(key_file)
    server = ServerProcess("sqlite:///caresync-server.db", tmp_path).start()
    try:
        info = httpx.get(server.url + "/v1/info").json()
        assert info["server_public_key"] == key.public_key.hex()
    finally:
        server.stop()
    assert not _holds(_on_disk(tmp_path / "caresync-server.db"), key)


def test_a_database_from_before_key_files_gives_its_key_to_the_file_and_keeps_no_copy(tmp_path: Path) -> None:
    database = tmp_path / "station.db"
    storage = Storage(Settings(database_url=f"sqlite:///{database}"))
    storage.ensure_schema(create=True)
    old = DeviceKey.generate()
    with storage.engine.begin() as conn:  # where the server of the previous version kept it
        conn.execute(text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": SERVER_KEY_META, "v": old.seed.hex()})
    storage.close()
    assert _holds(_on_disk(database), old)

    server = ServerProcess(f"sqlite:///{database}", tmp_path).start()
    try:
        info = httpx.get(server.url + "/v1/info").json()
        assert info["server_public_key"] == old.public_key.hex()  # devices keep trusting the same key
    finally:
        server.stop()
    assert read_key_file(tmp_path / "station.key").seed == old.seed
    assert stat.S_IMODE((tmp_path / "station.key").stat().st_mode) == 0o600
    assert not _holds(_on_disk(database), old)


def test_a_server_without_its_key_file_or_with_another_refuses_to_start(tmp_path: Path) -> None:
    assert _cli(tmp_path, "init").returncode == 0
    key_file = tmp_path / "caresync-server.key"
    saved = tmp_path / "saved.key"
    shutil.copy2(key_file, saved)

    key_file.unlink()
    refused = _cli(tmp_path, "serve", "--port", "1")
    assert refused.returncode != 0 and "is missing" in refused.stderr, refused.stderr
    assert not key_file.exists()  # no new key was made in its place

    key_file.write_text(DeviceKey.generate().seed.hex() + "\n")
    key_file.chmod(0o600)
    refused = _cli(tmp_path, "serve", "--port", "1")
    assert refused.returncode != 0 and "another key" in refused.stderr, refused.stderr

    shutil.copy2(saved, key_file)
    key_file.chmod(0o644)
    refused = _cli(tmp_path, "serve", "--port", "1")
    assert refused.returncode != 0 and "chmod 600" in refused.stderr, refused.stderr

    key_file.chmod(0o600)  # restored from its backup: the server serves again
    server = ServerProcess("sqlite:///caresync-server.db", tmp_path).start()
    server.stop()


def test_a_pg_dump_holds_no_key() -> None:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    with postgres_schema() as settings:
        storage = Storage(settings)
        try:
            storage.ensure_schema(create=True)
            key = storage.server_key()
        finally:
            storage.close()
        assert Path(str(settings.server_key_file)).exists()
        url = create_engine(settings.database_url).url.set(drivername="postgresql").render_as_string(False)
        dump = subprocess.run(
            ["pg_dump", "--schema", str(settings.database_schema), url], capture_output=True, timeout=120, check=True
        ).stdout
        assert b"server_public_key" in dump and key.public_key.hex().encode() in dump
        assert not _holds(dump, key)


def test_the_key_file_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    elsewhere = tmp_path / "secrets" / "server.key"
    elsewhere.parent.mkdir()
    done = _cli(tmp_path, "init", env={"CARESYNC_SERVER_KEY_FILE": str(elsewhere)})
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert not (tmp_path / "caresync-server.key").exists()
