"""The replica file's tables (SQLModel) and its ordered migrations.

``PRAGMA user_version`` holds the schema version. Opening a file runs every migration after the file's
version, in order, in one transaction; a file from a newer caresync is refused rather than guessed at.
Migrations are frozen DDL: once released, a step never changes; a new column is a new step. The SQLModel
classes below always describe the latest schema (a test checks that both agree).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection, Index, text
from sqlmodel import Field, SQLModel

from caresync.core.merge import State, conflict_count, value_of

__all__ = [
    "ENTITY_TABLES",
    "MIGRATIONS",
    "PROVISIONAL_NUMBER_SQL",
    "SCHEMA_VERSION",
    "BlobChunkRow",
    "BlobRow",
    "ClockAnomalyRow",
    "MailboxRow",
    "MetaRow",
    "OpRow",
    "OriginRow",
    "ParcelRow",
    "PendingRow",
    "RefusalRow",
    "ResidentRow",
    "TicketRow",
    "VisitRow",
    "WorkerRow",
    "row_values",
]

#: The condition, on the ``tickets`` table, of a ticket showing a provisional number (``<device id>-<n>``: the
#: only numbers with a dash, as :func:`caresync.core.ids.is_provisional` says). It is the condition of the
#: partial index ``ix_tickets_provisional``: a query must say it word for word for SQLite to use the index.
PROVISIONAL_NUMBER_SQL = "number GLOB '*-*'"


class OpRow(SQLModel, table=True):
    """One op of the log. ``known`` is 0 for ops deferred until an upgrade teaches this library their kind."""

    __tablename__ = "ops"
    origin: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    hlc: int
    eid: str
    kind: str
    v: int
    actor: str
    at: int
    known: int
    body: str
    sent: int = 0
    sig: str | None = None
    pd: str | None = None
    __table_args__ = (
        Index("ix_ops_eid_hlc", "eid", "hlc"),
        Index("ix_ops_unsent", "hlc", "origin", "seq", sqlite_where=text("sent = 0")),
        Index("ix_ops_blobs", "eid", sqlite_where=text("kind GLOB '*.attach' OR kind GLOB '*.detach'")),
        {"sqlite_with_rowid": False},
    )


class BlobRow(SQLModel, table=True):
    """A sealed blob the replica holds (or is fetching): its manifest, chunks held, whether the server has it."""

    __tablename__ = "blobs"
    id: str = Field(primary_key=True)
    size: int
    chunks: str
    held: int
    sent: int = 0


class BlobChunkRow(SQLModel, table=True):
    """One chunk of a sealed blob."""

    __tablename__ = "blob_chunks"
    id: str = Field(primary_key=True)
    n: int = Field(primary_key=True)
    data: bytes


class OriginRow(SQLModel, table=True):
    """Per origin replica: the highest seq held with no gap before it, and how many of its ops are held."""

    __tablename__ = "origins"
    origin: str = Field(primary_key=True)
    contig: int
    held: int
    max_hlc: int


class MetaRow(SQLModel, table=True):
    """Replica identity and settings: id, clock offset, last stamp."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class ClockAnomalyRow(SQLModel, table=True):
    """Origins whose stamps were seen far ahead of this device's clock (schema version 2)."""

    __tablename__ = "clock_anomalies"
    origin: str = Field(primary_key=True)
    ahead_ms: int
    seen_at: int
    hlc: int


class PendingRow(SQLModel, table=True):
    """Records whose ops were stored by a multi-batch sync but whose rows are not re-folded yet (version 3).

    Written in the same transaction as the ops, so after a crash every record either has a row equal to the
    fold of its ops or is listed here; the store re-folds listed records before anything reads them.
    """

    __tablename__ = "pending"
    entity: str = Field(primary_key=True)
    id: str = Field(primary_key=True)


class RefusalRow(SQLModel, table=True):
    """Ops the sync server refused, with its reason (schema version 4). The ops stay in the log (``sent = 2``)."""

    __tablename__ = "refusals"
    origin: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    code: str
    reason: str
    at: int


class _EntityColumns(SQLModel):
    id: str = Field(primary_key=True)
    complete: int
    deleted: int
    conflicts: int
    last_hlc: int
    last_origin: str
    last_seq: int
    state: str


class ResidentRow(_EntityColumns, table=True):
    __tablename__ = "residents"
    name: str | None = Field(default=None)
    grid: str | None = Field(default=None, index=True)
    flags: str | None = None
    knock_every_days: int | None = None


class WorkerRow(_EntityColumns, table=True):
    __tablename__ = "workers"
    name: str | None = None
    role: str | None = None


class TicketRow(_EntityColumns, table=True):
    __tablename__ = "tickets"
    status: str | None = Field(default=None, index=True)
    grid: str | None = Field(default=None, index=True)
    kind: str | None = None
    channel: str | None = None
    priority: str | None = None
    title: str | None = None
    assignee: str | None = Field(default=None, index=True)
    resident_id: str | None = Field(default=None, index=True)
    submitted_at: int | None = None
    due_at: int | None = None
    resolved_at: int | None = None
    closed_at: int | None = None
    rating: int | None = None
    outcome: str | None = None
    number: str | None = None
    __table_args__ = (Index("ix_tickets_provisional", "id", sqlite_where=text(PROVISIONAL_NUMBER_SQL)),)


