"""The server's storage: its tables on SQLite or PostgreSQL, through SQLAlchemy Core, and the transactions of
push, pull and the admin commands.

Tables (schema version :data:`SCHEMA_VERSION`, kept in ``meta``):

* ``devices``: enrolled devices: role, grids, the sha256 of their token, the replica id bound on first use,
  and the health each sync reports (last sync, ops pending, oldest unsent op, clock offset);
* ``ops``: every stored op, with the ``cursor`` the server gave it, the record type and grid(s) pulls filter
  on; ``(origin, seq)`` unique;
* ``origins``: per device (origin), ``contig``: the highest seq with every seq up to it stored or refused;
* ``entities``: per record, its type and the grid it lives in (for scope and permission);
* ``refusals``: the ops refused, with the fingerprint of what was refused and the reason, answered again
  whenever the op comes back;
* ``grid_keys`` (schema version 3): the readers' keys the station published, public halves only, each signed by the
  station key; ``grid_key_wraps``: each key's secret wrapped (sealed) to one device's key, served to that device
  only. The server never holds a readers' key itself.
* ``blobs``, ``blob_chunks``, ``blob_holders`` (schema version 4; :mod:`caresync_server.blobs`): attachments'
  sealed blobs, their manifests, the chunks held on disk and the devices holding each. Servers before version 4
  made them on first use; the migration to 4 makes them, or brings first-use ones to their full shape.

**Cursors become visible in order.** A pull returns ops with ``cursor`` above the device's cursor and moves the
cursor past them, so a commit that made a *lower* cursor visible after a puller read past it would be skipped by
that puller forever. So cursors are drawn, and committed, by one push transaction at a time: on PostgreSQL every
push transaction takes a transaction-scoped advisory lock before it draws cursors and holds it until COMMIT (the
lock is released only once the commit is visible), so the committed cursors are always a prefix of the ones
drawn; on SQLite a push opens with ``BEGIN IMMEDIATE``, the database's one writer lock. A cursor is the last
cursor + 1, or the server's clock (milliseconds << :data:`CURSOR_CLOCK_SHIFT`) if that is larger, so cursors
never repeat even after a restore from an older backup. docs/protocol.md gives the full argument.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from caresync.core.domain import EntityType, Role, check_grid
from caresync.core.gcpause import paused_gc
from caresync.core.ops import (
    CHECKABLE_BY_OLDER,
    FORMAT_VERSION,
    LINK_KINDS,
    REDACTABLE_KINDS,
    TEXT_FORMAT,
    TEXT_KINDS,
    OpDict,
    erased_texts,
    erasure_reach,
    ops_from_rows,
    redact_body,
    rewritable,
)
from caresync.errors import InvalidInputError
from caresync.trust.codes import PROOF_WINDOW_MS, new_code, normalize_code, token_proof
from caresync.trust.gridkeys import grid_key_message
from caresync.trust.keys import DeviceKey, StationKeyLink, origin_of, rotation_message, verify_signature
from caresync.trust.signing import chain_link, linkable, signature_needed
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import ColumnElement

from .admission import (
    Knowledge,
    OpKey,
    OriginDevice,
    PriorRefusal,
    Record,
    Verdict,
    admit,
    body_text,
    check_signers,
    fingerprint,
    referenced_ops,
)
from .errors import AdminError, ApiError, ConfigError, DatabaseNotReady, DatabaseUnavailable, ErrorCode
from .keyfile import create_key_file, read_key_file, write_key_file
from .roles import EVERYWHERE, GLOBAL_TYPES, ROLE_TABLE
from .settings import Settings

__all__ = [
    "CURSOR_CLOCK_SHIFT",
    "HEALTH_EVERY_MS",
    "PULL_SCAN_WINDOW",
    "SCHEMA_VERSION",
    "Credentials",
    "Device",
    "DeviceHealth",
    "DeviceReport",
    "EnrolmentCode",
    "PullPage",
    "ScopeLoss",
    "Storage",
    "blob_chunks",
    "blob_holders",
    "blobs",
    "check_replica",
    "devices",
    "entities",
    "grid_key_wraps",
    "grid_keys",
    "meta",
    "ops",
    "origins",
    "refusals",
    "system_time_ms",
    "token_hash",
]

#: The layout of the server's tables; a database written by a newer server is refused.
SCHEMA_VERSION = 4
#: The meta row that held the seed of the server's signing key before it moved to its key file; a database that
#: still has it gives it to the key file on first use, and forgets it (:meth:`Storage.server_key`).
SERVER_KEY_META = "server_signing_key"
#: The meta row holding the server's public key, so that a server started with another key file (or none) refuses
#: to serve instead of signing with a key the devices do not know.
SERVER_PUBLIC_KEY_META = "server_public_key"
#: The meta row holding the last ticket number reserved for a device (:meth:`Storage.reserve_numbers`).
NUMBERS_META = "ticket_numbers_reserved"
#: The first ticket number a station hands out: four digits, easy to say on the phone.
FIRST_TICKET_NUMBER = 1000
#: A pull examines at most this many ops past the device's cursor (or ``limit``, if larger), so that a device
#: that sees little of the log still gets an answer quickly; its cursor moves past what was examined.
PULL_SCAN_WINDOW = 50_000
#: A new op's cursor is at least the server's clock in milliseconds shifted by this many bits (and always above
#: the last cursor), so cursors never repeat, even after the database is restored from an older backup.
CURSOR_CLOCK_SHIFT = 20
#: A pull records the device's last sync and clock offset at most this often (a push always does).
HEALTH_EVERY_MS = 10_000
_CHUNK = 500  # ids per IN (...) list
_ALL_TYPES = frozenset(t.value for t in EntityType)

_T = TypeVar("_T")


def system_time_ms() -> int:
    """The server's wall clock, in milliseconds since 1970."""
    return time.time_ns() // 1_000_000


_metadata = MetaData()
# The tables (SQLAlchemy Core). Their names are unqualified: on PostgreSQL the engine maps them to the configured
# schema (schema_translate_map).
_Cursor = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY: SQLite's rowid

