"""The benchmark cases. Each runs in its own process (see ``_worker``) and returns one row of the table.

Only the part each case says it measures is timed; building inputs (rows, source replicas, updates) is not.
Heavy imports (caresync, loro, pycrdt) happen inside the cases, so a process pays only for what it runs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .workload import GRID, KIND, Plan, make_plan

if TYPE_CHECKING:
    from caresync import Replica

__all__ = ["CASES", "Case", "Config", "Row", "select"]

Row = dict[str, Any]

#: Local writes with one transaction per op run on at most this many ops over this many records.
COMMIT_EACH_MAX_OPS = 5000
COMMIT_EACH_MAX_RECORDS = 500
#: How many out-of-order (and in-order) ops the refold cases apply.
REFOLD_OPS = 1000
#: How many records the correctness checks after a timed run look at.
CHECK_SAMPLE = 50
#: How many single writes, each its own transaction, ``caresync_local_writes/one`` times one by one.
ONE_WRITE_COUNT = 2000
#: Made-up replica ids for hand-built ops.
LATE_DEVICE = "benchmark: a device whose edits arrive late"
NEWER_DEVICE = "benchmark: a device whose edits are newer than everything"
FLOOR_ORIGIN = "f100f100f100f100"
LATE_VALUE = "late edit"
NEWER_VALUE = "newer edit"
#: The row every other row's speed is compared with.
FLOOR = "floor_insert"
SKIP_BENCH = "skipped (pip install caresync[bench])"
ACTOR = "bench"


@dataclass(frozen=True)
class Config:
    """What a case runs on: the workload size, the seed, a private scratch dir and the run's shared cache."""

    ops: int
    records: int
    seed: int
    workdir: Path
    cache: Path
    seal: bool = False
    """Write the workload from devices that seal private fields (ticket descriptions) to a station key."""
    scale: int = 1
    """The ``@4x`` rows run on ``scale`` times the ops and records (``--big``): memory that stays flat as the
    op count grows shows there."""

    def plan(self) -> Plan:
        """The full workload."""
        return make_plan(self.ops, self.records, self.seed)

    def scaled(self) -> Config:
        """This config at ``scale`` times the ops and records, in a cache and workdir of its own."""
        if self.scale == 1:
            return self
        return replace(self, ops=self.ops * self.scale, records=self.records * self.scale, scale=1)


@dataclass(frozen=True)
class Case:
    """A named benchmark case; ``group`` lets ``--only`` select related cases together."""

    name: str
    group: str
    run: Callable[[Config], Row]
    big: bool = False
    """Runs only when asked for (``--big``, or named in ``--only``): too slow for a routine run."""


# --- helpers -----------------------------------------------------------------------------------------------


def _row(ops: int, seconds: float | None, notes: str, bytes_per_op: float | None = None) -> Row:
    """A timed row."""
    return {"status": "ok", "ops": ops, "seconds": seconds, "bytes_per_op": bytes_per_op, "notes": notes}


def _skipped(notes: str = SKIP_BENCH) -> Row:
    """A row for a case that could not run here."""
    return {"status": "skipped", "ops": None, "seconds": None, "bytes_per_op": None, "notes": notes}


def file_bytes(path: Path) -> int:
    """Size of a closed SQLite file after ``PRAGMA wal_checkpoint(TRUNCATE)`` (plus any WAL left, normally 0)."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _open(path: Path, seal: bool = False, station: bool = False) -> Replica:
    """Opens (or creates) a caresync replica file; with ``seal``, one that seals private fields to a station;
    with ``station``, one that holds the station's key (it reads sealed fields)."""
    import hashlib

    from caresync import Replica, StationKey

    replica = Replica.open(path, actor=ACTOR)
    key = StationKey(hashlib.blake2b(b"benchmark station", digest_size=32).digest())
    if station:
        replica.install_station_key(key)
    elif seal:
        replica.set_station_public_key(key.public_key)
    return replica


def write_plan(replica: Replica, plan: Plan) -> list[str]:
    """Writes the plan through the public API (submit, then edit); returns the ticket ids."""
    tickets = replica.tickets
    # numbers as a server's block gives them, so the first sync has no provisional numbers to replace: the
    # workload stays exactly the plan's ops
    replica.numbers.add_block(10**11, len(plan.titles))
    ids = [tickets.submit(title=title, kind=KIND, grid=GRID).id for title in plan.titles]
    for e in plan.edits:
        tickets.edit(ids[e.index], **{e.field: e.value})
    return ids


def source_path(cfg: Config) -> Path:
    """Where the run keeps the replica holding the full workload (shared by the merge and refold cases)."""
    return cfg.cache / f"source-{cfg.ops}-{cfg.records}-{cfg.seed}{'-sealed' if cfg.seal else ''}.db"


