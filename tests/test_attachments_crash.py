"""A large attachment's upload and download killed with SIGKILL at random chunks, resumed until done: the bytes
are equal, and the server received every chunk exactly once (a download re-fetches at most the chunk in flight at
each kill). 3 MiB here; 20 MiB with ``--soak``."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess

from caresync import Replica, StationKey
from caresync.testing import FakeClock
from caresync.trust.blobs import CHUNK_SIZE
from tests.server_support import enroll

CHILD = Path(__file__).parent / "crash_helpers" / "blob_sync_child.py"
GRID = "changnan/dorm/3"


def _sync_killed(path: Path, url: str, token: str, phase: str, rng: random.Random, log: Path) -> tuple[bool, int]:
    """Runs a sync of ``path`` in a child and SIGKILLs it after a random number of ``phase`` chunks; returns
    whether it finished and how many chunks it reported before it ended."""
    with log.open("ab") as errors:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), url, token], stdout=subprocess.PIPE, stderr=errors
        )
    assert child.stdout is not None
    stop_after = rng.randrange(2, 8)
    seen, finished = 0, False
    with child.stdout:
        for line in child.stdout:
            if line.startswith(b"done"):
                finished = True
                break
            if line.startswith(f"chunk {phase}".encode()):
                seen += 1
                if seen == stop_after:
                    child.send_signal(signal.SIGKILL)
                    break
    child.wait(timeout=120)
    return finished, seen


def _counts(database: Path, blob_id: str) -> tuple[int, int]:
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT received, served FROM blobs WHERE id = ?", (blob_id,)).fetchone()
    conn.close()
    return int(row[0]), int(row[1])


@pytest.mark.parametrize("megabytes", [3, pytest.param(20, marks=pytest.mark.soak)])
def test_upload_and_download_killed_at_random_chunks_resume_exactly(tmp_path: Path, megabytes: int) -> None:
    rng = random.Random(megabytes)
    database = tmp_path / "server.db"
    url = f"sqlite:///{database}"
    up_token = enroll(url, "station-a", role="station", grids=[""])
    down_token = enroll(url, "station-b", role="station", grids=[""])
    server = ServerProcess(url, tmp_path, environment={"CARESYNC_BLOB_DIR": str(tmp_path / "blobs")}).start()
    key = StationKey.generate()
    data = os.urandom(megabytes * 1024 * 1024)
    try:
        with Replica.open(tmp_path / "a.db", actor="a", now_ms=FakeClock()) as a:
            a.install_station_key(key)
            ticket = a.tickets.submit(title="Papers for legal aid", kind="legal_aid", grid=GRID)
            added = a.attachments.add(ticket.id, data, kind="document")
        chunks = -(-added.size // CHUNK_SIZE)
        with Replica.open(tmp_path / "b.db", actor="b", now_ms=FakeClock()) as b:
            b.install_station_key(key)
        kills = {"up": 0, "down": 0}
        for phase, path, token in (
            ("blobs_up", tmp_path / "a.db", up_token),
            ("blobs_down", tmp_path / "b.db", down_token),
        ):
            for _ in range(4 * chunks):
                finished, _ = _sync_killed(path, server.url, token, phase, rng, tmp_path / "child.log")
                if finished:
                    break
                kills[phase[6:]] += 1
            else:
                pytest.fail(f"the {phase} sync never finished")
        assert kills["up"] >= 2 and kills["down"] >= 2  # the test really cut both transfers
        with Replica.open(tmp_path / "b.db", actor="b") as b:
            assert b.attachments.open(added.id) == data
        received, served = _counts(database, added.blob)
        assert received == chunks  # no chunk the server held was sent again, however often the sender was killed
        assert chunks <= served <= chunks + kills["down"]  # at most the chunk in flight at each kill, again
    finally:
        server.stop()
