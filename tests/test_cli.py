"""The caresync command: inspect reads a file, mistakes get a line, not a traceback, sync through a real server
(the demo has its own tests: test_demo.py)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from caresync.cli import main


def test_mistakes_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "x.db").write_bytes(b"this is not a database at all" * 100)
    bad = runner.invoke(main, ["inspect", str(tmp_path / "x.db")])
    assert bad.exit_code == 1
    assert "is not a caresync replica (not an SQLite database)" in bad.output
    assert bad.exception is None or isinstance(bad.exception, SystemExit)


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
        # a server's refusal: exit code 4 and the server_refused code, as on the courier's handheld
        assert wrong.exit_code == 4 and "refused this device" in wrong.output and "Traceback" not in wrong.output
        as_json = runner.invoke(
            main, ["sync", str(tmp_path / "x.db"), "--server", server.url, "--token", "nope", "--json"]
        )
        assert as_json.exit_code == 4 and '"code": "server_refused"' in as_json.output
    finally:
        server.stop()


def test_a_resolved_ticket_shows_its_resolution_in_json(tmp_path: Path) -> None:
    # the resolution is read from the ticket's history, loaded from the file only when asked: the JSON must be
    # built while the file is open (it was built after, and failed with "Cannot operate on a closed database").
    # The list reads only the columns it shows (no history: a list of 10,000 stays fast), so `show` carries it.
    runner = CliRunner()
    home = ["--home", str(tmp_path / "desk"), "--actor", "clerk"]
    assert runner.invoke(main, ["init", *home]).exit_code == 0
    made = runner.invoke(
        main, ["ticket", "submit", "--title", "Light out", "--kind", "repair", "--grid", "c/a/1", "--json", *home]
    )
    number = json.loads(made.stdout)["number"]
    for step in (["accept", number, "--assignee", "li"], ["resolve", number, "--resolution", "bulb replaced"]):
        assert runner.invoke(main, ["ticket", *step, *home]).exit_code == 0
    listed = runner.invoke(main, ["ticket", "list", "--all", "--json", *home])
    assert listed.exit_code == 0, listed.output
    assert [t["status"] for t in json.loads(listed.stdout)["tickets"]] == ["resolved"]
    shown = runner.invoke(main, ["ticket", "show", number, "--json", *home])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["resolution"] == "bulb replaced"
