"""The three programs speak one dialect where a person meets it first: ``--version`` on each, and a mistyped
command or option is one line starting ``Usage error`` with exit code 2 (``"code": "usage"`` with ``--json``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAMS = ["caresync", "caresync-courier", "caresync-server"]


def _run(name: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    assert exe is not None, f"{name} is not installed beside this Python"
    env = {**os.environ, "CARESYNC_HOME": str(home), "CARESYNC_LANG": "en", "LANG": "C.UTF-8"}
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_tells_its_version(program: str, tmp_path: Path) -> None:
    done = _run(program, "--version", home=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"{program}, version ")


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_mistyped_command_is_one_usage_line_with_exit_code_2(program: str, tmp_path: Path) -> None:
    done = _run(program, "snyc", home=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("Usage error: "), done.stderr
    assert "snyc" in lines[0]


@pytest.mark.parametrize("program", ["caresync", "caresync-courier"])
def test_the_usage_envelope_is_the_same_in_both_device_programs(program: str, tmp_path: Path) -> None:
    done = _run(program, "snyc", "--json", home=tmp_path)
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["code"] == "usage"


def test_the_server_commands_answer_json_and_the_same_error_envelope(tmp_path: Path) -> None:
    database = {"CARESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}"}
    exe = shutil.which("caresync-server", path=str(Path(sys.executable).parent))
    assert exe is not None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], env={**os.environ, **database}, capture_output=True, text=True, timeout=60)

    assert run("init").returncode == 0
    assert run("enroll", "--name", "phone-li", "--role", "knocker", "--grid", "changnan", "--token").returncode == 0
    scoped = json.loads(run("scope", "phone-li", "--grid", "changnan/dorm", "--json").stdout)
    assert scoped["grids"] == ["changnan/dorm"]
    revoked = json.loads(run("revoke", "phone-li", "--json").stdout)
    assert revoked["name"] == "phone-li" and revoked["revoked_at_ms"] and revoked["already_revoked"] is False
    missing = run("revoke", "nobody", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "admin_error"
    assert missing.stderr.startswith("Error: No device is named nobody")