class VisitRow(_EntityColumns, table=True):
    __tablename__ = "visits"
    resident_id: str | None = Field(default=None, index=True)
    visitor: str | None = None
    visited_at: int | None = None
    outcome: str | None = None
    ticket_id: str | None = None


class MailboxRow(_EntityColumns, table=True):
    __tablename__ = "mailboxes"
    code: str | None = Field(default=None, index=True)
    name: str | None = None
    grid: str | None = None


class ParcelRow(_EntityColumns, table=True):
    __tablename__ = "parcels"
    code: str | None = Field(default=None, index=True)
    grid: str | None = None
    stage: str | None = None
    holder: str | None = None
    resident_id: str | None = None
    mailbox_id: str | None = None


ENTITY_TABLES: dict[str, type[_EntityColumns]] = {
    "resident": ResidentRow,
    "worker": WorkerRow,
    "ticket": TicketRow,
    "visit": VisitRow,
    "mailbox": MailboxRow,
    "parcel": ParcelRow,
}

_COMMON = ["id", "complete", "deleted", "conflicts", "last_hlc", "last_origin", "last_seq", "state"]


def _extra_columns(entity: str) -> list[str]:
    table = ENTITY_TABLES[entity].__table__  # type: ignore[attr-defined]
    return [c.name for c in table.columns if c.name not in _COMMON]


def _rating_score(state: State) -> int | None:
    rating = value_of(state, "rating")
    return int(rating["score"]) if isinstance(rating, dict) else None


_EXTRA: dict[str, Callable[[State], list[Any]]] = {
    "resident": lambda s: [
        value_of(s, "name"),
        value_of(s, "grid"),
        ",".join(value_of(s, "flags") or []) or None,
        value_of(s, "knock_every_days"),
    ],
    "worker": lambda s: [value_of(s, "name"), value_of(s, "role")],
    "ticket": lambda s: [
        s["st"]["v"],
        s["st"]["grid"],
        value_of(s, "kind"),
        value_of(s, "channel"),
        value_of(s, "priority") or "normal",
        value_of(s, "title"),
        value_of(s, "assignee"),
        value_of(s, "resident_id"),
        s["created"][2] if s["created"] else None,
        value_of(s, "due_at"),
        s["st"]["at"].get("resolve"),
        s["st"]["at"].get("close"),
        _rating_score(s),
        value_of(s, "outcome"),
        value_of(s, "number"),
    ],
    "visit": lambda s: [
        value_of(s, "resident_id"),
        value_of(s, "visitor"),
        value_of(s, "visited_at"),
        value_of(s, "outcome"),
        value_of(s, "ticket_id"),
    ],
    "mailbox": lambda s: [value_of(s, "code"), value_of(s, "name"), value_of(s, "grid")],
    "parcel": lambda s: [
        value_of(s, "code"),
        value_of(s, "grid"),
        s["hop"]["stage"],
        s["hop"]["holder"],
        value_of(s, "resident_id"),
        value_of(s, "mailbox_id"),
    ],
}


def upsert_sql(entity: str) -> str:
    """The statement that writes one materialised row of ``entity``: an update in place when it exists, so
    SQLite touches only the indexes whose columns changed (a REPLACE would delete and re-insert them all)."""
    table = ENTITY_TABLES[entity].__tablename__
    columns = _COMMON + _extra_columns(entity)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def row_values(state: State) -> list[Any]:
    """The column values of a record's materialised row, derived from its folded state (stored as JSON too)."""
    last = state["last"]
    return [
        state["id"],
        1 if state["created"] is not None else 0,
        1 if value_of(state, "deleted") else 0,
        conflict_count(state),
        last[0],
        last[1],
        last[2],
        to_json(state).decode(),
        *_EXTRA[state["type"]](state),
    ]


# --- migrations -------------------------------------------------------------------------------------------

_COMMON_DDL = (
    "id TEXT PRIMARY KEY, complete INTEGER NOT NULL, deleted INTEGER NOT NULL, conflicts INTEGER NOT NULL, "
    "last_hlc INTEGER NOT NULL, last_origin TEXT NOT NULL, last_seq INTEGER NOT NULL, state TEXT NOT NULL"
)