def ensure_source(cfg: Config) -> Path:
    """The source replica with the full workload, written with ``batch()``; built if no case left one, in a
    process of its own, so that what building it takes stays out of the row's peak RSS."""
    path = source_path(cfg)
    if not path.exists():
        in_child(build_source, cfg)
    return path


def build_source(cfg: Config) -> None:
    """Writes the source replica (see :func:`ensure_source`)."""
    scratch = cfg.workdir / "source.db"
    with _open(scratch, cfg.seal) as src, src.batch():
        write_plan(src, cfg.plan())
    keep_as_source(cfg, scratch)


def in_child(function: Callable[..., None], *args: Any) -> None:
    """Runs ``function(*args)`` (a module-level function) in a fresh process and waits for it: setup work whose
    memory must not count in the row's own peak RSS.

    Raises:
        RuntimeError: the process failed (its traceback went to stderr).
    """
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=function, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{function.__name__} failed in its own process (exit code {process.exitcode})")


def keep_as_source(cfg: Config, path: Path) -> None:
    """Moves a closed replica holding the full workload into the cache, unless one is there already."""
    target = source_path(cfg)
    if target.exists():
        return
    file_bytes(path)  # checkpoint, so the one file holds everything
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.move(path, target)


def source_ids(src: Replica, records: int) -> list[str]:
    """The ticket ids of a source replica: its first ``records`` ops are the creates, in order."""
    creates = src.export_ops({}, limit=records)
    assert len(creates) == records, f"export_ops(limit={records}) returned {len(creates)} ops"
    assert all(o["kind"] == "ticket.create" for o in creates), "source replica does not start with its creates"
    return [o["eid"] for o in creates]


def export_all(src: Replica, ops: int) -> list[dict[str, Any]]:
    """Every op of the source, checked to be all of them."""
    out = src.export_ops({}, limit=ops + 1)
    assert len(out) == ops == src.op_count(), f"export_ops returned {len(out)} of the {src.op_count()} ops held"
    return out


def sample(count: int, size: int = CHECK_SAMPLE) -> list[int]:
    """Up to ``size`` indexes spread evenly over ``range(count)``, always with the first and the last."""
    if count <= size:
        return list(range(count))
    return sorted({round(i * (count - 1) / (size - 1)) for i in range(size)})


def _check_copy(dst: Replica, src: Replica, plan: Plan) -> None:
    """The destination holds every op of the source (the plan's, and any a sync added) and shows the source's (and
    the plan's) values, on a sample of records."""
    assert dst.op_count() == src.op_count() >= plan.ops, f"destination holds {dst.op_count()} of {src.op_count()}"
    ids, want = source_ids(src, plan.records), plan.final_values()
    for index in {*sample(plan.records), plan.last_edited()}:
        got, theirs = dst.tickets.get(ids[index]), src.tickets.get(ids[index])
        values = {"title": got.title, "description": got.description, "priority": got.priority}
        assert values == want[index], f"{ids[index]}: {values} != {want[index]}"
        assert got.title == theirs.title and not got.conflicts, f"{ids[index]}: differs from the source"


# --- floor: plain sqlite3 ----------------------------------------------------------------------------------

_FLOOR_DDL = (
    "CREATE TABLE ops (origin TEXT, seq INT, hlc INT, eid TEXT, kind TEXT, body TEXT, PRIMARY KEY (origin, seq))"
)
_RECORDS_DDL = "CREATE TABLE records (eid TEXT PRIMARY KEY, title TEXT, description TEXT, priority TEXT, hlc INT)"
_UPSERT = (
    "INSERT INTO records (eid, title, description, priority, hlc) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (eid) DO UPDATE SET title = coalesce(excluded.title, title), "
    "description = coalesce(excluded.description, description), "
    "priority = coalesce(excluded.priority, priority), hlc = excluded.hlc "
    "WHERE excluded.hlc > records.hlc"
)


