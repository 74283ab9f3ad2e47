"""The local store: one SQLite file per replica holding the op log and the materialised records.

Ops and the rows they change are written in one transaction, so a crash leaves both or neither. A batch of
new ops is validated before the transaction starts, de-duplicated by ``(origin, seq)``, inserted with one
``executemany``, and folded per record: a record whose new ops all sort after what it already holds is
updated from its saved state (incremental); a record that receives an op from its past is re-folded from
all its ops. The rows are then written back with one ``executemany`` per table.

SQLAlchemy owns the connection (and SQLModel describes the tables); the hot paths talk to the DB-API
connection underneath it directly, because per-statement overhead is most of the cost of a small write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from caresync.core.gcpause import paused_gc
from caresync.core.merge import FOLD_VERSION, State, apply_op, apply_sorted, new_state, op_key
from caresync.core.ops import (
    LINK_KINDS,
    LOST_KIND,
    REDACTABLE_KINDS,
    TEXT_FORMAT,
    TEXT_KINDS,
    OpDict,
    entity_type_of,
    erased_texts,
    erasure_reach,
    ops_from_rows,
    redact_body,
    rewritable,
)
from caresync.errors import OpForkError, StoreError, StoreVersionError
from caresync.store.schema import ENTITY_TABLES, SCHEMA_VERSION, migrate, row_values, upsert_sql
from caresync.trust.signing import ZERO_LINK, chain_link, content_digests, failing_signatures, linkable

__all__ = ["FileKind", "IngestResult", "Store", "identify"]

_REDACTABLE_MARKS = ",".join("?" * len(REDACTABLE_KINDS))
_LINK_MARKS = ",".join("?" * len(LINK_KINDS))
_TEXT_MARKS = ",".join("?" * len(TEXT_KINDS))

_CHUNK = 500
_SCRUB_TRIES = 100  # a checkpoint that must empty the log retries this often while another process checkpoints
_BULK = 10_000  # rows in a batch into an empty table from which its indexes are rebuilt rather than updated
_INSERT_OP = (
    "INSERT INTO ops (origin, seq, hlc, eid, kind, v, actor, at, known, body, sent, sig, pd) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_OP_COLUMNS = "origin, seq, hlc, eid, kind, v, actor, at, body, sig, pd"
_ENVELOPE = itemgetter("origin", "seq", "hlc", "eid", "kind", "v", "actor", "at")  # _op_row's first columns
_ORDER = itemgetter("hlc", "origin", "seq")  # op_key, without a Python call per op
_HELD_META = "gap_held"  # present while some op from a peer is held back behind a gap in its device's chain
_LINK_META = "chain_link"  # "<origin>:<seq>:<link hex>" of this device's newest op
_TABLE: dict[str, str] = {entity: str(table.__tablename__) for entity, table in ENTITY_TABLES.items()}
_UPSERT = {entity: upsert_sql(entity) for entity in ENTITY_TABLES}


@dataclass
class IngestResult:
    """What one batch did to the store."""

    applied: int = 0
    duplicates: int = 0
    deferred: int = 0
    refolded: int = 0
    records: int = 0
    unchecked: int = 0
    held_back: int = 0
    """New ops from a peer that follow a gap in their device's chain: stored, not applied, until it is filled."""
    released: int = 0
    """Ops held back before that this batch let follow on (their gap filled, or the server sent them)."""
    max_hlc_by_origin: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FileKind:
    """What a file is, found without changing it (:func:`identify`): ``kind`` is a stable word
    (``replica``, ``missing``, ``folder``, ``empty``, ``not_sqlite``, ``bundle``, ``courier_bag``,
    ``server_database``, ``sqlite``), ``description`` one line for people."""

    kind: str
    description: str

    @property
    def is_replica(self) -> bool:
        """True for a caresync replica file."""
        return self.kind == "replica"


_SQLITE_MAGIC = b"SQLite format 3\x00"


def identify(path: str | Path) -> FileKind:
    """Says what the file at ``path`` is, reading it only (SQLite opened read-only, nothing created): a replica, or
    something a command must refuse with one line that names it (a courier's bag, a relay bundle, a server's
    database, another SQLite file, not SQLite at all). Never raises for a file that cannot be read: it says so."""
    p = Path(path)
    if not p.exists():
        return FileKind("missing", f"{p} does not exist")
    if p.is_dir():
        return FileKind("folder", f"{p} is a folder, not a replica file")
    try:
        with p.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return FileKind("unreadable", f"{p} cannot be read ({exc.strerror or exc})")
    if not head:
        return FileKind("empty", f"{p} is an empty file, not a replica")
    if head != _SQLITE_MAGIC:
        if head.lstrip()[:1] == b"{" and b'"caresync_bundle"' in p.read_bytes()[:4096]:
            return FileKind("bundle", f"{p} is a relay bundle (a file a courier carries), not a replica")
        return FileKind("not_sqlite", f"{p} is not a caresync replica (not an SQLite database)")
    try:
        db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.Error as exc:
        return FileKind("unreadable", f"{p} cannot be read as SQLite ({_reason(exc)})")
    if {"ops", "origins", "meta", "tickets"} <= tables:
        return FileKind("replica", f"{p} is a caresync replica")
    if {"bundles", "answers"} <= tables:
        return FileKind("courier_bag", f"{p} is a courier's bag of carried bundles, not a replica")
    if {"ops", "devices", "meta"} <= tables:
        return FileKind("server_database", f"{p} is a caresync server's database, not a replica")
    if not tables:
        return FileKind("sqlite", f"{p} is an empty SQLite database, not a caresync replica")
    named = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    return FileKind("sqlite", f"{p} is an SQLite database of something else (tables {named}), not a caresync replica")


def _closing(fresh: list[OpDict], batch: list[OpDict]) -> list[OpDict]:
    """The ops of ``batch`` already held that a run of ``fresh`` ops needs to be checked: a run that ends at an
    op that came without its signature (a pull answer leaves it out when the device's next op follows in the
    answer) is pinned by the next ops of the batch, up to a signed one, even when those are held already."""
    if all("sig" in op for op in fresh):
        return []
    new = {(op["origin"], op["seq"]) for op in fresh}
    by_id = {(op["origin"], op["seq"]): op for op in batch}
    extra: list[OpDict] = []
    for op in fresh:
        origin, seq = op["origin"], op["seq"] + 1
        if "sig" in op or (origin, seq) in new:
            continue
        while (nxt := by_id.get((origin, seq))) is not None and (origin, seq) not in new:
            extra.append(nxt)
            if "sig" in nxt:
                break
            seq += 1
    return extra


def _op_row(op: OpDict, known: int, sent: int = 0) -> tuple[Any, ...]:
    """The ``ops`` table row of an op (in the column order of :data:`_INSERT_OP`)."""
    return (*_ENVELOPE(op), known, to_json(op["body"]).decode(), sent, op.get("sig"), op.get("pd"))


