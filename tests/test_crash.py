"""Crash safety with real processes: a sync killed with SIGKILL at any point leaves a sound replica.

A module fixture builds a source replica with a large history: about 40,000 ops on 2,000 tickets, written
by four devices with interleaved clocks (so a destination receives many ops "from the past" and re-folds
records) plus a few writes through the public API. Each test starts a child process
(``crash_helpers/sync_child.py``) that syncs an empty destination from the source in batches and kills it
with SIGKILL while the parent watches the destination through its own read-only SQLite connection:

* ``natural``: once the destination holds a given share of the ops, the next sync transaction is killed at
  a random moment (fixed seed) after it inserted its ops, typically before it commits;
* ``stalled``: the child pauses inside a transaction right after inserting a batch's ops and before the
  records are written, and is killed there (the deterministic "ops written, rows not" crash point);
* ``one_big_batch``: one transaction holds the whole history and is killed once uncommitted pages have
  reached the WAL file: afterwards the destination holds all of it or none of it.

The child reports the destination's transaction boundaries on stdout, so the parent knows exactly how many
ops had been committed when it died. Afterwards the destination must open, pass SQLite's integrity check,
hold exactly the committed batches (never part of one), have every materialised row equal to a fresh fold
of its stored ops (the log and the rows agree: both or neither), a consistent version vector and working
queries; and one more in-process sync must make it identical to the source: nothing lost.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import from_json, to_json

from caresync import Replica
from caresync.core.clock import pack_hlc
from caresync.core.merge import fold, value_of
from caresync.store.schema import ENTITY_TABLES, row_values, upsert_sql
from caresync.testing import key_for, sign

pytestmark = pytest.mark.slow

HELPER = Path(__file__).parent / "crash_helpers" / "sync_child.py"
BATCH = 500
SYNTH_TICKETS = 1_980
SYNTH_OPS = 39_900
API_TICKETS = 20
BASE_MS = 1_700_000_000_000  # 2023-11-14: the devices' stamps lie in the past, so no clock anomalies
KEYS = {key.origin: key for key in (key_for(f"crash-device-{c}") for c in "abcd")}
DEVICES = sorted(KEYS)
CHILD_TIMEOUT_S = 120.0

#: Where each kill landed: test id -> (landing, ops committed at the kill, ops held after it, ops in all).
KILLS: dict[str, tuple[str, int, int, int]] = {}


# --- the source -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    total: int
    tickets: int
    digest: str
    vv: dict[str, int]


def _history(seed: int = 20261129) -> list[dict[str, Any]]:
    """Ops of four devices on SYNTH_TICKETS tickets: creates, notes, title edits (some concurrent), accepts."""
    rng = random.Random(seed)
    seqs = dict.fromkeys(DEVICES, 0)
    tickets: list[str] = []
    title_heads: dict[str, list[list[str]]] = {}
    status_heads: dict[str, list[str]] = {}
    ops: list[dict[str, Any]] = []

    def emit(device: str, kind: str, eid: str | None, body: dict[str, Any]) -> tuple[str, str]:
        seqs[device] += 1
        seq = seqs[device]
        at = BASE_MS + 7 * len(ops)  # one global order of wall times: each device's stamps rise with its seq
        eid = eid or f"T-{device}-{seq}"
        ops.append(
            {
                "v": 1,
                "kind": kind,
                "origin": device,
                "seq": seq,
                "hlc": pack_hlc(at, len(ops) % 3),
                "eid": eid,
                "actor": f"worker-{device[0]}",
                "at": at,
                "body": body,
            }
        )
        sign(ops[-1], KEYS[device])
        return f"{device}:{seq}", eid

    while len(ops) < SYNTH_OPS:
        device = rng.choice(DEVICES)
        if len(tickets) < SYNTH_TICKETS and len(tickets) * SYNTH_OPS <= len(ops) * SYNTH_TICKETS:
            body = {
                "title": f"Ticket {len(tickets)}",
                "kind": rng.choice(["repair", "errand", "wish"]),
                "channel": "walk_in",
                "grid": rng.choice(["changnan/dorm/3", "changnan/dorm/4", "xishan/lane-2/7"]),
                "due_at": BASE_MS + 172_800_000,
            }
            op_ref, eid = emit(device, "ticket.create", None, body)
            tickets.append(eid)
            title_heads[eid] = [[op_ref]]
            status_heads[eid] = []
            continue
        eid = rng.choice(tickets[-100:]) if rng.random() < 0.8 else rng.choice(tickets)
        roll = rng.random()
        if roll < 0.7:
            emit(device, "ticket.note", eid, {"text": f"note {len(ops)} " + "x" * rng.randint(0, 60)})
        elif roll < 0.95:
            history = title_heads[eid]
            # usually the author saw the latest title; sometimes an older one (a concurrent edit: a conflict)
            seen = history[-1] if rng.random() < 0.8 else history[max(0, len(history) - 3)]
            op_ref, _ = emit(device, "ticket.set", eid, {"field": "title", "value": f"t{len(ops)}", "replaces": seen})
            history.append([h for h in history[-1] if h not in seen] + [op_ref])
        else:
            body = {"action": "accept", "follows": status_heads[eid], "assignee": f"W-{device}-1"}
            op_ref, _ = emit(device, "ticket.transition", eid, body)
            status_heads[eid] = [op_ref]
    return ops


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("crash-source") / "source.db"
    ops = _history()
    with Replica.open(path, actor="station-clerk") as src:
        for i in range(0, len(ops), 10_000):
            src.apply_ops(ops[i : i + 10_000])
        synthetic = [r[0] for r in src.device_log.store.sql("SELECT id FROM tickets ORDER BY id LIMIT 30")]
        with src.batch():  # and some history written here, through the public API
            for i in range(API_TICKETS):
                t = src.tickets.submit(title=f"Boiler {i} leaks", kind="repair", grid="changnan/dorm/3")
                src.tickets.note(t.id, "resident called again")
            for eid in synthetic:
                src.tickets.note(eid, "checked by the station")
                src.tickets.edit(eid, title=f"{eid} (checked)")
        _assert_consistent(src)
        total = src.op_count()
        tickets = src.device_log.store.sql("SELECT COUNT(*) FROM tickets WHERE complete = 1")[0][0]
        assert tickets == SYNTH_TICKETS + API_TICKETS
        assert src.device_log.store.sql("SELECT SUM(conflicts) FROM tickets")[0][0] > 0, (
            "expected some concurrent edits"
        )
        return Source(path=path, total=total, tickets=tickets, digest=src.state_digest(), vv=src.version_vector())


# --- the child and what it reports ----------------------------------------------------------------------------


@dataclass
class ChildLog:
    """What the child reported on stdout about the destination's transactions."""

    proc: subprocess.Popen[bytes]
    eof: bool = False
    buf: bytes = b""
    replica_id: str | None = None
    done: bool = False
    stalled: bool = False
    in_txn: bool = False
    committing: bool = False
    committed: int = 0  # ops of committed transactions
    pending: int = 0  # ops inserted by the open transaction
    inserts: int = 0  # "insert-ops" lines seen
    inserted_at: float = 0.0
    durations: list[float] = field(default_factory=list)  # insert -> commit, per transaction

    def pump(self, timeout: float) -> bool:
        """Reads what the child wrote, waiting at most ``timeout`` seconds for something; False if nothing."""
        if self.eof:
            time.sleep(timeout)
            return False
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return False
        data = os.read(fd, 1 << 16)
        if not data:
            self.eof = True
            return False
        *lines, self.buf = (self.buf + data).split(b"\n")
        for line in lines:
            self._on(line.decode().split())
        return True

    def _on(self, words: list[str]) -> None:
        now = time.monotonic()
        match words:
            case ["started", replica_id]:
                self.replica_id = replica_id
            case ["begin"]:
                self.in_txn, self.committing, self.pending = True, False, 0
            case ["insert-ops", n]:
                self.pending += int(n)
                self.inserts += 1
                self.inserted_at = now
            case ["stalled"]:
                self.stalled = True
            case ["committing"]:
                self.committing = True
            case ["commit"]:
                self.committed += self.pending
                self.in_txn, self.committing, self.pending = False, False, 0
                self.durations.append(now - self.inserted_at)
            case ["done", _]:
                self.done = True
            case _:
                raise AssertionError(f"unexpected line from the child: {words}")

    def drain(self) -> None:
        """Reads everything the child has written so far."""
        while self.pump(0):
            pass

    @property
    def finished(self) -> bool:
        return self.done or self.eof

    def wait_for(self, what: str, condition: Any, deadline: float) -> None:
        while not condition():
            if self.eof:
                raise AssertionError(f"the child exited (code {self.proc.poll()}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self.pump(0.05)

    def kill(self) -> None:
        """SIGKILL, then reads everything the child wrote before it died."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        while not self.eof:
            self.pump(1.0)

    def landing(self) -> str:
        """Where the child was when it died."""
        if self.done:
            return "after-sync"
        if self.committing:
            return "during-commit"
        if self.in_txn:
            return "in-transaction-after-insert" if self.pending else "in-transaction-before-insert"
        return "between-transactions"

    def allowed_counts(self) -> set[int]:
        """How many ops the destination may hold after the kill: the committed ones, exactly."""
        if self.committing:  # killed while COMMIT ran: that transaction may or may not have made it
            return {self.committed, self.committed + self.pending}
        return {self.committed}


def _observe(ro: sqlite3.Connection) -> int:
    """The destination's op count as another reader sees it; the log and the origins table must agree."""
    ops, held = ro.execute("SELECT (SELECT COUNT(*) FROM ops), (SELECT COALESCE(SUM(held), 0) FROM origins)").fetchone()
    assert ops == held, f"a reader saw {ops} ops but origins counting {held}"
    return int(ops)


def _run_and_kill(
    tmp_path: Path, source: Source, *, batch_size: int, stall_at: int, kill_when: Any
) -> tuple[Path, ChildLog, list[int]]:
    """Starts the child, lets ``kill_when(log, ro, observed, deadline)`` decide when to kill it, kills it."""
    dst = tmp_path / "dest.db"
    cmd = [sys.executable, str(HELPER), str(source.path), str(dst), str(batch_size), str(stall_at)]
    observed: list[int] = []
    with (
        open(tmp_path / "child.stderr", "wb") as err,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc,
    ):
        log = ChildLog(proc)
        try:
            deadline = time.monotonic() + CHILD_TIMEOUT_S
            log.wait_for("it started", lambda: log.replica_id is not None, deadline)
            with closing(sqlite3.connect(f"{dst.as_uri()}?mode=ro", uri=True, timeout=10)) as ro:
                kill_when(log, ro, observed, deadline)
                if not log.finished:
                    log.kill()
                with suppress(sqlite3.OperationalError):  # a reader may find the WAL index needing recovery
                    observed.append(_observe(ro))
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            print((tmp_path / "child.stderr").read_text(errors="replace"), file=sys.stderr)
            raise
        finally:
            while not log.eof:
                log.pump(1.0)
    if log.done:
        assert proc.returncode == 0, (tmp_path / "child.stderr").read_text()
    else:
        assert proc.returncode == -signal.SIGKILL, (tmp_path / "child.stderr").read_text()
    return dst, log, observed


# --- what must hold after a crash -----------------------------------------------------------------------------


def _columns(entity: str) -> list[str]:
    match = re.search(r"\((.*?)\) VALUES", upsert_sql(entity))
    assert match is not None
    return match.group(1).split(", ")


def _assert_consistent(r: Replica) -> None:
    """The materialised rows, the op log and the origins table of a replica agree with each other."""
    sql = r.device_log.store.sql
    assert sql("PRAGMA integrity_check") == [("ok",)]
    assert sql("PRAGMA foreign_key_check") == []
    n_ops = sql("SELECT COUNT(*) FROM ops")[0][0]
    assert r.op_count() == n_ops

    # every record with known ops has a row, every row has ops, and each row is the fold of its ops
    eids_by_entity: dict[str, set[str]] = {entity: set() for entity in ENTITY_TABLES}
    for eid, kind in sql("SELECT DISTINCT eid, kind FROM ops WHERE known = 1"):
        eids_by_entity[kind.partition(".")[0]].add(eid)
    for entity, model in ENTITY_TABLES.items():
        columns = _columns(entity)
        rows = sql(f"SELECT {', '.join(columns)} FROM {model.__tablename__}")
        assert {row[0] for row in rows} == eids_by_entity[entity], f"{entity} rows and ops disagree"
        state_at = columns.index("state")
        for row in rows:
            expected = from_json(to_json(fold(entity, row[0], r.device_log.store.ops_of(row[0]))))
            stored = from_json(row[state_at])
            assert stored == expected, f"{entity} {row[0]}: the stored state is not the fold of its ops"
            want = row_values(expected)
            want[state_at] = row[state_at]  # the state itself was compared as data just above
            assert list(row) == want, f"{entity} {row[0]}: materialised columns disagree with its state"

    # the origins table (version vector, counts, clocks) agrees with the log
    origins = {o: (c, h, m) for o, c, h, m in sql("SELECT origin, contig, held, max_hlc FROM origins")}
    log = {
        o: (n, top, m) for o, n, top, m in sql("SELECT origin, COUNT(*), MAX(seq), MAX(hlc) FROM ops GROUP BY origin")
    }
    assert set(origins) == set(log)
    for origin, (contig, held, max_hlc) in origins.items():
        n, top, top_hlc = log[origin]
        assert held == n, f"origin {origin}: held {held}, but {n} ops stored"
        assert max_hlc == top_hlc
        seqs = [s for (s,) in sql("SELECT seq FROM ops WHERE origin = ? ORDER BY seq", (origin,))]
        expected_contig = next((i for i, s in enumerate(seqs) if s != i + 1), len(seqs))
        assert contig == expected_contig, f"origin {origin}: contig {contig}, log says {expected_contig}"
        if top == n:  # no gaps
            assert contig == n
    assert r.version_vector() == {o: c for o, (c, _, _) in origins.items()}


def _assert_recovered(dst: Path, source: Source, log: ChildLog, test_id: str) -> int:
    """Opens the killed destination, checks it, and syncs it to the end. Returns the ops it held."""
    with Replica.open(dst, actor="after-crash") as r:
        assert r.id == log.replica_id, "the replica's identity must survive the crash"
        held = r.device_log.store.sql("SELECT COUNT(*) FROM ops")[0][0]
        KILLS[test_id] = (log.landing(), log.committed, held, source.total)
        assert held in log.allowed_counts(), (
            f"killed {log.landing()} with {log.committed} ops committed (+{log.pending} pending): holds {held}"
        )
        assert held == source.total or held % BATCH == 0, f"{held} ops: part of a batch survived"
        _assert_consistent(r)

        created = r.device_log.store.sql(
            "SELECT COUNT(DISTINCT eid) FROM ops WHERE kind = 'ticket.create' AND known = 1"
        )
        listed = r.tickets.list()
        assert len(listed) == created[0][0]
        if listed:
            some = max(listed, key=lambda t: len(t.notes))
            state = r.device_log.store.state("ticket", some.id)
            assert state is not None
            got = r.tickets.get(some.id)
            assert got.title == value_of(state, "title")
            assert len(got.notes) == len(state["c"].get("notes", []))
            assert (
                len(got.conflicts)
                == r.device_log.store.sql("SELECT conflicts FROM tickets WHERE id = ?", (some.id,))[0][0]
            )

        # nothing lost: one more sync makes it the source's twin (the source's digest is taken once, in the
        # fixture: nothing writes to the source, which the version vector and op count below confirm)
        with Replica.open(source.path, actor="station-clerk") as src:
            r.sync_with(src, batch_size=source.total)  # the rest in one go
            assert r.op_count() == src.op_count() == source.total
            assert r.version_vector() == src.version_vector() == source.vv
        assert r.state_digest() == source.digest
        assert r.device_log.store.sql("SELECT COUNT(*) FROM tickets WHERE complete = 1")[0][0] == source.tickets
    return int(held)


# --- the tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.1, 0.4, 0.7], ids=["early", "middle", "late"])
def test_kill_mid_sync(tmp_path: Path, source: Source, share: float, request: pytest.FixtureRequest) -> None:
    """Killed at a random moment of the transaction after the destination holds ``share`` of the ops."""
    rng = random.Random(f"crash-{share}")
    threshold = int(source.total * share)

    def kill_when(log: ChildLog, ro: sqlite3.Connection, observed: list[int], deadline: float) -> None:
        while not log.finished:  # poll the destination's op count through another connection
            observed.append(_observe(ro))
            if observed[-1] >= threshold:
                break
            assert time.monotonic() < deadline, "timed out waiting for the sync to progress"
            log.pump(0.005)
        log.drain()
        seen = log.inserts  # the next transaction to insert its ops dies a little later
        while not log.finished and log.inserts == seen:
            assert time.monotonic() < deadline, "timed out waiting for the next batch"
            log.pump(0.05)
        if not log.finished:
            typical = statistics.median(log.durations[-10:]) if log.durations else 0.05
            time.sleep(rng.uniform(0.05, 0.6) * typical)

    dst, log, observed = _run_and_kill(tmp_path, source, batch_size=BATCH, stall_at=0, kill_when=kill_when)
    # a reader never saw part of a batch
    assert all(n == source.total or n % BATCH == 0 for n in observed), Counter(n % BATCH for n in observed)
    held = _assert_recovered(dst, source, log, request.node.name)
    assert 0 < held < source.total, f"the kill should land mid-sync (landed {log.landing()}, {held} ops held)"


def test_kill_after_ops_inserted_before_rows_written(tmp_path: Path, source: Source) -> None:
    """The child pauses in its 20th transaction between inserting the ops and writing the records; killed."""
    stall_at = 20

    def kill_when(log: ChildLog, ro: sqlite3.Connection, observed: list[int], deadline: float) -> None:
        log.wait_for("the child to stall", lambda: log.stalled, deadline)
        observed.append(_observe(ro))  # the inserted but uncommitted ops are invisible to other readers

    dst, log, observed = _run_and_kill(tmp_path, source, batch_size=BATCH, stall_at=stall_at, kill_when=kill_when)
    assert log.landing() == "in-transaction-after-insert"
    assert log.committed == (stall_at - 1) * BATCH and log.pending == BATCH
    assert observed[0] == log.committed and set(observed) == {log.committed}
    held = _assert_recovered(dst, source, log, "stalled")
    assert held == (stall_at - 1) * BATCH


def test_kill_inside_one_big_batch(tmp_path: Path, source: Source) -> None:
    """The whole history in one transaction, killed once its uncommitted pages reached the WAL: all or none."""
    wal = tmp_path / "dest.db-wal"
    spilled: list[int] = []

    def kill_when(log: ChildLog, ro: sqlite3.Connection, observed: list[int], deadline: float) -> None:
        log.wait_for("the ops to be inserted", lambda: log.inserts > 0, deadline)
        start = wal.stat().st_size if wal.exists() else 0
        while not (log.finished or log.committing):
            size = wal.stat().st_size if wal.exists() else 0
            observed.append(_observe(ro))
            if size - start >= 4 << 20:  # 4 MiB of this transaction's pages are in the WAL, uncommitted
                spilled.append(size - start)
                break
            assert time.monotonic() < deadline, "timed out waiting for the transaction to spill"
            log.pump(0.005)

    dst, log, observed = _run_and_kill(tmp_path, source, batch_size=10 * source.total, stall_at=0, kill_when=kill_when)
    assert log.pending == source.total or log.committed == source.total
    assert set(observed) <= {0, source.total}
    held = _assert_recovered(dst, source, log, "one-big-batch")
    assert held in (0, source.total)
    if log.landing() == "in-transaction-after-insert":
        assert spilled and held == 0


def test_some_kill_landed_inside_a_transaction() -> None:
    """Across the runs above, at least one kill hit an open transaction that had already inserted ops while
    earlier batches were committed (a partial state): the case crash safety is about."""
    if len(KILLS) < 5:
        pytest.skip("runs only after the other crash tests of this module")
    assert any(
        landing == "in-transaction-after-insert" and 0 < held < total for landing, _, held, total in KILLS.values()
    ), KILLS
