"""caresync-courier: a courier's full round against a real server, in Chinese and in English (CliRunner), bundles
carried through the CLI, and the installed command as a real process (server down included)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from caresync_server.testing import ServerProcess, issue_code
from click.testing import CliRunner, Result

from caresync import Replica, StationKey
from caresync.cli.courier import cli
from caresync.field import courier, custody
from tests.server_support import enroll

SECRET = "申请高龄津贴，需要复印户口本"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    folder = tmp_path_factory.mktemp("server")
    database = f"sqlite:///{folder / 'server.db'}"
    process = ServerProcess(database, folder).start()
    try:
        yield process, database
    finally:
        process.stop()


class Handheld:
    """One courier's handheld: its own home folder, commands run through CliRunner."""

    def __init__(self, home: Path, lang: str) -> None:
        self.home = home
        self.lang = lang
        self.runner = CliRunner()

    def run(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, ["--home", str(self.home), "--lang", self.lang, *args])
        if ok:
            assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def _register_station_key(database: str, key: StationKey) -> None:
    """What the station does once (`caresync-server station-key set`): enrolment then hands the key out."""
    from caresync_server.settings import Settings
    from caresync_server.storage import Storage

    storage = Storage(Settings(database_url=database))
    try:
        storage.set_station_public_key(key.public_key)
    finally:
        storage.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_full_round_in_each_language(tmp_path: Path, server: tuple[ServerProcess, str], lang: str) -> None:
    process, database = server
    station_token = enroll(database, f"station-{lang}", role="station", grids=[""])
    code = issue_code(database, f"courier-{lang}", role="courier", grids=[f"{lang}-town"])
    key = StationKey.generate()
    _register_station_key(database, key)
    words = {
        "zh": ("已在邮筒", "已在驿站交件", "已投递", "同步完成", "已上报"),
        "en": ("Picked up", "Handed", "Delivered", "Synced", "Reported"),
    }[lang]
    with Replica.open(tmp_path / "station.db", actor="clerk-zhang") as station:
        station.install_station_key(key)  # the station's desk holds the key its free text is sealed to
        box = station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid=f"{lang}-town/lane-7")
        dropped = station.parcels.register(code=f"E{lang}-1", grid=f"{lang}-town/lane-7/3", mailbox_id=box.id)
        station.parcels.hop(dropped.id, "dropped", place="MB-07")
        station.sync(process.url, token=station_token)

        chen = Handheld(tmp_path / "chen", lang)
        enrolled = chen.json("enroll", process.url, code.lower().replace("-", " "), "--name", "chen")
        assert enrolled["url"] == process.url  # a code typed in lower case with spaces is the same code
        assert chen.json("sync")["received"] >= 3
        stops = chen.json("route")["stops"]
        assert [(s["action"], s["place"], [p["code"] for p in s["parcels"]]) for s in stops] == [
            ("pickup", "MB-07", [f"E{lang}-1"])
        ]

        # offline: three envelopes from the mailbox (two nobody registered yet), and an early warning
        first = chen.run("pickup", f"E{lang}-1", "--mailbox", "MB-07", "--contents", SECRET)
        assert words[0] in first.stdout
        chen.run("pickup", f"E{lang}-2", "--mailbox", "MB-07")
        picked = chen.json("pickup", f"E{lang}-3", "--mailbox", "MB-07")
        assert picked["stage"] == "picked_up" and picked["holder"] == "chen"
        warned = chen.run(
            "report", "early_warning", "3号楼外墙瓷砖松动 tiles loose on block 3", "--grid", f"{lang}-town"
        )
        assert words[4] in warned.stdout
        for code in (f"E{lang}-1", f"E{lang}-2"):
            assert words[1] in chen.run("handover", code).stdout
        again = chen.run("handover", f"E{lang}-1", ok=False)  # handed in already: refused, nothing recorded
        assert again.exit_code == 1 and chen.json("status")["unsent"] == 8

        synced = chen.json("sync")
        assert synced["sent"] == 8 and synced["unsent"] == 0 and synced["refused"] == []
        state = chen.json("status")
        assert state["holding"] == [
            f"E{lang}-1",
            f"E{lang}-2",
            f"E{lang}-3",
        ]  # hand-ins not receipted yet: still the courier's
        assert state["refusals"] == [] and state["last_sync"] is not None

        # the station receipts E-1 only; the courier takes it out for delivery and delivers it
        station.sync(process.url, token=station_token)
        with pytest.raises(courier.CourierError):
            courier.confirm_handover(station, f"E{lang}-3")  # never handed in
        courier.confirm_handover(station, f"E{lang}-1")
        station.sync(process.url, token=station_token)
        assert f"E{lang}-2" in chen.run("pickup", f"E{lang}-2", ok=False).output  # not receipted: cannot be taken out
        chen.run("sync")
        assert f"E{lang}-1" not in chen.json("status")["holding"]
        chen.run("pickup", f"E{lang}-1")
        assert words[2] in chen.run("deliver", f"E{lang}-1", "--confirm", "7731").stdout
        chen.run("sync")
        station.sync(process.url, token=station_token)

        parcel = station.parcels.by_code(f"E{lang}-1")
        assert parcel is not None and parcel.stage is not None and parcel.stage.value == "delivered"
        steps = custody.chain(parcel)
        assert [(s.stage.value, s.role, s.who) for s in steps] == [
            ("dropped", "hop", "clerk-zhang"),
            ("picked_up", "hop", "chen"),
            ("handed_in", "claim", "chen"),
            ("handed_in", "receipt", "clerk-zhang"),
            ("out_for_delivery", "hop", "chen"),
            ("delivered", "hop", "chen"),
        ]
        assert steps[2].confirmed_by == "clerk-zhang" and steps[1].where == "MB-07"
        assert custody.anomalies(station) == []
        assert parcel.hops[1].contents == SECRET  # the station's desk opens what the courier sealed
        assert [c.intact for c in custody.check_contents(station, parcel.id)] == [True]
        assert SECRET.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "chen").glob("courier.db*"))


