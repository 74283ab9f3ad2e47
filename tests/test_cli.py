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


def test_sync_sends_and_receives_through_a_real_server_and_names_refusals(tmp_path: Path) -> None:
    from caresync_server.testing import ServerProcess

    from caresync import Replica
    from tests.server_support import enroll

    database = f"sqlite:///{tmp_path / 'server.db'}"
    station_token = enroll(database, "station", role="station", grids=[""])
    courier_token = enroll(database, "courier", role="courier", grids=["changnan"])
    with Replica.open(tmp_path / "courier.db", actor="courier-chen") as courier:
        courier.parcels.register(code="P-1", grid="changnan/dorm/3")
        resident = courier.residents.register(name="Not for couriers", grid="changnan/dorm/3")
    server = ServerProcess(database, tmp_path).start()
    try:
        runner = CliRunner()
        sent = runner.invoke(
            main, ["sync", str(tmp_path / "courier.db"), "--server", server.url], env={"CARESYNC_TOKEN": courier_token}
        )
        assert sent.exit_code == 0, sent.output
        assert "sent 1, received 0, still to send 0" in sent.stdout
        assert f"refused resident.create on {resident.id}:" in sent.stdout
        got = runner.invoke(
            main,
            ["sync", str(tmp_path / "station.db"), "--server", server.url, "--token", station_token, "--json"],
        )
        assert got.exit_code == 0, got.output
        assert json.loads(got.stdout)["received"] == 1
        wrong = runner.invoke(main, ["sync", str(tmp_path / "x.db"), "--server", server.url, "--token", "nope"])
        assert wrong.exit_code == 1 and "refused this device" in wrong.output and "Traceback" not in wrong.output
    finally:
        server.stop()
