"""The replica file: schema versions and migration, ops from newer versions, redaction, the log's bookkeeping."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import SQLModel

import caresync.core.ops
import caresync.store.devicelog
import caresync.store.store
from caresync import InvalidInputError, Replica, StoreVersionError
from caresync.core.ops import FORMAT_VERSION
from caresync.store.schema import SCHEMA_VERSION
from caresync.testing import FakeClock, key_for, sign

from .conftest import ReplicaFactory

NEXT = FORMAT_VERSION + 1  # an op format newer than this library's

GRID = "changnan/teachers-dorm/3"
RELAY = key_for("a device running a newer caresync")


def _columns(conn: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {c[1] for c in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


def test_file_is_wal_and_versioned(make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    with sqlite3.connect(r.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_migrations_build_what_the_sqlmodel_tables_describe(tmp_path: Path, make_replica: ReplicaFactory) -> None:
    r = make_replica("station")
    engine_path = tmp_path / "metadata.db"
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{engine_path}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(r.path) as migrated, sqlite3.connect(engine_path) as described:
        assert _columns(migrated) == _columns(described)
    migrated.close()
    described.close()


def test_an_older_file_is_migrated_when_opened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.db"
    with Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        tid = r.tickets.submit(title="kept across the upgrade", kind="repair", grid=GRID).id
        old_id = r.id
    with sqlite3.connect(path) as conn:  # turn it back into a schema-1 file, from before devices had keys
        conn.execute("DROP TABLE blob_chunks")
        conn.execute("DROP TABLE blobs")
        conn.execute("DROP INDEX ix_ops_blobs")
        conn.execute("DROP INDEX ix_tickets_provisional")
        conn.execute("ALTER TABLE tickets DROP COLUMN number")
        conn.execute("DROP TABLE clock_anomalies")
        conn.execute("DROP TABLE pending")
        conn.execute("DROP TABLE refusals")
        conn.execute("DROP INDEX ix_ops_unsent")
        conn.execute("ALTER TABLE ops DROP COLUMN sent")
        conn.execute("ALTER TABLE ops DROP COLUMN sig")
        conn.execute("ALTER TABLE ops DROP COLUMN pd")
        conn.execute("DELETE FROM meta WHERE key IN ('device_key', 'chain_link')")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    with caplog.at_level(logging.INFO), Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        assert r.tickets.get(tid).title == "kept across the upgrade"
        assert r.clock_anomalies() == []
        assert r.unsent_count() == 1  # ops held before network sync existed still go to the server
        # the device now has a key, and signs as the key's fingerprint; its old op stays as it was written
        assert r.id == r.device_key.origin != old_id
        r.tickets.note(tid, "after the upgrade")
        old, new = r.history(tid)
        assert (old.device, old.signed_by) == (old_id, None)
        assert (new.device, new.signed_by) == (r.id, r.device_key.public_key.hex())
    assert f"from schema version 1 to {SCHEMA_VERSION}" in caplog.text


def test_a_schema_7_file_gets_its_tickets_numbers_and_the_index_of_provisional_ones(tmp_path: Path) -> None:
    """Version 8 copies each ticket's number out of its stored state (block, renumbered and provisional ones),
    and a sync's search for provisional numbers then finds the same tickets as on a file made new."""
    path = tmp_path / "old.db"
    with Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        renumbered, waiting = (r.tickets.submit(title=f"offline {i}", kind="repair", grid=GRID) for i in range(2))
        r.numbers.add_block(500, 1)
        assert r.device_log.renumber() == [(renumbered.number, "500")]  # the block covers the first only
        later = r.tickets.submit(title="still offline", kind="repair", grid=GRID)
        expected = {renumbered.id: "500", waiting.id: f"{r.id}-2", later.id: f"{r.id}-3"}
        assert dict(r.device_log.store.sql("SELECT id, number FROM tickets")) == expected
    with sqlite3.connect(path) as conn:  # turn it back into a schema-7 file
        conn.execute("DROP INDEX ix_tickets_provisional")
        conn.execute("ALTER TABLE tickets DROP COLUMN number")
        conn.execute("PRAGMA user_version = 7")
    conn.close()
    with Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        assert dict(r.device_log.store.sql("SELECT id, number FROM tickets")) == expected
        assert [t.id for t in r.tickets.provisional()] == [waiting.id, later.id]
        assert r.tickets.get(renumbered.id).former_numbers == [f"{r.id}-1"]
        index = r.device_log.store.sql("SELECT sql FROM sqlite_master WHERE name = 'ix_tickets_provisional'")
        assert index and "GLOB '*-*'" in index[0][0]