def test_bundles_carried_through_the_cli(tmp_path: Path, server: tuple[ServerProcess, str]) -> None:
    process, database = server
    tokens = {n: enroll(database, f"{n}-cli", role="courier", grids=["relay-town"]) for n in ("a", "b")}
    a, b = Handheld(tmp_path / "a", "en"), Handheld(tmp_path / "b", "zh")
    with Replica.open(tmp_path / "station.db", actor="clerk") as station:
        station.mailboxes.add(code="MB-9", name="Lane 9", grid="relay-town/lane-9")
        station.sync(process.url, token=enroll(database, "station-cli", role="station", grids=[""]))
    key = StationKey.generate().signing_public_key.hex()  # as `caresync station-key show` prints it
    for hand, name in ((a, "a"), (b, "b")):
        hand.run("connect", process.url, "--token", tokens[name], "--name", name, "--station-key", key)
        hand.run("sync")
    a.run("pickup", "R-1", "--mailbox", "MB-9", "--contents", SECRET)
    a.run("pickup", "R-2", "--mailbox", "MB-9")
    made = a.json("bundle", "export", str(tmp_path / "a.bundle"))
    assert made["ops"] == 4
    device = a.json("status")["replica"]

    assert "已收下" in b.run("carry", "import", str(tmp_path / "a.bundle")).stdout
    assert "未作改动" in b.run("carry", "import", str(tmp_path / "a.bundle")).stdout
    assert [x["status"] for x in b.json("carry", "list")["bundles"]] == ["carried"]
    relayed = b.json("sync")["relayed"]
    assert [(r["status"], r["stored"]) for r in relayed] == [("delivered", 4)]
    b.run("carry", "export", "--for", device[:8], str(tmp_path / "answers.bundle"))
    assert b.json("carry", "list")["bundles"][0]["status"] == "handed_back"
    got = a.json("bundle", "import", str(tmp_path / "answers.bundle"))
    assert got["acked"] == 4 and a.json("status")["unsent"] == 0
    wrong = a.run("carry", "export", "--for", "nobody", str(tmp_path / "x.bundle"), ok=False)
    assert wrong.exit_code == 1 and "no answer" in wrong.output
    for path in (tmp_path / "b").glob("*.db*"):
        assert SECRET.encode() not in path.read_bytes()


def test_the_installed_command_round_and_a_server_that_is_down(tmp_path: Path) -> None:
    exe = shutil.which("caresync-courier", path=str(Path(sys.executable).parent))
    assert exe is not None, "caresync-courier is not installed beside this Python"
    database = f"sqlite:///{tmp_path / 'server.db'}"
    token = enroll(database, "courier-proc", role="courier", grids=["proc-town"])
    station_token = enroll(database, "station-proc", role="station", grids=[""])
    with Replica.open(tmp_path / "station.db", actor="clerk") as station:
        station.mailboxes.add(code="MB-1", name="Lane 1", grid="proc-town/lane-1")
        process = ServerProcess(database, tmp_path).start()
        try:
            station.sync(process.url, token=station_token)
            env = {**os.environ, "CARESYNC_HOME": str(tmp_path / "home"), "LANG": "zh_CN.UTF-8"}
            env.pop("CARESYNC_LANG", None)

            def run(*args: str) -> subprocess.CompletedProcess[str]:
                done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)
                assert "Traceback" not in done.stderr + done.stdout
                return done

            assert run("connect", process.url, "--token", token, "--name", "li").returncode == 0
            assert run("sync").returncode == 0
            for code in ("P-1", "P-2", "P-3"):
                assert "已在邮筒" in run("pickup", code, "--mailbox", "MB-1").stdout
            assert json.loads(run("sync", "--json").stdout)["sent"] == 6
            process.stop()
            run("pickup", "P-4", "--mailbox", "MB-1")
            down = run("sync")
            assert down.returncode == 3 and "连不上服务器" in down.stderr and "2 条记录" in down.stderr
            as_json = run("sync", "--json")
            assert as_json.returncode == 3 and json.loads(as_json.stdout)["error"]["code"] == "server_unreachable"
            assert json.loads(run("status", "--json").stdout)["unsent"] == 2
            typo = run("pikup", "P-5")
            assert typo.returncode == 2 and "pickup" in typo.stderr
            process.start()
            assert json.loads(run("sync", "--json").stdout)["sent"] == 2
        finally:
            process.stop()
