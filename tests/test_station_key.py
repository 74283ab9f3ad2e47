"""The station key pinned (issue 15), against a real server process: set up with the `caresync station-key`
commands, learned by devices whatever the order of set-up, rotated with the old key's signature, and a replacement
nobody signed refused by every device (and shown), which keeps sealing to the key it pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from caresync_server.testing import ServerProcess, issue_code
from click.testing import CliRunner

from caresync import Replica, ServerRefusedError, StationKey, TrustError
from caresync.cli import main
from caresync.sync import stationkey
from caresync.trust.keys import StationKeyLink, follow_station_chain

GRID = "changnan/dorm/3"
NOTE_AFTER_ROTATION = "Marker-Rotated-Kp4 她说药快吃完了"
NOTE_AFTER_FORGERY = "Marker-Forged-Kp4 邻居说她两天没出门"


def _caresync(db: Path, *args: str) -> Any:
    """The station's `caresync` command on the replica file ``db`` (JSON out)."""
    done = CliRunner().invoke(main, ["--json", "--db", str(db), *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def _server_admin(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The server admin's `caresync-server` program, as a real process over the server's database."""
    env = {**os.environ, "CARESYNC_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "caresync_server", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_station_key_is_pinned_rotated_with_a_signature_and_a_forgery_is_refused(
    tmp_path: Path, database_url: str
) -> None:
    codes = {
        name: issue_code(database_url, name, role=role, grids=grids)
        for name, role, grids in (
            ("desk", "station", [""]),
            ("community-desk", "station", ["changnan"]),
            ("knocker-fang", "knocker", [GRID]),
        )
    }
    server = ServerProcess(database_url, tmp_path).start()
    try:
        with (
            Replica.open(tmp_path / "community.db", actor="clerk-2") as community,
            Replica.open(tmp_path / "knocker.db", actor="fang") as knocker,
        ):
            # every device enrolled before the station has a key
            with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
                desk.enroll(server.url, codes["desk"])
                resident = desk.residents.register(name="Wang", grid=GRID)  # no key yet: the desk keeps it unsent
                assert desk.sync().held == 1
            for replica, name in ((community, "community-desk"), (knocker, "knocker-fang")):
                replica.enroll(server.url, codes[name])
            assert knocker.station_public_key is None

            # the station sets its key up with the station commands, no Python
            made = _caresync(tmp_path / "desk.db", "station-key", "create")
            assert made["holds_station_key"] and made["pinned"] == made["station_key"]
            _caresync(tmp_path / "desk.db", "station-key", "register")
            first = bytes.fromhex(made["station_key"])
            with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
                assert desk.sync().pushed == 1  # sealed now, sent
            # a station device of one community may not register or replace it
            stationkey.create_station_key(community)
            with pytest.raises(ServerRefusedError) as refused:
                stationkey.register_station_key(community)
            assert (refused.value.status, refused.value.server_code) == (403, "forbidden")

            knocker.sync()  # learns the key at its next sync, whatever the order of set-up
            assert knocker.station_signing_key == first
            knocker.sync()  # fetches the resident the desk sent once it was sealed

            # a rotation signed by the old key is followed
            rotated = _caresync(tmp_path / "desk.db", "station-key", "rotate")
            second = bytes.fromhex(rotated["station_key"])
            assert rotated["rotations"] == 1 and second != first
            knocker.sync()
            assert knocker.station_signing_key == second
            knocker.residents.note(resident.id, NOTE_AFTER_ROTATION)
            knocker.sync()

            # the server's admin replaces the key on the database: nobody's rotation; devices refuse it
            forged = StationKey.generate()
            assert forged.signing_public_key is not None
            unsigned = _server_admin(database_url, "station-key", "set", forged.signing_public_key.hex())
            assert unsigned.returncode != 0 and "rotation signed by it" in unsigned.stderr
            replaced = _server_admin(database_url, "station-key", "set", forged.signing_public_key.hex(), "--replace")
            assert replaced.returncode == 0, replaced.stderr
            result = knocker.sync()
            problem = result.station_key_problem
            assert problem is not None and forged.signing_public_key.hex() in problem
            assert knocker.station_signing_key == second  # it keeps the key it pinned, and seals to it
            synced = _caresync(tmp_path / "knocker.db", "sync")  # the program says it too
            assert forged.signing_public_key.hex() in synced["station_key_problem"]
            shown = _caresync(tmp_path / "knocker.db", "station-key", "show")
            assert shown["pinned"] == second.hex() and forged.signing_public_key.hex() in shown["problem"]
            with pytest.raises(TrustError):  # nor can it be given another key by hand
                knocker.set_station_public_key(forged.public_key)
            knocker.residents.note(resident.id, NOTE_AFTER_FORGERY)
            knocker.sync()

            with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
                desk.sync()
                found = desk.enrolment()
                assert found is not None and found.station_key_problem is not None  # the desk refuses it too
                texts = [n.text for n in desk.residents.get(resident.id).notes]
                assert texts == [NOTE_AFTER_ROTATION, NOTE_AFTER_FORGERY]  # the station reads both: its key
                assert desk.residents.get(resident.id).name == "Wang"  # sealed to the first key, still opened
            # the knocker reads its grid's notes with the readers' key the desk granted it (not the station's key)
            assert knocker.station_key is None and knocker.device_log.readers_keys
            assert knocker.residents.get(resident.id).notes[-1].text == NOTE_AFTER_FORGERY
        for path in (tmp_path / "knocker.db",):
            raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
            for marker in (NOTE_AFTER_ROTATION, NOTE_AFTER_FORGERY):
                assert marker.encode() not in raw
    finally:
        server.stop()


def test_a_chain_is_followed_only_from_the_pinned_key_through_valid_signatures() -> None:
    a, b, c, forger = (StationKey.generate() for _ in range(4))
    links = [
        StationKeyLink(a.signing_public_key or b""),
        StationKeyLink(b.signing_public_key or b"", a.sign_rotation(b)),
        StationKeyLink(c.signing_public_key or b"", b.sign_rotation(c)),
    ]
    assert follow_station_chain(None, None, links) == links[-1]  # first sight: the newest
    assert follow_station_chain(a.signing_public_key, None, links) == links[-1]  # two rotations at once
    assert follow_station_chain(None, a.public_key, links) == links[-1]  # pinned by the sealing key only
    assert follow_station_chain(c.signing_public_key, None, links) == links[-1]
    assert follow_station_chain(a.signing_public_key, None, []) is None
    with pytest.raises(TrustError, match="no rotation signed"):
        follow_station_chain(forger.signing_public_key, None, links)
    spliced = [*links[:2], StationKeyLink(forger.signing_public_key or b"", forger.sign_rotation(forger))]
    with pytest.raises(TrustError, match="did not sign it"):
        follow_station_chain(a.signing_public_key, None, spliced)
    unsigned = [links[0], StationKeyLink(forger.signing_public_key or b"")]
    with pytest.raises(TrustError, match="did not sign it"):
        follow_station_chain(a.signing_public_key, None, unsigned)
    legacy = StationKey.from_x25519(bytes(range(32)))
    assert legacy.legacy and legacy.signing_public_key is None
    with pytest.raises(TrustError, match="earlier release"):
        legacy.sign_rotation(a)
