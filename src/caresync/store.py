"""The local store: one SQLite file per replica holding the op log and the materialised records.

Ops and the rows they change are written in one transaction, so a crash leaves both or neither. A batch of
new ops is validated before the transaction starts, de-duplicated by ``(origin, seq)``, inserted with one
``executemany``, and folded per record: a record whose new ops all sort after what it already holds is
updated from its saved state (incremental); a record that receives an op from its past is re-folded from
all its ops. The rows are then written back with one ``executemany`` per table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from .errors import OpForkError, StoreError, StoreVersionError
from .merge import State, apply_op, fold, new_state, op_key
from .ops import OpDict, entity_type_of
from .schema import ENTITY_TABLES, SCHEMA_VERSION, migrate, row_values, upsert_sql

__all__ = ["IngestResult", "Store"]

_CHUNK = 500
_REDACTABLE_KINDS = ("resident.create", "resident.set", "resident.note")


@dataclass
class IngestResult:
    """What one batch did to the store."""

    applied: int = 0
    duplicates: int = 0
    deferred: int = 0
    refolded: int = 0
    records: int = 0
    max_hlc_by_origin: dict[str, int] = field(default_factory=dict)


def _redact_body(kind: str, body: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    names = set(names)
    if kind == "resident.create":
        return {k: (None if k in names else v) for k, v in body.items()}
    if kind == "resident.set" and body["field"] in names:
        return {**body, "value": None}
    if kind == "resident.note" and "notes" in names:
        return {**body, "text": None}
    return body


class Store:
    """An open replica file. Not thread-safe: one Store per thread (open the file again for another)."""

    def __init__(self, path: str | Path, *, logger: logging.Logger | None = None) -> None:
        self.path = Path(path)
        self.log = logger or logging.getLogger("caresync.store")
        self._depth = 0
        self._closed = False
        self._scrub = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._engine: Engine = create_engine(
                f"sqlite:///{self.path}", poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
            event.listen(self._engine, "connect", _on_connect)
            self.conn: Connection = self._engine.connect()
            self._migrate()
        except SQLAlchemyError as exc:
            raise StoreError(f"Cannot open the replica file {self.path}: {_reason(exc)}") from exc

    # --- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the file; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.conn.close()
        self._engine.dispose()

    def _migrate(self) -> None:
        version = int(self.conn.exec_driver_sql("PRAGMA user_version").scalar_one())
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"The replica file {self.path} has schema version {version}, newer than this caresync "
                f"understands ({SCHEMA_VERSION}); upgrade caresync to open it."
            )
        if version < SCHEMA_VERSION:
            with self.write():
                migrate(self.conn, version)
            if version:
                self.log.info("migrated %s from schema version %d to %d", self.path, version, SCHEMA_VERSION)

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls become savepoints."""
        depth = self._depth
        try:
            self.conn.exec_driver_sql("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
        except SQLAlchemyError as exc:
            raise StoreError(f"Cannot write to the replica file {self.path}: {_reason(exc)}") from exc
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            self._scrub = self._scrub and depth > 0
            if depth == 0:
                self.conn.exec_driver_sql("ROLLBACK")
            else:
                self.conn.exec_driver_sql(f"ROLLBACK TO sp{depth}")
                self.conn.exec_driver_sql(f"RELEASE sp{depth}")
            raise
        self._depth -= 1
        self.conn.exec_driver_sql("COMMIT" if depth == 0 else f"RELEASE sp{depth}")
        if depth == 0 and self._scrub:
            # redacted data must not linger in the write-ahead log: copy it into the file and empty the log
            self._scrub = False
            self.conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def sql(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Runs one SQL statement and returns its rows (for the library's own queries)."""
        try:
            result = self.conn.exec_driver_sql(statement, tuple(params) if isinstance(params, list) else params)
            return list(result) if result.returns_rows else []
        except SQLAlchemyError as exc:
            raise StoreError(f"The replica file {self.path} could not be read: {_reason(exc)}") from exc

    # --- meta -----------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the replica's meta table, or None."""
        rows = self.sql("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Sets a meta value (inside or outside a transaction)."""
        with self.write():
            self.sql("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- the log --------------------------------------------------------------------------------------------

    def ingest(self, known: list[OpDict], deferred: list[OpDict]) -> IngestResult:
        """Stores validated ops and folds the known ones into their records, in one transaction.

        Raises:
            OpForkError: an op has the identity of a stored op but different content; nothing is stored.
        """
        result = IngestResult()
        with self.write():
            fresh_known = self._new_only(known, result)
            fresh_deferred = self._new_only(deferred, result)
            if not fresh_known and not fresh_deferred:
                return result
            self._apply_redactions(fresh_known)
            rows = [
                (
                    o["origin"],
                    o["seq"],
                    o["hlc"],
                    o["eid"],
                    o["kind"],
                    o["v"],
                    o["actor"],
                    o["at"],
                    1,
                    to_json(o["body"]).decode(),
                )
                for o in fresh_known
            ]
            rows += [
                (
                    o["origin"],
                    o["seq"],
                    o["hlc"],
                    o["eid"],
                    o["kind"],
                    o["v"],
                    o["actor"],
                    o["at"],
                    0,
                    to_json(o["body"]).decode(),
                )
                for o in fresh_deferred
            ]
            self.conn.exec_driver_sql("INSERT INTO ops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._update_origins(fresh_known + fresh_deferred, result)
            result.applied = len(fresh_known)
            result.deferred = len(fresh_deferred)
            self.materialise(fresh_known, result)
        return result

    def _new_only(self, ops: list[OpDict], result: IngestResult) -> list[OpDict]:
        if not ops:
            return []
        by_origin: dict[str, dict[int, OpDict]] = defaultdict(dict)
        for op in ops:
            seen = by_origin[op["origin"]].get(op["seq"])
            if seen is None:
                by_origin[op["origin"]][op["seq"]] = op
            else:
                self._check_same(seen, op)
                result.duplicates += 1
        fresh: list[OpDict] = []
        for origin, items in by_origin.items():
            low, high = min(items), max(items)
            stored = self.sql("SELECT held FROM origins WHERE origin = ?", (origin,))
            if stored and stored[0][0]:
                existing = {
                    r[0]: r
                    for r in self.sql(
                        "SELECT seq, hlc, eid, kind, actor, at, body FROM ops WHERE origin = ? AND seq BETWEEN ? AND ?",
                        (origin, low, high),
                    )
                }
            else:
                existing = {}
            for seq, op in items.items():
                row = existing.get(seq)
                if row is None:
                    fresh.append(op)
                    continue
                stored_op = {
                    "origin": origin,
                    "seq": seq,
                    "hlc": row[1],
                    "eid": row[2],
                    "kind": row[3],
                    "actor": row[4],
                    "at": row[5],
                    "body": from_json(row[6]),
                }
                self._check_same(stored_op, op)
                result.duplicates += 1
        return fresh

    @staticmethod
    def _check_same(a: OpDict, b: OpDict) -> None:
        same = all(a[k] == b[k] for k in ("hlc", "eid", "kind", "actor", "at"))
        if same and a["kind"] not in _REDACTABLE_KINDS:
            same = json.dumps(a["body"], sort_keys=True) == json.dumps(b["body"], sort_keys=True)
        if not same:
            raise OpForkError(
                f"Two different ops both claim to be op {a['origin']}:{a['seq']}. The device "
                f"{a['origin']} was probably restored from a backup or copied to another phone; stop using "
                "that copy and ask the station to re-enrol it. Nothing from this batch was applied."
            )

    def _apply_redactions(self, fresh: list[OpDict]) -> None:
        """Erases redacted personal fields from stored op bodies and from new ops written before a redaction."""
        resident_ids = {o["eid"] for o in fresh if o["kind"].startswith("resident.")}
        if not resident_ids:
            return
        redactions: dict[str, list[tuple[tuple[int, str, int], list[str]]]] = defaultdict(list)
        for chunk in _chunks(sorted(resident_ids)):
            marks = ",".join("?" * len(chunk))
            for eid, hlc, origin, seq, body in self.sql(
                f"SELECT eid, hlc, origin, seq, body FROM ops WHERE kind = 'resident.redact' AND known = 1 "
                f"AND eid IN ({marks})",
                chunk,
            ):
                redactions[eid].append(((hlc, origin, seq), from_json(body)["fields"]))
        new_redacts = [o for o in fresh if o["kind"] == "resident.redact"]
        for o in new_redacts:
            redactions[o["eid"]].append((op_key(o), o["body"]["fields"]))
        if not redactions:
            return
        for op in fresh:
            for key, names in redactions.get(op["eid"], ()):
                if op["kind"] in _REDACTABLE_KINDS and op_key(op) < key:
                    op["body"] = _redact_body(op["kind"], op["body"], names)
        for o in new_redacts:
            key = op_key(o)
            updates = []
            for origin, seq, hlc, kind, body in self.sql(
                "SELECT origin, seq, hlc, kind, body FROM ops WHERE eid = ? AND kind IN (?, ?, ?)",
                (o["eid"], *_REDACTABLE_KINDS),
            ):
                if (hlc, origin, seq) < key:
                    updates.append(
                        (to_json(_redact_body(kind, from_json(body), o["body"]["fields"])).decode(), origin, seq)
                    )
            if updates:
                self.conn.exec_driver_sql("UPDATE ops SET body = ? WHERE origin = ? AND seq = ?", updates)
            self._scrub = True

    def _update_origins(self, ops: list[OpDict], result: IngestResult) -> None:
        by_origin: dict[str, list[OpDict]] = defaultdict(list)
        for op in ops:
            by_origin[op["origin"]].append(op)
        for origin, items in by_origin.items():
            max_hlc = max(o["hlc"] for o in items)
            result.max_hlc_by_origin[origin] = max_hlc
            stored = self.sql("SELECT contig, held, max_hlc FROM origins WHERE origin = ?", (origin,))
            contig, held, old_max = stored[0] if stored else (0, 0, 0)
            held += len(items)
            if held > contig:
                for (seq,) in self.sql(
                    "SELECT seq FROM ops WHERE origin = ? AND seq > ? ORDER BY seq", (origin, contig)
                ):
                    if seq != contig + 1:
                        break
                    contig = seq
            self.sql(
                "INSERT OR REPLACE INTO origins (origin, contig, held, max_hlc) VALUES (?, ?, ?, ?)",
                (origin, contig, held, max(old_max, max_hlc)),
            )

    def materialise(self, ops: list[OpDict], result: IngestResult | None = None) -> None:
        """Folds newly stored known ops into their records' rows (the caller holds the transaction)."""
        by_entity: dict[str, dict[str, list[OpDict]]] = defaultdict(lambda: defaultdict(list))
        for op in ops:
            by_entity[entity_type_of(op["kind"]).value][op["eid"]].append(op)
        for entity, groups in by_entity.items():
            table = ENTITY_TABLES[entity].__tablename__
            saved: dict[str, tuple[tuple[int, str, int], str]] = {}
            ids = list(groups)
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for rid, h, o, s, state_json in self.sql(
                    f"SELECT id, last_hlc, last_origin, last_seq, state FROM {table} WHERE id IN ({marks})", chunk
                ):
                    saved[rid] = ((h, o, s), state_json)
            rows = []
            for eid, new_ops in groups.items():
                new_ops.sort(key=op_key)
                prior = saved.get(eid)
                if prior is None:
                    state = new_state(entity, eid)
                    for op in new_ops:
                        apply_op(state, op)
                elif op_key(new_ops[0]) > prior[0]:
                    state = from_json(prior[1])
                    for op in new_ops:
                        apply_op(state, op)
                else:
                    state = fold(entity, eid, self.ops_of(eid))
                    if result is not None:
                        result.refolded += 1
                rows.append(tuple(row_values(state, to_json(state).decode())))
            self.conn.exec_driver_sql(upsert_sql(entity), rows)
            if result is not None:
                result.records += len(rows)

    # --- reads ----------------------------------------------------------------------------------------------

    def ops_of(self, eid: str, *, known_only: bool = True) -> list[OpDict]:
        """Every stored op about one record, in HLC order."""
        rows = self.sql(
            "SELECT origin, seq, hlc, kind, v, actor, at, body, known FROM ops WHERE eid = ?"
            + (" AND known = 1" if known_only else "")
            + " ORDER BY hlc, origin, seq",
            (eid,),
        )
        return [
            {
                "v": r[4],
                "kind": r[3],
                "origin": r[0],
                "seq": r[1],
                "hlc": r[2],
                "eid": eid,
                "actor": r[5],
                "at": r[6],
                "body": from_json(r[7]),
            }
            for r in rows
        ]

    def state(self, entity: str, eid: str) -> State | None:
        """The folded state of one record, or None if nothing is known about it."""
        table = ENTITY_TABLES[entity].__tablename__
        rows = self.sql(f"SELECT state FROM {table} WHERE id = ?", (eid,))
        return from_json(rows[0][0]) if rows else None

    def version_vector(self) -> dict[str, int]:
        """For each origin, the highest seq held with nothing missing before it."""
        return {o: c for o, c in self.sql("SELECT origin, contig FROM origins")}

    def op_count(self) -> int:
        """How many ops the log holds, deferred ones included."""
        return int(self.sql("SELECT COALESCE(SUM(held), 0) FROM origins")[0][0])

    def ops_after(self, vv: dict[str, int], *, limit: int) -> list[OpDict]:
        """Up to ``limit`` stored ops the holder of version vector ``vv`` may lack, in (origin, seq) order."""
        out: list[OpDict] = []
        for origin, contig, held in self.sql("SELECT origin, contig, held FROM origins ORDER BY origin"):
            since = vv.get(origin, 0)
            if held == 0 or (contig >= held and since >= contig):
                continue
            for r in self.sql(
                "SELECT seq, hlc, eid, kind, v, actor, at, body FROM ops WHERE origin = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (origin, since, limit - len(out)),
            ):
                out.append(
                    {
                        "v": r[4],
                        "kind": r[3],
                        "origin": origin,
                        "seq": r[0],
                        "hlc": r[1],
                        "eid": r[2],
                        "actor": r[5],
                        "at": r[6],
                        "body": from_json(r[7]),
                    }
                )
            if len(out) >= limit:
                break
        return out

    def deferred_kinds(self) -> list[tuple[str, int, int]]:
        """``(kind, version, count)`` of the ops held but not folded, waiting for an upgrade."""
        return [
            (k, v, n)
            for k, v, n in self.sql(
                "SELECT kind, v, COUNT(*) FROM ops WHERE known = 0 GROUP BY kind, v ORDER BY kind, v"
            )
        ]

    def deferred_ops(self) -> list[OpDict]:
        """The deferred ops themselves, as stored."""
        return [
            {
                "v": r[4],
                "kind": r[3],
                "origin": r[0],
                "seq": r[1],
                "hlc": r[2],
                "eid": r[8],
                "actor": r[5],
                "at": r[6],
                "body": from_json(r[7]),
            }
            for r in self.sql("SELECT origin, seq, hlc, kind, v, actor, at, body, eid FROM ops WHERE known = 0")
        ]

    def mark_known(self, ops: list[OpDict]) -> None:
        """Marks deferred ops as folded and re-folds their records (after an upgrade)."""
        with self.write():
            self.conn.exec_driver_sql(
                "UPDATE ops SET known = 1 WHERE origin = ? AND seq = ?", [(o["origin"], o["seq"]) for o in ops]
            )
            for op in ops:
                eid, entity = op["eid"], entity_type_of(op["kind"]).value
                state = fold(entity, eid, self.ops_of(eid))
                self.conn.exec_driver_sql(upsert_sql(entity), [tuple(row_values(state, to_json(state).decode()))])

    def digest(self) -> str:
        """SHA-256 over every record's folded state and every op held, in a canonical order."""
        h = hashlib.sha256()
        for entity in sorted(ENTITY_TABLES):
            table = ENTITY_TABLES[entity].__tablename__
            h.update(f"\x00{entity}\x00".encode())
            for rid, state in self.sql(f"SELECT id, state FROM {table} ORDER BY id"):
                h.update(rid.encode())
                h.update(json.dumps(from_json(state), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\x00ops\x00")
        for row in self.sql(
            "SELECT origin, seq, hlc, eid, kind, v, actor, at, known, body FROM ops ORDER BY origin, seq"
        ):
            h.update(json.dumps([*row[:9], from_json(row[9])], sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA secure_delete = ON")  # overwritten personal data is zeroed, not left in free space
    cur.close()


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
