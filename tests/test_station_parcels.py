"""The station's mailbox and parcel commands (``caresync mailbox``, ``caresync parcel``) in both languages: a
mailbox made from the CLI, a parcel registered with a delivery code printed once, a courier's hand-in receipted so
custody passes, the chain shown, and the code checked at the door; over real replica files synced together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from caresync import Replica
from caresync.cli import main
from caresync.field import courier

WORDS = {
    "en": ("Added mailbox MB-07", "Write it on the resident's slip", "waiting for the station's receipt", "Receipted"),
    "zh": ("已添加邮筒 MB-07", "请抄在居民的回执上", "等待驿站签收", "已签收"),
}


class Desk:
    """The station's desk: one folder, commands through CliRunner."""

    def __init__(self, home: Path, lang: str) -> None:
        self.home, self.lang, self.runner = home, lang, CliRunner()

    def run(self, *args: str, code: int = 0) -> Result:
        result = self.runner.invoke(main, [*args, "--home", str(self.home), "--lang", self.lang])
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_parcels_round_from_the_station_commands(tmp_path: Path, lang: str) -> None:
    added, slip_words, waiting, receipted = WORDS[lang]
    desk = Desk(tmp_path / "desk", lang)
    desk.run("init", "--actor", "clerk")
    assert (
        added
        in desk.run("mailbox", "add", "MB-07", "--name", "Lane 7", "--grid", "changnan/lane-7", "--new-grid").stdout
    )
    assert [m["code"] for m in desk.json("mailbox", "list")["mailboxes"]] == ["MB-07"]
    shown = desk.run("parcel", "register", "E-1", "--grid", "changnan/b-3", "--to-resident", "--new-code", "--new-grid")
    assert slip_words in shown.stdout
    slip = desk.json("parcel", "code", "E-1")["delivery_code"]  # a new slip: the first code no longer works
    assert slip.isdigit() and len(slip) == 6
    station_file = tmp_path / "desk" / "replica.db"
    assert slip.encode() not in b"".join(p.read_bytes() for p in station_file.parent.glob("replica.db*"))

    with Replica.open(tmp_path / "chen.db", actor="chen") as chen:
        with Replica.open(station_file, actor="clerk") as station:
            chen.sync_with(station)
        courier.pickup(chen, "E-2", mailbox="MB-07")  # a resident's envelope from the lane
        courier.handover(chen, "E-2")
        courier.pickup(chen, "E-1")  # out for delivery
        with Replica.open(station_file, actor="clerk") as station:
            station.sync_with(chen)

        listed = desk.run("parcel", "list").stdout.splitlines()
        assert listed[0].startswith("E-2") and waiting in listed[0]
        assert desk.json("parcel", "show", "E-2")["custody"][-1]["role"] == "claim"
        assert receipted in desk.run("parcel", "receipt", "E-2").stdout
        again = desk.run("parcel", "receipt", "E-2", code=1)  # nothing waits any more: refused, in the language
        assert ("没有等待签收的交站记录" if lang == "zh" else "no courier hand-in waiting") in again.output
        shown_json = desk.json("parcel", "show", "E-2")
        assert [(s["stage"], s["role"]) for s in shown_json["custody"]] == [
            ("picked_up", "hop"),
            ("handed_in", "claim"),
            ("handed_in", "receipt"),
        ]
        assert shown_json["custody"][1]["confirmed_by"] == "clerk" and not shown_json["awaiting_receipt"]
        assert "clerk" in desk.run("parcel", "show", "E-2").stdout

        with Replica.open(station_file, actor="clerk") as station:
            chen.sync_with(station)
        with pytest.raises(courier.CourierError, match="not the delivery code"):
            courier.deliver(chen, "E-1", confirm_code="000000" if slip != "000000" else "111111")
        assert courier.deliver(chen, "E-1", confirm_code=slip).hops[-1].code_checked


def test_station_parcel_commands_refuse_clearly(tmp_path: Path) -> None:
    desk = Desk(tmp_path / "desk", "zh")
    desk.run("init", "--actor", "clerk")
    assert "本机没有编号为 E-9 的邮件" in desk.run("parcel", "show", "E-9", code=1).output
    assert (
        "本机没有编号为 MB-9 的邮筒"
        in desk.run(
            "parcel", "register", "E-3", "--grid", "changnan/b-3", "--mailbox", "MB-9", "--new-grid", code=1
        ).output
    )
    desk.run("parcel", "register", "E-3", "--grid", "changnan/b-3", "--new-grid")
    bad = desk.run("parcel", "code", "E-3", "--set", "12", code=1)
    assert "4 to 12 letters or digits" in bad.output
    both = desk.run(
        "parcel", "register", "E-4", "--grid", "changnan/b-3", "--new-code", "--delivery-code", "1234", code=2
    )
    assert "--new-code" in both.output
    assert desk.json("parcel", "show", "E-3")["delivery_code_set"] is False
    assert "没有邮件" not in desk.run("parcel", "list").stdout
    assert "没有邮筒" in desk.run("mailbox", "list").stdout


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_station_records_hops_and_returns_and_lists_anomalies(tmp_path: Path, lang: str) -> None:
    zh = lang == "zh"
    desk = Desk(tmp_path / "desk", lang)
    desk.run("init", "--actor", "clerk")
    desk.run(
        "parcel", "register", "D-1", "--grid", "changnan/b-3", "--to-resident", "--delivery-code", "K7AB", "--new-grid"
    )
    early = desk.run("parcel", "hop", "D-1", "delivered", "--confirm", "K7AB", code=1)
    assert ("不能接着记为 delivered" if zh else "delivered does not follow") in early.output
    assert desk.json("parcel", "show", "D-1")["custody"] == []  # refused: nothing recorded
    assert ("已记录邮件 D-1" if zh else "Recorded parcel D-1") in desk.run(
        "parcel", "hop", "D-1", "out_for_delivery"
    ).stdout
    wrong = desk.run("parcel", "hop", "D-1", "delivered", "--confirm", "0000", code=1)
    assert ("0000 不是邮件 D-1 的取件确认码" if zh else "0000 is not the delivery code") in wrong.output
    desk.run("parcel", "return", "D-1", code=2)  # --reason is required
    assert ("退回驿站" if zh else "returned to the station") in desk.run(
        "parcel", "return", "D-1", "--reason", "nobody home"
    ).stdout
    shown = desk.json("parcel", "show", "D-1")
    assert [(s["stage"], s["who"]) for s in shown["custody"]] == [("out_for_delivery", "clerk"), ("returned", "clerk")]
    assert desk.json("parcel", "anomalies") == {"anomalies": []}
    assert ("都对得上" if zh else "add up") in desk.run("parcel", "anomalies").stdout

    desk.run("parcel", "register", "E-5", "--grid", "changnan/b-3", "--new-grid")
    desk.run("parcel", "hop", "E-5", "delivered", "--confirm", "1234", code=1)
    desk.run("parcel", "hop", "E-5", "delivered", "--confirm", "1234", "--anyway")
    found = desk.json("parcel", "anomalies")["anomalies"]
    assert [(a["parcel"], a["code"]) for a in found] == [("E-5", "delivered_not_handed_in")]
    listed = desk.run("parcel", "anomalies").stdout
    assert ("未经驿站签收就投递" if zh else "delivered, never receipted") in listed