def test_renumbering_reads_the_oldest_provisional_tickets_the_blocks_cover_in_counter_order(
    make_replica: ReplicaFactory,
) -> None:
    """The device's counter orders its provisional tickets (``-9`` before ``-10``, which text order would not),
    and a block smaller than the backlog reads and numbers the oldest ones only."""
    r = make_replica("knocker")
    with r.batch():
        raised = [r.tickets.submit(title=f"r{i}", kind="repair", grid=GRID) for i in range(12)]
    assert r.device_log.provisional_count() == 12
    assert [s["id"] for s in r.device_log.provisional_tickets(limit=10)] == [t.id for t in raised[:10]]
    statements: list[str] = []
    r.device_log.store._db.set_trace_callback(statements.append)
    r.numbers.add_block(700, 10)
    given = r.device_log.renumber()
    assert given == [(t.number, str(700 + i)) for i, t in enumerate(raised[:10])]
    assert [t.id for t in r.tickets.provisional()] == [t.id for t in raised[10:]]
    assert r.device_log.provisional_count() == 2
    assert [s for s in statements if "SELECT state FROM tickets" in s and "LIMIT 10" in s]  # the block's 10 only


def test_rows_are_refolded_when_the_merge_rules_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "station.db"
    with Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        tid = r.tickets.submit(title="right", kind="repair", grid=GRID).id
    with sqlite3.connect(path) as conn:  # rows as an older fold would have left them, and its version
        conn.execute("UPDATE tickets SET title = 'stale', state = replace(state, '\"right\"', '\"stale\"')")
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'fold_version'")
    conn.close()
    with caplog.at_level(logging.INFO), Replica.open(path, actor="clerk", now_ms=FakeClock()) as r:
        assert r.tickets.get(tid).title == "right"
        assert r.device_log.store.sql("SELECT title FROM tickets")[0][0] == "right"
    assert "merge rules changed" in caplog.text


def test_a_file_from_a_newer_caresync_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with Replica.open(path, actor="clerk"):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreVersionError, match="upgrade caresync"):
        Replica.open(path, actor="clerk")


