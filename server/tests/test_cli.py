"""The caresync-server admin commands through click's runner, against a real SQLite file and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from caresync_server.cli import main
from caresync_server.settings import Settings
from caresync_server.storage import SCHEMA_VERSION, Storage, devices
from support import ReplicaFactory, Server, own_ops


@pytest.fixture
def run(settings: Settings) -> Iterator[tuple[CliRunner, list[str]]]:
    options = ["--database-url", settings.database_url]
    if settings.database_schema:
        options += ["--database-schema", settings.database_schema]
    # the key file beside the test's database, never in the folder the tests run from
    yield CliRunner(env={"CARESYNC_SERVER_KEY_FILE": settings.server_key_file or ""}), options


def _invoke(run: tuple[CliRunner, list[str]], *args: str) -> Result:
    runner, options = run
    command, *rest = args
    return runner.invoke(main, [command, *options, *rest], catch_exceptions=False)


def test_init_enroll_devices_revoke(run: tuple[CliRunner, list[str]], settings: Settings) -> None:
    assert f"schema version {SCHEMA_VERSION}" in _invoke(run, "init").output
    assert _invoke(run, "init").exit_code == 0  # again: nothing to do

    enrolled = _invoke(
        run, "enroll", "--token", "--name", "phone-li", "--role", "grid_worker", "--grid", "changnan/dorm"
    )
    assert enrolled.exit_code == 0 and "shown only this once" in enrolled.output
    token = enrolled.output.split("\n\n")[1].strip()
    station = json.loads(
        _invoke(run, "enroll", "--token", "--name", "desk", "--role", "station", "--grid", "", "--json").output
    )
    assert station["grids"] == [""] and len(station["token"]) >= 40

    storage = Storage(settings)
    try:
        assert storage.authenticate(token).name == "phone-li"
        with storage.engine.connect() as conn:  # only a hash of the token is kept
            hashes = conn.execute(select(devices.c.token_hash)).scalars().all()
        assert token not in hashes and station["token"] not in hashes
    finally:
        storage.close()

    listed = _invoke(run, "devices")
    assert "phone-li" in listed.output and "changnan/dorm" in listed.output and "everywhere" in listed.output
    assert "never" in listed.output  # neither has synced yet

    assert "Revoked device phone-li" in _invoke(run, "revoke", "phone-li").output
    assert "already revoked" in _invoke(run, "revoke", "1").output  # by id, and again
    rows = json.loads(_invoke(run, "devices", "--json").output)
    assert [(d["name"], d["revoked_at"] is not None) for d in rows] == [("phone-li", True), ("desk", False)]
    assert set(rows[0]) >= {"replica_id", "last_sync_at", "pending", "oldest_unsent_at", "clock_offset_ms"}


def test_errors_are_one_line_and_a_nonzero_exit(run: tuple[CliRunner, list[str]]) -> None:
    _invoke(run, "init")
    _invoke(run, "enroll", "--name", "desk", "--role", "station", "--grid", "")
    for args, message in (
        (("revoke", "nobody"), "No device is named nobody"),
        (("enroll", "--name", "desk", "--role", "station", "--grid", ""), "already enrolled"),
        (("enroll", "--name", "x", "--role", "station", "--grid", "a//b"), "is not a grid path"),
    ):
        result = _invoke(run, *args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and message in result.output
        assert "Traceback" not in result.output
    bad_role = _invoke(run, "enroll", "--name", "x", "--role", "boss", "--grid", "a")
    assert bad_role.exit_code == 2 and "boss" in bad_role.output


def test_commands_on_a_missing_database_say_what_to_run(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'nothing-here.db'}"
    for command in (["devices"], ["revoke", "x"], ["enroll", "--name", "x", "--role", "admin", "--grid", ""]):
        result = runner.invoke(main, [*command, "--database-url", url])
        assert result.exit_code == 1 and "caresync-server init" in result.output, result.output
    assert not (tmp_path / "nothing-here.db").exists()  # a typo in the path does not leave a file behind
    unreachable = runner.invoke(main, ["devices", "--database-url", "postgresql://nobody@127.0.0.1:9/none"])
    assert unreachable.exit_code == 1 and "does not answer" in unreachable.output
    assert "Traceback" not in unreachable.output
    wrong = runner.invoke(main, ["init", "--database-url", "mysql://localhost/x"])
    assert wrong.exit_code == 1 and "SQLite" in wrong.output


def test_the_default_database_is_a_file_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARESYNC_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    assert (tmp_path / "caresync-server.db").exists()
    monkeypatch.setenv("CARESYNC_DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert runner.invoke(main, ["init"]).exit_code == 0 and (tmp_path / "other.db").exists()
    assert "serve" in runner.invoke(main, ["--help"]).output
    assert "--workers" in runner.invoke(main, ["serve", "--help"]).output


def test_a_scope_that_leaves_the_device_nothing_asks_for_yes(
    run: tuple[CliRunner, list[str]], server: Server, make_replica: ReplicaFactory
) -> None:
    station = make_replica("station")
    for grid in ("changnan/dorm", "changnan/dorm", "xinan/lane-1"):
        station.residents.register(name="Resident", grid=grid, phone="13800000000")
        station.tickets.submit(title="stair light", kind="repair", grid=grid)
    token = server.enroll("desk", "station", "")
    assert server.push(token, station.id, own_ops(station)).json()["refused"] == []
    _invoke(run, "enroll", "--token", "--name", "phone-li", "--role", "grid_worker", "--grid", "changnan/dorm")

    for grids in (["xinan/lane-1"], ["xinan/lane-9"], ["changnan/dorn"]):  # nothing of its 4 is kept; a typo
        args = [a for grid in grids for a in ("--grid", grid)]
        refused = _invoke(run, "scope", "phone-li", *args)
        assert refused.exit_code == 1, refused.output
        assert refused.output.count("\n") == 1 and "would lose 4 of the 4 record(s)" in refused.output
        assert "--yes" in refused.output
        as_json = _invoke(run, "scope", "phone-li", *args, "--json")
        assert as_json.exit_code == 1 and json.loads(as_json.stdout)["error"]["code"] == "admin_error"
    assert "no record at all in xinan/lane-9" in _invoke(run, "scope", "phone-li", "--grid", "xinan/lane-9").output
    unchanged = json.loads(_invoke(run, "devices", "--json").output)
    assert [(d["name"], d["grids"], d["scope_version"]) for d in unchanged][1] == ("phone-li", ["changnan/dorm"], 1)

    widened = _invoke(run, "scope", "phone-li", "--grid", "changnan", "--grid", "xinan/lane-1")  # keeps all 4
    assert widened.exit_code == 0 and "grid_worker in changnan, xinan/lane-1" in widened.output
    narrowed = _invoke(run, "scope", "phone-li", "--grid", "changnan/dorm")  # loses 2 of 6, keeps 4: no question
    assert narrowed.exit_code == 0, narrowed.output
    moved = _invoke(run, "scope", "phone-li", "--grid", "xinan/lane-1", "--yes", "--json")
    assert moved.exit_code == 0 and json.loads(moved.output)["grids"] == ["xinan/lane-1"]
