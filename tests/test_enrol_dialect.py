"""One way to enrol on every device: ``enroll CODE --server URL`` in both programs (the server saved by ``caresync
init --server`` is enough), the text of the QR code alone (it carries the server's address with the code), and
the server's enrolment screen names those commands, not Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from caresync_server.testing import ServerProcess, issue_code

from caresync.trust.codes import enrolment_text, read_enrolment_text


def _program(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    assert exe is not None, f"{name} is not installed beside this Python"
    return exe


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_qr_text_carries_the_address_with_the_code() -> None:
    text = enrolment_text("http://127.0.0.1:8765/", "SDQJ-V4EH-TKMT-T7VS")
    assert text == "caresync:enrol?server=http://127.0.0.1:8765&code=SDQJ-V4EH-TKMT-T7VS"
    assert read_enrolment_text(text) == ("http://127.0.0.1:8765", "SDQJ-V4EH-TKMT-T7VS")
    assert read_enrolment_text("SDQJ-V4EH-TKMT-T7VS") is None
    assert read_enrolment_text("caresync:enrol?code=SDQJ") is None  # no address: not an enrolment text


def test_the_server_prints_the_device_commands_and_a_qr_code_with_its_address(tmp_path: Path) -> None:
    env = {**os.environ, "CARESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}"}
    server = _program("caresync-server")
    assert _run(server, "init", env=env).returncode == 0
    url = "http://station.example:8765"
    text = _run(
        server,
        "enroll",
        "--name",
        "phone-li",
        "--role",
        "grid_worker",
        "--grid",
        "changnan",
        "--server",
        url,
        "--no-qr",
        env=env,
    )
    assert text.returncode == 0 and "replica.enroll" not in text.stdout
    assert (
        f"--server {url}" in text.stdout
        and "caresync enroll" in text.stdout
        and "caresync-courier enroll" in text.stdout
    )
    as_json = json.loads(
        _run(
            server,
            "enroll",
            "--name",
            "hand-chen",
            "--role",
            "courier",
            "--grid",
            "changnan",
            "--server",
            url,
            "--json",
            env=env,
        ).stdout
    )
    assert read_enrolment_text(as_json["qr"]) == (url, as_json["code"]) and as_json["server"] == url


def test_every_device_enrols_the_same_way(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    desk_code = issue_code(database, "desk", role="station", grids=[""])
    phone_code = issue_code(database, "phone", role="grid_worker", grids=["changnan"])
    hand_code = issue_code(database, "hand", role="courier", grids=["changnan"])
    process = ServerProcess(database, tmp_path).start()
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CARESYNC_")}
        station, courier = _program("caresync"), _program("caresync-courier")
        desk = {**base, "CARESYNC_HOME": str(tmp_path / "desk"), "CARESYNC_LANG": "en"}
        assert _run(station, "init", "--actor", "clerk", "--server", process.url, env=desk).returncode == 0
        enrolled = _run(station, "enroll", desk_code, env=desk)  # the server saved by init is enough
        assert enrolled.returncode == 0, enrolled.stderr
        assert _run(station, "sync", env=desk).returncode == 0
        phone = {**base, "CARESYNC_HOME": str(tmp_path / "phone"), "CARESYNC_LANG": "zh"}
        assert _run(station, "init", "--actor", "li", env=phone).returncode == 0
        scanned = _run(station, "enroll", enrolment_text(process.url, phone_code), env=phone)  # the QR text alone
        assert scanned.returncode == 0, scanned.stderr
        hand = {**base, "CARESYNC_HOME": str(tmp_path / "hand"), "CARESYNC_LANG": "en"}
        by_hand = _run(courier, "enroll", hand_code, "--server", process.url, "--name", "chen", env=hand)
        assert by_hand.returncode == 0, by_hand.stderr
        assert _run(courier, "sync", env=hand).returncode == 0
        assert _run(courier, "--version", env=hand).stdout.startswith("caresync-courier, version ")
    finally:
        process.stop()
