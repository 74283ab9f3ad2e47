"""Commands that only read never change a file: they open it read-only, and a file that is not a replica (a
courier's bag, a relay bundle, a server's database, any other SQLite file, not SQLite at all) is refused with one
line that says what it is, byte for byte unchanged and with no tables added. Commands that write refuse such a
file the same way."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from caresync import Replica, StoreError
from caresync.cli import main
from caresync.store.store import identify
from caresync.sync.bundles.bag import Bag

GRID = "changnan/dorm/3"

READS = [
    ["ticket", "list"],
    ["ticket", "show", "1000"],
    ["ticket", "numbers"],
    ["resident", "list"],
    ["worker", "list"],
    ["visit", "due"],
    ["visit", "list"],
    ["conflicts", "list"],
    ["report"],
]


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file of the folder (the -wal and -shm beside a database too) with a hash of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _tables(path: Path) -> set[str]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def _others(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that are not replicas, each with the word its refusal must carry."""
    folder.mkdir()
    with Bag(folder / "carried.db"):
        pass
    plain = folder / "notes.db"
    with sqlite3.connect(plain) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    db.close()
    bundle = folder / "kiosk.bundle"
    bundle.write_text(json.dumps({"caresync_bundle": 1, "type": "ops", "ops": []}), encoding="utf-8")
    empty = folder / "empty.db"
    empty.write_bytes(b"")
    text = folder / "readme.db"
    text.write_text("not a database at all\n" * 10, encoding="utf-8")
    return {
        "bag": (folder / "carried.db", "courier's bag"),
        "plain": (plain, "SQLite database of something else"),
        "bundle": (bundle, "relay bundle"),
        "empty": (empty, "empty file"),
        "text": (text, "not an SQLite database"),
    }


@pytest.mark.parametrize("which", ["bag", "plain", "bundle", "empty", "text"])
def test_no_command_turns_another_file_into_a_replica(tmp_path: Path, which: str) -> None:
    path, word = _others(tmp_path / "files")[which]
    before = _fingerprint(path.parent)
    tables = _tables(path) if which in ("bag", "plain") else None
    runner = CliRunner(env={"CARESYNC_ACTOR": "clerk-zhang", "CARESYNC_LANG": "en"})
    writes = [
        ["init", "--actor", "clerk-zhang"],
        ["ticket", "submit", "--title", "x", "--kind", "repair", "--grid", GRID],
        ["resident", "add", "--name", "x", "--grid", GRID],
    ]
    for args in [*READS, *writes]:
        result = runner.invoke(main, ["--db", str(path), *args])
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and word in lines[0] and "Nothing was changed" in lines[0], (args, lines)
    inspected = runner.invoke(main, ["inspect", str(path)])
    assert inspected.exit_code == 1 and word in inspected.stderr
    assert _fingerprint(path.parent) == before  # not a byte changed, no -wal or -shm left beside it
    if tables is not None:
        assert _tables(path) == tables


def test_the_refusal_speaks_the_clerks_language(tmp_path: Path) -> None:
    path, _ = _others(tmp_path / "files")["bag"]
    result = CliRunner().invoke(main, ["--db", str(path), "--lang", "zh", "ticket", "list"])
    assert result.exit_code == 1 and "快递员的投递包" in result.stderr and "未作任何改动" in result.stderr


def test_reading_a_replica_leaves_it_byte_for_byte_unchanged(tmp_path: Path) -> None:
    folder = tmp_path / "desk"
    runner = CliRunner(env={"CARESYNC_HOME": str(folder), "CARESYNC_LANG": "en"})
    assert runner.invoke(main, ["init", "--actor", "clerk-zhang"]).exit_code == 0
    made = runner.invoke(main, ["ticket", "submit", "--title", "Leak", "--kind", "repair", "--grid", GRID, "--json"])
    number = json.loads(made.stdout)["number"]
    with Replica.open(folder / "replica.db", actor="check"):
        pass  # the last writer to close folds its write-ahead log into the file
    before = _fingerprint(folder)
    for args in [*READS, ["ticket", "show", number]]:
        result = runner.invoke(main, args)
        assert result.exit_code in (0, 1), (args, result.output)  # 1: ticket 1000 does not exist here
    assert runner.invoke(main, ["inspect", str(folder / "replica.db")]).exit_code == 0
    after = _fingerprint(folder)
    # SQLite's read-only connection to a write-ahead-log file leaves its empty log and its index beside it
    assert after.pop("replica.db-wal", hashlib.sha256(b"").hexdigest()) == hashlib.sha256(b"").hexdigest()
    after.pop("replica.db-shm", None)
    assert after == before


def test_a_replica_opened_read_only_refuses_every_change(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
        ticket = desk.tickets.submit(title="Leak", kind="repair", grid=GRID)
    with Replica.open(tmp_path / "desk.db", actor="reader", read_only=True) as reader:
        assert reader.tickets.get(ticket.id).title == "Leak"
        with pytest.raises(StoreError, match="open for reading only"):
            reader.tickets.note(ticket.id, "called")
        with pytest.raises(StoreError, match="open for reading only"):
            reader.tickets.submit(title="Another", kind="repair", grid=GRID)
    with Replica.open(tmp_path / "desk.db", actor="clerk") as desk:
        assert desk.tickets.get(ticket.id).notes == [] and len(desk.tickets.list()) == 1


def test_what_a_file_is(tmp_path: Path) -> None:
    files = _others(tmp_path / "files")
    assert {name: identify(path).kind for name, (path, _) in files.items()} == {
        "bag": "courier_bag",
        "plain": "sqlite",
        "bundle": "bundle",
        "empty": "empty",
        "text": "not_sqlite",
    }
    assert identify(tmp_path / "nowhere.db").kind == "missing"
    assert identify(tmp_path).kind == "folder"
    with Replica.open(tmp_path / "r.db", actor="clerk"):
        pass
    assert identify(tmp_path / "r.db").is_replica
    server_db = tmp_path / "server.db"
    from caresync_server.settings import Settings
    from caresync_server.storage import Storage

    storage = Storage(Settings(database_url=f"sqlite:///{server_db}"))
    try:
        storage.ensure_schema(create=True)
    finally:
        storage.close()
    assert identify(server_db).kind == "server_database"
    with pytest.raises(StoreError, match="server's database"):
        Replica.open(server_db, actor="reader", read_only=True)
