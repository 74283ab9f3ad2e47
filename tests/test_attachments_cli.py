"""The programs' attachments: ``caresync ticket attach``, ``caresync visit record --photo`` and the courier's
``deliver --photo``, in Chinese and in English; what the courier's file holds is sealed."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from caresync import Replica, StationKey
from caresync.cli import main
from caresync.cli.courier import cli as courier_cli
from caresync.field import courier

GRID = "changnan/dorm/3"


@pytest.fixture(params=["zh", "en"])
def lang(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _photo(path: Path, width: int = 2400, height: int = 1800) -> Path:
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(path, "JPEG", quality=90)
    return path


def _station(home: Path, lang: str, *args: str, ok: bool = True) -> Any:
    env = {"CARESYNC_HOME": str(home), "CARESYNC_LANG": "", "LANG": "C", "LC_ALL": "", "CARESYNC_ACTOR": ""}
    result = CliRunner(env=env).invoke(main, [*args, "--lang", lang])
    assert "Traceback" not in result.output
    if ok:
        assert result.exit_code == 0, (args, result.output)
    return result


def test_ticket_attach_and_visit_record_with_a_photo(tmp_path: Path, lang: str) -> None:
    home = tmp_path / "home"
    _station(home, lang, "init", "--actor", "clerk-zhang")
    key = StationKey.generate()
    with Replica.open(home / "replica.db", actor="clerk-zhang") as replica:
        replica.install_station_key(key)
    ticket = json.loads(
        _station(
            home, lang, "ticket", "submit", "--title", "Septic tank", "--kind", "repair", "--grid", GRID, "--json"
        ).stdout
    )
    photo = _photo(tmp_path / "tank.jpg")
    added = json.loads(
        _station(home, lang, "ticket", "attach", ticket["id"], str(photo), "--caption", "yard", "--json").stdout
    )
    assert (added["kind"], added["media"], added["record_id"], added["caption"]) == (
        "photo",
        "image/jpeg",
        ticket["id"],
        "yard",
    )
    said = _station(home, lang, "ticket", "attach", ticket["id"], str(photo), "--kind", "document").stdout
    assert {"zh": "已添加附件", "en": "attached as"}[lang] in said
    shown = _station(home, lang, "ticket", "show", ticket["id"]).stdout
    assert added["id"] in shown and {"zh": "附件", "en": "attachment"}[lang] in shown
    refused = _station(home, lang, "ticket", "attach", ticket["id"], str(tmp_path / "missing.jpg"), ok=False)
    assert refused.exit_code != 0
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not a picture")
    refused = _station(home, lang, "ticket", "attach", ticket["id"], str(not_image), ok=False)
    assert refused.exit_code != 0 and {"zh": "不是能读取的图片", "en": "image"}[lang] in refused.output

    resident = json.loads(
        _station(home, lang, "resident", "add", "--name", "Zhang Min", "--grid", GRID, "--json").stdout
    )
    knock = _photo(tmp_path / "knock.jpg", 1000, 800)
    visit = _station(home, lang, "visit", "record", resident["id"], "--outcome", "unwell", "--photo", str(knock))
    assert {"zh": "照片已附在", "en": "Photo attached"}[lang] in visit.stdout
    with Replica.open(home / "replica.db", actor="clerk-zhang") as replica:
        made = replica.visits.list(resident_id=resident["id"])[0]
        assert len(made.attachments) == 1
        opened = Image.open(io.BytesIO(replica.attachments.open(made.attachments[0].id)))
        assert opened.size == (1000, 800)
        assert Image.open(io.BytesIO(replica.attachments.open(added["id"]))).size == (1600, 1200)


def test_a_courier_delivers_with_a_photo_that_only_the_station_opens(tmp_path: Path, lang: str) -> None:
    key = StationKey.generate()
    home = tmp_path / "chen"
    home.mkdir()
    photo = _photo(tmp_path / "door.jpg", 1200, 900)
    with (
        Replica.open(tmp_path / "station.db", actor="clerk") as station,
        Replica.open(home / "courier.db", actor="courier") as chen,
    ):
        station.install_station_key(key)
        courier.remember_station_key(chen, key.public_key)
        station.mailboxes.add(code="MB-1", name="Lane 1", grid="changnan/lane-1")
        chen.sync_with(station)
        courier.pickup(chen, "E-1", mailbox="MB-1")
        courier.handover(chen, "E-1")
        station.sync_with(chen)
        courier.confirm_handover(station, "E-1")
        chen.sync_with(station)
        courier.pickup(chen, "E-1")
    result = CliRunner().invoke(
        courier_cli,
        ["--home", str(home), "--lang", lang, "deliver", "E-1", "--confirm", "1234", "--photo", str(photo), "--json"],
    )
    assert result.exit_code == 0, result.output
    delivered = json.loads(result.stdout)
    assert delivered["stage"] == "delivered" and len(delivered["attachments"]) == 1
    said = CliRunner().invoke(courier_cli, ["--home", str(home), "--lang", lang, "status"])
    assert said.exit_code == 0
    with (
        Replica.open(tmp_path / "station.db", actor="clerk") as station,
        Replica.open(home / "courier.db", actor="courier") as chen,
    ):
        station.sync_with(chen)
        parcel = station.parcels.by_code("E-1")
        assert parcel is not None
        attachment = parcel.attachments[0]
        assert attachment.on == parcel.hops[-1].op_id  # on the hand-over at the door
        opened = station.attachments.open(attachment.id)
        assert Image.open(io.BytesIO(opened)).size == (1200, 900)
    raw = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    original = photo.read_bytes()
    assert original[5000:5064] not in raw and opened[5000:5064] not in raw and opened[-5064:-5000] not in raw