meta = Table(
    "meta",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
devices = Table(
    "devices",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("grids", Text, nullable=False),  # a JSON list of grid paths; "" is everywhere
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("replica_id", String(16), unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    Column("last_sync_at", BigInteger),
    Column("last_clock_offset_ms", BigInteger),
    Column("pending", BigInteger),
    Column("oldest_unsent_ms", BigInteger),
    # schema version 2: enrolment codes, device keys, expiring tokens, scope changes
    Column("public_key", String(64)),  # the device's Ed25519 public key (hex), bound when it enrolled with a code
    Column("token_expires_at", BigInteger),
    Column("code_hash", String(64)),  # the sha256 of its enrolment code, until the code is used
    Column("code_expires_at", BigInteger),
    Column("enrolled_at", BigInteger),  # when the code was exchanged for a token
    Column("scope_version", Integer, nullable=False, server_default="1"),
    Column("last_proof_ms", BigInteger),  # the time of the last signed token request (replays are refused)
    Index("devices_by_code", "code_hash", unique=True),
)
ops = Table(
    "ops",
    _metadata,
    Column("cursor", _Cursor, primary_key=True, autoincrement=False),
    Column("origin", String(16), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("hlc", BigInteger, nullable=False),
    Column("eid", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("v", Integer, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("sig", Text),  # the op's signature (caresync.trust.signing); checked before the op was admitted
    Column("pd", String(32)),  # its link to its device's previous op (NULL for seq 1): sent where not derivable
    Column("rtype", String(16), nullable=False),
    Column("grid", Text, nullable=False),
    Column("grid_to", Text),
    Column("rkind", Text),  # schema version 2: the ticket's kind once the op is applied (mediators see disputes)
    Column("rkind_from", Text),  # and its kind before, when the op changed it
    UniqueConstraint("origin", "seq", name="ops_identity"),
    Index("ops_by_record", "eid"),
)

#: An op's columns in the order :func:`caresync.core.ops.ops_from_rows` reads them.
_OP_ROW = (
    ops.c.origin,
    ops.c.seq,
    ops.c.hlc,
    ops.c.eid,
    ops.c.kind,
    ops.c.v,
    ops.c.actor,
    ops.c.at,
    ops.c.body,
    ops.c.sig,
    ops.c.pd,
)

origins = Table(
    "origins",
    _metadata,
    Column("origin", String(16), primary_key=True),
    Column("contig", BigInteger, nullable=False),
)
entities = Table(
    "entities",
    _metadata,
    Column("eid", Text, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("grid", Text, nullable=False),
    Column("grid_hlc", BigInteger, nullable=False),
    Column("resident", Text),
    Column("kind", Text),  # schema version 2: a ticket's kind, and the stamp of the op that set it
    Column("kind_hlc", BigInteger),
    Index("entities_by_resident", "resident"),
)
refusals = Table(
    "refusals",
    _metadata,
    Column("origin", String(16), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("eid", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("code", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("refused_at", BigInteger, nullable=False),
)
grid_keys = Table(
    "grid_keys",
    _metadata,
    Column("grid", Text, primary_key=True),
    Column("role", String(16), primary_key=True),  # the reading role: grid_worker, knocker, mediator
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("public_key", String(64), nullable=False),  # X25519, hex
    Column(
        "signature", String(128), nullable=False
    ),  # the station key's, over caresync.trust.gridkeys.grid_key_message
    Column("signing_key", String(64), nullable=False),  # the station key that signed it (Ed25519, hex)
    Column("published_at", BigInteger, nullable=False),
)
grid_key_wraps = Table(
    "grid_key_wraps",
    _metadata,
    Column("grid", Text, primary_key=True),
    Column("role", String(16), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("replica", String(16), primary_key=True),  # the device it is wrapped to
    Column("wrap", Text, nullable=False),  # base64 sealed box to the device's X25519 key
    Index("grid_key_wraps_by_replica", "replica"),
)
# schema version 4: attachments' blobs (caresync_server.blobs), their bytes on disk under Settings.blob_dir
blobs = Table(
    "blobs",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Text, nullable=False),  # the chunk hashes, concatenated hex
    Column("eid", Text, nullable=False),  # the record whose attach op named it
    Column("op", String(40), nullable=False),
    Column("device", Integer, nullable=False),  # the device that sent it (its quota)
    Column("held", Integer, nullable=False),
    Column("received", BigInteger, nullable=False),  # chunk bodies received, duplicates included
    Column("served", BigInteger, nullable=False),  # chunks handed out
    Column("complete", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("resident", Text),  # the resident the naming record is of (itself, a visit's, a ticket's, a parcel's)
    Column("dropped", BigInteger),  # the op cursor by which no live attachment named it (deleted once held by none)
    Index("blobs_by_resident", "resident"),
    Index("blobs_dropped", "dropped"),
)
blob_chunks = Table(
    "blob_chunks",
    _metadata,
    Column("blob", String(64), primary_key=True),
    Column("n", Integer, primary_key=True),
)
blob_holders = Table(
    "blob_holders",
    _metadata,
    Column("blob", String(64), primary_key=True),
    Column("device", Integer, primary_key=True),  # a device that sent it, or was handed a chunk of it
    Index("blob_holders_by_device", "device"),
)
#: The columns of the blob tables that the first-use tables of servers before schema version 4 may lack (they
#: were added by later first uses): the migration to version 4 adds those missing.
_BLOB_COLUMNS_LATER = (("blobs", "resident", "TEXT"), ("blobs", "dropped", "BIGINT"))


@dataclass(frozen=True)
class Device:
    """An enrolled device, as a request's token identifies it."""

    id: int
    name: str
    role: Role
    grids: tuple[str, ...]
    replica_id: str | None
    revoked_at: int | None
    last_sync_at: int | None
    clock_offset_ms: int | None
    scope_version: int = 1
    """Raised by every change of the device's role or grids, so the device knows to re-check what it holds."""
    token_expires_at: int | None = None
    has_key: bool = False
    """True when the server holds the device's Ed25519 key (bound at enrolment with a code, or by
    :meth:`Storage.bind_device_key`)."""


@dataclass(frozen=True)
class Credentials:
    """What a device gets when it enrols with a code or renews its token (``POST /v1/enroll``, ``/v1/token``)."""

    device: Device
    token: str
    """Shown this once; the server keeps only its sha256."""
    token_expires_at: int
    station_public_key: bytes | None


@dataclass(frozen=True)
class EnrolmentCode:
    """A one-time enrolment code as the station hands it out."""

    device: DeviceHealth
    code: str
    """Grouped base32 with a check character (:func:`caresync.trust.codes.format_code`)."""
    expires_at: int


@dataclass(frozen=True)
class DeviceHealth:
    """A device and what its syncs last reported, for the station's ``devices`` listing."""

    id: int
    name: str
    role: str
    grids: tuple[str, ...]
    replica_id: str | None
    created_at: int
    revoked_at: int | None
    last_sync_at: int | None
    pending: int | None
    oldest_unsent_ms: int | None
    clock_offset_ms: int | None
    refusals: int
    scope_version: int = 1
    token_expires_at: int | None = None
    enrolled_at: int | None = None
    """When the device redeemed its enrolment code (None: enrolled with a token, or not redeemed yet)."""


@dataclass(frozen=True)
class ScopeLoss:
    """What a change of a device's scope would do to the records it holds, counted on the server's records."""

    held: int
    """Records the device may read now (by the role table, in its grids)."""
    lost: int
    """Of those, the ones outside the new scope: the device removes them at its next sync."""
    in_new_grids: int
    """Records of any type in the new grids (0: the grids match no record the server holds)."""
    stored: int
    """Records the server holds in all."""

    @property
    def empties(self) -> bool:
        """True when the change leaves the device nothing of what it holds now, or names grids without a single
        record while the server holds some (a typo, most likely)."""
        return (self.held > 0 and self.lost == self.held) or (self.stored > 0 and self.in_new_grids == 0)


@dataclass(frozen=True)
class DeviceReport:
    """What a device reports with a push: its backlog, and its clock offset as the server measured it."""

    pending: int
    """Ops it still holds unsent after this batch."""
    oldest_unsent_ms: int | None
    """When the oldest of those was made."""
    clock_offset_ms: int
    """Server time minus the device's, when the request arrived."""


@dataclass(frozen=True)
class PullPage:
    """One pull's answer: the op rows (``origin, seq, hlc, eid, kind, v, actor, at, body, sig, pd``), the new
    cursor."""

    rows: list[tuple[Any, ...]]
    cursor: int
    more: bool


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _identities(table: Table, pairs: Sequence[tuple[str, int]]) -> ColumnElement[bool]:
    """``(origin, seq) IN pairs`` for ``table``, written as an OR of equalities: SQLite (3.40) answers a row-value
    IN list by scanning the whole table (at every push, growing with the log), the OR by one search of the
    ``(origin, seq)`` index per pair; PostgreSQL searches its index either way."""
    return or_(*(and_(table.c.origin == origin, table.c.seq == seq) for origin, seq in pairs))


def token_hash(token: str) -> str:
    """What the server keeps of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _lock_key(purpose: str, schema: str | None) -> int:
    """A PostgreSQL advisory lock key of its own per purpose and per schema (so schemas do not contend)."""
    digest = hashlib.sha256(f"caresync-server {purpose} {schema or 'public'}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Storage:
    """The server's database. Thread-safe (one connection pool); create one per process.

    Args:
        settings: where the database is.
        now_ms: the wall clock (tests pass their own).
    """

    def __init__(self, settings: Settings, *, now_ms: Callable[[], int] = system_time_ms) -> None:
        self.settings = settings
        self.now_ms = now_ms
        self.dialect = settings.dialect
        self.schema = settings.database_schema if self.dialect == "postgresql" else None
        self.ops_lock_key = _lock_key("ops", self.schema)
        """PostgreSQL: the advisory lock every push transaction holds from before it draws cursors to COMMIT."""
        self._ddl_lock = _lock_key("ddl", self.schema)
        self.engine = self._create_engine()
        self._server_key: DeviceKey | None = None

    def _create_engine(self) -> Engine:
        url = self.settings.database_url
        if self.dialect == "sqlite":
            engine = create_engine(url)

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # transactions are begun below, not by the driver
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout = 30000")  # several server processes may share the file
                cursor.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
                cursor.execute("PRAGMA synchronous = FULL")  # an acked op survives a power cut
                cursor.execute("PRAGMA secure_delete = ON")  # erased personal data leaves the file
                cursor.close()

            @event.listens_for(engine, "begin")
            def _sqlite_begin(connection: Connection) -> None:
                # BEGIN IMMEDIATE takes the write lock at once, so writers queue up instead of failing
                write = connection.get_execution_options().get("caresync_write", False)
                connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        options: dict[str, Any] = {}
        if self.schema is not None:
            options["schema_translate_map"] = {None: self.schema}
        return create_engine(url, pool_pre_ping=True, execution_options=options)

    def close(self) -> None:
        """Closes the database connections; calling it again does nothing."""
        self.engine.dispose()

    # --- transactions ----------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Re-raises the database driver's errors as the server's own."""
        where = self.settings.safe_database_url()
        try:
            yield
        except sa_exc.TimeoutError as exc:  # every pooled connection stayed busy (pushes queue for their turn)
            raise DatabaseUnavailable(
                f"The database at {where} is busy: no connection came free in time. Try again shortly."
            ) from exc
        except sa_exc.DBAPIError as exc:
            first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            if "no such table" in first or type(exc.orig).__name__ in ("UndefinedTable", "InvalidSchemaName"):
                raise DatabaseNotReady(
                    f"The database at {where} has no caresync-server tables; run `caresync-server init` "
                    "(or start `caresync-server serve`, which creates them)."
                ) from exc
            if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
                raise DatabaseUnavailable(
                    f"The database at {where} does not answer ({first}). Check that it is running and that "
                    "the address is right, then try again."
                ) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self, *, cursors: bool = False) -> Iterator[Connection]:
        """A write transaction; ``cursors=True`` for one that draws op cursors (see the module doc)."""
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(caresync_write=True)
            with conn.begin():
                if cursors and self.dialect == "postgresql":
                    # held until COMMIT: no commit with a lower cursor can land after one with a higher cursor
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.ops_lock_key})
                yield conn

    # --- schema ----------------------------------------------------------------------------------------------

    def _sqlite_path(self) -> Path:
        database = make_url(self.settings.database_url).database
        return Path(database or "")

    def ensure_schema(self, *, create: bool) -> int:
        """Checks the server's tables, creating them first if ``create`` and they are missing.

        Returns:
            The schema version.

        Raises:
            DatabaseNotReady: the tables are missing (and not ``create``), or are a newer server's.
            DatabaseUnavailable: the database does not answer.
        """
        where = self.settings.safe_database_url()
        if self.dialect == "sqlite" and not create and not self._sqlite_path().exists():
            raise DatabaseNotReady(
                f"There is no caresync-server database at {where}; run `caresync-server init` in the right folder, "
                "or pass --database-url.",
                key="no_database",
                fields={"database": where},
            )
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._ddl_lock})
                if self.schema is not None and create:
                    conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            if inspect(conn).has_table("meta", schema=self.schema):
                found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one_or_none()
                version = int(found or 0)
                if version > SCHEMA_VERSION:
                    raise DatabaseNotReady(
                        f"The database at {where} was written by a newer caresync-server (schema version {version}; "
                        f"this one knows {SCHEMA_VERSION}). Upgrade caresync-server."
                    )
                if version < SCHEMA_VERSION:
                    self._migrate(conn, version)
                return SCHEMA_VERSION
            if not create:
                raise DatabaseNotReady(
                    f"The database at {where} has no caresync-server tables; run `caresync-server init`.",
                    key="no_tables",
                    fields={"database": where},
                )
            _metadata.create_all(conn)
            conn.execute(
                meta.insert(),
                [
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "created_at", "value": str(self.now_ms())},
                    {"key": NUMBERS_META, "value": str(FIRST_TICKET_NUMBER - 1)},
                ],
            )
            return SCHEMA_VERSION

    def _migrate(self, conn: Connection, version: int) -> None:
        """Brings a database of an older schema version up to :data:`SCHEMA_VERSION` (in the caller's transaction)."""
        prefix = f'"{self.schema}".' if self.schema else ""
        if version < 2:
            for table, column, ddl in (
                ("devices", "public_key", "VARCHAR(64)"),
                ("devices", "token_expires_at", "BIGINT"),
                ("devices", "code_hash", "VARCHAR(64)"),
                ("devices", "code_expires_at", "BIGINT"),
                ("devices", "enrolled_at", "BIGINT"),
                ("devices", "scope_version", "INTEGER NOT NULL DEFAULT 1"),
                ("devices", "last_proof_ms", "BIGINT"),
                ("ops", "sig", "TEXT"),
                ("ops", "pd", "VARCHAR(32)"),
                ("ops", "rkind", "TEXT"),
                ("ops", "rkind_from", "TEXT"),
                ("entities", "kind", "TEXT"),
                ("entities", "kind_hlc", "BIGINT"),
            ):
                conn.exec_driver_sql(f"ALTER TABLE {prefix}{table} ADD COLUMN {column} {ddl}")
            conn.exec_driver_sql(f"CREATE UNIQUE INDEX devices_by_code ON {prefix}devices (code_hash)")
            # tickets keep the kind of their latest kind-setting op (by clock stamp), as pulls now filter on it
            kinds: dict[str, tuple[int, str]] = {}
            for eid, kind, hlc, body in conn.execute(
                select(ops.c.eid, ops.c.kind, ops.c.hlc, ops.c.body).where(
                    ops.c.kind.in_(["ticket.create", "ticket.set"])
                )
            ):
                data = json.loads(body)
                value = data.get("kind") if kind == "ticket.create" else data.get("value")
                if (kind == "ticket.create" or data.get("field") == "kind") and hlc >= kinds.get(eid, (-1, ""))[0]:
                    kinds[eid] = (hlc, str(value))
            for eid, (hlc, value) in kinds.items():
                conn.execute(entities.update().where(entities.c.eid == eid).values(kind=value, kind_hlc=hlc))
                conn.execute(ops.update().where(ops.c.eid == eid).values(rkind=value))
            if conn.execute(select(meta.c.value).where(meta.c.key == NUMBERS_META)).first() is None:
                conn.execute(meta.insert().values(key=NUMBERS_META, value=str(FIRST_TICKET_NUMBER - 1)))
        if version < 3:  # readers' keys: two new tables, nothing else changes
            grid_keys.create(conn, checkfirst=True)
            grid_key_wraps.create(conn, checkfirst=True)
        if version < 4:
            self._migrate_blobs(conn)
        conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))

    def _migrate_blobs(self, conn: Connection) -> None:
        """Schema version 4: the blob tables, which servers before it made on first use (so a database may have
        none of them, some, or ones of an early shape without the later columns and indexes), made or brought to
        their full shape. Their rows are kept."""
        prefix = f'"{self.schema}".' if self.schema else ""
        found = inspect(conn)
        for table in (blobs, blob_chunks, blob_holders):
            if not found.has_table(table.name, schema=self.schema):
                table.create(conn)
                continue
            have = {c["name"] for c in found.get_columns(table.name, schema=self.schema)}
            for name, column, ddl in _BLOB_COLUMNS_LATER:
                if name == table.name and column not in have:
                    conn.exec_driver_sql(f"ALTER TABLE {prefix}{name} ADD COLUMN {column} {ddl}")
            for index in table.indexes:
                index.create(conn, checkfirst=True)

    def reserve_numbers(self, count: int) -> tuple[int, int]:
        """Reserves the next ``count`` ticket numbers for one device: ``(start, count)``. Numbers are never
        given twice, whatever the number of server processes (one atomic update of a counter)."""
        with self._write() as conn:
            counter = cast(meta.c.value, BigInteger)
            end = conn.execute(
                meta.update()
                .where(meta.c.key == NUMBERS_META)
                .values(value=cast(counter + count, Text))
                .returning(meta.c.value)
            ).scalar_one()
        return int(end) - count + 1, count

    def server_key(self) -> DeviceKey:
        """The server's own Ed25519 key, from its key file (``settings.server_key_path``, mode 0600): it signs what
        a device must be able to trust as the server's without a connection of its own (the answers couriers carry
        back). Devices learn its public half at enrolment and from ``GET /v1/info``.

        On first use over a new database, the key file is created (unless another server process made it first)
        and the database records the public key. A database from before key files gives its key to the file and
        forgets it (on SQLite the write-ahead log is then checkpointed and truncated, so no copy stays on disk).

        Raises:
            ConfigError: the key file is missing while the database has served with a key (restore it from its
                backup), holds another server's key, cannot be read or written, or is readable by others.
        """
        if self._server_key is not None:
            return self._server_key
        path = self.settings.server_key_path
        forgot = False
        with self._write() as conn:
            rows = dict(
                conn.execute(
                    select(meta.c.key, meta.c.value).where(meta.c.key.in_([SERVER_KEY_META, SERVER_PUBLIC_KEY_META]))
                ).all()
            )
            old_seed, public = rows.get(SERVER_KEY_META), rows.get(SERVER_PUBLIC_KEY_META)
            if path.exists():
                key = read_key_file(path)
            elif old_seed is not None:
                key = write_key_file(path, DeviceKey(bytes.fromhex(old_seed)))
            elif public is not None:
                raise ConfigError(
                    f"The server's key file {path} is missing, and this database has served with a key: restore the "
                    "file from its backup (docs/deployment.md), or set CARESYNC_SERVER_KEY_FILE to where it is. A new "
                    "key would make every device refuse the answers couriers carry back."
                )
            else:
                key = create_key_file(path)
            for what, expected in (("a key", old_seed), ("the public key", public)):
                mine = key.seed.hex() if what == "a key" else key.public_key.hex()
                if expected is not None and expected != mine:
                    raise ConfigError(
                        f"The server's key file {path} holds another key than the one this database has served with "
                        f"(it records {what} of its own): use the key file of this database, restored from its backup."
                    )
            if public is None:
                conn.execute(meta.insert().values(key=SERVER_PUBLIC_KEY_META, value=key.public_key.hex()))
            if old_seed is not None:
                conn.execute(meta.delete().where(meta.c.key == SERVER_KEY_META))
                forgot = True
        if forgot:
            self.checkpoint()
        self._server_key = key
        return key

    def checkpoint(self) -> None:
        """SQLite: moves the write-ahead log into the database file and truncates it to nothing, so that what was
        overwritten or deleted (an erased value, a key that moved out) leaves no copy in the ``-wal`` file (the
        database runs with ``secure_delete``, which zeroes freed space). Does nothing on PostgreSQL, whose own WAL
        and backups are the operator's to manage (docs/deployment.md)."""
        if self.dialect != "sqlite":
            return
        with self._errors():
            raw = self.engine.raw_connection()  # in autocommit: a checkpoint cannot run inside a transaction
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                cursor.close()
            finally:
                raw.close()

    def ping(self) -> int:
        """The schema version, read from the database: raises unless the server can serve."""
        with self._read() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar_one_or_none()
        if found is None or int(found) != SCHEMA_VERSION:
            raise DatabaseNotReady(f"The database has schema version {found}; this server needs {SCHEMA_VERSION}.")
        return SCHEMA_VERSION

    def counts(self) -> dict[str, int]:
        """How many ops, refusals, records and devices the server holds."""
        with self._read() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in (("ops", ops), ("refusals", refusals), ("records", entities), ("devices", devices))
            }

    # --- devices ---------------------------------------------------------------------------------------------

    def enroll(self, name: str, role: str, grids: Iterable[str]) -> tuple[DeviceHealth, str]:
        """Enrols a device with a token straight away (for scripts and tests); returns it and its token, which
        the server does not keep (only its sha256). The token expires like any other; without a device key bound
        by :meth:`redeem_code` it cannot be renewed by signature.

        Raises:
            AdminError: the name is empty or taken, the role unknown, or a grid not a grid path.
        """
        token = secrets.token_urlsafe(32)
        now = self.now_ms()
        self._insert_device(
            name, role, grids, token_hash=token_hash(token), token_expires_at=now + self.settings.token_lifetime_ms
        )
        return self._health(name.strip()), token

    def issue_code(self, name: str, role: str, grids: Iterable[str]) -> EnrolmentCode:
        """Enrols a device that has yet to claim its credentials: returns a one-time enrolment code (the server
        keeps only its sha256) that expires after ``settings.code_lifetime_days``.

        Raises:
            AdminError: the name is empty or taken, the role unknown, or a grid not a grid path.
        """
        code = new_code()
        expires = self.now_ms() + self.settings.code_lifetime_ms
        # no token until the code is redeemed: the column holds the hash of a secret nobody keeps
        self._insert_device(
            name,
            role,
            grids,
            token_hash=token_hash(secrets.token_urlsafe(32)),
            code_hash=token_hash(normalize_code(code)),
            code_expires_at=expires,
        )
        return EnrolmentCode(self._health(name.strip()), code, expires)

    def _insert_device(self, name: str, role: str, grids: Iterable[str], **values: Any) -> None:
        name = name.strip()
        if not name or len(name) > 100 or any(ch < " " or "\ud800" <= ch <= "\udfff" for ch in name):
            raise AdminError("A device name must be 1 to 100 printable characters, for example phone-grid-li.")
        chosen = _checked_scope(f"enrol {name}", role, grids)
        try:
            with self._write() as conn:
                conn.execute(
                    devices.insert().values(
                        name=name,
                        role=role,
                        grids=json.dumps(chosen, ensure_ascii=False),
                        created_at=self.now_ms(),
                        scope_version=1,
                        **values,
                    )
                )
        except sa_exc.IntegrityError as exc:
            raise AdminError(
                f"A device named {name} is already enrolled; choose another name (for example {name}-2).",
                key="name_taken",
                fields={"name": name},
            ) from exc

    def set_scope(self, name_or_id: str, *, grids: Iterable[str], role: str | None = None) -> DeviceHealth:
        """Changes a device's grids (and role, if given); the device purges what it may no longer hold on its
        next sync, after pushing its unsent work. Takes effect on the server at once.

        Raises:
            AdminError: no such device, an unknown role, or a grid that is not a grid path.
        """
        with self._write() as conn:
            found, row, new_role, chosen = self._new_scope(conn, name_or_id, grids, role)
            if new_role != row.role or chosen != json.loads(row.grids):
                conn.execute(
                    devices.update()
                    .where(devices.c.id == found)
                    .values(
                        role=new_role,
                        grids=json.dumps(chosen, ensure_ascii=False),
                        scope_version=devices.c.scope_version + 1,
                    )
                )
        return self._health(found)

    def _new_scope(
        self, conn: Connection, name_or_id: str, grids: Iterable[str], role: str | None
    ) -> tuple[int, Any, str, list[str]]:
        """The device's id and row, and the role and grids asked for it, checked."""
        found = self._find(conn, name_or_id)
        row = conn.execute(select(devices).where(devices.c.id == found)).one()
        new_role = role or row.role
        return found, row, new_role, _checked_scope(f"change the scope of {row.name}", new_role, grids)

    def scope_loss(self, name_or_id: str, *, grids: Iterable[str], role: str | None = None) -> ScopeLoss:
        """What changing the device's grids (and role) to these would remove from it, changing nothing: counted on
        the records the server holds, by the role table, as the device's next sync would purge them.

        Raises:
            AdminError: no such device, an unknown role, or a grid that is not a grid path.
        """
        with self._read() as conn:
            _, row, new_role, chosen = self._new_scope(conn, name_or_id, grids, role)
            now = _readable(row.role, json.loads(row.grids), entities.c.type, (entities.c.grid,), (entities.c.kind,))
            then = _readable(new_role, chosen, entities.c.type, (entities.c.grid,), (entities.c.kind,))
            everywhere = EVERYWHERE in chosen

            def count(*conditions: ColumnElement[bool] | None) -> int:
                where = [c for c in conditions if c is not None]
                query = select(func.count()).select_from(entities)
                return int(conn.execute(query.where(*where) if where else query).scalar_one())

            held = count(now)
            kept = held if then is None else count(now, then)
            in_new_grids = count(None if everywhere else _within(entities.c.grid, chosen))
            return ScopeLoss(held=held, lost=held - kept, in_new_grids=in_new_grids, stored=count())

    # --- enrolment codes, device keys, tokens ----------------------------------------------------------------

    def redeem_code(self, code: str, public_key: bytes) -> Credentials:
        """Exchanges a one-time enrolment code for the device's credentials, binding the device to the origin of
        ``public_key`` (its replica id) and keeping the key to check the device's signatures.

        Raises:
            ApiError: ``invalid_code`` (unknown, used, expired or revoked), ``replica_mismatch`` (that device key
                already belongs to another device), ``invalid_request`` (not a device key).
        """
        origin = _origin(public_key)
        now = self.now_ms()
        with self._write() as conn:
            row = conn.execute(select(devices).where(devices.c.code_hash == token_hash(normalize_code(code)))).first()
            if row is None or row.revoked_at is not None or (row.code_expires_at or 0) <= now:
                why = "expired" if row is not None and row.revoked_at is None else "not valid"
                raise ApiError(
                    ErrorCode.INVALID_CODE,
                    f"This enrolment code is {why}: codes work once, and only for a few days. Ask the station for a "
                    "new one (caresync-server enroll).",
                )
            holder = conn.execute(select(devices.c.name).where(devices.c.replica_id == origin)).scalar_one_or_none()
            if holder is not None:
                raise ApiError(
                    ErrorCode.REPLICA_MISMATCH,
                    f"This device's key already belongs to device {holder}; a replica file enrols once. Enrol a new "
                    "replica file with this code.",
                )
            token = secrets.token_urlsafe(32)
            expires = now + self.settings.token_lifetime_ms
            claimed = conn.execute(
                devices.update()
                .where(devices.c.id == row.id, devices.c.code_hash == row.code_hash)  # not redeemed meanwhile
                .values(
                    replica_id=origin,
                    public_key=public_key.hex(),
                    token_hash=token_hash(token),
                    token_expires_at=expires,
                    code_hash=None,
                    code_expires_at=None,
                    enrolled_at=now,
                )
            ).rowcount
            if claimed != 1:
                raise ApiError(
                    ErrorCode.INVALID_CODE, "This enrolment code was just used; ask the station for a new one."
                )
            device = _device(conn.execute(select(devices).where(devices.c.id == row.id)).one())
            station = self._station_key(conn)
        return Credentials(device, token, expires, station)

    def renew_token(self, replica: str, time_ms: int, signature: bytes) -> Credentials:
        """A new token for the device bound to ``replica``, which proves itself by signing
        :func:`caresync.trust.codes.token_proof` of ``replica`` and a recent server time ``time_ms`` with its
        device key. The old token stops working; a proof is accepted once.

        Raises:
            ApiError: ``unauthorized`` (unknown device, no device key, bad signature, stale or replayed proof)
                or ``revoked``.
        """
        now = self.now_ms()
        with self._write() as conn:
            row = conn.execute(select(devices).where(devices.c.replica_id == replica)).first()
            if row is None or row.public_key is None:
                raise ApiError(
                    ErrorCode.UNAUTHORIZED,
                    f"No device enrolled with a device key syncs replica {replica}; ask the station for an "
                    "enrolment code and enrol this device with it.",
                )
            device = _device(row)
            _check_not_revoked(device)
            if not verify_signature(bytes.fromhex(row.public_key), token_proof(replica, time_ms), signature):
                raise ApiError(
                    ErrorCode.UNAUTHORIZED,
                    f"The token request of device {device.name} is not signed by its device key; nothing changed.",
                )
            if not now - PROOF_WINDOW_MS <= time_ms <= now + PROOF_WINDOW_MS or time_ms <= (row.last_proof_ms or 0):
                raise ApiError(
                    ErrorCode.UNAUTHORIZED,
                    f"The token request of device {device.name} is stale or was already used; sign a fresh server "
                    "time (GET /v1/info) and ask again.",
                )
            token = secrets.token_urlsafe(32)
            expires = now + self.settings.token_lifetime_ms
            renewed = conn.execute(
                devices.update()
                .where(
                    devices.c.id == row.id, or_(devices.c.last_proof_ms.is_(None), devices.c.last_proof_ms < time_ms)
                )
                .values(token_hash=token_hash(token), token_expires_at=expires, last_proof_ms=time_ms)
            ).rowcount
            if renewed != 1:  # another request renewed with a later proof meanwhile
                raise ApiError(ErrorCode.UNAUTHORIZED, f"The token request of device {device.name} was already used.")
            station = self._station_key(conn)
        return Credentials(replace(device, token_expires_at=expires), token, expires, station)

    def device_by_replica(self, origin: str) -> Device | None:
        """The device bound to replica ``origin`` (revoked or not); None when no device syncs as it."""
        with self._read() as conn:
            row = conn.execute(select(devices).where(devices.c.replica_id == origin)).first()
        return None if row is None else _device(row)

    def device_public_key(self, origin: str) -> bytes | None:
        """The Ed25519 public key of the device bound to ``origin``, as it enrolled; None when no device with a
        key syncs that origin (for checking the signatures of its ops)."""
        with self._read() as conn:
            query = select(devices.c.public_key).where(devices.c.replica_id == origin)
            found = conn.execute(query).scalar_one_or_none()
        return None if found is None else bytes.fromhex(found)

    def station_public_key(self) -> bytes | None:
        """The station's X25519 public key, which devices seal private content to; None until registered."""
        with self._read() as conn:
            return self._station_key(conn)

    def set_station_public_key(self, public_key: bytes) -> None:
        """Registers a bare X25519 station key of an earlier release (no identity to pin, no rotation): the
        server admin's command for a station that has no signing key. It replaces whatever was registered; devices
        that pinned another key refuse it. Prefer :meth:`set_station_key`.

        Raises:
            AdminError: not 32 bytes.
        """
        if len(public_key) != 32:
            raise AdminError(f"A station public key is 32 bytes (64 hex digits), not {len(public_key)} bytes.")
        with self._write() as conn:
            self._set_meta(conn, "station_public_key", public_key.hex())
            self._set_meta(conn, "station_key_chain", "[]")

    def station_key_chain(self) -> list[StationKeyLink]:
        """The station's keys, oldest first, each after the first with the previous key's signature handing over
        to it (empty when none is registered, or only a bare key of an earlier release)."""
        with self._read() as conn:
            return self._chain(conn)

    def set_station_key(self, signing_key: bytes, signature: bytes | None = None, *, replace: bool = False) -> bool:
        """Registers the station's key by its Ed25519 public key (its X25519 sealing key is derived from it).

        The first key is taken as it is; the same key again changes nothing; another key only as a rotation, with
        ``signature``, the current key's signature of :func:`caresync.trust.keys.rotation_message`. ``replace``
        (the server admin's command, on the database itself) registers it anyway, as a new chain: devices that
        pinned the old key will refuse it, by design. Returns True when the registered key changed.

        Raises:
            AdminError: not a station public key, or another key is registered and ``signature`` is not its
                signature handing over to this one (and not ``replace``).
        """
        try:
            link = StationKeyLink(bytes(signing_key), signature)
            sealing = link.public_key
        except InvalidInputError as exc:
            raise AdminError(f"Not a station public key: {exc}") from None
        with self._write() as conn:
            chain, legacy = self._chain(conn), self._station_key(conn)
            if chain and chain[-1].signing_key == link.signing_key:
                return False
            if replace or (not chain and legacy is None):
                chain = [StationKeyLink(link.signing_key)]
            elif (
                chain
                and signature is not None
                and verify_signature(
                    chain[-1].signing_key, rotation_message(chain[-1].signing_key, link.signing_key), signature
                )
            ):
                chain.append(link)
            else:
                current = chain[-1].signing_key.hex() if chain else f"{legacy.hex() if legacy else ''} (X25519)"
                raise AdminError(
                    f"The station key {current} is registered; another one is taken only as a rotation signed by "
                    "it (caresync station-key rotate). Devices keep the key they learned first."
                )
            self._set_meta(conn, "station_public_key", sealing.hex())
            self._set_meta(conn, "station_key_chain", json.dumps([item.to_json() for item in chain]))
        return True

    def grid_keys(self, device: Device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The readers' keys the station published (every grid, every version: public halves and the station's
        signatures), and the wraps addressed to ``device``'s replica (none before it is bound)."""
        with self._read() as conn:
            keys = [
                {
                    "grid": r.grid,
                    "role": r.role,
                    "version": r.version,
                    "public_key": r.public_key,
                    "signature": r.signature,
                    "signing_key": r.signing_key,
                }
                for r in conn.execute(
                    select(grid_keys).order_by(grid_keys.c.role, grid_keys.c.grid, grid_keys.c.version)
                )
            ]
            wraps: list[dict[str, Any]] = []
            if device.replica_id is not None:
                query = (
                    select(grid_key_wraps)
                    .where(grid_key_wraps.c.replica == device.replica_id)
                    .order_by(grid_key_wraps.c.role, grid_key_wraps.c.grid, grid_key_wraps.c.version)
                )
                wraps = [
                    {"grid": r.grid, "role": r.role, "version": r.version, "wrap": r.wrap} for r in conn.execute(query)
                ]
        return keys, wraps

    def bind_device_key(self, device: Device, public_key: bytes) -> Device:
        """Binds the Ed25519 key of a device enrolled with a direct token (it enrolled with none), so that the desk
        can wrap readers' keys to it: taken only when its fingerprint is the replica the device syncs (binding
        that replica if the device has none yet). A device that has a key keeps it; the same key again changes
        nothing.

        Raises:
            ApiError: ``invalid_request`` (not a device key, or not the key of the replica this device syncs),
                ``replica_mismatch`` (that replica syncs as another device).
        """
        try:
            origin = origin_of(public_key)
        except InvalidInputError:
            raise ApiError(
                ErrorCode.INVALID_REQUEST,
                "public_key is not a device key.",
                [{"field": "public_key", "problem": "must be 32 bytes"}],
            ) from None
        with self._write() as conn:
            found = self._bind(conn, device.id, device.replica_id or origin)
            if found.replica_id != origin:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    f"This key belongs to replica {origin}, not to replica {found.replica_id}, which device "
                    f"{found.name} syncs.",
                    [{"field": "public_key", "problem": "not the key of the replica this device syncs"}],
                )
            conn.execute(
                devices.update()
                .where(devices.c.id == device.id, devices.c.public_key.is_(None))
                .values(public_key=public_key.hex())
            )
            return replace(found, replica_id=origin, has_key=True)

    def grid_key_readers(self) -> list[dict[str, Any]]:
        """The devices entitled to readers' keys: grid workers, knockers and mediators, not revoked, bound to a
        replica with the device key they enrolled with (a device enrolled with a direct token has none, and gets
        no readers' keys)."""
        roles = [Role.GRID_WORKER.value, Role.KNOCKER.value, Role.MEDIATOR.value]
        query = (
            select(devices.c.replica_id, devices.c.role, devices.c.grids, devices.c.public_key)
            .where(
                devices.c.role.in_(roles),
                devices.c.revoked_at.is_(None),
                devices.c.public_key.is_not(None),
                devices.c.replica_id.is_not(None),
            )
            .order_by(devices.c.id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            {"replica": r.replica_id, "role": r.role, "grids": json.loads(r.grids), "public_key": r.public_key}
            for r in rows
        ]

    def publish_grid_keys(self, items: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Stores readers' keys the station's desk published, with their wraps, in one transaction: a key new to
        the server must carry the registered station key's signature; the same grid and version again is taken
        only with the same public key (its wraps are added, or replaced). Returns ``(keys new, wraps stored)``.

        Raises:
            ApiError: ``invalid_request`` (no station key registered, a grid that is not a grid path, a signature
                the registered station key did not make), ``grid_key_conflict`` (that version holds another key).
        """
        added = stored = 0
        with self._write() as conn:
            chain = self._chain(conn)
            if not chain:
                raise ApiError(
                    ErrorCode.INVALID_REQUEST,
                    "No station key is registered: register it first (caresync station-key register); readers' keys "
                    "are signed by it.",
                    [{"field": "keys", "problem": "no station key registered"}],
                )
            signer = chain[-1].signing_key
            for i, item in enumerate(items):
                grid, role, version = item["grid"], item["role"], int(item["version"])
                public = bytes.fromhex(item["public_key"])
                name = f"the {role}s' readers' key of {grid or 'everywhere'}, version {version},"
                if grid != EVERYWHERE:
                    try:
                        check_grid(grid)
                    except ValueError as exc:
                        raise ApiError(
                            ErrorCode.INVALID_REQUEST, str(exc), [{"field": f"keys.{i}.grid", "problem": str(exc)}]
                        ) from None
                same = (grid_keys.c.grid == grid, grid_keys.c.role == role, grid_keys.c.version == version)
                row = conn.execute(select(grid_keys.c.public_key).where(*same)).first()
                if row is not None and row.public_key != public.hex():
                    raise ApiError(
                        ErrorCode.GRID_KEY_CONFLICT,
                        f"{name[0].upper()}{name[1:]} is published already, with another key; a new key takes a new "
                        "version.",
                        [{"field": f"keys.{i}.public_key", "problem": "another key holds this version"}],
                    )
                if row is None:
                    signature = bytes.fromhex(item["signature"])
                    if not verify_signature(signer, grid_key_message(grid, role, version, public), signature):
                        raise ApiError(
                            ErrorCode.INVALID_REQUEST,
                            f"{name[0].upper()}{name[1:]} is not signed by the registered station key; only the "
                            "station's desk publishes readers' keys.",
                            [{"field": f"keys.{i}.signature", "problem": "not the registered station key's signature"}],
                        )
                    conn.execute(
                        grid_keys.insert().values(
                            grid=grid,
                            role=role,
                            version=version,
                            public_key=public.hex(),
                            signature=signature.hex(),
                            signing_key=signer.hex(),
                            published_at=self.now_ms(),
                        )
                    )
                    added += 1
                for wrap in item["wraps"]:
                    where = (
                        grid_key_wraps.c.grid == grid,
                        grid_key_wraps.c.role == role,
                        grid_key_wraps.c.version == version,
                        grid_key_wraps.c.replica == wrap["replica"],
                    )
                    if not conn.execute(grid_key_wraps.update().where(*where).values(wrap=wrap["wrap"])).rowcount:
                        conn.execute(
                            grid_key_wraps.insert().values(
                                grid=grid, role=role, version=version, replica=wrap["replica"], wrap=wrap["wrap"]
                            )
                        )
                    stored += 1
        return added, stored

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: str) -> None:
        if not conn.execute(meta.update().where(meta.c.key == key).values(value=value)).rowcount:
            conn.execute(meta.insert().values(key=key, value=value))

    @staticmethod
    def _chain(conn: Connection) -> list[StationKeyLink]:
        found = conn.execute(select(meta.c.value).where(meta.c.key == "station_key_chain")).scalar_one_or_none()
        return [StationKeyLink.from_json(item) for item in json.loads(found or "[]")]

    @staticmethod
    def _station_key(conn: Connection) -> bytes | None:
        found = conn.execute(select(meta.c.value).where(meta.c.key == "station_public_key")).scalar_one_or_none()
        return None if found is None else bytes.fromhex(found)

    def device(self, name_or_id: str) -> DeviceHealth:
        """A device by name, or by id if no device has that name.

        Raises:
            AdminError: no such device.
        """
        with self._read() as conn:
            found = self._find(conn, name_or_id)
        return self._health(found)

    def revoke(self, name_or_id: str) -> DeviceHealth:
        """Revokes a device (by name, or by id if no device has that name); revoking it again changes nothing.

        Raises:
            AdminError: no such device.
        """
        with self._write() as conn:
            found = self._find(conn, name_or_id)
            conn.execute(
                devices.update()
                .where(devices.c.id == found, devices.c.revoked_at.is_(None))
                .values(revoked_at=self.now_ms())
            )
        return self._health(found)

    def _find(self, conn: Connection, name_or_id: str) -> int:
        found = conn.execute(select(devices.c.id).where(devices.c.name == name_or_id)).scalar_one_or_none()
        if found is None and name_or_id.isascii() and name_or_id.isdigit():
            found = conn.execute(select(devices.c.id).where(devices.c.id == int(name_or_id))).scalar_one_or_none()
        if found is None:
            raise AdminError(
                f"No device is named {name_or_id} (nor has that id); `caresync-server devices` lists them.",
                key="no_device",
                fields={"device": name_or_id},
            )
        return int(found)

    def devices(self) -> list[DeviceHealth]:
        """Every enrolled device with the health its syncs reported, in enrolment order."""
        return self._healths(None)

    def _health(self, name_or_id: str | int) -> DeviceHealth:
        where = devices.c.id == name_or_id if isinstance(name_or_id, int) else devices.c.name == name_or_id
        return self._healths(where)[0]

    def _healths(self, where: ColumnElement[bool] | None) -> list[DeviceHealth]:
        refused = select(refusals.c.origin, func.count().label("n")).group_by(refusals.c.origin).subquery("refused")
        query = (
            select(devices, func.coalesce(refused.c.n, 0).label("refused_ops"))
            .outerjoin(refused, refused.c.origin == devices.c.replica_id)
            .order_by(devices.c.id)
        )
        if where is not None:
            query = query.where(where)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            DeviceHealth(
                id=r.id,
                name=r.name,
                role=r.role,
                grids=tuple(json.loads(r.grids)),
                replica_id=r.replica_id,
                created_at=r.created_at,
                revoked_at=r.revoked_at,
                last_sync_at=r.last_sync_at,
                pending=r.pending,
                oldest_unsent_ms=r.oldest_unsent_ms,
                clock_offset_ms=r.last_clock_offset_ms,
                refusals=int(r.refused_ops),
                scope_version=r.scope_version,
                token_expires_at=r.token_expires_at,
                enrolled_at=r.enrolled_at,
            )
            for r in rows
        ]

    # --- requests --------------------------------------------------------------------------------------------

    def authenticate(self, token: str) -> Device:
        """The device a token belongs to.

        Raises:
            ApiError: ``unauthorized`` (no device has this token) or ``revoked``.
        """
        with self._read() as conn:
            row = conn.execute(select(devices).where(devices.c.token_hash == token_hash(token))).first()
        if row is None:
            raise ApiError(
                ErrorCode.UNAUTHORIZED,
                "This device's token is not known to the server. Ask the station to enrol the device "
                "(caresync-server enroll) and use the token it prints.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        device = _device(row)
        _check_not_revoked(device)
        if device.token_expires_at is not None and device.token_expires_at <= self.now_ms():
            raise ApiError(
                ErrorCode.TOKEN_EXPIRED,
                f"The token of device {device.name} has expired. The device renews it by itself (POST /v1/token, "
                "signed with its device key); its unsent work is kept.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return device

    def _bind(self, conn: Connection, device_id: int, replica: str) -> Device:
        """Re-reads the device in this transaction and binds it to ``replica`` if it is not bound yet."""
        row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
        if row is None:
            raise ApiError(ErrorCode.UNAUTHORIZED, "This device is no longer enrolled; ask the station.")
        device = _device(row)
        _check_not_revoked(device)
        if device.replica_id is None:
            holder = conn.execute(select(devices.c.name).where(devices.c.replica_id == replica)).scalar_one_or_none()
            if holder is not None:
                raise ApiError(
                    ErrorCode.REPLICA_MISMATCH,
                    f"Replica {replica} already syncs as device {holder}; this token belongs to device "
                    f"{device.name}. A replica file copied to another phone cannot sync as a second device: "
                    "give the new device its own replica file.",
                )
            try:
                with conn.begin_nested():
                    conn.execute(devices.update().where(devices.c.id == device_id).values(replica_id=replica))
            except sa_exc.IntegrityError:
                raise ApiError(
                    ErrorCode.REPLICA_MISMATCH,
                    f"Replica {replica} was just bound to another device; this token belongs to device {device.name}.",
                ) from None
            return replace(device, replica_id=replica)
        check_replica(device, replica)
        return device

    def push(self, device_id: int, replica: str, ops_in: list[OpDict], report: DeviceReport, now: int) -> Verdict:
        """Stores a validated batch in one transaction (see :mod:`caresync_server.admission`).

        Args:
            device_id: the pushing device (authenticated).
            replica: the replica it pushes from; bound to the device on first use.
            ops_in: the batch, validated by :func:`caresync.core.ops.validate_ops`.
            report: the device's backlog and clock offset, kept for the station's ``devices`` listing.
            now: the server's time of the request.

        Raises:
            ApiError: the device may not push (``revoked``, ``replica_mismatch``) or the batch is refused
                whole (``op_fork``, ``seq_gap``); nothing was stored.
        """
        with paused_gc(), self._write(cursors=True) as conn:  # the batch's dicts form no cycles: see paused_gc
            self._bind(conn, device_id, replica)
            self._check_links(conn, ops_in)
            known = self._knowledge(conn, ops_in)
            check_signers(ops_in, known.devices)
            verdict = admit(ops_in, pusher=replica, known=known)
            self._store(conn, verdict, now)
            conn.execute(
                devices.update()
                .where(devices.c.id == device_id)
                .values(
                    last_sync_at=now,
                    pending=report.pending,
                    oldest_unsent_ms=report.oldest_unsent_ms,
                    last_clock_offset_ms=report.clock_offset_ms,
                )
            )
        if any(a.op["kind"] == "resident.redact" for a in verdict.admitted):
            self.checkpoint()  # the erased values' old pages leave the -wal file too
        return verdict

    def pull(
        self,
        device: Device,
        replica: str,
        after: int,
        limit: int,
        clock_offset_ms: int,
        now: int,
        *,
        op_format: int = FORMAT_VERSION,
    ) -> PullPage:
        """The next ops after cursor ``after`` that ``device`` may see (its own excluded), in cursor order, of op
        formats up to ``op_format``, or to :data:`~caresync.core.ops.CHECKABLE_BY_OLDER` when it is lower (a device
        that reads format 4 or older could not check a format 5 op's signature; it keeps format 4 ops deferred).

        A pull is a read: it writes only to bind the device's replica on first use, and to record the device's
        health when the record is older than :data:`HEALTH_EVERY_MS` or its clock offset changed.

        Raises:
            ApiError: ``revoked`` or ``replica_mismatch``.
        """
        check_replica(device, replica)
        stale = (
            device.last_sync_at is None
            or now - device.last_sync_at >= HEALTH_EVERY_MS
            or device.clock_offset_ms is None
            or abs(clock_offset_ms - device.clock_offset_ms) >= 1000
        )
        if device.replica_id is None or stale:
            with self._write() as conn:
                device = self._bind(conn, device.id, replica)
                conn.execute(
                    devices.update()
                    .where(devices.c.id == device.id)
                    .values(last_sync_at=now, last_clock_offset_ms=clock_offset_ms)
                )
        scope = _scope(device)
        with self._read() as conn:
            top = int(conn.execute(select(func.coalesce(func.max(ops.c.cursor), 0))).scalar_one())
            if after >= top:  # nothing new (or a cursor beyond a log restored from an older backup: wait for newer)
                return PullPage([], after, False)
            window_end = conn.execute(
                select(ops.c.cursor)
                .where(ops.c.cursor > after)
                .order_by(ops.c.cursor)
                .offset(max(limit, PULL_SCAN_WINDOW) - 1)
                .limit(1)
            ).scalar_one_or_none()
            end = top if window_end is None else int(window_end)
            query = (
                select(*_OP_ROW, ops.c.cursor)
                .where(ops.c.cursor > after, ops.c.cursor <= end, ops.c.origin != replica)
                .order_by(ops.c.cursor)
                .limit(limit)
            )
            if op_format < FORMAT_VERSION:
                query = query.where(ops.c.v <= max(op_format, CHECKABLE_BY_OLDER))
            if scope is not None:
                query = query.where(scope)
            rows = [tuple(r) for r in conn.execute(query)]
        page = _without_inner_signatures([r[:-1] for r in rows])
        if len(rows) == limit:
            cursor = int(rows[-1][-1])
            return PullPage(page, cursor, cursor < top)
        return PullPage(page, end, end < top)

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction for the tables other modules keep (blobs), its driver errors the server's own."""
        return self._write()

    def visible_op(self, device: Device, origin: str, seq: int) -> tuple[str, str, dict[str, Any]] | None:
        """Op ``(origin, seq)`` as ``(eid, kind, body)`` when ``device`` made it or may pull it; else None."""
        scope = _scope(device)
        query = select(ops.c.eid, ops.c.kind, ops.c.body).where(ops.c.origin == origin, ops.c.seq == seq)
        if scope is not None and origin != device.replica_id:
            query = query.where(scope)
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else (str(row[0]), str(row[1]), json.loads(row[2]))

    def ops_of_kinds(self, eids: Sequence[str], suffixes: Sequence[str]) -> list[tuple[str, str, str, int, Any]]:
        """The ops of records ``eids`` whose kind ends with one of ``suffixes``, as ``(op id, eid, kind, hlc,
        body)``."""
        out: list[tuple[str, str, str, int, Any]] = []
        with self._read() as conn:
            for part in _chunks(list(eids)):
                query = select(ops.c.origin, ops.c.seq, ops.c.eid, ops.c.kind, ops.c.hlc, ops.c.body).where(
                    ops.c.eid.in_(part), or_(*(ops.c.kind.endswith(suffix) for suffix in suffixes))
                )
                out.extend(
                    (f"{o}:{q}", str(e), str(k), int(h), json.loads(b)) for o, q, e, k, h, b in conn.execute(query)
                )
        return out

    def records_of_resident(self, resident: str) -> list[str]:
        """The records that belong to a resident by its ``resident`` link (visits: the knocks on their door)."""
        with self._read() as conn:
            return [str(e) for (e,) in conn.execute(select(entities.c.eid).where(entities.c.resident == resident))]

    # --- the push transaction --------------------------------------------------------------------------------

    def _check_links(self, conn: Connection, batch: Sequence[OpDict]) -> None:
        """Compares the batch's links (``pd``, see :mod:`caresync.trust.signing`; the batch was verified, so they are
        signed) with the ops the server holds next to it: the first op of each run must name the held op
        before it, and a held op after a run's last op must name that one.

        Raises:
            ApiError: ``op_fork``: they disagree; the device signed two histories. Nothing is stored.
        """
        by_origin: dict[str, dict[int, OpDict]] = defaultdict(dict)
        for op in batch:
            by_origin[op["origin"]].setdefault(op["seq"], op)
        neighbours = sorted(
            {
                (origin, seq)
                for origin, items in by_origin.items()
                for s in items
                for seq in (s - 1, s + 1)
                if seq >= 1 and seq not in items
            }
        )
        for pairs in _chunks(neighbours):
            rows = conn.execute(select(*_OP_ROW).where(_identities(ops, pairs)))
            for held in ops_from_rows([tuple(r) for r in rows]):
                items = by_origin[held["origin"]]
                after, before = items.get(held["seq"] + 1), items.get(held["seq"] - 1)
                if after is not None and after.get("pd") and linkable(held) and chain_link(held).hex() != after["pd"]:
                    raise _link_fork(held, after)
                if (
                    before is not None
                    and held.get("pd")
                    and linkable(before)
                    and chain_link(before).hex() != held["pd"]
                ):
                    raise _link_fork(before, held)

    def _knowledge(self, conn: Connection, batch: Sequence[OpDict]) -> Knowledge:
        """What the server holds that bears on ``batch``, read inside the push transaction."""
        by_origin: dict[str, set[int]] = defaultdict(set)
        for op in batch:
            by_origin[op["origin"]].add(op["seq"])
        names = sorted(by_origin)
        contig: dict[str, int] = {}
        for part in _chunks(names):
            rows = conn.execute(select(origins.c.origin, origins.c.contig).where(origins.c.origin.in_(part)))
            contig.update((origin, int(top)) for origin, top in rows)
        beyond: dict[str, set[int]] = defaultdict(set)
        for table in (ops, refusals):
            for part in _chunks(sorted(contig)):
                found = conn.execute(
                    select(table.c.origin, table.c.seq)
                    .join(origins, origins.c.origin == table.c.origin)
                    .where(table.c.origin.in_(part), table.c.seq > origins.c.contig)
                )
                for origin, seq in found:
                    beyond[origin].add(seq)
        # ops of the batch the server may hold already: at or below contig, or in a hole above it
        candidates = sorted(
            (origin, seq)
            for origin, seqs in by_origin.items()
            for seq in seqs
            if seq <= contig.get(origin, 0) or seq in beyond.get(origin, ())
        )
        stored: dict[OpKey, str] = {}
        for pairs in _chunks(candidates):
            for origin, seq, hlc, eid, kind, actor, at, body, v in conn.execute(
                select(
                    ops.c.origin,
                    ops.c.seq,
                    ops.c.hlc,
                    ops.c.eid,
                    ops.c.kind,
                    ops.c.actor,
                    ops.c.at,
                    ops.c.body,
                    ops.c.v,
                ).where(_identities(ops, pairs))
            ):
                stored[(origin, seq)] = fingerprint(hlc, eid, kind, actor, at, body, v)
        refused: dict[OpKey, PriorRefusal] = {}
        # what each op builds on is worked out only where the server has refused anything (rarely): most of the
        # cost of reading a batch's refusals when there are none
        anything_refused = conn.execute(select(refusals.c.origin).limit(1)).first() is not None
        wanted = set(candidates) | {ref for op in batch for ref in referenced_ops(op)} if anything_refused else set()
        ref_origins = sorted({origin for origin, _ in wanted})
        with_refusals: list[str] = []
        for part in _chunks(ref_origins):
            with_refusals.extend(
                conn.execute(select(refusals.c.origin).where(refusals.c.origin.in_(part)).distinct()).scalars()
            )
        refusing = set(with_refusals)
        keys = sorted(key for key in wanted if key[0] in refusing)
        for pairs in _chunks(keys):
            for origin, seq, mark, code, reason in conn.execute(
                select(
                    refusals.c.origin, refusals.c.seq, refusals.c.fingerprint, refusals.c.code, refusals.c.reason
                ).where(_identities(refusals, pairs))
            ):
                refused[(origin, seq)] = PriorRefusal(mark, code, reason)
        found_devices: dict[str, OriginDevice] = {}
        for part in _chunks(names):
            for row in conn.execute(select(devices).where(devices.c.replica_id.in_(part))):
                device = _device(row)
                found_devices[row.replica_id] = OriginDevice(
                    device.name,
                    device.role,
                    device.grids,
                    device.revoked_at is not None,
                    None if row.public_key is None else bytes.fromhex(row.public_key),
                )
        eids = sorted(
            {op["eid"] for op in batch} | {op["body"]["resident_id"] for op in batch if op["kind"] == "visit.create"}
        )
        records: dict[str, Record] = {}
        for part in _chunks(eids):
            for eid, rtype, grid, grid_hlc, resident, kind, kind_hlc in conn.execute(
                select(
                    entities.c.eid,
                    entities.c.type,
                    entities.c.grid,
                    entities.c.grid_hlc,
                    entities.c.resident,
                    entities.c.kind,
                    entities.c.kind_hlc,
                ).where(entities.c.eid.in_(part))
            ):
                records[eid] = Record(rtype, grid, grid_hlc, resident, kind, kind_hlc or 0)
        return Knowledge(
            contig=contig,
            beyond=dict(beyond),
            stored=stored,
            refused=refused,
            devices=found_devices,
            records=records,
            sealing=self._station_key(conn) is not None,
        )

    def _store(self, conn: Connection, verdict: Verdict, now: int) -> None:
        """Writes what :func:`admit` decided: ops (drawing cursors), refusals, records, origins."""
        bodies = self._erase(conn, verdict)
        if verdict.admitted:
            # under the push lock (see the module doc): nothing else draws cursors until this transaction ends
            top = int(conn.execute(select(func.coalesce(func.max(ops.c.cursor), 0))).scalar_one())
            first = max(top + 1, self.now_ms() << CURSOR_CLOCK_SHIFT)
            conn.execute(
                ops.insert(),
                [
                    {
                        "cursor": first + i,
                        "origin": a.op["origin"],
                        "seq": a.op["seq"],
                        "hlc": a.op["hlc"],
                        "eid": a.op["eid"],
                        "kind": a.op["kind"],
                        "v": a.op["v"],
                        "actor": a.op["actor"],
                        "at": a.op["at"],
                        "body": body,
                        "sig": a.op.get("sig"),
                        "pd": a.op.get("pd"),
                        "rtype": a.type,
                        "grid": a.grid,
                        "grid_to": a.grid_to,
                        "rkind": a.kind,
                        "rkind_from": a.kind_from,
                    }
                    for i, (a, body) in enumerate(zip(verdict.admitted, bodies, strict=True))
                ],
            )
        if verdict.refused:
            conn.execute(
                refusals.insert(),
                [
                    {
                        "origin": op["origin"],
                        "seq": op["seq"],
                        "kind": op["kind"],
                        "eid": op["eid"],
                        "fingerprint": fingerprint(
                            op["hlc"], op["eid"], op["kind"], op["actor"], op["at"], body_text(op["body"]), op["v"]
                        ),
                        "code": code,
                        "reason": reason,
                        "refused_at": now,
                    }
                    for op, code, reason in verdict.refused
                ],
            )
        if verdict.new_records:
            conn.execute(
                entities.insert(),
                [
                    {
                        "eid": eid,
                        "type": r.type,
                        "grid": r.grid,
                        "grid_hlc": r.grid_hlc,
                        "resident": r.resident,
                        "kind": r.kind,
                        "kind_hlc": r.kind_hlc if r.kind is not None else None,
                    }
                    for eid, r in verdict.new_records.items()
                ],
            )
        for eid, record in verdict.moved.items():
            conn.execute(
                entities.update()
                .where(entities.c.eid == eid)
                .values(grid=record.grid, grid_hlc=record.grid_hlc, kind=record.kind, kind_hlc=record.kind_hlc)
            )
            if record.type == "resident":  # visits live where their resident lives
                conn.execute(entities.update().where(entities.c.resident == eid).values(grid=record.grid))
        self._advance_origins(conn, verdict)

    def _advance_origins(self, conn: Connection, verdict: Verdict) -> None:
        new: dict[str, set[int]] = defaultdict(set)
        for a in verdict.admitted:
            new[a.op["origin"]].add(a.op["seq"])
        for op, _, _ in verdict.refused:
            new[op["origin"]].add(op["seq"])
        for origin, seqs in new.items():
            known = conn.execute(select(origins.c.contig).where(origins.c.origin == origin)).scalar_one_or_none()
            contig = known or 0
            held = set(seqs)
            for table in (ops, refusals):
                held.update(
                    conn.execute(select(table.c.seq).where(table.c.origin == origin, table.c.seq > contig)).scalars()
                )
            top = contig
            while top + 1 in held:
                top += 1
            if known is None:
                conn.execute(origins.insert().values(origin=origin, contig=top))
            elif top != contig:
                conn.execute(origins.update().where(origins.c.origin == origin).values(contig=top))

    def _erase_texts(self, conn: Connection, verdict: Verdict) -> None:
        """Erases the free text of a resident's tickets and visits (:func:`caresync.core.ops.erased_texts`): in the
        stored ops a new redaction reaches, and in the admitted ops a stored (or admitted) one reaches. The rule
        is the replicas'; the server looks up the ops it needs in its own tables."""
        admitted = [a.op for a in verdict.admitted]
        new_redacts = [o for o in admitted if o["kind"] == "resident.redact"]
        fresh_texts = [o for o in admitted if o["kind"] in TEXT_KINDS and rewritable(o)]
        if not new_redacts and not fresh_texts:
            return
        links = [o for o in admitted if o["kind"] in LINK_KINDS]
        for o in new_redacts:  # the records that name the resident (the body holds its id: found, then checked)
            links += _op_rows(conn, ops.c.kind.in_(LINK_KINDS) & ops.c.body.contains(o["eid"], autoescape=True))
        for part in _chunks(sorted({o["eid"] for o in fresh_texts})):
            links += _op_rows(conn, ops.c.eid.in_(part) & ops.c.kind.in_(LINK_KINDS))
        erased_by_new = {o["eid"] for o in new_redacts}
        residents, records, stored_texts = erasure_reach(links + fresh_texts, erased_by_new, admitted)
        fresh_ids = {id(o) for o in admitted}
        redactions = list(new_redacts)
        for part in _chunks(sorted(residents - erased_by_new)):
            redactions += _op_rows(conn, (ops.c.kind == "resident.redact") & ops.c.eid.in_(part))
        for part in _chunks(sorted(records)):
            stored_texts += _op_rows(conn, ops.c.eid.in_(part) & ops.c.kind.in_(TEXT_KINDS) & (ops.c.v >= TEXT_FORMAT))
        updates = []
        for op, body in erased_texts(fresh_texts + stored_texts, links, redactions):
            if id(op) in fresh_ids:
                op["body"] = body
            else:
                updates.append({"at_cursor": op["cursor"], "erased": body_text(body)})
        if updates:
            conn.execute(
                ops.update().where(ops.c.cursor == bindparam("at_cursor")).values(body=bindparam("erased")), updates
            )

    def _erase(self, conn: Connection, verdict: Verdict) -> list[str]:
        """Applies redactions: to stored ops a new ``resident.redact`` covers, and to admitted ops a stored (or
        admitted) redaction covers. Returns the admitted ops' bodies as they are to be stored."""
        self._erase_texts(conn, verdict)
        bodies = [body_text(a.op["body"]) for a in verdict.admitted]
        residents = sorted({a.op["eid"] for a in verdict.admitted if a.op["kind"].startswith("resident.")})
        if not residents:
            return bodies
        redactions: dict[str, list[tuple[tuple[int, str, int], list[str]]]] = defaultdict(list)
        for part in _chunks(residents):
            for eid, hlc, origin, seq, body in conn.execute(
                select(ops.c.eid, ops.c.hlc, ops.c.origin, ops.c.seq, ops.c.body).where(
                    ops.c.kind == "resident.redact", ops.c.eid.in_(part)
                )
            ):
                redactions[eid].append(((hlc, origin, seq), json.loads(body)["fields"]))
        fresh = [a.op for a in verdict.admitted if a.op["kind"] == "resident.redact"]
        for op in fresh:
            redactions[op["eid"]].append(((op["hlc"], op["origin"], op["seq"]), op["body"]["fields"]))
        for i, a in enumerate(verdict.admitted):
            op = a.op
            if op["kind"] not in REDACTABLE_KINDS:
                continue
            body = op["body"]
            for key, fields in redactions.get(op["eid"], ()):
                if (op["hlc"], op["origin"], op["seq"]) < key:
                    body = redact_body(op["kind"], body, fields)
            bodies[i] = body_text(body)
        for redact in fresh:
            key = (redact["hlc"], redact["origin"], redact["seq"])
            updates = []
            for cursor, hlc, origin, seq, kind, body in conn.execute(
                select(ops.c.cursor, ops.c.hlc, ops.c.origin, ops.c.seq, ops.c.kind, ops.c.body).where(
                    ops.c.eid == redact["eid"], ops.c.kind.in_(sorted(REDACTABLE_KINDS))
                )
            ):
                if (hlc, origin, seq) < key:
                    erased = body_text(redact_body(kind, json.loads(body), redact["body"]["fields"]))
                    if erased != body:
                        updates.append({"at_cursor": cursor, "erased": erased})
            if updates:
                conn.execute(
                    ops.update().where(ops.c.cursor == bindparam("at_cursor")).values(body=bindparam("erased")),
                    updates,
                )
        return bodies


def _op_rows(conn: Connection, where: ColumnElement[bool]) -> list[OpDict]:
    """The stored ops that match ``where``, as op dicts with their cursors (``"cursor"``)."""
    rows = [tuple(r) for r in conn.execute(select(*_OP_ROW, ops.c.cursor).where(where))]
    found = ops_from_rows([r[:-1] for r in rows])
    for op, row in zip(found, rows, strict=True):
        op["cursor"] = row[-1]
    return found


def _without_inner_signatures(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Op rows with the signature left out where the op after it in the page pins it
    (:func:`caresync.trust.signing.signature_needed`): the receiver checks one signature per run of a device's ops."""
    needed = signature_needed([(r[0], r[1], r[5]) for r in rows], [r[4] for r in rows])
    return [row if keep else (*row[:9], None, *row[10:]) for row, keep in zip(rows, needed, strict=True)]


def _link_fork(first: OpDict, then: OpDict) -> ApiError:
    identity = f"{first['origin']}:{first['seq']}"
    return ApiError(
        ErrorCode.OP_FORK,
        f"Two different ops both claim to be op {identity}: op {then['origin']}:{then['seq']}, signed by the same "
        f"device, follows another one than the one the server holds. The device {first['origin']} was probably "
        "restored from a backup or copied to another phone. Stop using that copy and ask the station to enrol the "
        "device again. Nothing from this batch was stored.",
        [{"field": "ops", "problem": "a signed op follows another op of that identity", "op": identity}],
    )


def _device(row: Any) -> Device:
    return Device(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        grids=tuple(json.loads(row.grids)),
        replica_id=row.replica_id,
        revoked_at=row.revoked_at,
        last_sync_at=row.last_sync_at,
        clock_offset_ms=row.last_clock_offset_ms,
        scope_version=row.scope_version,
        token_expires_at=row.token_expires_at,
        has_key=row.public_key is not None,
    )


def _checked_scope(action: str, role: str, grids: Iterable[str]) -> list[str]:
    """The role checked and the grids de-duplicated and checked, for an admin command."""
    if role not in Role.__members__.values():
        raise AdminError(f"{role!r} is not a role; choose one of {', '.join(r.value for r in Role)}.")
    chosen: list[str] = []
    for grid in grids:
        if grid != EVERYWHERE:
            try:
                check_grid(grid)
            except ValueError as exc:
                raise AdminError(f'Cannot {action}: {exc} (or "" for everywhere).') from None
        if grid not in chosen:
            chosen.append(grid)
    if not chosen:
        raise AdminError(f'Cannot {action}: give at least one grid ("" for everywhere).')
    return chosen


def _origin(public_key: bytes) -> str:
    try:
        return origin_of(public_key)
    except InvalidInputError as exc:
        raise ApiError(
            ErrorCode.INVALID_REQUEST,
            "The device key is not an Ed25519 public key (64 hex digits); nothing changed.",
            [{"field": field, "problem": problem} for field, problem in exc.problems],
        ) from exc


def check_replica(device: Device, replica: str) -> None:
    """Raises ``replica_mismatch`` when the device is bound to another replica than ``replica``."""
    if device.replica_id is not None and device.replica_id != replica:
        raise ApiError(
            ErrorCode.REPLICA_MISMATCH,
            f"This token belongs to device {device.name}, which syncs replica {device.replica_id}, but the "
            f"request comes from replica {replica}. Each device needs its own token: ask the station to "
            "enrol this one.",
        )


def _check_not_revoked(device: Device) -> None:
    if device.revoked_at is not None:
        raise ApiError(
            ErrorCode.REVOKED,
            f"The station revoked device {device.name}; it can no longer sync. Its unsent work stays on the "
            "device: ask the station to enrol it again.",
        )


def _within(column: Any, grids: Sequence[str]) -> ColumnElement[bool]:
    """``column`` names one of ``grids`` or a grid under one (compared exactly: LIKE ignores case in SQLite)."""
    return or_(
        *(or_(column == grid, func.substr(column, 1, len(grid) + 1) == grid + "/") for grid in grids),
    )


def _scope(device: Device) -> ColumnElement[bool] | None:
    """The ops a device may pull, as a condition on the ops table (None: every op), from the role table.

    An op is the device's to see when its record type is one the role reads, its record is (or the op moves it)
    in one of the device's grids, and, where the role holds only records of one kind, the record is (or the op
    changed it from) that kind."""
    return _readable(
        device.role, device.grids, ops.c.rtype, (ops.c.grid, ops.c.grid_to), (ops.c.rkind, ops.c.rkind_from)
    )


def _readable(
    role: str, grids: Sequence[str], rtype: Any, grid_columns: Sequence[Any], kind_columns: Sequence[Any]
) -> ColumnElement[bool] | None:
    """What a device of ``role`` in ``grids`` may read, as a condition on a table's record type, grid and kind
    columns (None: everything), from the role table: the ops it pulls, or the records (entities) it holds."""
    rules = [rule for rule in ROLE_TABLE[Role(role)] if rule.read]
    everywhere = EVERYWHERE in grids
    if everywhere and {r.record for r in rules} >= _ALL_TYPES and all(r.kind is None for r in rules):
        return None
    conditions: list[ColumnElement[bool]] = []
    for rule in rules:
        parts: list[ColumnElement[bool]] = [rtype == rule.record]
        if rule.record not in GLOBAL_TYPES and not everywhere:
            parts.append(or_(*(_within(column, grids) for column in grid_columns)))
        if rule.kind is not None:
            parts.append(or_(*(column == rule.kind for column in kind_columns)))
        conditions.append(and_(*parts))
    return or_(*conditions) if conditions else rtype.in_([])