def _floor_rows(plan: Plan) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The plan as op rows (bodies JSON-encoded like caresync's) and as last-writer-wins record rows."""
    base_hlc = (time.time_ns() // 1_000_000) << 20
    eids = [f"T-{FLOOR_ORIGIN}-{i + 1}" for i in range(plan.records)]
    ops: list[tuple[Any, ...]] = []
    recs: list[tuple[Any, ...]] = []
    for i, title in enumerate(plan.titles):
        body = {"title": title, "kind": KIND, "channel": "walk_in", "grid": GRID, "due_at": 0, "priority": "normal"}
        ops.append((FLOOR_ORIGIN, i + 1, base_hlc + i, eids[i], "ticket.create", json.dumps(body)))
        recs.append((eids[i], title, None, "normal", base_hlc + i))
    for j, e in enumerate(plan.edits, start=plan.records):
        body = {"field": e.field, "value": e.value, "replaces": []}
        ops.append((FLOOR_ORIGIN, j + 1, base_hlc + j, eids[e.index], "ticket.set", json.dumps(body)))
        values = {"title": None, "description": None, "priority": None, e.field: e.value}
        recs.append((eids[e.index], values["title"], values["description"], values["priority"], base_hlc + j))
    return ops, recs


def _floor_db(path: Path, ddl: str) -> sqlite3.Connection:
    """A new floor database at ``path`` (WAL, ``synchronous=NORMAL``, as caresync's files) with the table ``ddl``."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = NORMAL")
    con.execute(ddl)
    return con


def _floor(cfg: Config, upsert: bool, signed: bool = False) -> Row:
    """Times one ``executemany`` of the op rows (and of the record upserts) in one transaction; ``signed`` adds
    to each row what a signed op carries: 96 bytes of key and signature and the 16-byte link (random bytes)."""
    plan = cfg.plan()
    ops, recs = _floor_rows(plan)
    if signed:
        rng = random.Random(cfg.seed)
        ops = [(*row, rng.randbytes(96), rng.randbytes(16)) for row in ops]
    path = cfg.workdir / ("floor_signed.db" if signed else "floor.db")
    con = _floor_db(path, _FLOOR_DDL.replace("body TEXT,", "body TEXT, sig BLOB, pd BLOB,") if signed else _FLOOR_DDL)
    if upsert:
        con.execute(_RECORDS_DDL)
    start = time.perf_counter()
    con.execute("BEGIN")
    con.executemany(f"INSERT INTO ops VALUES ({', '.join('?' * len(ops[0]))})", ops)
    if upsert:
        con.executemany(_UPSERT, recs)
    con.execute("COMMIT")
    seconds = time.perf_counter() - start
    assert con.execute("SELECT count(*) FROM ops").fetchone()[0] == plan.ops
    if upsert:
        eid = f"T-{FLOOR_ORIGIN}-{plan.last_edited() + 1}"
        title = con.execute("SELECT title FROM records WHERE eid = ?", (eid,)).fetchone()[0]
        assert title == plan.final_values()[plan.last_edited()]["title"], title
    con.close()
    size = file_bytes(path)
    what = "ops + records upsert (LWW on hlc)" if upsert else "floor: sqlite3 executemany insert-only"
    if signed:
        what = "the floor's insert, each row with a 96-byte signature and a 16-byte link"
    return _row(plan.ops, seconds, f"{what}; rows pre-encoded; 1 txn", size / plan.ops)


def floor_insert(cfg: Config) -> Row:
    """Plain sqlite3: the op rows with one executemany in one transaction."""
    return _floor(cfg, upsert=False)


def floor_insert_signed(cfg: Config) -> Row:
    """The floor with the bytes a signed op adds (for scale: the ``x floor`` ratios stay against the floor)."""
    return _floor(cfg, upsert=False, signed=True)


def floor_insert_upsert(cfg: Config) -> Row:
    """Plain sqlite3: the op rows plus a last-writer-wins upsert of the record rows, one transaction."""
    return _floor(cfg, upsert=True)


def floor_checked(cfg: Config) -> Row:
    """The least a merge that checks what it stores does in CPython, for scale: the source replica's ops are
    validated with caresync's own schema, chained (each op's signing message and its blake2b-128 link, what
    checking a run's one signature rests on), their bodies JSON-encoded, and inserted with the floor's one
    ``executemany`` and commit. No fold, no record rows, no signature check: every merge of signed, validated
    ops pays at least this much."""
    import hashlib

    from pydantic_core import to_json

    from caresync.core.gcpause import paused_gc
    from caresync.core.ops import validate_ops
    from caresync.trust.signing import ZERO_LINK, signing_message

    plan = cfg.plan()
    with _open(ensure_source(cfg)) as src:
        ops = export_all(src, plan.ops)
    path = cfg.workdir / "floor_checked.db"
    con = _floor_db(path, _FLOOR_DDL.replace("body TEXT,", "body TEXT, sig TEXT, pd BLOB,"))
    blake2b = hashlib.blake2b
    with paused_gc():  # as caresync's merge does: the batch's dicts form no cycles
        start = time.perf_counter()
        known, _ = validate_ops(ops)
        links: dict[str, bytes] = {}
        rows = []
        for op in known:  # exported in (hlc, origin, seq) order: each device's ops in seq order
            prev = links.get(op["origin"], ZERO_LINK)
            links[op["origin"]] = blake2b(signing_message(op, prev), digest_size=16).digest()
            body = to_json(op["body"]).decode()
            rows.append((op["origin"], op["seq"], op["hlc"], op["eid"], op["kind"], body, op.get("sig"), prev))
        con.execute("BEGIN")
        con.executemany("INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        seconds = time.perf_counter() - start
    assert con.execute("SELECT count(*) FROM ops").fetchone()[0] == plan.ops
    con.close()
    wrong = sum(1 for op, row in zip(known, rows, strict=True) if "pd" in op and row[-1].hex() != op["pd"])
    assert wrong == 0, f"{wrong} of the links computed differ from the ones the ops carry"
    notes = "validate (caresync's schema) + chain links + JSON bodies + the floor's insert; no fold, no rows; 1 txn"
    return _row(plan.ops, seconds, notes, file_bytes(path) / plan.ops)


# --- caresync: local writes --------------------------------------------------------------------------------


def local_writes_commit(cfg: Config) -> Row:
    """Public API, each submit/edit its own transaction, on a smaller workload."""
    plan = make_plan(min(cfg.ops, COMMIT_EACH_MAX_OPS), min(cfg.records, COMMIT_EACH_MAX_RECORDS), cfg.seed)
    path = cfg.workdir / "local.db"
    with _open(path, cfg.seal) as r:
        start = time.perf_counter()
        write_plan(r, plan)
        seconds = time.perf_counter() - start
        assert r.op_count() == plan.ops
    notes = f"{plan.records} tickets, 1 txn per op (capped at {COMMIT_EACH_MAX_OPS} ops)"
    return _row(plan.ops, seconds, notes, file_bytes(path) / plan.ops)


def local_writes_batch(cfg: Config) -> Row:
    """Public API, every submit/edit inside one ``with r.batch()``; the file is kept as the merge source."""
    plan = cfg.plan()
    path = cfg.workdir / "local.db"
    with _open(path, cfg.seal) as r:
        start = time.perf_counter()
        with r.batch():
            write_plan(r, plan)
        seconds = time.perf_counter() - start
        assert r.op_count() == plan.ops
    size = file_bytes(path)
    keep_as_source(cfg, path)
    return _row(plan.ops, seconds, f"{plan.records} tickets, all in one batch() txn", size / plan.ops)


def local_write_one(cfg: Config) -> Row:
    """Single writes through the public API, each its own transaction, on a copy of the replica holding the whole
    workload (records with their histories): each ``edit`` is timed on its own; the notes give the median and
    the 99th percentile of one write with its commit."""
    plan = cfg.plan()
    path = cfg.workdir / "one.db"
    source = ensure_source(cfg)
    file_bytes(source)  # checkpoint, so the .db file alone holds everything
    shutil.copyfile(source, path)
    count = min(ONE_WRITE_COUNT, plan.ops)
    rng = random.Random(cfg.seed)
    times: list[float] = []
    with _open(path, cfg.seal) as r:
        ids = source_ids(r, plan.records)
        picks = [(ids[rng.randrange(len(ids))], f"One write {i}: the pump is fixed") for i in range(count)]
        tickets = r.tickets
        clock = time.perf_counter
        for eid, title in picks:
            start = clock()
            tickets.edit(eid, title=title)
            times.append(clock() - start)
        assert r.op_count() == plan.ops + count, f"{r.op_count()} ops held after {count} writes"
        eid, title = picks[-1]
        assert r.tickets.get(eid).title == title, f"{eid}: the last write does not show"
    median, p99 = percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000
    row = _row(
        count,
        sum(times),
        f"{count} single edits on a replica holding {plan.ops:,} ops, 1 txn each: median {median:.2f} ms, "
        f"p99 {p99:.2f} ms, max {max(times) * 1000:.1f} ms",
    )
    row.update(median_ms=median, p99_ms=p99)
    return row


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


# --- caresync: size on disk ----------------------------------------------------------------------------------


def store_size(cfg: Config) -> Row:
    """Bytes per op of the replica file holding the workload (as ``batch()`` wrote it), after a checkpoint, with
    the share of its largest tables and indexes (SQLite's ``dbstat``) in the notes."""
    plan = cfg.plan()
    path = cfg.workdir / "size.db"
    source = ensure_source(cfg)
    file_bytes(source)
    shutil.copyfile(source, path)
    size = file_bytes(path)
    con = sqlite3.connect(path)
    try:
        parts = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 5").fetchall()
        held = con.execute("SELECT COUNT(*) FROM ops").fetchone()[0]
    finally:
        con.close()
    assert held == plan.ops, f"the replica holds {held} ops, expected {plan.ops}"
    shares = ", ".join(f"{name} {pages / plan.ops:.0f}" for name, pages in parts)
    row = _row(plan.ops, None, f"replica file after checkpoint; B/op by table or index: {shares}", size / plan.ops)
    row["size"] = True
    return row


# --- caresync: merge ---------------------------------------------------------------------------------------


def merge_sync(cfg: Config) -> Row:
    """``dst.sync_with(src)`` into an empty replica, end to end."""
    plan = cfg.plan()
    path = cfg.workdir / "dst.db"
    with _open(ensure_source(cfg)) as src, _open(path) as dst:
        start = time.perf_counter()
        report = dst.sync_with(src)
        seconds = time.perf_counter() - start
        assert report.received == plan.ops, f"sync_with received {report.received} of {plan.ops} ops"
        _check_copy(dst, src, plan)
    notes = "export+validate+store+fold, 5000-op batches; bytes = .db after wal_checkpoint(TRUNCATE)"
    return _row(plan.ops, seconds, notes, file_bytes(path) / plan.ops)


def merge_apply(cfg: Config) -> Row:
    """``dst.apply_ops(ops)`` of every pre-exported op into an empty replica."""
    plan = cfg.plan()
    path = cfg.workdir / "dst.db"
    with _open(ensure_source(cfg)) as src, _open(path) as dst:
        ops = export_all(src, plan.ops)
        start = time.perf_counter()
        result = dst.apply_ops(ops)
        seconds = time.perf_counter() - start
        assert result.applied == plan.ops and result.refolded == 0, result
        _check_copy(dst, src, plan)
    notes = "validate+store+fold, one batch; bytes = .db after wal_checkpoint(TRUNCATE)"
    return _row(plan.ops, seconds, notes, file_bytes(path) / plan.ops)


# --- caresync: out-of-order arrival ------------------------------------------------------------------------


def _by_record(ops: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Ops grouped by record, each group in ``(hlc, origin, seq)`` order; records in order of first op."""
    out: dict[str, list[dict[str, Any]]] = {}
    for op in ops:
        out.setdefault(op["eid"], []).append(op)
    for record_ops in out.values():
        record_ops.sort(key=lambda o: (o["hlc"], o["origin"], o["seq"]))
    return out


def _hand_op(device: str, seq: int, hlc: int, eid: str, at: int, value: str) -> dict[str, Any]:
    """A ``ticket.set`` of the title that replaces nothing, signed by the made-up ``device``, in the wire format
    ``export_ops`` returns."""
    from caresync.testing import key_for, sign  # caresync is imported only by the rows that use it

    key = key_for(device)
    op = {
        "v": 1,
        "kind": "ticket.set",
        "origin": key.origin,
        "seq": seq,
        "hlc": hlc,
        "eid": eid,
        "actor": ACTOR,
        "at": at,
        "body": {"field": "title", "value": value, "replaces": []},
    }
    return sign(op, key)


def late_ops(ops: Sequence[dict[str, Any]], count: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Title edits that sort between a record's create and its next op, on ``count`` distinct records.

    Only records with a later title edit are used (so the title shown stays the same), and only where the
    HLC leaves a gap. Returns the ops and the ids of the records they hit.
    """
    out: list[dict[str, Any]] = []
    eids: list[str] = []
    for eid, record_ops in _by_record(ops).items():
        if len(out) == count:
            break
        create, rest = record_ops[0], record_ops[1:]
        if create["kind"] != "ticket.create" or not any(o["body"].get("field") == "title" for o in rest):
            continue
        low, high = create["hlc"], rest[0]["hlc"]
        if high - low < 2:
            continue
        out.append(_hand_op(LATE_DEVICE, len(out) + 1, (low + high) // 2, eid, create["at"], LATE_VALUE))
        eids.append(eid)
    return out, eids


def newer_ops(ops: Sequence[dict[str, Any]], eids: Sequence[str]) -> list[dict[str, Any]]:
    """Title edits on ``eids`` that sort after every op held (the incremental path)."""
    top = max(o["hlc"] for o in ops)
    at = max(o["at"] for o in ops)
    return [_hand_op(NEWER_DEVICE, i + 1, top + i + 1, eid, at, NEWER_VALUE) for i, eid in enumerate(eids)]


def _check_refold(base: Replica, plan: Plan, ids: list[str], eids: list[str], late: bool) -> None:
    """A late edit leaves the title shown alone and surfaces as a conflict; a newer one wins (sampled)."""
    want = plan.final_values()
    position = {eid: i for i, eid in enumerate(ids)}
    for k in sample(len(eids)):
        eid = eids[k]
        ticket = base.tickets.get(eid)
        if late:
            assert ticket.title == want[position[eid]]["title"], f"{eid}: title {ticket.title!r} after a late edit"
            assert any(c.field == "title" for c in ticket.conflicts), f"{eid}: late edit not surfaced as a conflict"
        else:
            assert ticket.title == NEWER_VALUE, f"{eid}: title {ticket.title!r} after a newer edit"


def _refold(cfg: Config, late: bool) -> Row:
    """Applies hand-built title edits to a copy of the source replica; times that one ``apply_ops``."""
    plan = cfg.plan()
    source = ensure_source(cfg)
    with _open(source) as src:
        ops = export_all(src, plan.ops)
        ids = source_ids(src, plan.records)
    extra, eids = late_ops(ops, min(REFOLD_OPS, plan.records))
    if not extra:
        raise RuntimeError("no record has a later title edit and an HLC gap to place a late op in")
    if not late:
        extra = newer_ops(ops, eids)
    hit = set(eids)
    per_record = sum(len(v) for k, v in _by_record(ops).items() if k in hit) / len(eids)
    base_path = cfg.workdir / "base.db"
    file_bytes(source)  # checkpoint, so the .db file alone holds everything
    shutil.copyfile(source, base_path)  # a replica that already holds every op of the source
    with _open(base_path) as base:
        start = time.perf_counter()
        result = base.apply_ops(extra)
        seconds = time.perf_counter() - start
        assert result.applied == len(extra), result
        expected = len(extra) if late else 0
        assert result.refolded == expected, f"refolded {result.refolded} records, expected {expected}"
        _check_refold(base, plan, ids, eids, late)
    if late:
        notes = (
            f"refolded={result.refolded}, {seconds * 1000 / result.refolded:.2f} ms/refold, "
            f"{per_record:.1f} ops/record avg before the late op"
        )
    else:
        notes = f"same records, HLC after everything: refolded=0, {seconds * 1000 / len(extra):.3f} ms/op"
    return _row(len(extra), seconds, notes)


def refold_late(cfg: Config) -> Row:
    """Ops from a record's past: every record hit is re-folded from all its ops."""
    return _refold(cfg, late=True)


def refold_newer(cfg: Config) -> Row:
    """The same number of ops on the same records, newer than everything held: incremental."""
    return _refold(cfg, late=False)


# --- other CRDT libraries, in memory -----------------------------------------------------------------------


def _check_values(got: list[dict[str, Any]], plan: Plan) -> None:
    """Every record read back holds the plan's final values (checked on a sample)."""
    assert len(got) == plan.records, f"read {len(got)} records, expected {plan.records}"
    want = plan.final_values()
    for i in {*sample(plan.records), plan.last_edited()}:
        assert got[i] == want[i], f"record {i}: {got[i]} != {want[i]}"


def loro_case(cfg: Config) -> Row:
    """loro: a LoroMap per record on doc A; time importing A's updates into an empty doc B and reading back."""
    try:
        import loro
    except ImportError:
        return _skipped()
    plan = cfg.plan()
    eids = [f"T-{i}" for i in range(plan.records)]
    a = loro.LoroDoc()  # type: ignore[no-untyped-call]
    for eid, title in zip(eids, plan.titles, strict=True):
        m = a.get_map(eid)
        m.insert("title", title)
        m.insert("kind", KIND)
        m.insert("grid", GRID)
        m.insert("priority", "normal")
    for e in plan.edits:
        a.get_map(eids[e.index]).insert(e.field, e.value)
    a.commit()
    update = a.export(loro.ExportMode.Updates(loro.VersionVector()))  # type: ignore[no-untyped-call]

    start = time.perf_counter()
    b = loro.LoroDoc()  # type: ignore[no-untyped-call]
    b.import_(update)
    got: list[dict[str, Any]] = []
    for eid in eids:
        m = b.get_map(eid)
        row: dict[str, Any] = {}
        for field in ("title", "description", "priority"):
            v = m.get(field)
            row[field] = v.value if isinstance(v, loro.ValueOrContainer.Value) else None
        got.append(row)
    seconds = time.perf_counter() - start
    _check_values(got, plan)
    notes = f"in memory, not durable; update {len(update) / plan.ops:.1f} B/op; loro {_version('loro')}"
    return _row(plan.ops, seconds, notes)


def pycrdt_case(cfg: Config) -> Row:
    """pycrdt: a root Map per record on doc A; time applying A's update to an empty doc B and reading back."""
    try:
        import pycrdt
    except ImportError:
        return _skipped()
    plan = cfg.plan()
    eids = [f"T-{i}" for i in range(plan.records)]
    a: pycrdt.Doc[Any] = pycrdt.Doc()
    with a.transaction():
        maps = [a.get(eid, type=pycrdt.Map) for eid in eids]
        for m, title in zip(maps, plan.titles, strict=True):
            m["title"] = title
            m["kind"] = KIND
            m["grid"] = GRID
            m["priority"] = "normal"
        for e in plan.edits:
            maps[e.index][e.field] = e.value
    update = a.get_update()

    start = time.perf_counter()
    b: pycrdt.Doc[Any] = pycrdt.Doc()
    b.apply_update(update)
    got: list[dict[str, Any]] = []
    for eid in eids:
        m = b.get(eid, type=pycrdt.Map)
        got.append({field: m.get(field) for field in ("title", "description", "priority")})
    seconds = time.perf_counter() - start
    _check_values(got, plan)
    notes = f"in memory, not durable; update {len(update) / plan.ops:.1f} B/op; pycrdt {_version('pycrdt')}"
    return _row(plan.ops, seconds, notes)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --- start-up of the three programs --------------------------------------------------------------------------

#: How many times ``startup/programs`` runs each command (the median is the figure; the machine may be shared).
STARTUP_RUNS = 7
#: How many tickets the replica ``caresync ticket list`` reads in that row holds.
STARTUP_TICKETS = 20


def _program(name: str) -> str:
    """The console script ``name`` installed beside this Python."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"{name} is not installed beside {sys.executable}: pip install -e . -e ./server")
    return found


def startup(cfg: Config) -> Row:
    """Wall time of each program's start-up, as a user meets it: ``--help`` of ``caresync``, ``caresync-courier``
    and ``caresync-server``, and ``caresync ticket list`` on a small replica, each run as a subprocess
    :data:`STARTUP_RUNS` times, interleaved (one of each in turn, so a busy moment of the machine falls on all of
    them alike). The figure of each is the median; the notes give it with the range."""
    from caresync import Replica  # here, not at the top: a case imports only what it runs
    from caresync.cli._common import REPLICA_FILE  # (likewise)

    home = cfg.workdir / "startup"
    env = {**os.environ, "CARESYNC_HOME": str(home), "CARESYNC_LANG": "en"}
    subprocess.run([_program("caresync"), "init", "--actor", ACTOR], env=env, check=True, capture_output=True)
    with Replica.open(home / REPLICA_FILE, actor=ACTOR) as replica:
        for i in range(STARTUP_TICKETS):
            replica.tickets.submit(title=f"Stair light {i}", kind=KIND, grid=GRID)
    commands = {
        "caresync --help": [_program("caresync"), "--help"],
        "caresync-courier --help": [_program("caresync-courier"), "--help"],
        "caresync-server --help": [_program("caresync-server"), "--help"],
        "caresync ticket list": [_program("caresync"), "ticket", "list"],
    }
    runs = STARTUP_RUNS if cfg.ops >= 1000 else 3  # the tiny workload of the tests: a quick pass
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr.strip()[-500:]}")
            if name == "caresync ticket list":
                assert done.stdout.count("Stair light") == STARTUP_TICKETS, done.stdout[-500:]
    medians = {name: percentile(values, 0.5) for name, values in times.items()}
    notes = "; ".join(
        f"{name} {medians[name]:.2f} s ({min(values):.2f}-{max(values):.2f})" for name, values in times.items()
    )
    row = _row(len(commands) * runs, sum(sum(values) for values in times.values()), f"median of {runs}: {notes}")
    row["startup_median_s"] = medians
    return row


# --- lists of 10,000 records ------------------------------------------------------------------------------

#: How many records each list of ``lists/10k`` shows (a tiny run, as the test's, uses :data:`LIST_RECORDS_SMALL`).
LIST_RECORDS = 10_000
LIST_RECORDS_SMALL = 200
#: How many times ``lists/10k`` runs each command (the median is the figure).
LIST_RUNS = 5


def lists_10k(cfg: Config) -> Row:
    """Wall time of the list commands on a replica of :data:`LIST_RECORDS` records of each kind, as a user meets
    them (subprocesses, interleaved, :data:`LIST_RUNS` runs each): ``caresync ticket list`` (10,000 open tickets),
    ``resident list`` (10,000 residents), each also with ``--json``, and on a courier's handheld of 10,000 parcels
    waiting in its mailboxes, ``caresync-courier route`` and ``status``. The replicas are made before the clock
    starts. Target: each under 1 s."""
    from caresync import Replica  # here, not at the top: a case imports only what it runs
    from caresync.cli._common import REPLICA_FILE  # (likewise)

    n = LIST_RECORDS if cfg.ops >= 1000 else LIST_RECORDS_SMALL
    home, handheld = cfg.workdir / "lists-desk", cfg.workdir / "lists-courier"
    env = {**os.environ, "CARESYNC_HOME": str(home), "CARESYNC_LANG": "en"}
    courier_env = {**os.environ, "CARESYNC_HOME": str(handheld), "CARESYNC_LANG": "en"}
    if not (home / REPLICA_FILE).exists():
        subprocess.run([_program("caresync"), "init", "--actor", ACTOR], env=env, check=True, capture_output=True)
        with Replica.open(home / REPLICA_FILE, actor=ACTOR) as replica, replica.batch():
            for i in range(n):
                grid = f"changnan/dorm-{i % 20}/b{i % 7}"
                who = replica.residents.register(
                    name=f"Resident {i}", grid=grid, address=f"{i % 30}-{i % 500}", knock_every_days=7
                )
                made = replica.tickets.submit(title=f"Stair light {i}", kind=KIND, grid=grid, resident_id=who.id)
                if i % 4 == 0:
                    replica.tickets.accept(made.id, assignee="grid-li")
    if not (handheld / "courier.db").exists():
        handheld.mkdir(parents=True, exist_ok=True)
        with Replica.open(handheld / "courier.db", actor="chen") as replica, replica.batch():
            boxes = [replica.mailboxes.add(code=f"MB-{b:02d}", name=f"Box {b}", grid=GRID) for b in range(40)]
            for i in range(n):
                replica.parcels.register(code=f"E-{i:05d}", grid=GRID, mailbox_id=boxes[i % 40].id)
    commands = {
        "ticket list": ([_program("caresync"), "ticket", "list"], env, f"{n} tickets"),
        "ticket list --json": ([_program("caresync"), "ticket", "list", "--json"], env, '"number"'),
        "resident list": ([_program("caresync"), "resident", "list"], env, f"{n} residents"),
        "resident list --json": ([_program("caresync"), "resident", "list", "--json"], env, '"address"'),
        "courier route": ([_program("caresync-courier"), "route"], courier_env, "E-00000"),
        "courier status": ([_program("caresync-courier"), "status"], courier_env, "Unsent changes"),
    }
    runs = LIST_RUNS if cfg.ops >= 1000 else 2
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, environ, expect) in commands.items():
            start = time.perf_counter()
            done = subprocess.run(argv, env=environ, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0 or expect not in done.stdout:
                raise RuntimeError(f"{name} exited {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    medians = {name: percentile(values, 0.5) for name, values in times.items()}
    notes = "; ".join(
        f"{name} {medians[name]:.2f} s ({min(values):.2f}-{max(values):.2f})" for name, values in times.items()
    )
    row = _row(len(commands) * runs, sum(sum(v) for v in times.values()), f"{n} records, median of {runs}: {notes}")
    row["lists_median_s"] = medians
    return row


# --- registry ----------------------------------------------------------------------------------------------

CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("floor_insert", "floor_insert", floor_insert),
        Case("floor_insert_upsert", "floor_insert_upsert", floor_insert_upsert),
        Case("floor_insert_signed", "floor_insert_signed", floor_insert_signed),
        Case("caresync_local_writes/commit", "caresync_local_writes", local_writes_commit),
        Case("caresync_local_writes/batch", "caresync_local_writes", local_writes_batch),
        Case("caresync_local_writes/one", "caresync_local_writes", local_write_one),
        Case("store/bytes_per_op", "store", store_size),
        # after the batch row: it reuses the source replica that row leaves
        Case("floor_checked", "floor_checked", floor_checked),
        Case("caresync_merge/sync_with", "caresync_merge", merge_sync),
        Case("caresync_merge/apply_ops", "caresync_merge", merge_apply),
        Case("caresync_refold/late", "caresync_refold", refold_late),
        Case("caresync_refold/newer", "caresync_refold", refold_newer),
        Case("loro", "loro", loro_case),
        Case("pycrdt", "pycrdt", pycrdt_case),
        Case("startup/programs", "startup", startup),
        Case("lists/10k", "lists", lists_10k),
    )
}


def _net_case(function: str) -> Callable[[Config], Row]:
    """A network sync case of ``netcases`` (which builds on the helpers here), imported when it runs."""

    def run(cfg: Config) -> Row:
        from . import netcases

        row: Row = getattr(netcases, function)(cfg)
        return row

    return run


# Network sync rows need the server distribution (caresync_server); they import it only when they run.
CASES.update(
    {
        name: Case(name, "sync", _net_case(function))
        for name, function in (
            ("sync/initial", "sync_initial"),
            ("sync/incremental", "sync_incremental"),
            ("sync/push", "sync_push"),
            ("sync/50_devices_sqlite", "many_devices_sqlite"),
            ("sync/50_devices_postgresql", "many_devices_postgresql"),
            ("sync/blobs_100_photos", "blobs_photos"),
        )
    }
)


#: The scale of the ``@4x`` rows.
BIG_SCALE = 4


def _scaled(function: str) -> Callable[[Config], Row]:
    """A network case run at :data:`BIG_SCALE` times the workload."""
    run = _net_case(function)

    def scaled(cfg: Config) -> Row:
        return run(replace(cfg, scale=BIG_SCALE).scaled())

    return scaled


# Peak RSS as the op count grows: the same rows on four times the workload, only with --big (minutes at 400k).
CASES.update(
    {
        f"{name}@{BIG_SCALE}x": Case(f"{name}@{BIG_SCALE}x", "big", _scaled(function), big=True)
        for name, function in (("sync/push", "sync_push"), ("sync/initial", "sync_initial"))
    }
)


def select(only: str | None, big: bool = False) -> list[Case]:
    """The cases named in ``only`` (names or groups, comma-separated), in table order; the floor always runs.
    The ``big`` rows run when ``big`` is set or when ``only`` names them.

    Raises:
        ValueError: a name matches no case.
    """
    if not only:
        return [c for c in CASES.values() if big or not c.big]
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    known = set(CASES) | {c.group for c in CASES.values()}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown workload(s): {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    return [c for c in CASES.values() if c.name == FLOOR or c.name in wanted or c.group in wanted or (big and c.big)]