def test_ops_from_a_newer_version_are_kept_synced_and_folded_after_upgrade(
    tmp_path: Path, make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    station = make_replica("station")
    relay = make_replica("relay")
    tid = station.tickets.submit(title="old title", kind="repair", grid=GRID).id
    relay.sync_with(station)
    newer = {**station.export_ops()[-1]}
    newer.update(
        seq=2,
        v=NEXT,
        kind="ticket.set",
        hlc=newer["hlc"] + 1,
        body={"field": "title", "value": "written by caresync 2", "replaces": []},
    )
    unknown = {
        **newer,
        "seq": 3,
        "v": 1,
        "kind": "ticket.photo",
        "hlc": newer["hlc"] + 2,
        "body": {"sha256": "ab" * 32},
    }
    foreign = [newer, unknown]
    for op in foreign:
        op["origin"] = RELAY.origin
    unknown["seq"], newer["seq"] = 2, 1
    for op in foreign:
        sign(op, RELAY)

    with caplog.at_level(logging.WARNING):
        result = relay.apply_ops(foreign)
    assert (result.applied, result.deferred) == (0, 2)
    assert "cannot read yet" in caplog.text
    assert relay.tickets.get(tid).title == "old title"  # not folded ...
    assert sorted(k for k, _, _ in relay.deferred()) == ["ticket.photo", "ticket.set"]
    station.sync_with(relay)  # ... but kept and passed on
    assert station.op_count() == relay.op_count() == 3
    assert station.state_digest() == relay.state_digest()

    # "upgrade" to a caresync that knows format version 2 of ticket.set
    path = relay.path
    relay.close()
    monkeypatch.setattr(caresync.core.ops, "FORMAT_VERSION", NEXT)
    monkeypatch.setattr(caresync.store.devicelog, "FORMAT_VERSION", NEXT)
    with Replica.open(path, actor="relay") as upgraded:
        assert upgraded.tickets.get(tid).title == "written by caresync 2"
        assert [k for k, _, _ in upgraded.deferred()] == ["ticket.photo"]


def test_a_deferred_op_that_is_invalid_after_the_upgrade_stays_deferred(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    r = make_replica("relay")
    bad = {
        "v": NEXT,
        "kind": "ticket.set",
        "origin": RELAY.origin,
        "seq": 1,
        "hlc": 5 << 20,
        "eid": f"T-{RELAY.origin}-9",
        "actor": "x",
        "at": 5,
        "body": {"field": "title", "value": ["not", "a", "title"], "replaces": []},
    }
    assert r.apply_ops([sign(bad, RELAY)]).deferred == 1
    path = r.path
    r.close()
    monkeypatch.setattr(caresync.core.ops, "FORMAT_VERSION", NEXT)
    monkeypatch.setattr(caresync.store.devicelog, "FORMAT_VERSION", NEXT)
    with caplog.at_level(logging.WARNING), Replica.open(path, actor="relay") as upgraded:
        assert upgraded.deferred() == [("ticket.set", NEXT, 1)]
        assert upgraded.op_count() == 1
    assert "stays deferred" in caplog.text


def test_gaps_are_tracked_and_filled(make_replica: ReplicaFactory) -> None:
    a = make_replica("a")
    b = make_replica("b")
    tid = a.tickets.submit(title="t", kind="repair", grid=GRID).id
    for i in range(4):
        a.tickets.note(tid, f"note {i}")
    ops = a.export_ops()
    b.apply_ops([ops[0], ops[3], ops[4]])
    assert b.version_vector() == {a.id: 1}
    assert b.op_count() == 3
    b.apply_ops([ops[1], ops[2], ops[3]])  # one duplicate
    assert b.version_vector() == {a.id: 5}
    assert b.state_digest() == a.state_digest()


def test_redaction_erases_personal_data_everywhere(make_replica: ReplicaFactory) -> None:
    station, phone, relay = make_replica("station"), make_replica("phone"), make_replica("relay")
    resident = station.residents.register(
        name="Zhang Guilan",
        grid=GRID,
        phone="138 5555 0199",
        address="3 Teachers' Dorm",
        birth_year=1941,
        flags=["lives_alone"],
    )
    station.residents.note(resident.id, "daughter Zhang Min in Shenzhen")
    phone.sync_with(station)
    phone.residents.edit(resident.id, phone="139 5555 0199")  # made offline, reaches others after the redaction
    tid = station.tickets.submit(title="Leaking roof", kind="repair", grid=GRID, resident_id=resident.id).id
    station.residents.redact(resident.id, reason="moved away and asked to be forgotten")
    relay.sync_with(station)
    relay.sync_with(phone)  # the old edit arrives after the redaction: erased on arrival
    station.sync_with(relay)
    phone.sync_with(relay)
    for r in (station, phone, relay):
        got = r.residents.get(resident.id)
        assert (got.name, got.phone, got.address, got.birth_year) == (None, None, None, None)
        assert [n.text for n in got.notes] == [None]
        assert got.flags == ["lives_alone"] and got.grid == GRID  # what reports count stays
        assert r.tickets.get(tid).resident_id == resident.id
        # the raw bytes of the open replica's files (database and write-ahead log) hold none of it
        raw = b"".join(p.read_bytes() for p in r.path.parent.glob(r.path.name + "*"))
        for secret in ("Zhang Guilan", "5555 0199", "Teachers' Dorm", "Zhang Min"):
            assert secret.encode() not in raw, (r.path.name, secret)
    assert station.state_digest() == phone.state_digest() == relay.state_digest()


def test_a_new_file_takes_the_device_key_it_is_given_and_keeps_it(tmp_path: Path) -> None:
    key = key_for("the kiosk in the lobby")
    with Replica.open(tmp_path / "kiosk.db", actor="kiosk", device_key=key) as r:
        assert r.id == key.origin
    with Replica.open(tmp_path / "kiosk.db", actor="kiosk") as r:
        assert r.device_key.public_key == key.public_key
    with pytest.raises(InvalidInputError, match="another device's key"):
        Replica.open(tmp_path / "kiosk.db", actor="kiosk", device_key=key_for("someone else"))


def test_a_large_batch_into_an_empty_replica_rebuilds_the_indexes_and_reads_the_same(
    make_replica: ReplicaFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_replica("a"), make_replica("b")
    ids = [a.tickets.submit(title=f"Leak {i}", kind="repair", grid=GRID).id for i in range(6)]
    b.sync_with(a)
    for round_ in range(3):  # both devices edit the same tickets: the batch is not in HLC order
        for i, tid in enumerate(ids):
            a.tickets.edit(tid, title=f"Leak {i}, round {round_}")
            b.tickets.edit(tid, priority="high" if round_ % 2 else "low")
        a.sync_with(b)
    ops = a.export_ops()
    shuffled = list(reversed(ops))

    def indexes(r: Replica) -> list[tuple[str, str]]:
        return r.device_log.store.sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name")

    row_by_row = make_replica("row_by_row")
    row_by_row.apply_ops(ops)
    monkeypatch.setattr(caresync.store.store, "_BULK", 1)
    for name, batch in (("bulk", ops), ("bulk_shuffled", shuffled)):
        bulk = make_replica(name)
        bulk.apply_ops(batch)
        assert bulk.state_digest() == row_by_row.state_digest() == a.state_digest()
        assert indexes(bulk) == indexes(row_by_row)
        assert [t.title for t in bulk.tickets.list(grid=GRID)] == [t.title for t in a.tickets.list(grid=GRID)]


def test_the_log_is_copied_into_the_file_by_a_thread_of_its_own_soon_after_a_commit(
    make_replica: ReplicaFactory,
) -> None:
    """A commit does not wait for the write-ahead log to be copied into the file (automatic checkpoints are off),
    yet the copy follows within moments, and closing the replica ends the thread that makes it."""
    a, b = make_replica("a"), make_replica("b")
    assert a.device_log.store.sql("PRAGMA wal_autocheckpoint") == [(0,)]
    title = "Checkpointed: the lift on the 7th floor"
    for i in range(50):
        a.tickets.submit(title=f"Leak {i}", kind="repair", grid=GRID)
    a.tickets.submit(title=title, kind="repair", grid=GRID)
    b.apply_ops(a.export_ops())
    deadline = time.monotonic() + 20
    while title.encode() not in Path(b.path).read_bytes():  # only in the log until it is checkpointed
        assert time.monotonic() < deadline, "the log was not copied into the file"
        time.sleep(0.05)
    threads = [r.device_log.store._checkpointer._thread for r in (a, b)]
    assert all(t is not None and t.name == "caresync-checkpoint" for t in threads)
    a.close()
    b.close()
    assert not any(t is not None and t.is_alive() for t in threads)


def test_closing_never_waits_forever_for_the_checkpoint_thread(tmp_path: Path) -> None:
    """A stop that lands just before the thread clears its wake-up (after waiting out a burst of commits) still
    ends it: such a stop once left close() joining forever. The race is forced here, not waited for."""
    with Replica.open(tmp_path / "r.db", actor="a", now_ms=FakeClock()):
        pass  # a replica file with its log
    checkpointer = caresync.store.store._Checkpointer(tmp_path / "r.db", logging.getLogger("test"))
    stopper = threading.Thread(target=checkpointer.stop, daemon=True)

    class StopLandsBeforeTheClear(threading.Event):
        def clear(self) -> None:
            if not stopper.is_alive() and stopper.ident is None:
                stopper.start()
                while not checkpointer._stopping.is_set():
                    time.sleep(0.001)
                time.sleep(0.05)  # stop() has set the wake-up too, and joins
            super().clear()

    checkpointer._wake = StopLandsBeforeTheClear()
    checkpointer.poke()
    deadline = time.monotonic() + 10
    while stopper.ident is None and time.monotonic() < deadline:
        time.sleep(0.01)
    stopper.join(10)
    assert stopper.ident is not None and not stopper.is_alive(), "close() still waiting for the checkpoint thread"