def _owner_only(path: Path, log: logging.Logger) -> None:
    """Makes the replica file readable by its owner only: it holds the device's signing seed and its token.

    A new file is created with mode 0600 before SQLite opens it; SQLite gives its ``-wal`` and ``-shm`` files the
    mode of the database file. An existing file (with its ``-wal`` and ``-shm``) open to others is tightened to
    0600 when its owner opens it; a file of another user is left as it is.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(part.stat().st_mode)
            if mode & 0o077:
                os.chmod(part, mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:  # another user's file, or a read-only medium: opened as it is
            log.warning("cannot make %s readable by its owner only: %s", part, exc)


class Store:
    """An open replica file. Not thread-safe: one Store per thread (open the file again for another)."""

    def __init__(self, path: str | Path, *, logger: logging.Logger | None = None, read_only: bool = False) -> None:
        """Opens (or creates) the replica file at ``path``. With ``read_only`` the file must already be a replica
        of this schema version, and nothing is ever written to it: SQLite opens it read-only, nothing is
        migrated, re-folded or settled (a file that needs it is refused, naming the command that repairs it),
        and any write raises :class:`StoreError`."""
        self.path = Path(path)
        self.read_only = read_only
        self.log = logger or logging.getLogger("caresync.store.store")
        self._depth = 0
        self._closed = False
        self._scrub = False
        self._pending = False
        self._link: tuple[str, int, bytes] | None = None  # this device's newest (origin, seq, link)
        self._checkpointer = _Checkpointer(self.path, self.log)
        try:
            if read_only:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._engine: Engine = create_engine(
                    "sqlite://",
                    creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
                    poolclass=NullPool,
                    isolation_level="AUTOCOMMIT",
                )
                event.listen(self._engine, "connect", _on_connect_read_only)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _owner_only(self.path, self.log)
                self._engine = create_engine(
                    f"sqlite:///{self.path}",
                    poolclass=NullPool,
                    isolation_level="AUTOCOMMIT",
                )
                event.listen(self._engine, "connect", _on_connect)
            self.conn: Connection = self._engine.connect()
            raw = self.conn.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            self._db: sqlite3.Connection = raw
            if read_only:
                self._check_readable()
            else:
                self._migrate()
                self._refold_if_rules_changed()
            self._pending = bool(self.sql("SELECT 1 FROM pending LIMIT 1"))  # left by a sync that was cut off
            if read_only and self._pending:
                raise StoreError(
                    f"The replica file {self.path} was left by a sync that was cut off; run caresync sync (or any "
                    "command that records something) once to finish it, then read it.",
                    key="store.cut_off",
                    fields={"path": str(self.path)},
                )
        except (SQLAlchemyError, sqlite3.Error) as exc:
            self._closed = True
            raise StoreError(
                f"Cannot open the replica file {self.path}: {_reason(exc)}",
                key="store.cannot_open",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc

    # --- lifetime -------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the file; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._checkpointer.stop()  # before the store's own connection: the last one to close empties the log
        self.conn.close()
        self._engine.dispose()

    def _check_readable(self) -> None:
        """For a read-only open: the file is of this schema version and folded by these merge rules, so its rows
        can be read as they are."""
        if self._schema_version() < SCHEMA_VERSION or self.get_meta("fold_version") != str(FOLD_VERSION):
            raise self.needs_upgrade()

    def needs_upgrade(self) -> StoreError:
        """The error for a read-only open of a file an older caresync wrote (it must be upgraded by a writer)."""
        return StoreError(
            f"The replica file {self.path} was written by an older caresync; run caresync sync (or any command "
            "that records something) once to upgrade it, then read it.",
            key="store.older",
            fields={"path": str(self.path)},
        )

    def _schema_version(self) -> int:
        """The file's schema version; a file from a newer caresync is refused (StoreVersionError)."""
        version = int(self.conn.exec_driver_sql("PRAGMA user_version").scalar_one())
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"The replica file {self.path} has schema version {version}, newer than this caresync "
                f"understands ({SCHEMA_VERSION}); upgrade caresync to open it.",
                key="store.newer",
                fields={"path": str(self.path), "version": version, "known": SCHEMA_VERSION},
            )
        return version

    def _migrate(self) -> None:
        version = self._schema_version()
        if version < SCHEMA_VERSION:
            with self.write():
                migrate(self.conn, version)
            if version:
                self.log.info("migrated %s from schema version %d to %d", self.path, version, SCHEMA_VERSION)

    def _refold_if_rules_changed(self) -> None:
        """Marks every record pending when the file was folded by other merge rules (another FOLD_VERSION)."""
        folded_by = self.get_meta("fold_version")
        if folded_by == str(FOLD_VERSION):
            return
        with self.write():
            for entity, table in _TABLE.items():
                self.sql(f"INSERT OR IGNORE INTO pending (entity, id) SELECT ?, id FROM {table}", (entity,))
            self.set_meta("fold_version", str(FOLD_VERSION))
        if folded_by is not None:
            self.log.info(
                "re-folding every record of %s: merge rules changed (fold version %s to %d)",
                self.path,
                folded_by,
                FOLD_VERSION,
            )

    @contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls become savepoints."""
        if self.read_only:
            raise StoreError(
                f"The replica file {self.path} is open for reading only; nothing was changed.",
                key="store.read_only",
                fields={"path": str(self.path)},
            )
        depth = self._depth
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT sp{depth}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot write to the replica file {self.path}: {_reason(exc)}",
                key="store.cannot_write",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            self._scrub = self._scrub and depth > 0
            if depth == 0:
                db.execute("ROLLBACK")
            else:
                db.execute(f"ROLLBACK TO sp{depth}")
                db.execute(f"RELEASE sp{depth}")
            raise
        self._depth -= 1
        try:
            db.execute("COMMIT" if depth == 0 else f"RELEASE sp{depth}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot write to the replica file {self.path}: {_reason(exc)}",
                key="store.cannot_write",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc
        if depth == 0:
            if self._scrub and not self._pending:
                self._checkpoint()
            else:
                self._checkpointer.poke()

    def scrub_after(self) -> None:
        """Asks that the write-ahead log be emptied into the file once the current transaction commits, as after a
        redaction: for deleted data that must not linger in it (the blobs of an erased resident)."""
        self._scrub = True

    def _checkpoint(self) -> None:
        """Redacted data must not linger in the write-ahead log: copy it into the file and empty the log.

        Runs after the commit that erased it, or, when rows are still pending, after they are settled (the
        old rows hold the data too)."""
        self._scrub = False
        with self._checkpointer.lock:  # a checkpoint under way on the thread would make this one give up
            for _ in range(_SCRUB_TRIES):
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return
                time.sleep(0.01)  # another process is checkpointing the same file
        self.log.warning("could not empty the write-ahead log of %s after a redaction; it is retried later", self.path)
        self._scrub = True

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """Runs one SQL statement and returns its rows (for the library's own queries)."""
        try:
            return self._db.execute(statement, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(
                f"The replica file {self.path} could not be read or written: {_reason(exc)}",
                key="store.cannot_use",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc

    def _many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            self._db.executemany(statement, rows)
        except sqlite3.Error as exc:
            raise StoreError(
                f"The replica file {self.path} could not be written: {_reason(exc)}",
                key="store.not_written",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc

    # --- meta -----------------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the replica's meta table, or None."""
        rows = self.sql("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        """Sets a meta value; inside a transaction it lands (or not) with it."""
        self.sql("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # --- the log --------------------------------------------------------------------------------------------

    def append_local(self, op: OpDict, state: State | None, link: bytes | None = None) -> State:
        """Stores one op this replica just made and folds it into ``state`` (its record's current state).

        The fast path for local writes: the op is new by construction (its seq is this replica's next) and
        sorts after everything known for its record (its stamp took the record's floor), so it is applied to
        the state in memory. Redactions take the general path, which also rewrites earlier ops.
        ``link``, the op's chain link (:func:`caresync.trust.signing.chain_link`, computed when not given), is kept in
        the meta table in the same transaction, for the device's next op.
        """
        entity = entity_type_of(op["kind"])
        if link is None and "sig" in op:
            link = chain_link(op)  # the link this device's next op signs
        if op["kind"] == "resident.redact" or (state is None and not op["kind"].endswith(".create")):
            with self.write():
                self.ingest([op], [])
                self._keep_link(op, link)
            found = self.state(entity, op["eid"])
            assert found is not None
            return found
        with self.write():
            self._keep_link(op, link)
            db = self._db
            db.execute(_INSERT_OP, _op_row(op, 1))
            db.execute(
                "INSERT INTO origins (origin, contig, held, max_hlc) VALUES (?, ?, 1, ?) ON CONFLICT (origin) DO "
                "UPDATE SET contig = CASE WHEN contig = excluded.contig - 1 THEN excluded.contig ELSE contig END, "
                "held = held + 1, max_hlc = max(max_hlc, excluded.max_hlc)",
                (op["origin"], op["seq"], op["hlc"]),
            )
            if state is None:
                state = new_state(entity, op["eid"])
            apply_op(state, op)
            db.execute(_UPSERT[entity], row_values(state))
        return state

    def _keep_link(self, op: OpDict, link: bytes | None) -> None:
        """Remembers the link of this device's newest op (in the caller's transaction), for its next op."""
        if link is not None:
            self.set_meta(_LINK_META, f"{op['origin']}:{op['seq']}:{link.hex()}")
            self._link = (op["origin"], op["seq"], link)

    def own_link(self, origin: str, seq: int) -> bytes:
        """The link of this device's op ``seq`` (the one its op ``seq + 1`` commits to; zeros for seq 0): kept
        in memory and in the meta table with the op, recomputed from the stored op when missing."""
        if seq == 0:
            return ZERO_LINK
        cached = self._link
        if cached is not None and cached[:2] == (origin, seq):
            return cached[2]
        kept = (self.get_meta(_LINK_META) or "").split(":")
        if len(kept) == 3 and kept[0] == origin and kept[1] == str(seq):
            return bytes.fromhex(kept[2])
        found = ops_from_rows(self.sql(f"SELECT {_OP_COLUMNS} FROM ops WHERE origin = ? AND seq = ?", (origin, seq)))
        if not found or "sig" not in found[0]:
            raise StoreError(
                f"The replica file {self.path} lacks this device's signed op {seq}: cannot chain to it.",
                key="store.no_chain",
                fields={"path": str(self.path), "seq": seq},
            )
        return chain_link(found[0])

    def ingest(
        self,
        known: list[OpDict],
        deferred: list[OpDict],
        *,
        defer_rows: bool = False,
        sent: bool = False,
        verify: Callable[[list[OpDict]], Sequence[Mapping[str, Any]]] | None = None,
        hold_gaps: bool = False,
        explained: Collection[tuple[str, int]] = (),
    ) -> IngestResult:
        """Stores validated ops and folds the known ones into their records, in one transaction.

        With ``defer_rows`` (one batch of a longer sync) the records are only marked pending, in the same
        transaction, and re-folded once by :meth:`settle`: a record touched by every batch is then written
        once instead of once per batch. ``sent`` marks ops that came from the sync server (it has them).
        ``verify`` checks the ops not held yet before anything is stored (their signatures: checking only
        those spares the duplicates every sync resends, whose content is compared with what is held instead).
        Each op's ``pd`` (its link to its device's previous op, see :mod:`caresync.trust.signing`) is stored with it:
        taken from the held predecessor when a new run of ops starts right after one and lacks it, derived by
        ``verify`` inside the batch; then the run's last op is checked against a held successor.

        With ``hold_gaps`` (ops from a peer, which claims to send everything it holds after what this replica
        holds), a new op whose predecessor in its device's chain is neither held here, nor in the batch, nor in
        ``explained`` (ops this replica declined itself: outside its scope) is stored but not applied (``known``
        2), and so is every op after it that follows only it, until the gap is filled or the sync server sends the
        op (a server's pull answers are complete for the device's scope, so what they leave out is no gap). Ops a
        batch lets follow on are applied then (:attr:`IngestResult.released`).

        Raises:
            OpForkError: an op has the identity of a stored op but different content, or a signed ``pd`` names
                another predecessor than the held one (or a held op names another one than a new op); nothing
                is stored.
            Whatever ``verify`` raises; nothing is stored.
        """
        result = IngestResult()
        with paused_gc(), self.write():
            origins = self._origins({o["origin"] for o in known} | {o["origin"] for o in deferred})
            fresh_known = self._new_only(known, origins, result)
            fresh_deferred = self._new_only(deferred, origins, result)
            if not fresh_known and not fresh_deferred:
                return result
            fresh = fresh_known + fresh_deferred
            ends, forks = self._link_to_held(fresh, origins)
            if verify is not None:
                # first: an altered pd is a forgery, a signed one that disagrees a fork
                left_out = verify(fresh + _closing(fresh, known + deferred))
                if left_out:  # nothing in the batch vouches for them (see caresync.trust.signing.verify_ops)
                    ids = {id(op) for op in left_out}
                    fresh_known = [op for op in fresh_known if id(op) not in ids]
                    fresh_deferred = [op for op in fresh_deferred if id(op) not in ids]
                    result.unchecked = len(fresh) - len(fresh_known) - len(fresh_deferred)
                    if not fresh_known and not fresh_deferred:
                        return result
            if forks:
                raise forks[0]
            if verify is not None:
                self._check_held_successors(ends, origins)
            held_back: set[int] = set()
            if hold_gaps:
                held_back = self._beyond_gaps(fresh_known, fresh_deferred, explained)
                result.held_back = len(held_back)
            self._apply_redactions(fresh_known)
            # an op that came without its signature (pinned by a later op's link) came from a server's pull
            # answer, at first or second hand: the server holds it, so it is never pushed (it could not be: the
            # server keeps only ops it checked the signature of)
            mark = int(sent)
            rows = [_op_row(o, 2 if id(o) in held_back else 1, mark if "sig" in o else 1) for o in fresh_known]
            rows += [_op_row(o, 0, mark if "sig" in o else 1) for o in fresh_deferred]
            result.applied = len(fresh_known)
            result.deferred = len(fresh_deferred)
            self._insert(_INSERT_OP, "ops", rows)
            self._update_origins(fresh_known + fresh_deferred, origins, result)
            if held_back:
                fresh_known = [o for o in fresh_known if id(o) not in held_back]
                self.set_meta(_HELD_META, "1")
            result.applied -= len(held_back)
            self._release([o for o in fresh if id(o) not in held_back], known + deferred if sent else [], result)
            if defer_rows:
                marks = {(o["kind"][: o["kind"].index(".")], o["eid"]) for o in fresh_known if o["kind"] != LOST_KIND}
                self._many("INSERT OR IGNORE INTO pending (entity, id) VALUES (?, ?)", sorted(marks))
                self._pending = self._pending or bool(marks)
            else:
                self.materialise(fresh_known, result)
        return result

    def _insert(self, statement: str, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Runs an insert ``statement`` into ``table`` for each row. A large batch into an empty table (the log, or
        a record table, when a replica's first batch is large and folded at once) is inserted without the table's
        secondary indexes, which are then rebuilt from the sorted rows (in the same transaction, with the same
        statements): cheaper than inserting each row into them at random places, and it leaves them packed."""
        if len(rows) < _BULK or self.sql(f"SELECT 1 FROM {table} LIMIT 1"):
            self._many(statement, rows)
            return
        indexes = self.sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        )
        for name, _ in indexes:
            self.sql(f"DROP INDEX {name}")
        self._many(statement, rows)
        for _, index in indexes:
            self.sql(index)

    def _fold_from_log(self, entity: str, eids: Sequence[str]) -> dict[str, State]:
        """Folds records afresh from all their stored ops, fetching the ops of many records per query."""
        states: dict[str, State] = {}
        for part in _chunks(eids):
            marks = ",".join("?" * len(part))
            ops: dict[str, list[OpDict]] = {eid: [] for eid in part}
            for op in ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE eid IN ({marks}) AND known = 1 "
                    "ORDER BY eid, hlc, origin, seq",
                    part,
                )
            ):
                ops[op["eid"]].append(op)
            for eid, record_ops in ops.items():
                state = states[eid] = new_state(entity, eid)
                apply_sorted(state, record_ops)
        return states

    def settle(self, *, chunk: int = 2000, folded: Mapping[str, Mapping[str, State]] | None = None) -> int:
        """Re-folds every pending record from its ops and writes its row; returns how many.

        Called before anything reads rows, at the end of a sync, and when a file left by an interrupted sync
        is opened. Each chunk is its own transaction, so a crash here loses nothing either. ``folded`` holds, by
        record type and id, states the caller already folded from *every* known op its record has in the log
        (a pull into an empty replica folds its pages as they arrive): those rows are written as given, the
        other pending records are folded from the log.
        """
        if not self._pending:
            return 0
        with paused_gc():
            done = self._settle(chunk, folded or {})
        if self._scrub and self._depth == 0:
            self._checkpoint()
        return done

    def _settle(self, chunk: int, folded: Mapping[str, Mapping[str, State]]) -> int:
        done = 0
        while True:
            pending = self.sql("SELECT entity, id FROM pending ORDER BY entity, id LIMIT ?", (chunk,))
            if not pending:
                break
            with self.write():
                by_entity: dict[str, list[str]] = defaultdict(list)
                for entity, eid in pending:
                    by_entity[entity].append(eid)
                for entity, eids in by_entity.items():
                    have = folded.get(entity, {})
                    ready = [have[eid] for eid in eids if eid in have]
                    rest = [eid for eid in eids if eid not in have] if ready else eids
                    states = [*ready, *self._fold_from_log(entity, rest).values()]
                    gone = [(st["id"],) for st in states if st["last"] is None]  # no op of it is left (one was lost)
                    if gone:
                        self._many(f"DELETE FROM {_TABLE[entity]} WHERE id = ?", gone)
                    self._many(_UPSERT[entity], [row_values(st) for st in states if st["last"] is not None])
                self._many("DELETE FROM pending WHERE entity = ? AND id = ?", pending)
            done += len(pending)
        self._pending = False
        return done

    def _origins(self, names: set[str]) -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        ordered = sorted(names)
        for chunk in _chunks(ordered):
            marks = ",".join("?" * len(chunk))
            for origin, contig, held, max_hlc in self.sql(
                f"SELECT origin, contig, held, max_hlc FROM origins WHERE origin IN ({marks})", chunk
            ):
                found[origin] = (contig, held, max_hlc)
        return found

    def _new_only(
        self, ops: list[OpDict], origins: dict[str, tuple[int, int, int]], result: IngestResult
    ) -> list[OpDict]:
        if not ops:
            return []
        by_origin: dict[str, dict[int, OpDict]] = defaultdict(dict)
        for op in ops:
            items = by_origin[op["origin"]]
            seen = items.get(op["seq"])
            if seen is None:
                items[op["seq"]] = op
            else:
                self._check_same(seen, op)
                result.duplicates += 1
        if len(by_origin) == 1 and result.duplicates == 0 and ops[0]["origin"] not in origins:
            return ops  # the common bulk case: everything from one device this replica has never heard of
        fresh: list[OpDict] = []
        for origin, items in by_origin.items():
            known = origins.get(origin)
            existing: dict[int, Any] = {}
            if known is not None and known[1]:
                low, high = min(items), max(items)
                if low <= known[0] or known[1] > known[0]:  # may overlap what is held
                    existing = {
                        r[0]: r
                        for r in self.sql(
                            "SELECT seq, hlc, eid, kind, actor, at, body, pd, v FROM ops "
                            "WHERE origin = ? AND seq BETWEEN ? AND ?",
                            (origin, low, high),
                        )
                    }
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
                    "v": row[8],
                }
                if row[7] is not None:
                    stored_op["pd"] = row[7]
                self._check_same(stored_op, op)
                result.duplicates += 1
        return fresh

    def _link_to_held(
        self, fresh: list[OpDict], origins: dict[str, tuple[int, int, int]]
    ) -> tuple[dict[str, dict[int, OpDict]], list[OpForkError]]:
        """Fills in the ``pd`` of each new op whose predecessor is held and that lacks one, from the held op: a
        run of new ops then verifies without its predecessor in the batch. Returns the last op of each run of
        new ops, by origin and seq (for :meth:`_check_held_successors`), and a fork for each op whose ``pd``
        names another predecessor than the one held (raised once its signature checked: its device then
        signed two histories)."""
        holding = {origin for origin, (_, held, _) in origins.items() if held}
        by_origin: dict[str, dict[int, OpDict]] = defaultdict(dict)
        for op in fresh:
            if op["origin"] in holding:  # a device this replica holds nothing of has no held neighbours
                by_origin[op["origin"]].setdefault(op["seq"], op)
        ends: dict[str, dict[int, OpDict]] = {}
        forks: list[OpForkError] = []
        for origin, items in by_origin.items():
            ends[origin] = {seq: op for seq, op in items.items() if seq + 1 not in items}
            contig, held, _ = origins[origin]
            wanted = [s - 1 for s in items if s > 1 and s - 1 not in items and (s - 1 <= contig or held > contig)]
            for part in _int_chunks(sorted(wanted)):
                marks = ",".join("?" * len(part))
                for before in ops_from_rows(
                    self.sql(f"SELECT {_OP_COLUMNS} FROM ops WHERE origin = ? AND seq IN ({marks})", [origin, *part])
                ):
                    if not linkable(before):
                        continue  # held from before ops were signed or chained: nothing to link to
                    op = items[before["seq"] + 1]
                    link = chain_link(before).hex()
                    if op.get("pd", link) != link:
                        forks.append(_fork(op, "names another op before it than the one this replica holds"))
                    op["pd"] = op.get("pd", link)
        return ends, forks

    def _check_held_successors(
        self, ends: dict[str, dict[int, OpDict]], origins: dict[str, tuple[int, int, int]]
    ) -> None:
        """Checks that a held op following a run of new ops names the run's last op as its predecessor.

        Raises:
            OpForkError: it names another one (its device signed two histories).
        """
        for origin, last in ends.items():
            contig, held, _ = origins.get(origin, (0, 0, 0))
            if held <= contig:
                continue  # nothing is held beyond a gap, so no held op follows a new one
            wanted = sorted(seq + 1 for seq in last if seq + 1 > contig)
            for part in _int_chunks(wanted):
                marks = ",".join("?" * len(part))
                for seq, pd in self.sql(
                    f"SELECT seq, pd FROM ops WHERE origin = ? AND seq IN ({marks}) AND pd IS NOT NULL",
                    [origin, *part],
                ):
                    op = last[seq - 1]
                    if linkable(op) and chain_link(op).hex() != pd:
                        raise _fork(op, f"is not the op that op {origin}:{seq}, held here, follows")

    @staticmethod
    def _check_same(a: OpDict, b: OpDict) -> None:
        same = all(a[k] == b[k] for k in ("hlc", "eid", "kind", "actor", "at"))
        same = same and a.get("pd", b.get("pd")) == b.get("pd", a.get("pd"))
        if same and not rewritable(a):
            same = json.dumps(a["body"], sort_keys=True) == json.dumps(b["body"], sort_keys=True)
        elif same:  # a redaction may have erased values of either: compare what the signatures cover
            same = content_digests(a["kind"], a["v"], a["body"]) == content_digests(b["kind"], b["v"], b["body"])
        if not same:
            raise OpForkError(
                f"Two different ops both claim to be op {a['origin']}:{a['seq']}. The device "
                f"{a['origin']} was probably restored from a backup or copied to another phone; stop using "
                "that copy and ask the station to re-enrol it. Nothing from this batch was applied.",
                key="store.fork",
                fields={"origin": a["origin"], "seq": a["seq"]},
            )

    def _apply_redactions(self, fresh: list[OpDict]) -> None:
        """Erases redacted personal fields from stored op bodies and from new ops written before a redaction."""
        self._erase_texts(fresh)
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
                if op["kind"] in REDACTABLE_KINDS and op_key(op) < key:
                    op["body"] = redact_body(op["kind"], op["body"], names)
        for o in new_redacts:
            key = op_key(o)
            updates = []
            for origin, seq, hlc, kind, body in self.sql(
                f"SELECT origin, seq, hlc, kind, body FROM ops WHERE eid = ? AND kind IN ({_REDACTABLE_MARKS})",
                (o["eid"], *sorted(REDACTABLE_KINDS)),
            ):
                if (hlc, origin, seq) < key:
                    redacted = redact_body(kind, from_json(body), o["body"]["fields"])
                    updates.append((to_json(redacted).decode(), origin, seq))
            if updates:
                self._many("UPDATE ops SET body = ? WHERE origin = ? AND seq = ?", updates)
            self._scrub = True

    def _erase_texts(self, fresh: list[OpDict]) -> None:
        """Erases the free text of a resident's tickets and visits (:func:`caresync.core.ops.erased_texts`): from
        the stored ops a new redaction reaches and from new ops a held (or new) redaction reaches. The records
        whose stored ops changed are re-folded (their rows held the text too)."""
        new_redacts = [o for o in fresh if o["kind"] == "resident.redact"]
        fresh_texts = [o for o in fresh if o["kind"] in TEXT_KINDS and rewritable(o)]
        if not new_redacts and not fresh_texts:
            return
        links = [o for o in fresh if o["kind"] in LINK_KINDS]
        for o in new_redacts:  # the records that name the resident (the body holds its id: found, then checked)
            links += ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE kind IN ({_LINK_MARKS}) AND known = 1 AND instr(body, ?)",
                    (*LINK_KINDS, o["eid"]),
                )
            )
        for chunk in _chunks(sorted({o["eid"] for o in fresh_texts})):
            marks = ",".join("?" * len(chunk))
            links += ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE eid IN ({marks}) AND kind IN ({_LINK_MARKS}) AND known = 1",
                    (*chunk, *LINK_KINDS),
                )
            )
        erased_by_new = {o["eid"] for o in new_redacts}
        residents, records, stored_texts = erasure_reach(links + fresh_texts, erased_by_new, fresh)
        fresh_ids = {id(o) for o in fresh}
        redactions = list(new_redacts)
        for chunk in _chunks(sorted(residents - erased_by_new)):
            marks = ",".join("?" * len(chunk))
            redactions += ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE kind = 'resident.redact' AND known = 1 AND eid IN ({marks})",
                    chunk,
                )
            )
        for chunk in _chunks(sorted(records)):
            marks = ",".join("?" * len(chunk))
            stored_texts += ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE eid IN ({marks}) AND kind IN ({_TEXT_MARKS}) AND v >= ? "
                    "AND known = 1",
                    (*chunk, *TEXT_KINDS, TEXT_FORMAT),
                )
            )
        updates = []
        touched: set[tuple[str, str]] = set()
        for op, body in erased_texts(fresh_texts + stored_texts, links, redactions):
            if id(op) in fresh_ids:
                op["body"] = body
            else:
                updates.append((to_json(body).decode(), op["origin"], op["seq"]))
                touched.add((entity_type_of(op["kind"]), op["eid"]))
        if updates:
            self._many("UPDATE ops SET body = ? WHERE origin = ? AND seq = ?", updates)
            self._many("INSERT OR IGNORE INTO pending (entity, id) VALUES (?, ?)", sorted(touched))
            self._pending = True
            self._scrub = True

    def _beyond_gaps(
        self, known: list[OpDict], deferred: list[OpDict], explained: Collection[tuple[str, int]]
    ) -> set[int]:
        """The ops of ``known`` (by ``id``) whose predecessor is missing here or itself held back (see
        :meth:`ingest`)."""
        present = {(o["origin"], o["seq"]) for o in known} | {(o["origin"], o["seq"]) for o in deferred}
        present |= set(explained)
        wanted = sorted({(o["origin"], o["seq"] - 1) for o in known if o["seq"] > 1} - present)
        stored: dict[tuple[str, int], int] = {}
        for origin, seq in wanted:
            for (flag,) in self.sql("SELECT known FROM ops WHERE origin = ? AND seq = ?", (origin, seq)):
                stored[(origin, seq)] = int(flag)
        held: set[int] = set()
        by_key = {(o["origin"], o["seq"]): o for o in known}
        for op in sorted(known, key=lambda o: (o["origin"], o["seq"])):
            before = (op["origin"], op["seq"] - 1)
            if op["seq"] == 1:
                continue
            if before in by_key:
                if id(by_key[before]) in held:
                    held.add(id(op))
            elif before not in present and stored.get(before, 2) == 2:
                held.add(id(op))
        return held

    def _release(self, applied: list[OpDict], vouched: list[OpDict], result: IngestResult) -> None:
        """Applies the held-back ops that now follow on: the successors of the ``applied`` ops, the ``vouched``
        ones (a server's pull answer sent them), then their successors in turn."""
        if self.get_meta(_HELD_META) is None:
            return
        keys = {(o["origin"], o["seq"] + 1) for o in applied} | {(o["origin"], o["seq"]) for o in vouched}
        released: list[tuple[str, int, str, str]] = []
        while keys:
            found = []
            for origin, seq in sorted(keys):
                found += self.sql(
                    "SELECT origin, seq, kind, eid FROM ops WHERE origin = ? AND seq = ? AND known = 2", (origin, seq)
                )
            if not found:
                break
            self._many("UPDATE ops SET known = 1 WHERE origin = ? AND seq = ?", [(o, s) for o, s, _, _ in found])
            released += found
            keys = {(o, s + 1) for o, s, _, _ in found}
        if released:
            marks = sorted({(str(k).partition(".")[0], e) for _, _, k, e in released if k != LOST_KIND})
            self._many("INSERT OR IGNORE INTO pending (entity, id) VALUES (?, ?)", marks)
            self._pending = True
            result.released += len(released)
        if not self.sql("SELECT 1 FROM ops WHERE known = 2 LIMIT 1"):
            self.sql("DELETE FROM meta WHERE key = ?", (_HELD_META,))

    def _update_origins(
        self, ops: list[OpDict], origins: dict[str, tuple[int, int, int]], result: IngestResult
    ) -> None:
        seqs: dict[str, set[int]] = defaultdict(set)
        top: dict[str, int] = {}
        for op in ops:
            origin = op["origin"]
            seqs[origin].add(op["seq"])
            if op["hlc"] > top.get(origin, -1):
                top[origin] = op["hlc"]
        rows = []
        for origin, new in seqs.items():
            contig, held, old_max = origins.get(origin, (0, 0, 0))
            had_gap = held > contig
            held += len(new)
            while contig + 1 in new:
                contig += 1
            if had_gap and held > contig:  # ops held beyond an old gap may now follow on
                for (seq,) in self.sql(
                    "SELECT seq FROM ops WHERE origin = ? AND seq > ? ORDER BY seq", (origin, contig)
                ):
                    if seq != contig + 1:
                        break
                    contig = seq
            result.max_hlc_by_origin[origin] = top[origin]
            rows.append((origin, contig, held, max(old_max, top[origin])))
        self._many("INSERT OR REPLACE INTO origins (origin, contig, held, max_hlc) VALUES (?, ?, ?, ?)", rows)

    def materialise(self, ops: list[OpDict], result: IngestResult | None = None) -> None:
        """Folds newly stored known ops into their records' rows (the caller holds the transaction)."""
        self.settle()  # a pending record's saved row is stale: bring it up to date before building on it
        groups = _group(ops)
        saved = self._saved_states(groups)
        folded = {entity: _fold_new(entity, items, saved[entity]) for entity, items in groups.items()}
        self._write_rows(groups, folded, result)

    def _saved_states(self, groups: dict[str, dict[str, list[OpDict]]]) -> dict[str, dict[str, _Saved]]:
        saved: dict[str, dict[str, _Saved]] = {}
        for entity, items in groups.items():
            found: dict[str, _Saved] = {}
            for chunk in _chunks(list(items)):
                marks = ",".join("?" * len(chunk))
                for rid, h, o, s, state_json in self.sql(
                    f"SELECT id, last_hlc, last_origin, last_seq, state FROM {_TABLE[entity]} WHERE id IN ({marks})",
                    chunk,
                ):
                    found[rid] = ((h, o, s), state_json)
            saved[entity] = found
        return saved

    def _write_rows(
        self,
        groups: dict[str, dict[str, list[OpDict]]],
        folded: dict[str, dict[str, State | None]],
        result: IngestResult | None,
    ) -> None:
        """Writes the folded rows; records whose new ops arrived late are re-folded from the whole log."""
        for entity, states in folded.items():
            late = [eid for eid, state in states.items() if state is None]
            refolded = self._fold_from_log(entity, late) if late else {}
            rows = []
            for eid, state in states.items():
                if state is None:
                    state = refolded[eid]
                rows.append(row_values(state))
            self._insert(_UPSERT[entity], _TABLE[entity], rows)
            if result is not None:
                result.refolded += len(late)
                result.records += len(rows)

    # --- reads ----------------------------------------------------------------------------------------------

    def ops_of(self, eid: str, *, known_only: bool = True) -> list[OpDict]:
        """Every stored op about one record, in HLC order."""
        rows = self.sql(
            f"SELECT {_OP_COLUMNS} FROM ops WHERE eid = ?"
            + (" AND known = 1" if known_only else "")
            + " ORDER BY hlc, origin, seq",
            (eid,),
        )
        return ops_from_rows(rows)

    def state(self, entity: str, eid: str) -> State | None:
        """The folded state of one record, or None if nothing is known about it."""
        self.settle()
        rows = self.sql(f"SELECT state FROM {_TABLE[entity]} WHERE id = ?", (eid,))
        return from_json(rows[0][0]) if rows else None

    def version_vector(self) -> dict[str, int]:
        """For each origin, the highest seq held with nothing missing before it."""
        return {o: c for o, c in self.sql("SELECT origin, contig FROM origins")}

    def op_count(self) -> int:
        """How many ops the log holds, deferred ones included."""
        return int(self.sql("SELECT COALESCE(SUM(held), 0) FROM origins")[0][0])

    def ops_after(self, vv: dict[str, int], *, limit: int, held: tuple[str, int] | None = None) -> list[OpDict]:
        """Up to ``limit`` stored ops the holder of version vector ``vv`` may lack, in (origin, seq) order;
        ``held`` ``(origin, seq)`` leaves out that device's ops from that seq on (work kept on this device)."""
        with paused_gc():
            return self._ops_after(vv, limit, held)

    def _ops_after(self, vv: dict[str, int], limit: int, held: tuple[str, int] | None = None) -> list[OpDict]:
        out: list[OpDict] = []
        for origin, contig, count in self.sql("SELECT origin, contig, held FROM origins ORDER BY origin"):
            since = vv.get(origin, 0)
            if count == 0 or (contig >= count and since >= contig):
                continue
            below = held[1] if held is not None and held[0] == origin else 2**62
            out.extend(
                self._checkable(
                    ops_from_rows(
                        self.sql(
                            f"SELECT {_OP_COLUMNS} FROM ops WHERE origin = ? AND seq > ? AND seq < ? "
                            "ORDER BY seq LIMIT ?",
                            (origin, since, below, limit - len(out)),
                        )
                    )
                )
            )
            if len(out) >= limit:
                break
        return out

    def _checkable(self, ops: list[OpDict]) -> list[OpDict]:
        """One device's ops (in seq order) as a receiver can check them: every run of consecutive seqs must end
        at an op that carries its signature (:func:`caresync.trust.signing.verify_ops`). Ops that came in a pull
        answer without theirs (see :func:`caresync.trust.signing.signature_needed`) are followed by held ones up to a
        signed op; a run cut short by the page is completed from the log, and ops whose run no held signed op
        closes (a scope change purged it) are left out: the receiver gets them from the server."""
        if not ops or all("sig" in op for op in ops):
            return ops
        origin = ops[0]["origin"]
        while "sig" not in ops[-1]:
            more = ops_from_rows(
                self.sql(
                    f"SELECT {_OP_COLUMNS} FROM ops WHERE origin = ? AND seq > ? ORDER BY seq LIMIT 1000",
                    (origin, ops[-1]["seq"]),
                )
            )
            run: list[OpDict] = []
            for op in more:
                if op["seq"] != ops[-1]["seq"] + len(run) + 1:
                    break
                run.append(op)
                if "sig" in op:
                    break
            ops.extend(run)
            if len(run) < 1000:
                break  # closed by a signed op, or by a gap (or the end of the log): nothing more to follow
        kept: list[OpDict] = []
        closed = False  # whether the op after the current one is kept and consecutive
        for op in reversed(ops):
            closed = "sig" in op or (closed and kept[-1]["seq"] == op["seq"] + 1)
            if closed:
                kept.append(op)
        kept.reverse()
        return kept

    # --- what the sync server has ----------------------------------------------------------------------------

    def unsent(
        self,
        after: tuple[int, str, int] | None,
        *,
        limit: int,
        own: str | None = None,
        held: tuple[str, int] | None = None,
    ) -> list[OpDict]:
        """Up to ``limit`` ops the server has not acknowledged, in ``(hlc, origin, seq)`` order after ``after``.

        With ``own`` (this replica's id), the signatures of other devices' ops are checked first: they came in
        runs whose last signature was checked, so theirs were not, and the server refuses a batch with one that
        does not check. An op whose signature fails loses it and is left to its own device to send (it stays
        here, pinned by the run it came in). ``held`` ``(origin, seq)`` leaves out that device's ops from that
        seq on: work the device keeps until it can seal it."""
        where, params = ("", []) if after is None else ("AND (hlc, origin, seq) > (?, ?, ?)", list(after))
        if held is not None:
            where += " AND NOT (origin = ? AND seq >= ?)"
            params += list(held)
        rows = self.sql(
            f"SELECT {_OP_COLUMNS} FROM ops WHERE sent = 0 {where} ORDER BY hlc, origin, seq LIMIT ?",
            [*params, limit],
        )
        ops = ops_from_rows(rows)
        if own is None:
            return ops
        bad = failing_signatures([op for op in ops if op["origin"] != own])
        if not bad:
            return ops
        with self.write():
            self._many(
                "UPDATE ops SET sig = NULL, sent = 1 WHERE origin = ? AND seq = ?",
                [(o["origin"], o["seq"]) for o in bad],
            )
        self.log.warning(
            "dropped the signatures of %d op(s) of other devices that did not check (first: %s:%s); their own "
            "devices send them to the server",
            len(bad),
            bad[0]["origin"],
            bad[0]["seq"],
        )
        dropped = {id(op) for op in bad}
        return [op for op in ops if id(op) not in dropped]

    def unsent_stats(
        self,
        *,
        besides: tuple[tuple[int, str, int], tuple[int, str, int]] | None = None,
        held: tuple[str, int] | None = None,
    ) -> tuple[int, int | None]:
        """How many ops wait to be sent, and the ``at`` of the oldest (None when none wait); ``besides`` leaves
        out the unsent ops from one ``(hlc, origin, seq)`` key to another (a batch being sent), ``held`` one
        device's ops from a seq on (see :meth:`unsent`)."""
        where, params = "", []
        if besides is not None:
            where = "AND NOT ((hlc, origin, seq) BETWEEN (?, ?, ?) AND (?, ?, ?))"
            params = [*besides[0], *besides[1]]
        if held is not None:
            where += " AND NOT (origin = ? AND seq >= ?)"
            params += list(held)
        count, oldest = self.sql(f"SELECT COUNT(*), MIN(at) FROM ops WHERE sent = 0 {where}", params)[0]
        return int(count), oldest

    def own_unsent(self, origin: str) -> list[OpDict]:
        """This device's ops the server has not stored (unsent, waiting or refused), in seq order."""
        return ops_from_rows(
            self.sql(f"SELECT {_OP_COLUMNS} FROM ops WHERE origin = ? AND sent != 1 ORDER BY seq", (origin,))
        )

    def replace_lost(self, lost: OpDict, link: bytes | None) -> None:
        """Puts a lost-op statement (:data:`~caresync.core.ops.LOST_KIND`) in the place of this device's damaged op
        of the same seq, unsent, and re-folds the record the damaged op was about (its row showed that op's change,
        which no longer is in the log). ``link``: keep it for the device's next op, when the lost op was its newest.
        Only for an op that never left the device."""
        with self.write():
            rows = self.sql("SELECT kind, eid FROM ops WHERE origin = ? AND seq = ?", (lost["origin"], lost["seq"]))
            self.sql(
                "UPDATE ops SET hlc = ?, eid = ?, kind = ?, v = ?, actor = ?, at = ?, body = ?, sig = ?, pd = ?, "
                "known = 1, sent = 0 WHERE origin = ? AND seq = ?",
                (
                    lost["hlc"],
                    lost["eid"],
                    lost["kind"],
                    lost["v"],
                    lost["actor"],
                    lost["at"],
                    to_json(lost["body"]).decode(),
                    lost.get("sig"),
                    lost.get("pd"),
                    lost["origin"],
                    lost["seq"],
                ),
            )
            for kind, eid in rows:
                entity = str(kind).partition(".")[0]
                if entity in _TABLE:
                    self.sql("INSERT OR IGNORE INTO pending (entity, id) VALUES (?, ?)", (entity, eid))
                    self._pending = True
            if link is not None:
                self._keep_link(lost, link)
            self._scrub = True
        self.settle()

    def rewrite_own(self, ops: Sequence[OpDict], link: bytes) -> None:
        """Replaces this device's own unsent ops by new versions of them (the same identities; sealed and signed
        again), re-folds their records, and keeps ``link``, the newest op's link, for the next op. The old bodies
        are overwritten on disk (``secure_delete``) and the write-ahead log is emptied after the commit.

        Only for ops that never left the device: a peer holding the old version would see a fork."""
        if not ops:
            return
        with self.write():
            self._many(
                "UPDATE ops SET body = ?, sig = ?, pd = ? WHERE origin = ? AND seq = ? AND sent != 1",
                [(to_json(op["body"]).decode(), op.get("sig"), op.get("pd"), op["origin"], op["seq"]) for op in ops],
            )
            self._many(
                "INSERT OR IGNORE INTO pending (entity, id) VALUES (?, ?)",
                sorted({(entity_type_of(op["kind"]), op["eid"]) for op in ops}),
            )
            self._keep_link(ops[-1], link)
            self._scrub = True
            self._pending = True
        self.settle()

    def unsent_times(self, *, held: tuple[str, int] | None = None) -> Iterator[tuple[int, int]]:
        """``(hlc, at)`` of every op waiting to be sent (less ``held``, as :meth:`unsent`), in ``(hlc, origin,
        seq)`` order, read as they are iterated: one ordered scan, from which a push keeps two numbers per op (see
        :mod:`caresync.sync.netsync`)."""
        where, params = ("AND NOT (origin = ? AND seq >= ?)", list(held)) if held is not None else ("", [])
        try:
            yield from self._db.execute(
                f"SELECT hlc, at FROM ops WHERE sent = 0 {where} ORDER BY hlc, origin, seq", params
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"The replica file {self.path} could not be read: {_reason(exc)}",
                key="store.cannot_read",
                fields={"path": str(self.path), "reason": _reason(exc)},
            ) from exc

    def mark_sent(self, ranges: Iterable[tuple[str, int, int]]) -> int:
        """Marks unsent ops in ``(origin, lo, hi)`` seq ranges as stored by the server; returns how many."""
        done = 0
        for origin, lo, hi in ranges:
            done += self._db.execute(
                "UPDATE ops SET sent = 1 WHERE origin = ? AND seq BETWEEN ? AND ? AND sent = 0", (origin, lo, hi)
            ).rowcount
        return done

    def mark_refused(self, refusals: Iterable[tuple[str, int, str, str, int]]) -> None:
        """Records the server's refusals ``(origin, seq, code, reason, at)``; the ops stay in the log."""
        rows = list(refusals)
        self._many("UPDATE ops SET sent = 2 WHERE origin = ? AND seq = ?", [(o, s) for o, s, *_ in rows])
        self._many("INSERT OR REPLACE INTO refusals (origin, seq, code, reason, at) VALUES (?, ?, ?, ?, ?)", rows)

    def refusals(self) -> list[tuple[OpDict, str, str, int]]:
        """Each refused op with the server's code, reason and when it was refused, oldest first."""
        rows = self.sql(
            f"SELECT {', '.join('o.' + c.strip() for c in _OP_COLUMNS.split(','))}, r.code, r.reason, r.at "
            "FROM refusals r JOIN ops o ON o.origin = r.origin AND o.seq = r.seq ORDER BY r.at, r.origin, r.seq"
        )
        return [(op, r[11], r[12], r[13]) for op, r in zip(ops_from_rows([r[:11] for r in rows]), rows, strict=True)]

    def retry_refused(self) -> int:
        """Puts refused ops back in the queue (after the station changed what the device may do)."""
        with self.write():
            count = self._db.execute("UPDATE ops SET sent = 0 WHERE sent = 2").rowcount
            self.sql("DELETE FROM refusals")
        return count

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
        return ops_from_rows(self.sql(f"SELECT {_OP_COLUMNS} FROM ops WHERE known = 0"))

    def mark_known(self, ops: list[OpDict]) -> None:
        """Marks deferred ops as folded and re-folds their records (after an upgrade)."""
        with self.write():
            self._many("UPDATE ops SET known = 1 WHERE origin = ? AND seq = ?", [(o["origin"], o["seq"]) for o in ops])
            by_entity: dict[str, set[str]] = defaultdict(set)
            for op in ops:
                by_entity[entity_type_of(op["kind"])].add(op["eid"])
            for entity, eids in by_entity.items():
                states = self._fold_from_log(entity, sorted(eids))
                self._many(_UPSERT[entity], [row_values(st) for st in states.values()])

    def digest(self) -> str:
        """SHA-256 over every record's folded state and every op held, in a canonical order."""
        self.settle()
        h = hashlib.sha256()
        for entity in sorted(ENTITY_TABLES):
            h.update(f"\x00{entity}\x00".encode())
            for rid, state in self.sql(f"SELECT id, state FROM {_TABLE[entity]} ORDER BY id"):
                h.update(rid.encode())
                h.update(json.dumps(from_json(state), sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\x00ops\x00")
        for row in self.sql(
            "SELECT origin, seq, hlc, eid, kind, v, actor, at, known, body FROM ops ORDER BY origin, seq"
        ):
            h.update(json.dumps([*row[:9], from_json(row[9])], sort_keys=True, ensure_ascii=False).encode())
        return h.hexdigest()


_Saved = tuple[tuple[int, str, int], str]


def _group(ops: list[OpDict]) -> dict[str, dict[str, list[OpDict]]]:
    """Ops by record type and record id, each record's ops in HLC order."""
    groups: dict[str, dict[str, list[OpDict]]] = {}
    by_kind: dict[str, dict[str, list[OpDict]]] = {}  # the group of each kind seen, to skip parsing it again
    unsorted: list[list[OpDict]] = []
    # While every op has a higher HLC than the one before it in the batch (a batch from one device, or an export
    # in HLC order), each record's ops are in order already: only the neighbour in the batch, near in memory, is
    # compared, not the record's previous op (one cache miss per op in a large batch).
    ordered, top = True, -1
    for op in ops:
        kind = op["kind"]
        items = by_kind.get(kind)
        if items is None:
            items = by_kind[kind] = groups.setdefault(kind[: kind.index(".")], {})
        if kind == LOST_KIND:  # a lost-op statement: part of its device's chain, of no record
            continue
        eid = op["eid"]
        record = items.get(eid)
        if ordered:
            hlc = op["hlc"]
            if hlc > top:
                top = hlc
            else:
                ordered = False
        if record is None:
            items[eid] = [op]
        else:
            if not ordered and op["hlc"] <= record[-1]["hlc"]:  # not plainly after the previous one: sort this record
                unsorted.append(record)
            record.append(op)
    for record in unsorted:
        record.sort(key=_ORDER)  # (a record listed twice is sorted twice: cheap, and rare)
    return groups


def _fold_new(entity: str, items: dict[str, list[OpDict]], saved: dict[str, _Saved]) -> dict[str, State | None]:
    """Applies new ops to each record's saved state; None marks a record that needs a full re-fold."""
    out: dict[str, State | None] = {}
    for eid, new_ops in items.items():
        prior = saved.get(eid)
        if prior is None:
            state = new_state(entity, eid)
        elif op_key(new_ops[0]) > prior[0]:
            state = from_json(prior[1])
        else:
            out[eid] = None
            continue
        apply_sorted(state, new_ops)
        out[eid] = state
    return out


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _int_chunks(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _fork(op: OpDict, what: str) -> OpForkError:
    return OpForkError(
        f"Op {op['origin']}:{op['seq']} {what}: its device {op['origin']} signed two different histories. It was "
        "probably restored from a backup or copied to another phone; stop using that copy and ask the station to "
        "re-enrol it. Nothing from this batch was applied.",
        key="store.fork_chain",
        fields={"origin": op["origin"], "seq": op["seq"], "what": what},
    )


class _Checkpointer:
    """Copies the write-ahead log into the replica file on a thread of its own, so that a commit never waits for it.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold: after a large batch (a first
    sync, a bundle) that is tens of megabytes copied and synced before the call returns, on the thread that
    needs to get on with the next page or the next screen. The store's connection turns it off
    (``wal_autocheckpoint = 0``) and pokes this one after each commit; it waits a moment for a burst of commits
    to pass, then checkpoints with its own connection, ``PASSIVE`` (it never blocks the writer or a reader; what
    a reader still uses is copied next time). The log is valid until it has been copied, so a process that
    dies in the middle loses nothing, and the last connection to close the file empties the log as always.
    """

    _SETTLE_S = 0.05

    def __init__(self, path: Path, log: logging.Logger) -> None:
        self._path = path
        self._log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.lock = threading.Lock()
        """Held while a checkpoint runs: one that must complete (after a redaction) takes it too."""
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Asks for a checkpoint soon (after a commit); starts the thread on first use."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="caresync-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Ends the thread, after the checkpoint under way if there is one. What is left in the log is copied
        when the store's own connection, the last one, closes."""
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            self._log.warning("cannot open %s to checkpoint its log: %s", self._path, exc)
            return
        try:
            while not self._stopping.is_set():  # checked after each checkpoint: the clear below may eat stop's wake
                self._wake.wait()
                if self._stopping.wait(self._SETTLE_S):  # let a burst of commits pass; a stop cuts the wait short
                    break
                self._wake.clear()  # a poke from here on asks for one more checkpoint
                try:
                    with self.lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or failing disk: the log stays valid, the next poke retries
                    self._log.warning("checkpoint of %s failed: %s", self._path, exc)
        finally:
            conn.close()


#: SQLite's page cache for each connection to a replica file, in KiB (see ``_on_connect``).
CACHE_KIB = 16_384


def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.execute("PRAGMA foreign_keys = ON")
    # 16 MiB of pages per connection. 64 MiB was tried for big merges, which touch the (eid, hlc) index all over;
    # measured again (100,000 ops) it bought no speed (apply_ops as fast or faster with 16) and cost its size in
    # RSS: a push or a pull of the workload fills it, and the pages stay in the OS's cache anyway.
    cur.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    cur.execute("PRAGMA secure_delete = ON")  # overwritten personal data is zeroed, not left in free space
    cur.execute("PRAGMA wal_autocheckpoint = 0")  # a _Checkpointer copies the log into the file instead
    cur.close()


def _on_connect_read_only(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only = ON")
    cur.execute("PRAGMA busy_timeout = 10000")
    cur.execute("PRAGMA cache_size = -65536")
    cur.close()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0]
