"""``caresync console``, ``caresync console-user`` and ``caresync export``: through CliRunner, and the console as
the installed program (a real process) for the address it answers on."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from caresync_server.testing import free_port
from click.testing import CliRunner
from openpyxl import load_workbook

from caresync import Replica
from caresync.cli import main
from caresync.cli.console import is_loopback

PASSWORD = "correct horse battery"


def _cli(home: Path, *args: str, stdin: str | None = None, lang: str = "en") -> tuple[int, str]:
    result = CliRunner(env={"CARESYNC_LANG": ""}).invoke(
        main, ["--home", str(home), "--lang", lang, *args], input=stdin
    )
    return result.exit_code, result.output


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "desk"
    assert _cli(home, "init", "--actor", "desk-li")[0] == 0
    return home


def test_console_user_add_list_remove(tmp_path: Path) -> None:
    home = _home(tmp_path)
    code, out = _cli(home, "console-user", "add", "clerk-zhang", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and "clerk-zhang" in out
    code, out = _cli(home, "console-user", "add", "clerk-wu", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10 characters" in out
    assert _cli(home, "console-user", "list")[1].split() == ["clerk-zhang"]
    code, out = _cli(home, "console-user", "add", "clerk-wu", stdin=f"{PASSWORD}\n{PASSWORD}\n", lang="zh")
    assert code == 0 and "已保存工作台账号 clerk-wu" in out
    assert _cli(home, "console-user", "remove", "clerk-wu")[0] == 0
    code, out = _cli(home, "console-user", "remove", "clerk-wu")
    assert code == 1 and "No console account" in out
    raw = (home / "console.db").read_bytes()
    assert PASSWORD.encode() not in raw and b"$argon2id$" in raw
    assert oct((home / "console.db").stat().st_mode & 0o777) == "0o600"


def test_console_refuses_to_start_without_an_account(tmp_path: Path) -> None:
    home = _home(tmp_path)
    code, out = _cli(home, "console")
    assert code == 1 and "console-user add" in out


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "station.example"))


def _start(home: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = home / "console.log"
    env = {**os.environ, "CARESYNC_LANG": "en"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "caresync", "--home", str(home), "console", "--sync-every", "0", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc, log


def _until_answers(url: str, proc: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"the console did not answer: {log.read_text()}")


def test_the_console_answers_on_loopback_by_default_and_warns_beyond_it(tmp_path: Path) -> None:
    home = _home(tmp_path)
    _cli(home, "console-user", "add", "clerk-zhang", "--password-stdin", stdin=PASSWORD + "\n")
    port = free_port()
    proc, log = _start(home, "--port", str(port))
    try:
        answer = _until_answers(f"http://127.0.0.1:{port}/", proc, log)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        foreign = httpx.get(f"http://127.0.0.1:{port}/login", headers={"Host": "station.example"})
        assert foreign.status_code == 400  # another name pointed here (DNS rebinding) is not answered
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert "Warning" not in log.read_text()
    port = free_port()
    proc, log = _start(home, "--port", str(port), "--host", "0.0.0.0")
    try:
        answer = _until_answers(f"http://127.0.0.1:{port}/login", proc, log)
        assert answer.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert "Warning: the console will answer on 0.0.0.0" in log.read_text()


def test_export_writes_each_table_and_open311_without_private_details(tmp_path: Path) -> None:
    home = _home(tmp_path)
    with Replica.open(home / "replica.db", actor="desk-li") as r:
        who = r.residents.register(name="Old Wang", grid="c/a/b", address="Lane 3", knock_every_days=2)
        r.visits.record(resident_id=who.id, outcome="well", visitor="wu")
        r.tickets.submit(title="Septic tank", kind="repair", grid="c/a/b", resident_id=who.id, description="secret")
        r.parcels.register(code="P-1", grid="c/a/b")
    for what in ("requests", "visits", "residents", "parcels", "report"):
        code, out = _cli(home, "export", what, "--out", str(tmp_path / f"{what}.csv"))
        assert code == 0, out
        with (tmp_path / f"{what}.csv").open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
        assert len(rows) >= 2
        code, out = _cli(home, "export", what, "--out", str(tmp_path / f"{what}.xlsx"), lang="zh")
        assert code == 0, out
        sheet = load_workbook(tmp_path / f"{what}.xlsx").active
        assert sheet is not None and sheet.max_row == len(rows)
    assert load_workbook(tmp_path / "requests.xlsx").active["A1"].value == "编号"
    code, _ = _cli(home, "export", "open311", "--out", str(tmp_path / "open311.json"))
    assert code == 0
    text = (tmp_path / "open311.json").read_text(encoding="utf-8")
    [request] = json.loads(text)
    assert request["service_code"] == "repair" and request["status"] == "open"
    assert "Septic" not in text and "secret" not in text and "Wang" not in text and "Lane" not in text
    code, out = _cli(home, "export", "requests", "--format", "json", "--out", str(tmp_path / "x.json"))
    assert code == 2 and "open311 is json only" in out
