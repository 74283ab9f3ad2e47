"""The three programs speak one dialect where a person meets it first: ``--version`` on each, and a mistyped
command or option is one line starting ``Usage error`` with exit code 2 (``"code": "usage"`` with ``--json``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
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
    assert revoked["name"] == "phone-li" and revoked["revoked_at"] and revoked["already_revoked"] is False
    missing = run("revoke", "nobody", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "admin_error"
    assert missing.stderr.startswith("Error: No device is named nobody")


def _groups() -> dict[str, click.Group]:
    from caresync_server.cli import main as server

    from caresync.cli import main as station
    from caresync.cli.courier import cli as courier

    return {"caresync": station, "caresync-courier": courier, "caresync-server": server}


def _walk(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, group)]
    for name, command in sorted(getattr(group, "commands", {}).items()):
        found.extend(_walk(command, (*path, name)))
    return found


def test_every_command_of_the_three_programs_takes_json_lang_and_version() -> None:
    missing = []
    for program, group in _groups().items():
        for path, command in _walk(group):
            names = {opt for param in command.params for opt in getattr(param, "opts", ())}
            missing += [f"{program} {' '.join(path)} {o}" for o in ("--json", "--lang", "--version") if o not in names]
    assert not missing, missing


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("caresync", ["ticket", "list"]),
        ("caresync", ["station-key", "show"]),
        ("caresync-courier", ["carry", "list"]),
        ("caresync-server", ["station-key", "show"]),
        ("caresync-server", ["init"]),
    ],
)
def test_version_after_any_verb(program: str, args: list[str], tmp_path: Path) -> None:
    done = _run(program, *args, "--version", home=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"{program}, version "), done.stderr


def test_the_server_speaks_chinese_and_json_on_every_command(tmp_path: Path) -> None:
    exe = shutil.which("caresync-server", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {**os.environ, "CARESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}", "CARESYNC_LANG": "en"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60)

    missing = run("devices", "--lang", "zh")
    assert missing.returncode == 1 and missing.stderr.startswith("错误: ") and "caresync-server init" in missing.stderr
    made = run("init", "--json")
    assert made.returncode == 0 and json.loads(made.stdout)["schema_version"] >= 1
    assert run("init", "--lang", "zh").stdout.startswith("数据库已就绪")
    nobody = run("--lang", "zh", "revoke", "nobody", "--json")
    assert nobody.returncode == 1 and nobody.stderr.startswith("错误: 没有名为 nobody 的设备")
    assert json.loads(nobody.stdout) == {
        "error": {"code": "admin_error", "message": nobody.stderr.partition(": ")[2].strip(), "details": []}
    }
    typo = run("revoke", "--lang", "zh")
    assert typo.returncode == 2 and typo.stderr.startswith("用法错误: ")
    assert json.loads(run("station-key", "show", "--json").stdout) == {
        "station_key": None,
        "kind": None,
        "rotations": 0,
    }
    hex_key = "ab" * 32
    assert json.loads(run("station-key", "set", hex_key, "--x25519", "--json").stdout)["station_key"] == hex_key


@pytest.mark.parametrize("program", ["caresync", "caresync-courier", "caresync-server"])
def test_an_error_envelope_has_code_message_and_details(program: str, tmp_path: Path) -> None:
    done = _run(program, "snyc", "--json", home=tmp_path)
    assert set(json.loads(done.stdout)["error"]) == {"code", "message", "details"}


def test_serve_says_its_start_and_its_errors_in_json_and_in_chinese(tmp_path: Path) -> None:
    import socket
    import time

    exe = shutil.which("caresync-server", path=str(Path(sys.executable).parent))
    assert exe is not None
    env = {**os.environ, "CARESYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'server.db'}", "CARESYNC_LANG": "en"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [exe, "serve", "--port", str(port), "--json", "--lang", "zh"], env=env, capture_output=True, text=True
        )
    assert busy.returncode == 1 and busy.stderr.startswith(f"错误: 无法在 http://127.0.0.1:{port} 上监听")
    assert json.loads(busy.stdout)["error"]["code"] == "invalid_config"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with subprocess.Popen(
        [exe, "serve", "--port", str(port), "--json", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            lines = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                lines.append(process.stdout.readline())
                if lines[-1].startswith("}"):
                    break
            started = json.loads("".join(lines))
            assert started["listening"] == f"http://127.0.0.1:{port}" and started["schema_version"] >= 1
            assert started["started_at"].endswith("+00:00")
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.parametrize("program", ["caresync", "caresync-courier"])
def test_home_goes_after_the_command_in_both_device_programs(program: str, tmp_path: Path) -> None:
    if program == "caresync":
        assert (
            _run(program, "init", "--actor", "clerk", "--home", str(tmp_path / "here"), home=tmp_path).returncode == 0
        )
        done = _run(program, "ticket", "list", "--json", "--home", str(tmp_path / "here"), home=tmp_path / "elsewhere")
    else:
        done = _run(program, "status", "--json", "--home", str(tmp_path / "here"), home=tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "here").is_dir() and not (tmp_path / "elsewhere").exists()
