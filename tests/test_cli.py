"""The caresync command: the demo converges, inspect reads a file, mistakes get a line, not a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from caresync.cli import main


def test_demo_converges_and_is_repeatable(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--dir", str(tmp_path / "a"), "--seed", "11", "--json"])
    second = runner.invoke(main, ["demo", "--dir", str(tmp_path / "b"), "--seed", "11", "--json"])
    assert first.exit_code == 0, first.output
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    digests = {d["digest"] for d in one["devices"].values()}
    assert len(digests) == 1
    assert {d["ops"] for d in one["devices"].values()} == {d["ops"] for d in two["devices"].values()}
    assert any("title has competing values" in c for c in one["conflicts_raised"])
    assert any("status has competing values" in c for c in one["conflicts_raised"])
    assert one["conflicts_left"] == []
    assert [t["status"] for t in one["tickets"]] == ["closed", "closed"]
    assert max(a["hours_ahead"] for a in one["clock_anomalies"]) > 60  # the knocker's phone, 3 days ahead
    assert [t["title"] for t in one["tickets"]] == [t["title"] for t in two["tickets"]]


def test_demo_as_a_real_process_then_inspect(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "caresync"]
    done = subprocess.run([*exe, "demo", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "converged" in done.stdout and "Traceback" not in done.stderr
    shown = subprocess.run(
        [*exe, "inspect", str(tmp_path / "station.db"), "--json"], capture_output=True, text=True, timeout=60
    )
    info = json.loads(shown.stdout)
    assert info["tickets"] == 2 and info["conflicts"] == []


def test_mistakes_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "x.db").write_bytes(b"this is not a database at all" * 100)
    bad = runner.invoke(main, ["inspect", str(tmp_path / "x.db")])
    assert bad.exit_code == 1
    assert "Cannot open the replica file" in bad.output or "could not be read" in bad.output
    assert bad.exception is None or isinstance(bad.exception, SystemExit)
    runner.invoke(main, ["demo", "--dir", str(tmp_path / "d")])
    again = runner.invoke(main, ["demo", "--dir", str(tmp_path / "d")])
    assert again.exit_code == 1 and "choose an empty folder" in again.output
