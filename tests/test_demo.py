"""`caresync demo`: a simulated week through a real sync server, in process (CliRunner) and as a real subprocess.

Small sizes (3 days, 20 residents) keep the three runs to a few seconds each. The checks: it exits 0; the report
it prints is the one `caresync --db <station file> report` prints afterwards on the station's file (text and
JSON); every device's proof of convergence holds; the same seed prints the same text twice; --json parses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from caresync.cli import main

pytest.importorskip("caresync_server")

ARGS = ["demo", "--days", "3", "--residents", "20", "--seed", "11", "--lang", "en"]


def _normalised(text: str, folder: Path) -> str:
    """The demo's text without what may differ between two runs: the folder and the elapsed time."""
    text = text.replace(str(folder), "<dir>")
    return re.sub(r"Took [0-9.]+ s\.", "Took … s.", text)


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    folder = tmp_path_factory.mktemp("demo-text")
    return folder, _invoke([*ARGS, "--dir", str(folder)])


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("demo-json")
    result = _invoke([*ARGS, "--dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    return folder, json.loads(result.stdout)


def test_demo_exits_0_and_every_device_converges(text_run: tuple[Path, Result]) -> None:
    _, result = text_run
    assert result.exit_code == 0, result.output
    assert "All 11 devices converged." in result.stdout
    rows = [line for line in result.stdout.splitlines() if re.match(r"│ [a-z]+-[a-z0-9]+ +│", line)]
    assert len(rows) == 11
    assert all(line.rstrip("│ ").endswith("yes") for line in rows), rows


def test_printed_report_is_what_caresync_report_prints_afterwards(text_run: tuple[Path, Result]) -> None:
    folder, result = text_run
    command = re.search(r"the same as: caresync --db (\S+) report --from (\S+) --to (\S+)\)", result.stdout)
    assert command is not None, result.stdout
    station, first, last = command.groups()
    assert Path(station) == folder / "clerk-zhang.db"
    later = _invoke(["--db", station, "--lang", "en", "report", "--from", first, "--to", last])
    assert later.exit_code == 0, later.output
    assert later.stdout.strip() in result.stdout
    assert "Requests received" in later.stdout


def test_json_report_matches_caresync_report_json(json_run: tuple[Path, dict[str, Any]]) -> None:
    folder, outcome = json_run
    period = outcome["period"]
    later = _invoke(
        ["--db", str(folder / "clerk-zhang.db"), "report", "--from", period["from"], "--to", period["to"], "--json"]
    )
    assert later.exit_code == 0, later.output
    assert json.loads(later.stdout) == outcome["report"]
    report = outcome["report"]
    assert report["tickets_received"] > 0 and report["tickets_resolved"] > 0
    assert report["disputes_mediated"] >= 1 and report["mediation_success_rate"] == 1.0
    assert set(report["by_channel"]) >= {"walk_in", "mailbox", "outdoor_report", "wish_box"}


def test_json_outcome_proves_convergence_and_tells_the_story(json_run: tuple[Path, dict[str, Any]]) -> None:
    _, outcome = json_run
    assert outcome["converged"] is True
    devices = {d["name"]: d for d in outcome["devices"]}
    assert len(devices) == 11
    assert all(d["converged"] and d["unsent"] == 0 for d in devices.values())
    # the kiosk's work came only through relay bundles, yet it holds exactly its scope, like grid-zhao (same scope)
    assert devices["kiosk-lane3"]["fingerprint"] == devices["grid-zhao"]["fingerprint"]
    assert outcome["counts"]["bundles_delivered"] >= 2 and outcome["counts"]["answers_imported"] >= 2
    fields = {c["field"] for c in outcome["conflicts"]}
    assert {"status", "assignee", "title"} <= fields
    assert any("raised" in e and "no_answer_twice" in e for e in outcome["events"])
    assert outcome["counts"]["parcels_receipted"] >= 1
    assert outcome["counts"]["tokens_renewed"] >= 1  # two-day tokens, renewed by the devices themselves


def test_same_seed_same_output_in_a_real_process(tmp_path: Path, text_run: tuple[Path, Result]) -> None:
    folder, first = text_run
    env = {**os.environ, "COLUMNS": "140"}
    done = subprocess.run(
        [sys.executable, "-m", "caresync", *ARGS, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _normalised(done.stdout, tmp_path) == _normalised(first.stdout, folder)


def test_a_folder_with_replicas_is_refused_in_one_line(text_run: tuple[Path, Result]) -> None:
    folder, _ = text_run
    result = CliRunner().invoke(main, [*ARGS, "--dir", str(folder)])
    assert result.exit_code == 1
    assert "already holds replica files" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_inspect_reads_the_offline_kiosks_file(json_run: tuple[Path, dict[str, Any]]) -> None:
    folder, outcome = json_run
    shown = _invoke(["inspect", str(folder / "kiosk-lane3.db"), "--json"])
    info = json.loads(shown.stdout)
    kiosk = next(d for d in outcome["devices"] if d["name"] == "kiosk-lane3")
    assert info["ops"] == kiosk["ops"] and info["tickets"] > 0 and info["conflicts"] == []


def test_without_the_server_distribution_it_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import caresync.field.demo

    real = caresync.field.demo.importlib.util.find_spec
    monkeypatch.setattr(
        caresync.field.demo.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "caresync_server" else real(name, *a),
    )
    result = CliRunner().invoke(main, [*ARGS, "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "caresync_server is not installed: pip install . ./server" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
