"""One time format (issue 17): every moment in every JSON output of the three programs is ISO 8601 with its offset
(never milliseconds, never a space for the ``T``, never a bare ``Z``); lines and tables for people show local time.

The test runs the reading and writing commands of ``caresync``, ``caresync-courier`` and ``caresync-server`` with
``--json`` over a week of station data and walks every JSON document they print."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from caresync_server.cli import main as server_main
from click.testing import CliRunner

from caresync.cli import main as station_main
from caresync.cli._json import DURATIONS
from caresync.cli.courier import cli as courier_main
from caresync.testing import DEFAULT_START_MS
from tests.station_data import DORM, build_week

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}:\d{2}$")
LOOKS_LIKE_A_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, str(key), item
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield path, f"[{n}]", item
            yield from _walk(item, f"{path}[{n}]")


def _bad_times(document: Any) -> list[str]:
    bad = []
    for path, key, value in _walk(document):
        where = f"{path}.{key}"
        if key.endswith("_ms") and key not in DURATIONS:
            bad.append(f"{where}: a moment in milliseconds ({value!r})")
        if (
            (key.endswith("_at") or key in ("at", "last_sync"))
            and value is not None
            and not (isinstance(value, str) and ISO.match(value))
        ):
            bad.append(f"{where}: {value!r} is not ISO 8601 with an offset")
        if isinstance(value, str) and LOOKS_LIKE_A_MOMENT.match(value) and not ISO.match(value):
            bad.append(f"{where}: {value!r} is not ISO 8601 with an offset")
    return bad


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Any]]:
    """Every JSON document the commands below print, with the command that printed it."""
    root = tmp_path_factory.mktemp("times")
    week = root / "week.db"
    station, _, ids = build_week(week, DEFAULT_START_MS - 40 * 86_400_000)
    station.close()
    env = {"CARESYNC_HOME": str(root / "desk"), "CARESYNC_LANG": "en", "CARESYNC_ACTOR": "clerk-zhang"}
    courier_env = {"CARESYNC_HOME": str(root / "courier"), "CARESYNC_LANG": "en"}
    server_env = {"CARESYNC_DATABASE_URL": f"sqlite:///{root / 'server.db'}", "CARESYNC_LANG": "en"}
    read = ["--db", str(week)]
    station_commands = [
        ["init", "--actor", "clerk-zhang"],
        ["ticket", "submit", "--title", "Tap", "--kind", "repair", "--grid", DORM, "--new-grid"],
        ["resident", "add", "--name", "Old Li", "--grid", DORM, "--new-grid", "--knock-every", "3"],
        ["visit", "record", "Old Li", "--outcome", "well"],
        ["ticket", "numbers"],
        ["ticket", "list", *read],
        ["ticket", "show", ids["t4"], *read],
        ["resident", "list", *read],
        ["resident", "show", ids["A"], *read],
        ["visit", "list", *read],
        ["visit", "due", *read],
        ["worker", "list", *read],
        ["mailbox", "list", *read],
        ["parcel", "list", *read],
        ["parcel", "show", "P-1", *read],
        ["conflicts", "list", *read],
        ["report", *read, "--from", "2026-01-01", "--to", "2027-12-31"],
        ["inspect", str(week)],
        ["bundle", "export", str(root / "desk.bundle")],
    ]
    found: list[tuple[str, Any]] = []

    def take(program: str, main: Any, args: list[str], env: dict[str, str]) -> None:
        done = CliRunner(env=env).invoke(main, [*args, "--json"])
        assert done.exit_code == 0, (program, args, done.output)
        found.append((f"{program} {' '.join(args)}", json.loads(done.stdout)))

    for args in station_commands:
        take("caresync", station_main, args, env)
    for args in (
        ["report", "emergency", "smoke on the stairs", "--grid", DORM],
        ["status"],
        ["route"],
        ["carry", "import", str(root / "desk.bundle")],
        ["carry", "list"],
        ["bundle", "export", str(root / "courier.bundle")],
    ):
        take("caresync-courier", courier_main, args, courier_env)
    for args in (
        ["init"],
        ["enroll", "--name", "phone-li", "--role", "knocker", "--grid", DORM],
        ["enroll", "--name", "desk", "--role", "station", "--grid", "", "--token"],
        ["revoke", "phone-li"],
        ["devices"],
        ["station-key", "show"],
    ):
        take("caresync-server", server_main, args, server_env)
    return found


def test_every_moment_in_every_json_output_is_iso_8601_with_an_offset(outputs: list[tuple[str, Any]]) -> None:
    bad = {command: problems for command, document in outputs if (problems := _bad_times(document))}
    assert bad == {}
    moments = sum(1 for _, doc in outputs for _, key, _ in _walk(doc) if key.endswith("_at") or key == "at")
    assert moments > 50, "the commands printed too few moments for this test to mean anything"


def test_the_walk_finds_each_wrong_form() -> None:
    assert _bad_times({"expires_ms": 1_765_000_000_000}) != []
    assert _bad_times({"a": [{"when": "2026-12-07 18:27:00+00:00"}]}) != []
    assert _bad_times({"submitted_at": "2026-12-07T18:27:00Z"}) != []
    assert _bad_times({"due_at": 1_765_000_000_000}) != []
    assert _bad_times({"due_at": "2026-12-07T18:27:00.123+08:00", "clock_offset_ms": 12, "day": "2026-12-07"}) == []


def test_lines_for_people_show_local_time(tmp_path: Path) -> None:
    exe = shutil.which("caresync-courier", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {**os.environ, "CARESYNC_HOME": str(tmp_path / "courier"), "CARESYNC_LANG": "en", "TZ": "Asia/Shanghai"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)

    assert run("report", "emergency", "smoke", "--grid", DORM).returncode == 0
    done = run("bundle", "export", str(tmp_path / "b.bundle"))
    assert done.returncode == 0 and " CST)" in done.stdout and " UTC" not in done.stdout, done.stdout
    as_json = json.loads(run("bundle", "export", str(tmp_path / "c.bundle"), "--json").stdout)
    assert ISO.match(as_json["expires_at"]) and "expires_ms" not in as_json