_V1 = [
    "CREATE TABLE ops (origin TEXT NOT NULL, seq INTEGER NOT NULL, hlc INTEGER NOT NULL, eid TEXT NOT NULL, "
    "kind TEXT NOT NULL, v INTEGER NOT NULL, actor TEXT NOT NULL, at INTEGER NOT NULL, known INTEGER NOT NULL, "
    "body TEXT NOT NULL, PRIMARY KEY (origin, seq)) WITHOUT ROWID",
    "CREATE INDEX ix_ops_eid_hlc ON ops (eid, hlc)",
    "CREATE TABLE origins (origin TEXT PRIMARY KEY, contig INTEGER NOT NULL, held INTEGER NOT NULL, "
    "max_hlc INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"CREATE TABLE residents ({_COMMON_DDL}, name TEXT, grid TEXT, flags TEXT, knock_every_days INTEGER)",
    "CREATE INDEX ix_residents_grid ON residents (grid)",
    f"CREATE TABLE workers ({_COMMON_DDL}, name TEXT, role TEXT)",
    f"CREATE TABLE tickets ({_COMMON_DDL}, status TEXT, grid TEXT, kind TEXT, channel TEXT, priority TEXT, "
    "title TEXT, assignee TEXT, resident_id TEXT, submitted_at INTEGER, due_at INTEGER, resolved_at INTEGER, "
    "closed_at INTEGER, rating INTEGER, outcome TEXT)",
    "CREATE INDEX ix_tickets_status ON tickets (status)",
    "CREATE INDEX ix_tickets_grid ON tickets (grid)",
    "CREATE INDEX ix_tickets_assignee ON tickets (assignee)",
    "CREATE INDEX ix_tickets_resident_id ON tickets (resident_id)",
    f"CREATE TABLE visits ({_COMMON_DDL}, resident_id TEXT, visitor TEXT, visited_at INTEGER, outcome TEXT, "
    "ticket_id TEXT)",
    "CREATE INDEX ix_visits_resident_id ON visits (resident_id)",
    f"CREATE TABLE mailboxes ({_COMMON_DDL}, code TEXT, name TEXT, grid TEXT)",
    "CREATE INDEX ix_mailboxes_code ON mailboxes (code)",
    f"CREATE TABLE parcels ({_COMMON_DDL}, code TEXT, grid TEXT, stage TEXT, holder TEXT, resident_id TEXT, "
    "mailbox_id TEXT)",
    "CREATE INDEX ix_parcels_code ON parcels (code)",
]

_V2 = [
    "CREATE TABLE clock_anomalies (origin TEXT PRIMARY KEY, ahead_ms INTEGER NOT NULL, seen_at INTEGER NOT NULL, "
    "hlc INTEGER NOT NULL)",
]

_V3 = [
    "CREATE TABLE pending (entity TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (entity, id))",
]

# Network sync: ``ops.sent`` is 0 until the sync server acknowledged storing the op (1), or refused it (2).
# Every op held before this step is unsent: the server ignores what it already has.
_V4 = [
    "ALTER TABLE ops ADD COLUMN sent INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX ix_ops_unsent ON ops (hlc, origin, seq) WHERE sent = 0",
    "CREATE TABLE refusals (origin TEXT NOT NULL, seq INTEGER NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, "
    "at INTEGER NOT NULL, PRIMARY KEY (origin, seq))",
]

# Signed ops: ``ops.sig`` holds each op's signature (NULL for ops written before caresync signed them).
_V5 = [
    "ALTER TABLE ops ADD COLUMN sig TEXT",
]

# Chained signatures: ``ops.pd`` holds each op's link to its device's previous op (NULL for a device's first
# op, and for ops held from before the chain), so an op can be sent on without its predecessor.
_V6 = [
    "ALTER TABLE ops ADD COLUMN pd TEXT",
]

# Attachments: sealed blobs beside the log (see caresync.store.blobs), and an index of the ops that name or
# remove them, so finding the blobs a replica should hold never reads the whole log.
_V7 = [
    "CREATE TABLE blobs (id TEXT PRIMARY KEY, size INTEGER NOT NULL, chunks TEXT NOT NULL, held INTEGER NOT NULL, "
    "sent INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE blob_chunks (id TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (id, n))",
    "CREATE INDEX ix_ops_blobs ON ops (eid) WHERE kind GLOB '*.attach' OR kind GLOB '*.detach'",
]

# Ticket numbers: ``tickets.number`` holds the number a ticket shows (as ``value_of(state, "number")``: the last
# entry of the state's ``number`` field, filled from the stored states here), and a partial index holds only the
# tickets still showing a provisional number (``<device id>-<n>``: the only ones with a dash), so a sync finds
# the ones it must renumber without reading every ticket's state.
_V8 = [
    "ALTER TABLE tickets ADD COLUMN number TEXT",
    "UPDATE tickets SET number = json_extract(state, '$.f.number[#-1][6]')",  # 6: an entry's value
    "CREATE INDEX ix_tickets_provisional ON tickets (id) WHERE number GLOB '*-*'",
]

#: ``MIGRATIONS[k]`` takes a file from schema version ``k`` to ``k + 1``.
MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: Connection, from_version: int) -> None:
    """Runs the migration steps after ``from_version`` (the caller holds the transaction)."""
    for step in MIGRATIONS[from_version:]:
        for statement in step:
            conn.exec_driver_sql(statement)
    conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
