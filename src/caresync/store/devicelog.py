"""The device's op log: one replica file's identity, clock, keys and ops, and what sync needs of it.

A :class:`DeviceLog` makes this device's ops (stamped, chained, sealed, signed), applies other devices' ops,
exports what a peer lacks, and keeps the marks sync leaves behind (cursors, what the server acknowledged). The
:class:`~caresync.replica.Replica` is the facade people use over it; network sync, enrolment and relay bundles
(``caresync.sync``) are handed the log and never see the facade, so the layers stay one way.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import from_json

from caresync.core.clock import DEFAULT_MAX_FORWARD_MS, HybridClock, system_time_ms
from caresync.core.domain import EntityType
from caresync.core.gcpause import paused_gc
from caresync.core.ids import entity_id_for
from caresync.core.merge import State, value_of
from caresync.core.ops import FORMAT_VERSION, KNOWN_KINDS, LOST_KIND, OpDict, format_for, signer_of, validate_ops
from caresync.errors import InvalidInputError, InvalidOpError, StoreError, TrustError
from caresync.store.blobs import BlobStore
from caresync.store.numbers import TicketNumbers
from caresync.store.schema import ENTITY_TABLES, PROVISIONAL_NUMBER_SQL
from caresync.store.store import IngestResult, Store, identify
from caresync.trust.gridkeys import GridKey, PublishedGridKey, newest_keys, readers_for, unwrap_grid_key
from caresync.trust.keys import DeviceKey, OpeningKey, StationKey, StationKeyLink, follow_station_chain
from caresync.trust.scopes import RecordScope, may_read
from caresync.trust.sealing import open_sealed, seal_body, unsealed_fields
from caresync.trust.signing import sign_linked, verify_ops

#: A column or field name a list may name (checked before it goes into SQL).
_NAME = re.compile(r"^[a-z_]+$")
#: A JSON path into a stored state a list may read: ``$.created[2]``, ``$.c.hops[#-1][5]``.
_PATH = re.compile(r"^\$(\.[a-z_]+|\[(#-1|[0-9]+)\])+$")

__all__ = [
    "GRID_KEYS_META",
    "GRID_SECRETS_META",
    "SEALING_REQUIRED_META",
    "STATION_SIGNING_META",
    "ApplyResult",
    "DeviceLog",
    "HasDeviceLog",
    "device_log_of",
]

#: The meta key of the station's Ed25519 public key this device pinned.
STATION_SIGNING_META = "station_signing_key"
#: The meta key of the readers' keys the station published (public halves, checked against the pinned station key,
#: JSON): this device seals each record's private fields to the newest of those covering its grid, besides the
#: station.
GRID_KEYS_META = "grid_keys"
#: The meta key of the readers' keys this device was given (unwrapped secrets, JSON: grid, version, secret):
#: it opens what was sealed to any of them.
GRID_SECRETS_META = "grid_key_secrets"
#: The meta key of the station keys this device followed by signed rotations (hex, JSON list), whose signatures on
#: readers' keys it still takes.
_STATION_HISTORY_META = "station_signing_history"


def _installed_station_keys(store: Store) -> list[StationKey]:
    """The station keys a station device holds: the current one, then those it rotated away from."""
    keys: list[StationKey] = []
    seed, legacy = store.get_meta("station_seed"), store.get_meta("station_key")
    if seed:
        keys.append(StationKey(bytes.fromhex(seed)))
    elif legacy:
        keys.append(StationKey.from_x25519(bytes.fromhex(legacy)))
    for old in json.loads(store.get_meta("station_old_keys") or "[]"):
        secret = bytes.fromhex(old["secret"])
        keys.append(StationKey.from_x25519(secret) if old["legacy"] else StationKey(secret))
    return keys


#: Set (by enrolment) on a device that works with a sync server: with no station key yet, it keeps the work that
#: holds free text in clear on the device (:meth:`DeviceLog.held_from`) instead of sending it.
SEALING_REQUIRED_META = "sealing_required"


@dataclass(frozen=True)
class ApplyResult:
    """What applying a batch of ops did: how many were new, already held, deferred, and records touched."""

    applied: int
    duplicates: int
    deferred: int
    records: int
    refolded: int
    unchecked: int = 0
    """Ops left out because nothing in the batch vouches for them: they came without their signature (as a pull
    answer sends the ops inside a run) and the op that closes their run did not come. They are not applied;
    sent again with it, they are."""
    held_back: int = 0
    """Ops from a peer kept but not applied: they follow a gap in their device's chain (an op the peer did not
    send). They are applied once the op arrives, or the sync server sends them (docs/security.md, "Gaps")."""


def _verify_partial(ops: list[OpDict]) -> list[Mapping[str, Any]]:
    """:func:`~caresync.trust.signing.verify_ops` for ops from another replica: runs nothing vouches for are
    left out."""
    return verify_ops(ops, partial=True)


def _local_field(label: str) -> str:
    """The field a validation problem of a local op is about, as the person who typed it named it."""
    _, _, path = label.partition(") ")
    path = path.removeprefix("body.")
    parts = path.split(".")
    if len(parts) >= 2 and parts[-1] == "value":
        return parts[-2]
    return parts[-1] if parts and parts[0] not in ("", "(op)") else label


#: Per record type, the columns that place a record in scope: its id, grid, ticket kind and resident.
_SCOPE_COLUMNS = {
    "resident": "id, grid, NULL, NULL",
    "worker": "id, NULL, NULL, NULL",
    "ticket": "id, grid, kind, NULL",
    "visit": "id, NULL, NULL, resident_id",
    "mailbox": "id, grid, NULL, NULL",
    "parcel": "id, grid, NULL, NULL",
}


def _kills_blobs(op: OpDict) -> bool:
    """True for an op that can leave a blob named by no live attachment (a removal or an erasure)."""
    kind = op["kind"]
    return kind.endswith(".detach") or (kind == "resident.redact" and "attachments" in op["body"]["fields"])


def _grid_order(key: PublishedGridKey) -> tuple[str, str, int]:
    return key.role, key.grid, key.version


class DeviceLog:
    """One device's op log over its replica file: identity, clock, keys, local ops, applied ops, sync marks.

    Open it with :meth:`open`; :meth:`close` closes the file. ``store`` is the file's :class:`Store`, for the
    bookkeeping sync does in the same transactions as the ops (cursors, acknowledgements).
    """

    def __init__(
        self, store: Store, *, replica_id: str, device_key: DeviceKey, clock: HybridClock, logger: logging.Logger
    ) -> None:
        self.store = store
        self.id = replica_id
        """This device's id: its key's fingerprint, the origin of every op it makes."""
        self.device_key = device_key
        self.clock = clock
        self.logger = logger
        self._next_seq = store.version_vector().get(replica_id, 0) + 1
        public = store.get_meta("station_public_key")
        self._station_public_key: bytes | None = bytes.fromhex(public) if public else None
        self._station_keys: list[StationKey] = _installed_station_keys(store)  # the current one first
        self._grid_published: dict[tuple[str, str], PublishedGridKey] = newest_keys(
            PublishedGridKey.from_json(item) for item in json.loads(store.get_meta(GRID_KEYS_META) or "[]")
        )
        self._grid_secrets: list[GridKey] = [
            GridKey(item["grid"], item["role"], item["version"], bytes.fromhex(item["secret"]))
            for item in json.loads(store.get_meta(GRID_SECRETS_META) or "[]")
        ]
        self._opened: dict[str, Any] = {}  # sealed text -> its opened value, on a device holding a key that opens it
        self._device_keys: dict[str, str | None] = {}  # device id -> its public key (hex), for history
        self.numbers = TicketNumbers(store, replica_id)
        """Where this device's ticket numbers come from (server-reserved blocks, then a fallback)."""
        self.blobs = BlobStore(store)
        """The sealed blobs of this replica's attachments, beside the log (:mod:`caresync.store.blobs`)."""

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        now_ms: Callable[[], int] = system_time_ms,
        max_clock_forward_ms: int = DEFAULT_MAX_FORWARD_MS,
        logger: logging.Logger | None = None,
        device_key: DeviceKey | None = None,
        read_only: bool = False,
    ) -> DeviceLog:
        """Opens the replica file at ``path`` (creating it with a new device key, or ``device_key``). With
        ``read_only``, opens an existing replica without ever writing to it (see :class:`Store`): a file that is
        not a replica, or must first be upgraded or have a cut-off sync finished, is refused with a StoreError
        that says so.

        Raises:
            StoreError: the file cannot be opened; StoreVersionError: it is from a newer caresync;
            InvalidInputError: ``device_key`` is not the key the file already has.
        """
        log = logger or logging.getLogger("caresync")
        if read_only:
            found = identify(path)
            if not found.is_replica:
                raise StoreError(
                    f"Cannot read {path}: {found.description}.",
                    key="store.not_replica",
                    fields={"path": str(path), "kind": found.kind, "what": found.description},
                )
        store = Store(path, logger=log, read_only=read_only)
        try:
            seed = store.get_meta("device_key")
            if seed is None and read_only:
                raise StoreError(
                    f"Cannot read {path}: it holds no device key, so it is not a whole replica.",
                    key="store.no_device_key",
                    fields={"path": str(path)},
                )
            if seed is None:
                key = device_key or DeviceKey.generate()
                store.set_meta("device_key", key.seed.hex())
            else:
                key = DeviceKey(bytes.fromhex(seed))
                if device_key is not None and device_key.public_key != key.public_key:
                    raise InvalidInputError(
                        f"Cannot open {path} with another device's key",
                        [("device_key", f"the file is device {key.origin}, the key is {device_key.origin}'s")],
                        key="store.other_key",
                        fields={"path": str(path)},
                    )
            replica_id = store.get_meta("replica_id")
            if replica_id != key.origin:
                # The device's origin is its key's fingerprint: a key proves itself. A file from before signed
                # ops keeps its old, unsigned ops under its old id and makes new ones under the key's.
                if read_only:
                    raise store.needs_upgrade()
                if replica_id is not None:
                    log.info("replica %s now signs its changes as %s", replica_id, key.origin)
                replica_id = key.origin
                store.set_meta("replica_id", replica_id)
            offset = int(store.get_meta("clock_offset_ms") or 0)
            last = int(store.get_meta("clock_last") or 0)
            clock = HybridClock(now_ms, offset_ms=offset, max_forward_ms=max_clock_forward_ms, last=last)
            own = store.sql("SELECT max_hlc FROM origins WHERE origin = ?", (replica_id,))
            if own:
                clock.observe(own[0][0])  # this device's own last stamp, bounded like any other
            device_log = cls(store, replica_id=replica_id, device_key=key, clock=clock, logger=log)
            if read_only:
                if any(k in KNOWN_KINDS and v <= FORMAT_VERSION for k, v, _ in store.deferred_kinds()):
                    raise store.needs_upgrade()  # ops this version folds and an older one deferred
            else:
                device_log.fold_upgraded()
                store.settle()  # records a cut-off sync left pending get their rows before anyone reads them
        except BaseException:
            store.close()
            raise
        return device_log

    def close(self) -> None:
        """Closes the replica file; calling it again does nothing."""
        self.store.close()

    @property
    def path(self) -> Path:
        """The replica file."""
        return self.store.path

    def fold_upgraded(self) -> None:
        """Folds deferred ops whose kind and version this library now knows (after an upgrade)."""
        kinds = self.store.deferred_kinds()
        if not kinds:
            return
        if any(k in KNOWN_KINDS and v <= FORMAT_VERSION for k, v, _ in kinds):
            now_known: list[OpDict] = []
            for op in self.store.deferred_ops():
                try:
                    now_known.extend(validate_ops([op])[0])
                except InvalidOpError as exc:  # kept as it is: one bad op must not stop the replica opening
                    self.logger.warning("op %s:%s stays deferred: %s", op["origin"], op["seq"], exc)
            if now_known:
                self.store.mark_known(now_known)
                self.logger.info("folded %d ops deferred until this upgrade", len(now_known))
            kinds = self.store.deferred_kinds()
        for kind, version, count in kinds:
            self.logger.warning(
                "holding %d op(s) of kind %s version %d that this caresync cannot read yet; "
                "they are kept and synced, and will count once caresync is upgraded",
                count,
                kind,
                version,
            )

    # --- local ops ------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Groups local writes in one transaction: all of them land, or none."""
        seq = self._next_seq
        try:
            with self.store.write():
                yield
        except BaseException:
            self._next_seq = seq
            raise

    def emit(
        self,
        kind: str,
        eid: str | None,
        body: dict[str, Any],
        *,
        actor: str,
        state: State | None = None,
        entity: EntityType | None = None,
        at: int | None = None,
    ) -> tuple[OpDict, State]:
        """Makes, validates, seals, signs and stores one local op; returns it and its record's new state.

        ``state`` is the record's current state (None for a create): the op is stamped after everything
        known for the record, and folded into that state without reading it again.

        Raises:
            InvalidInputError: the op is not valid; the message names the field as the caller called it.
        """
        seq = self._next_seq
        if eid is None:
            assert entity is not None
            eid = entity_id_for(entity, self.id, seq)
        last = state["last"] if state is not None else None
        kept = {k: v for k, v in body.items() if v is not None or k in ("value", "assignee")}
        op: OpDict = {
            "v": format_for(kind, kept),
            "kind": kind,
            "origin": self.id,
            "seq": seq,
            "hlc": self.clock.tick(int(last[0]) if last else 0),
            "eid": eid,
            "actor": actor,
            "at": self.clock.physical_ms() if at is None else at,
            "body": kept,
        }
        prev = self.store.own_link(self.id, seq - 1)  # the link of this device's previous op: signed over
        if seq > 1:
            op["pd"] = prev.hex()
        try:
            known, _ = validate_ops([op])
            if self._station_public_key is not None:
                sealed = seal_body(kind, known[0]["body"], self._readers(known[0], state))
                if sealed != known[0]["body"]:
                    known, _ = validate_ops([{**known[0], "body": sealed}])  # a sealed value has limits too
        except InvalidOpError as exc:
            raise InvalidInputError(
                f"Cannot record {kind.replace('.', ' ')}", [(_local_field(f), m) for f, m in exc.problems]
            ) from None
        link = sign_linked(known[0], self.device_key, prev)
        # the clock's own stamps are kept in origins.max_hlc; the op's link is kept with it, for the next op
        with self.store.write():
            new = self.store.append_local(known[0], state, link)
            if _kills_blobs(known[0]):
                self.blobs.collect()  # a removed or erased picture goes in the same transaction as its op
        self._next_seq = seq + 1
        return known[0], new

    def mark_lost(self, damaged: OpDict) -> OpDict:
        """Replaces this device's own op ``damaged`` (never sent: its copy here was damaged, so its signature no
        longer checks) by a signed statement that op ``seq`` is lost (:data:`~caresync.core.ops.LOST_KIND`), so
        that the ops this device made after it can be sent: the server takes a device's ops only without holes.
        The statement declares the link the lost op had, which the device's next op signed, and is signed over the
        link of the op before it, so the chain runs on through it. Returns the statement.

        Raises:
            StoreError: the op before it cannot be read to link to.
        """
        seq = damaged["seq"]
        after = self.store.sql("SELECT pd FROM ops WHERE origin = ? AND seq = ?", (self.id, seq + 1))
        newest = not after
        if after and after[0][0]:
            link = bytes.fromhex(after[0][0])
        else:
            try:
                link = self.store.own_link(self.id, seq)
            except (StoreError, TrustError, ValueError, KeyError):  # its bytes are damaged: any link will do,
                link = os.urandom(16)  # since no op of this device follows it yet
        body: dict[str, Any] = {"link": link.hex(), "kind": damaged.get("kind"), "eid": damaged.get("eid")}
        op: OpDict = {
            "v": format_for(LOST_KIND, body),
            "kind": LOST_KIND,
            "origin": self.id,
            "seq": seq,
            "hlc": damaged["hlc"],
            "eid": f"lost-{self.id}-{seq}",
            "actor": damaged["actor"],
            "at": self.clock.physical_ms(),
            "body": body,
        }
        try:
            validate_ops([op])
        except InvalidOpError:  # the damaged copy's kind or record id is unreadable: say only that it is lost
            op["body"] = {"link": link.hex()}
        sign_linked(op, self.device_key, self.store.own_link(self.id, seq - 1))
        self.store.replace_lost(op, link if newest else None)
        self.logger.warning(
            "op %s:%s was damaged on this device; a signed statement that it is lost takes its place", self.id, seq
        )
        return op

    def provisional_tickets(self, limit: int | None = None) -> list[State]:
        """The states of this device's own tickets that still show a provisional number, oldest first (the
        ``limit`` oldest when given).

        Only those tickets' states are read: they are found through the partial index of provisional numbers
        (schema version 8), which holds no other ticket, and only the ``limit`` oldest of them are read."""
        ids = self._provisional_ids("id", limit)
        waiting = self._states(EntityType.TICKET, f"AND id IN ({ids})", [f"T-{self.id}-%"], "id")
        return sorted(waiting, key=lambda s: int(s["id"].rsplit("-", 1)[1]))

    def provisional_count(self) -> int:
        """How many of this device's own tickets still show a provisional number, without reading a state (a sync
        asks at every run, whatever the replica holds)."""
        self.store.settle()
        rows = self.store.sql(self._provisional_ids("COUNT(*)", None), [f"T-{self.id}-%"])
        return int(rows[0][0])

    def _provisional_ids(self, what: str, limit: int | None) -> str:
        """A query of ``what`` over this device's provisionally numbered tickets (in the partial index
        ``ix_tickets_provisional``), oldest first (their ids end in the device's counter), the ``limit`` oldest
        when given; its one parameter is the pattern of the device's ticket ids."""
        table = ENTITY_TABLES[EntityType.TICKET.value].__tablename__
        start = len(f"T-{self.id}-") + 1
        order = f" ORDER BY CAST(substr(id, {start}) AS INTEGER) LIMIT {int(limit)}" if limit is not None else ""
        return f"SELECT {what} FROM {table} WHERE complete = 1 AND {PROVISIONAL_NUMBER_SQL} AND id LIKE ?{order}"

    def renumber(self) -> list[tuple[str, str]]:
        """Gives each of this device's provisionally numbered tickets a number from its blocks, oldest first, as
        far as the blocks go: one ``ticket.number`` op each, in one transaction, made in the name of whoever
        submitted the ticket. A sync calls it after fetching a block, before it pushes.

        Returns:
            ``(provisional, new)`` pairs, in the order given.
        """
        given: list[tuple[str, str]] = []
        with self.batch():
            left = sum(block.left for block in self.numbers.blocks())  # no state read beyond what the blocks cover
            for state in self.provisional_tickets(limit=left):
                number = self.numbers.take_from_block()
                if number is None:
                    break
                old = str(value_of(state, "number"))
                self.emit("ticket.number", state["id"], {"number": number}, actor=state["created"][1], state=state)
                given.append((old, number))
        return given

    # --- reading --------------------------------------------------------------------------------------------

    def state(self, entity: EntityType, eid: str) -> State | None:
        """A record's folded state, None when this device holds no op of it."""
        return self.store.state(entity.value, eid)

    def states(
        self, entity: EntityType, filters: Mapping[str, Any], *, include_deleted: bool, order: str = "id"
    ) -> list[State]:
        """The states of the complete records of one type whose columns equal ``filters`` (None: any)."""
        where, params = [], []
        for column, value in filters.items():
            if value is not None:
                where.append(f"AND {column} = ?")
                params.append(str(value))
        if not include_deleted:
            where.append("AND deleted = 0")
        return self._states(entity, " ".join(where), params, order)

    def rows(
        self,
        entity: EntityType,
        columns: Sequence[str],
        filters: Mapping[str, Any],
        *,
        include_deleted: bool,
        order: str = "id",
        fields: Sequence[str] = (),
        paths: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """``(id, *columns, *fields)`` of the complete records of one type whose columns equal ``filters``: the
        materialised columns as stored, and each of ``fields`` (a field without a column) as the record shows it
        (the last entry of its value list, as :func:`~caresync.core.merge.value_of` reads it), taken from the
        stored state by SQLite without parsing it here, then each of ``paths`` (a JSON path into the state, such as
        ``$.created[2]``; several joined by ``|`` give the first that is not null). Sealed values are opened as in a
        record. For lists: no state is parsed and no record is built."""
        names = [*columns, *fields, *filters, *order.replace(",", " ").split()]
        if not all(_NAME.match(n) for n in names if n.lower() not in ("asc", "desc")) or not all(
            _PATH.match(p) for path in paths for p in path.split("|")
        ):
            raise InvalidInputError(
                "Cannot list records", [("columns", "names of columns and JSON paths only")], key="store.list_columns"
            )
        where, params = [], []
        for column, value in filters.items():
            if value is not None:
                where.append(f"AND {column} = ?")
                params.append(str(value))
        if not include_deleted:
            where.append("AND deleted = 0")
        extracts = [f"$.f.{f}[#-1][6]" for f in fields] + list(paths)
        select = ", ".join(
            ["id", *columns]
            + [
                "coalesce(" + ", ".join(f"json_extract(state, '{p}')" for p in e.split("|")) + ")"
                if "|" in e
                else f"json_extract(state, '{e}')"
                for e in extracts
            ]
        )
        self.store.settle()
        table = ENTITY_TABLES[entity.value].__tablename__
        found = self.store.sql(
            f"SELECT {select} FROM {table} WHERE complete = 1 {' '.join(where)} ORDER BY {order}", params
        )
        if not self._opening_keys():  # nothing this device could open: the values as stored
            return [tuple(r) for r in found]
        return [tuple(self.readable(list(r))) for r in found]

    def conflicted_states(self, entity: EntityType) -> list[State]:
        """The states of the records of one type that hold an unresolved conflict."""
        return self._states(entity, "AND conflicts > 0", (), "id")

    def _states(self, entity: EntityType, where: str, params: Iterable[Any], order: str) -> list[State]:
        self.store.settle()
        table = ENTITY_TABLES[entity.value].__tablename__
        rows = self.store.sql(f"SELECT state FROM {table} WHERE complete = 1 {where} ORDER BY {order}", list(params))
        return [from_json(r[0]) for r in rows]

    def readable(self, value: Any) -> Any:
        """``value`` (a state or an op body) with what this device's keys open opened (the station's keys, on the
        station's devices; the readers' keys of its grids, on a field device entitled to them); the rest as it
        is."""
        keys = self._opening_keys()
        if not keys:
            return value
        return open_sealed(value, keys, self._opened)

    def _opening_keys(self) -> list[OpeningKey]:
        return [*self._station_keys, *self._grid_secrets]

    def ops_of(self, eid: str) -> list[OpDict]:
        """Every op of one record, oldest first, as stored (sealed)."""
        return self.store.ops_of(eid)

    def readable_ops(self, eid: str) -> list[OpDict]:
        """Every op of one record, oldest first, opened where this device's keys open them."""
        ops = self.store.ops_of(eid)
        if not self._station_keys and not self._grid_secrets:
            return ops
        return [{**op, "body": self.readable(op["body"])} for op in ops]

    def device_public_key(self, origin: str) -> str | None:
        """The public key (hex) of device ``origin``, from any op of it held with its signature (checked then:
        its key's fingerprint is ``origin``)."""
        key = self._device_keys.get(origin)
        if key is None:
            rows = self.store.sql("SELECT sig FROM ops WHERE origin = ? AND sig IS NOT NULL LIMIT 1", (origin,))
            key = self._device_keys[origin] = signer_of({"sig": rows[0][0]}) if rows else None
        return key

    # --- readers' keys --------------------------------------------------------------------------------------

    def _readers(self, op: Mapping[str, Any], state: State | None) -> list[bytes]:
        """The X25519 keys an op's private values are sealed to: the station's, then the newest readers' key of
        every role and grid that may read the record (:func:`~caresync.trust.gridkeys.readers_for`)."""
        assert self._station_public_key is not None
        if not self._grid_published:
            return [self._station_public_key]
        return [self._station_public_key, *readers_for(self._grid_published, self._record_scopes(op, state))]

    def _record_scopes(self, op: Mapping[str, Any], state: State | None) -> list[RecordScope]:
        """Where the record of an op lives, as the role table places it: its type, grid and (tickets) kind, as the
        op leaves it and as it was before (a move, a change of kind); a visit lives in its resident's grid."""
        entity = str(op["kind"]).partition(".")[0]
        body = op["body"]
        if entity == EntityType.VISIT.value:
            resident = body.get("resident_id")
            if resident is None and state is not None:
                resident = value_of(state, "resident_id")
            held = self.store.state(EntityType.RESIDENT.value, str(resident)) if resident else None
            grid = value_of(held, "grid") if held is not None else None
            return [RecordScope(entity, grid)] if isinstance(grid, str) else []
        grids: list[str] = []
        kinds: list[str | None] = []
        if isinstance(body.get("grid"), str):
            grids.append(body["grid"])
        if isinstance(body.get("kind"), str):
            kinds.append(body["kind"])
        changed = body.get("field") if str(op["kind"]).endswith(".set") else None
        if changed in ("grid", "kind") and isinstance(body.get("value"), str):
            (grids if changed == "grid" else kinds).append(body["value"])
        if state is not None:
            for values, name in ((grids, "grid"), (kinds, "kind")):
                now = value_of(state, name) if name == "grid" or entity == EntityType.TICKET.value else None
                if isinstance(now, str):
                    values.append(now)
        return [
            RecordScope(entity, grid, kind) for grid in dict.fromkeys(grids) for kind in dict.fromkeys(kinds or [None])
        ]

    def _state_of(self, op: Mapping[str, Any]) -> State | None:
        return self.store.state(str(op["kind"]).partition(".")[0], str(op["eid"]))

    def _trusted_signers(self) -> set[bytes]:
        """The station keys whose signature on a readers' key this device takes: the one it pinned and those it
        followed to it by signed rotations."""
        keys = {bytes.fromhex(k) for k in json.loads(self.store.get_meta(_STATION_HISTORY_META) or "[]")}
        pinned = self.station_signing_key
        return keys | ({pinned} if pinned is not None else set())

    def learn_grid_keys(self, published: Sequence[PublishedGridKey], wraps: Sequence[str]) -> tuple[int, list[str]]:
        """Takes the readers' keys a server serves: the public halves the station signed (with the station key this
        device pinned, or one it followed to it), and this device's wraps, each opened with the device key and
        checked against the published key of its grid and version. What fails a check is left out and named.

        Returns:
            ``(how many readers' keys this device holds now that it did not before, problems)``.
        """
        trusted = self._trusted_signers()
        good = [k for k in published if any(k.signed_by(signer) for signer in trusted)]
        problems = [
            f"readers' key of the {k.role}s of {k.grid or 'everywhere'} v{k.version} is not signed by the station "
            "key this device pinned: ignored"
            for k in published
            if k not in good
        ]
        held = {(k.grid, k.role, k.version) for k in self._grid_secrets}
        fresh: list[GridKey] = []
        for wrap in wraps:
            try:
                key = unwrap_grid_key(self.device_key, wrap, good)
            except TrustError as exc:
                problems.append(str(exc))
                continue
            if (key.grid, key.role, key.version) not in held:
                held.add((key.grid, key.role, key.version))
                fresh.append(key)
        newest = newest_keys(good)
        if newest == self._grid_published and not fresh:
            return 0, problems
        secrets = [*self._grid_secrets, *fresh]
        with self.store.write():
            self.store.set_meta(GRID_KEYS_META, json.dumps([k.to_json() for k in sorted(good, key=_grid_order)]))
            self.store.set_meta(
                GRID_SECRETS_META,
                json.dumps(
                    [{"grid": k.grid, "role": k.role, "version": k.version, "secret": k.secret.hex()} for k in secrets]
                ),
            )
        self._grid_published, self._grid_secrets = newest, secrets
        if fresh:
            self._opened.clear()  # values it could not open before may open now
            self.logger.info(
                "readers' keys received: %s",
                ", ".join(f"{k.role} {k.grid or 'everywhere'} v{k.version}" for k in fresh),
            )
        return len(fresh), problems

    @property
    def readers_keys(self) -> list[tuple[str, str, int]]:
        """The readers' keys this device holds, as ``(role, grid, version)``: it opens what was sealed to them."""
        return sorted((k.role, k.grid, k.version) for k in self._grid_secrets)

    @property
    def published_readers_keys(self) -> list[PublishedGridKey]:
        """The newest published readers' key of each key grid this device knows: it seals to them."""
        return [self._grid_published[g] for g in sorted(self._grid_published)]

    # --- keys -----------------------------------------------------------------------------------------------

    @property
    def station_public_key(self) -> bytes | None:
        """The station's X25519 public key private fields are sealed to (None: this device seals nothing)."""
        return self._station_public_key

    @property
    def station_key(self) -> StationKey | None:
        """The station's key pair, on a device the station trusts to read sealed fields; None elsewhere."""
        return self._station_keys[0] if self._station_keys else None

    @property
    def station_keys(self) -> list[StationKey]:
        """Every station key this device holds, the current one first, then those the station rotated away from
        (they still open what was sealed to them); empty on a device the station does not trust with its key."""
        return list(self._station_keys)

    @property
    def station_signing_key(self) -> bytes | None:
        """The station's Ed25519 public key this device pinned (None until it learns one, or when it pinned only
        the X25519 key of a station key of an earlier release)."""
        pinned = self.store.get_meta(STATION_SIGNING_META)
        return bytes.fromhex(pinned) if pinned else None

    def set_station_public_key(self, public_key: bytes) -> None:
        """Pins this X25519 station key (the sealing half), given by hand, when this device knows none yet: from
        now on every change made here seals its private fields to it.

        Raises:
            InvalidInputError: not 32 bytes. TrustError: this device already keeps another station key (a new one
                comes only as a rotation signed by the old: :meth:`learn_station_key`).
        """
        if len(public_key) != 32:
            raise InvalidInputError(
                "Not a station key",
                [("public_key", f"must be 32 bytes, got {len(public_key)}")],
                key="station_key.not_key",
            )
        if self._station_public_key not in (None, bytes(public_key)):
            raise TrustError(
                f"This device keeps station key {self._station_public_key.hex()} (learned first); it takes another "
                "one only as a rotation signed by that key. Nothing changed.",
                key="station_key.pinned",
                fields={"kept": self._station_public_key.hex()},
            )
        self.store.set_meta("station_public_key", public_key.hex())
        self._station_public_key = bytes(public_key)
        self.seal_held()

    def trust_station_key(self, signing_public_key: bytes) -> None:
        """Pins the station's key by its Ed25519 public key (as ``caresync station-key show`` prints it), given
        by hand, when this device knows none yet (or the same).

        Raises:
            InvalidInputError: not a station public key. TrustError: this device already keeps another one.
        """
        self.learn_station_key([StationKeyLink(bytes(signing_public_key))], None)

    def learn_station_key(self, chain: Sequence[StationKeyLink], legacy_public_key: bytes | None) -> bool:
        """Takes the station key a server (or a person) offers, by the pinning rule: the first key this device
        learns is kept; a newer one only through rotations signed by the key before it
        (:func:`~caresync.trust.keys.follow_station_chain`). ``legacy_public_key`` is a bare X25519 key of a
        server whose station registered a key of an earlier release (no chain): taken only when this device knows
        none. Returns True when the device's key changed (held work is then sealed).

        Raises:
            TrustError: the offer does not follow from the key this device keeps; nothing changed.
        """
        pinned_signing = self.station_signing_key
        newest = follow_station_chain(pinned_signing, self._station_public_key, list(chain))
        if newest is None:
            if legacy_public_key is None or self._station_public_key == legacy_public_key:
                return False
            if self._station_public_key is not None:
                raise TrustError(
                    f"The sync server offers station key {legacy_public_key.hex()}, not the one this device learned "
                    f"first ({self._station_public_key.hex()}), with no rotation signed by it: refused. This device "
                    "keeps sealing to the key it has; ask the station.",
                    key="station_key.offer_refused",
                    fields={"offered": legacy_public_key.hex(), "kept": self._station_public_key.hex()},
                )
            self.set_station_public_key(legacy_public_key)
            return True
        if newest.signing_key == pinned_signing and newest.public_key == self._station_public_key:
            return False
        followed = [link.signing_key.hex() for link in chain]
        if pinned_signing is not None and pinned_signing.hex() in followed:
            followed = followed[followed.index(pinned_signing.hex()) :]  # the keys it followed, from its own on
        else:
            followed = followed[-1:]
        history = json.loads(self.store.get_meta(_STATION_HISTORY_META) or "[]")
        with self.store.write():
            self.store.set_meta(STATION_SIGNING_META, newest.signing_key.hex())
            self.store.set_meta("station_public_key", newest.public_key.hex())
            self.store.set_meta(_STATION_HISTORY_META, json.dumps(list(dict.fromkeys([*history, *followed]))))
        if self._station_public_key is not None and self._station_public_key != newest.public_key:
            self.logger.warning("the station rotated its key: sealing to %s from now on", newest.signing_key.hex())
        self._station_public_key = newest.public_key
        self.seal_held()
        return True

    def install_station_key(self, key: StationKey) -> None:
        """Keeps the station's key pair in the replica file: this device reads sealed fields and seals to it.
        A key installed before stays, to open what was sealed to it (after a rotation)."""
        previous = [k for k in self._station_keys if k.public_key != key.public_key]
        with self.store.write():
            self.store.set_meta("station_key" if key.legacy else "station_seed", key.secret.hex())
            self.store.sql("DELETE FROM meta WHERE key = ?", ("station_seed" if key.legacy else "station_key",))
            self.store.set_meta(
                "station_old_keys",
                json.dumps([{"legacy": k.legacy, "secret": k.secret.hex()} for k in previous]),
            )
            self.store.set_meta("station_public_key", key.public_key.hex())
            if key.signing_public_key is not None:
                self.store.set_meta(STATION_SIGNING_META, key.signing_public_key.hex())
                history = json.loads(self.store.get_meta(_STATION_HISTORY_META) or "[]")
                history = list(dict.fromkeys([*history, key.signing_public_key.hex()]))
                self.store.set_meta(_STATION_HISTORY_META, json.dumps(history))
        self._station_keys = [key, *previous]
        self._station_public_key = key.public_key
        self.seal_held()

    # --- other devices' ops ---------------------------------------------------------------------------------

    def version_vector(self) -> dict[str, int]:
        """For each device, the highest op seq this replica holds with none missing before it."""
        return self.store.version_vector()

    def export_ops(self, since: Mapping[str, int] | None = None, *, limit: int = 5000) -> list[dict[str, Any]]:
        """Up to ``limit`` ops a replica with version vector ``since`` may lack, as plain JSON objects (never
        the work this device keeps until it can seal it: :meth:`held_from`)."""
        return self.store.ops_after(dict(since or {}), limit=limit, held=self.held())

    # --- work kept until it can be sealed -------------------------------------------------------------------

    @property
    def sealing_required(self) -> bool:
        """True on a device that works with a sync server (enrolled): its free text must never leave it in
        clear. A replica used alone, or synced with a direct token, seals only once it is given a key."""
        return self.store.get_meta(SEALING_REQUIRED_META) is not None

    def held_from(self) -> int | None:
        """The seq of this device's first unsent op that holds free text in clear, on a device that must seal
        and has no station key yet; None when nothing is kept back. That op and every later one of this device
        stay on it (seqs travel without holes): not pushed, not put in a bundle, not given to a peer."""
        if self._station_public_key is not None or not self.sealing_required:
            return None
        for op in self.store.own_unsent(self.id):
            if unsealed_fields(op["kind"], op["body"]):
                return int(op["seq"])
        return None

    def held(self) -> tuple[str, int] | None:
        """:meth:`held_from` as ``(origin, seq)``, the form the store's queries take."""
        seq = self.held_from()
        return None if seq is None else (self.id, seq)

    def held_count(self) -> int:
        """How many of this device's ops are kept on it until it has the station's key."""
        seq = self.held_from()
        if seq is None:
            return 0
        return int(self.store.sql("SELECT COUNT(*) FROM ops WHERE origin = ? AND seq >= ?", (self.id, seq))[0][0])

    def seal_held(self) -> int:
        """Seals the work kept back for want of a key, now that this device has one: its unsent ops that hold
        free text in clear, and every later op of it, are sealed, signed and chained again (the same identities:
        none of them ever left the device) and their records re-folded, in one transaction. Returns how many ops
        were rewritten (0 when none wait, or there is still no key)."""
        key = self._station_public_key
        if key is None or not self.sealing_required:
            return 0
        unsent = self.store.own_unsent(self.id)
        first = next((i for i, op in enumerate(unsent) if unsealed_fields(op["kind"], op["body"])), None)
        if first is None:
            return 0
        tail = unsent[first:]
        if [op["seq"] for op in tail] != list(range(tail[0]["seq"], tail[0]["seq"] + len(tail))):
            self.logger.warning("cannot seal kept work: ops of this device after %d were sent", tail[0]["seq"])
            return 0
        prev = self.store.own_link(self.id, tail[0]["seq"] - 1)
        rewritten: list[OpDict] = []
        for op in tail:
            fresh: OpDict = {k: v for k, v in op.items() if k not in ("sig", "pd")}
            fresh["body"] = seal_body(op["kind"], op["body"], self._readers(op, self._state_of(op)))
            prev = sign_linked(fresh, self.device_key, prev)
            rewritten.append(fresh)
        validate_ops(rewritten)  # a sealed value has limits too
        self.store.rewrite_own(rewritten, prev)
        self.logger.info("sealed %d change(s) kept on this device until it had the station's key", len(rewritten))
        return len(rewritten)

    def apply(
        self,
        ops: Iterable[Mapping[str, Any]],
        *,
        defer_rows: bool,
        from_server: bool = False,
        meta: Mapping[str, str] | None = None,
        explained: Collection[tuple[str, int]] = (),
    ) -> ApplyResult:
        """Validates and applies a batch of ops from another replica, all or nothing; ``from_server`` marks
        them as held by the server, and ``meta`` is set in the same transaction (sync saves its cursor so).
        Ops from a peer (not ``from_server``) that follow a gap in their device's chain are kept but not applied
        until it is filled (:meth:`caresync.store.store.Store.ingest`; ``explained``: ops this replica declined
        itself, which are no gap).

        Raises:
            InvalidOpError: an op is malformed (the message names it and the field); nothing was applied.
            OpForkError: an op reuses the identity of a different op; nothing was applied.
        """
        with paused_gc():  # one pause for the batch: a collection between the steps would walk every validated op
            return self.apply_valid(
                *validate_ops(ops), defer_rows=defer_rows, from_server=from_server, meta=meta, explained=explained
            )

    def apply_valid(
        self,
        known: list[OpDict],
        deferred: list[OpDict],
        *,
        defer_rows: bool,
        from_server: bool = False,
        meta: Mapping[str, str] | None = None,
        explained: Collection[tuple[str, int]] = (),
    ) -> ApplyResult:
        """:meth:`apply` of ops :func:`~caresync.core.ops.validate_ops` already checked and split (network sync
        validates a page on its fetching thread, while the page before it is stored)."""
        with paused_gc():
            with self.store.write():
                result: IngestResult = self.store.ingest(
                    known,
                    deferred,
                    defer_rows=defer_rows,
                    sent=from_server,
                    verify=verify_ops if from_server else _verify_partial,
                    hold_gaps=not from_server,
                    explained=explained,
                )
                now = self.clock.physical_ms()
                for origin, stamp in result.max_hlc_by_origin.items():
                    if origin != self.id and self.clock.observe(stamp):
                        self._record_anomaly(origin, stamp, now)
                self.store.set_meta("clock_last", str(self.clock.last))
                for key, value in (meta or {}).items():
                    self.store.set_meta(key, value)
                if any(_kills_blobs(op) for op in known):
                    self.blobs.collect()  # in the same transaction: a removed or erased picture goes with its op
            del known, deferred  # freed now, before the collector resumes and would walk them once more
        if result.deferred:
            self.logger.warning("kept %d op(s) of a kind this caresync cannot read yet", result.deferred)
        if result.held_back:
            self.logger.warning(
                "kept %d op(s) unapplied: they follow a gap in their device's chain that the peer did not fill; "
                "they are applied once the ops before them arrive (or the sync server sends them)",
                result.held_back,
            )
        if result.unchecked:
            self.logger.info(
                "left out %d op(s) that came without their signature and without the op that closes their run; "
                "they are taken when they come with it",
                result.unchecked,
            )
        return ApplyResult(
            applied=result.applied,
            duplicates=result.duplicates,
            deferred=result.deferred,
            records=result.records,
            refolded=result.refolded,
            unchecked=result.unchecked,
            held_back=result.held_back,
        )

    def _record_anomaly(self, origin: str, stamp: int, now: int) -> None:
        ahead = self.clock.ahead_ms(stamp)
        known = self.store.sql("SELECT ahead_ms FROM clock_anomalies WHERE origin = ?", (origin,))
        if known and known[0][0] >= ahead:
            return
        self.store.sql(
            "INSERT OR REPLACE INTO clock_anomalies (origin, ahead_ms, seen_at, hlc) VALUES (?, ?, ?, ?)",
            (origin, ahead, now, stamp),
        )
        if not known:
            self.logger.warning(
                "device %s stamps its changes %.1f hours ahead of this device's clock; one of the two clocks is "
                "wrong (nothing is lost: see docs/concepts.md, clock trouble)",
                origin,
                ahead / 3_600_000,
            )

    def clock_anomalies(self) -> list[tuple[str, int, int]]:
        """``(device, ms ahead, seen at ms)`` for each device whose stamps arrived far ahead of this clock."""
        rows = self.store.sql("SELECT origin, ahead_ms, seen_at FROM clock_anomalies ORDER BY origin")
        return [(str(o), int(a), int(s)) for o, a, s in rows]

    def set_clock_offset(self, offset_ms: int) -> None:
        """Corrects this device's wall clock by ``offset_ms`` (what the sync server reports); persisted."""
        self.clock.correct(int(offset_ms))
        self.store.set_meta("clock_offset_ms", str(int(offset_ms)))
        self.store.set_meta("clock_last", str(self.clock.last))

    # --- what sync leaves behind ----------------------------------------------------------------------------

    def meta(self, *keys: str) -> dict[str, str]:
        """The stored values of these meta keys (those set)."""
        marks = ",".join("?" * len(keys))
        return {k: v for k, v in self.store.sql(f"SELECT key, value FROM meta WHERE key IN ({marks})", list(keys))}

    def set_meta(self, key: str, value: str) -> None:
        """Sets one meta value (a setting of this device that must outlive the process)."""
        self.store.set_meta(key, value)

    def record_of(self, op: str) -> str | None:
        """The record an op (``origin:seq``) of this replica's log is about, or None when it is not held."""
        origin, _, seq = op.partition(":")
        if not seq.isdigit():
            return None
        rows = self.store.sql("SELECT eid FROM ops WHERE origin = ? AND seq = ?", (origin, int(seq)))
        return str(rows[0][0]) if rows else None

    def forget_meta(self, *, key: str | None = None, prefix: str | None = None) -> None:
        """Removes one meta key, or every key that starts with ``prefix`` (say, every pull cursor)."""
        if key is not None:
            self.store.sql("DELETE FROM meta WHERE key = ?", (key,))
        if prefix is not None:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            self.store.sql("DELETE FROM meta WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",))

    def unsent_count(self) -> int:
        """How many ops the sync server has not acknowledged yet (refused ones excluded; kept ones included)."""
        return self.store.unsent_stats()[0]

    def settle(self) -> int:
        """Re-folds the records that batches applied with ``defer_rows`` left pending; returns how many."""
        return self.store.settle()

    def purge_out_of_scope(self, role: str, grids: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
        """Removes the records a device of ``role`` in ``grids`` may not hold, with their ops, in one transaction.

        A record with an op the server has not acknowledged (unsent, waiting, refused) is kept: it is someone's
        work. The device's own op counter is left as it is, so its next op never reuses an old identity.

        Returns:
            ``(removed records by type, ids of the records kept for their unsent work)``.
        """
        store = self.store
        store.settle()
        residents = {rid: grid for rid, grid in store.sql("SELECT id, grid FROM residents")}
        out: dict[str, list[str]] = defaultdict(list)
        for entity in EntityType:
            table = ENTITY_TABLES[entity.value].__tablename__
            for rid, grid, kind, resident in store.sql(f"SELECT {_SCOPE_COLUMNS[entity.value]} FROM {table}"):
                if entity is EntityType.VISIT:
                    grid = residents.get(resident)
                visible = (grid is not None or entity.value == "worker") and may_read(
                    role, grids, RecordScope(entity.value, grid, kind)
                )
                if not visible:
                    out[entity.value].append(rid)
        unsent = {eid for (eid,) in store.sql("SELECT DISTINCT eid FROM ops WHERE sent != 1")}
        kept = sorted(eid for eids in out.values() for eid in eids if eid in unsent)
        purged: dict[str, int] = {}
        with store.write():
            for entity_name, eids in out.items():
                gone = [eid for eid in eids if eid not in unsent]
                if not gone:
                    continue
                purged[entity_name] = len(gone)
                table = ENTITY_TABLES[entity_name].__tablename__
                for start in range(0, len(gone), 500):
                    part = gone[start : start + 500]
                    marks = ",".join("?" * len(part))
                    removed = store.sql(
                        f"SELECT origin, COUNT(*), MIN(seq) FROM ops WHERE eid IN ({marks}) GROUP BY origin", part
                    )
                    store.sql(f"DELETE FROM ops WHERE eid IN ({marks})", part)
                    store.sql(f"DELETE FROM {table} WHERE id IN ({marks})", part)
                    store.sql(f"DELETE FROM pending WHERE entity = ? AND id IN ({marks})", [entity_name, *part])
                    for origin, count, lowest in removed:
                        if origin == self.id:  # keep contig: the next local op must follow the last one ever made
                            store.sql("UPDATE origins SET held = held - ? WHERE origin = ?", (count, origin))
                        else:
                            store.sql(
                                "UPDATE origins SET held = held - ?, contig = MIN(contig, ?) WHERE origin = ?",
                                (count, lowest - 1, origin),
                            )
            if purged:
                self.blobs.collect()  # the pictures of records it may no longer hold go with them
        return purged, kept


class HasDeviceLog(Protocol):
    """Anything that carries a device's op log, such as a :class:`~caresync.replica.Replica`."""

    @property
    def device_log(self) -> DeviceLog:
        """The op log sync works on."""
        ...


def device_log_of(holder: DeviceLog | HasDeviceLog) -> DeviceLog:
    """The op log itself, or the one a replica carries: sync's functions take either."""
    return holder if isinstance(holder, DeviceLog) else holder.device_log
