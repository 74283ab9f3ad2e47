"""Network waits are bounded and said: a server that accepts connections and never answers ends a sync at its
deadline with the reason, a server that is down reads the same in both programs (one code, ``server_unreachable``,
exit code 3, one first sentence), progress comes as lines when nobody watches a terminal, and
``caresync-server serve`` on a busy port says so without ever saying it is listening."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from caresync_server.testing import ServerProcess, free_port

from caresync import Replica, ServerUnreachableError
from caresync.sync.netsync import Wait
from tests.server_support import enroll

GRID = "changnan/dorm/3"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never says a word; its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)  # kept open, never read from or written to

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _program(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    assert exe is not None, f"{name} is not installed beside this Python"
    return exe


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CARESYNC_TOKEN"}
    return {**env, "CARESYNC_HOME": str(home), "CARESYNC_LANG": "en", **extra}


def test_a_server_that_never_answers_ends_the_sync_at_its_deadline_with_each_wait_said(
    tmp_path: Path, silent_server: str
) -> None:
    waits: list[Wait] = []
    with Replica.open(tmp_path / "phone.db", actor="li") as phone:
        phone.tickets.submit(title="Leak", kind="repair", grid=GRID)
        with pytest.raises(ServerUnreachableError, match=r"for 3 s, the sync's deadline") as stopped:
            phone.sync(silent_server, token="t", timeout_s=0.5, deadline_s=3, backoff_s=0.2, on_wait=waits.append)
        assert stopped.value.code == "server_unreachable"
        assert waits and all(w.reason == "ReadTimeout" and w.attempts == 6 for w in waits)
        assert [w.attempt for w in waits] == list(range(1, len(waits) + 1))
        assert phone.unsent_count() == 1  # nothing lost


def test_the_station_program_says_every_step_and_stops_at_its_deadline(tmp_path: Path, silent_server: str) -> None:
    home = tmp_path / "desk"
    exe = _program("caresync")
    env = _env(home)
    assert subprocess.run([exe, "init", "--actor", "clerk"], env=env, capture_output=True, timeout=60).returncode == 0
    done = subprocess.run(
        [exe, "sync", "--server", silent_server, "--token", "t", "--connect-timeout", "1", "--deadline", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"contacting {silent_server} (connect timeout 1 s, deadline 2 s)"
    assert lines[-1].startswith(f"Error: Cannot reach the sync server at {silent_server}. Nothing is lost")
    assert "--deadline" in lines[-1] and "Traceback" not in done.stderr


def test_a_server_that_is_down_reads_the_same_in_both_programs(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    station = _program("caresync")
    env = _env(tmp_path / "desk")
    subprocess.run([station, "init", "--actor", "clerk"], env=env, capture_output=True, timeout=60)
    desk = subprocess.run(
        [station, "sync", "--server", url, "--token", "t", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    courier_env = _env(tmp_path / "handheld")
    courier = _program("caresync-courier")
    connected = subprocess.run(
        [courier, "connect", url, "--token", "t", "--name", "chen"], env=courier_env, capture_output=True, timeout=60
    )
    assert connected.returncode == 0, connected.stderr
    handheld = subprocess.run([courier, "sync", "--json"], env=courier_env, capture_output=True, text=True, timeout=60)
    for done in (desk, handheld):
        assert done.returncode == 3, done.stderr
        error = json.loads(done.stdout)["error"]
        assert error["code"] == "server_unreachable"
        assert error["message"].startswith(f"Cannot reach the sync server at {url}. Nothing is lost")


def test_progress_comes_as_lines_when_no_terminal_watches(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    token = enroll(database, "desk", role="station", grids=[""])
    server = ServerProcess(database, tmp_path).start()
    try:
        exe = _program("caresync")
        env = _env(tmp_path / "desk", CARESYNC_TOKEN=token)
        subprocess.run([exe, "init", "--actor", "clerk", "--server", server.url], env=env, timeout=60, check=True)
        for title in ("Leak", "Lamp"):
            subprocess.run(
                [exe, "ticket", "submit", "--title", title, "--kind", "repair", "--grid", GRID],
                env=env,
                capture_output=True,
                timeout=60,
                check=True,
            )
        done = subprocess.run([exe, "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        steps = done.stderr.strip().splitlines()
        assert steps[0].startswith(f"contacting {server.url}")
        assert "sent 4 of 4" in steps  # the two requests and the short numbers the first block gave them
        assert done.stdout.startswith("sent 4, received 0")
    finally:
        server.stop()


def test_serve_on_a_busy_port_says_so_and_never_says_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [_program("caresync-server"), "serve", "--port", str(port)],
            env={**os.environ, "CARESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert "listening" not in done.stdout + done.stderr
    assert f"Cannot listen on http://127.0.0.1:{port}" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_sync_that_empties_the_device_says_so(tmp_path: Path) -> None:
    from caresync_server.testing import issue_code

    database = f"sqlite:///{tmp_path / 'server.db'}"
    station_token = enroll(database, "desk", role="station", grids=[""])
    code = issue_code(database, "phone-li", role="grid_worker", grids=["changnan"])
    server = ServerProcess(database, tmp_path).start()
    try:
        with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
            desk.residents.register(name="Grandma Liu", grid=GRID)
            desk.sync(server.url, token=station_token)
        exe = _program("caresync")
        env = _env(tmp_path / "phone")
        subprocess.run([exe, "init", "--actor", "li", "--server", server.url], env=env, timeout=60, check=True)
        subprocess.run([exe, "enroll", code], env=env, capture_output=True, timeout=60, check=True)
        first = subprocess.run([exe, "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0 and "changed this device's grids" not in first.stderr
        moved = subprocess.run(
            [_program("caresync-server"), "scope", "phone-li", "--grid", "xinan", "--yes"],
            env={**os.environ, "CARESYNC_DATABASE_URL": database},
            capture_output=True,
            timeout=60,
        )
        assert moved.returncode == 0, moved.stderr
        after = subprocess.run([exe, "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert after.returncode == 0, after.stderr
        assert "The station changed this device's grids from changnan to xinan (role grid_worker)" in after.stderr
        assert "now holds no records at all" in after.stderr
        again = subprocess.run([exe, "sync", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(again.stdout)["scope_change"] is None  # said once, when it happened
    finally:
        server.stop()
