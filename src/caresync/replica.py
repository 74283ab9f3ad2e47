"""The replica: one device's copy of the records it may see, changed offline, merged with anyone's.

>>> with Replica.open("station.db", actor="clerk-zhang") as station:
...     ticket = station.tickets.submit(title="Septic tank blocked", kind="repair", channel="walk_in",
...                                     grid="changnan/teachers-dorm/3")
...     station.tickets.accept(ticket.id, assignee="grid-li")

The :class:`Replica` is the facade people use; the engine under it, the device's op log that sync works on, is
:class:`~caresync.store.devicelog.DeviceLog` (:attr:`Replica.device_log`).
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from caresync.core.clock import DEFAULT_MAX_FORWARD_MS, HybridClock, system_time_ms
from caresync.core.domain import (
    CLOSABLE_WITHOUT_OUTCOME,
    DEFAULT_DUE_HOURS,
    EntityType,
    Role,
    TicketKind,
    grid_parent,
    ticket_transition,
)
from caresync.core.gcpause import paused_gc
from caresync.core.ids import ENTITY_PREFIX, op_id
from caresync.core.media import AttachmentKind, MediaSettings, prepare
from caresync.core.merge import State, value_of
from caresync.core.model import (
    Attachment,
    ClockAnomaly,
    Conflict,
    HistoryEntry,
    Mailbox,
    Parcel,
    Resident,
    Ticket,
    Visit,
    Worker,
    build_record,
    history_of,
    ms_to_datetime,
)
from caresync.core.ops import ATTACHABLE, LOST_KIND, SETTABLE_FIELDS, OpDict, entity_type_of
from caresync.core.summaries import ParcelSummary, ResidentSummary, TicketSummary
from caresync.errors import IntentError, InvalidInputError, NotFoundError, SyncError, TrustError
from caresync.store.devicelog import ApplyResult, DeviceLog
from caresync.store.numbers import TicketNumbers, is_ticket_number
from caresync.sync._defaults import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_DEADLINE_S
from caresync.trust.blobs import BlobRef, open_blob, seal_blob
from caresync.trust.codes import delivery_code_check, delivery_code_matches
from caresync.trust.keys import DeviceKey, StationKey, is_sealed
from caresync.trust.scopes import RecordScope, may_read

if TYPE_CHECKING:
    import httpx

    from caresync.sync.enrolment import Enrolment, ScopeChange
    from caresync.sync.netsync import Refusal, SyncProgressCallback, SyncResult, WaitCallback

__all__ = [
    "ApplyResult",
    "Attachments",
    "Mailboxes",
    "Parcels",
    "Replica",
    "Residents",
    "SyncReport",
    "Tickets",
    "Visits",
    "Workers",
    "find_resident",
    "find_ticket",
]

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SyncReport:
    """The outcome of :meth:`Replica.sync_with`: ops sent each way."""

    sent: int
    received: int


def _to_ms(value: datetime | int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError("A time must carry its time zone", [("time", f"{value} has no time zone")])
        return int(value.timestamp() * 1000)
    return int(value)


class Replica:
    """One device's replica: a SQLite file with the op log and the materialised records.

    Open it with :meth:`open`; use it as a context manager (or call :meth:`close`). ``actor`` names who is
    working on this device; every write method takes ``actor=`` to override it for one call.
    """

    def __init__(
        self,
        device_log: DeviceLog,
        *,
        actor: str,
        due_hours: Mapping[TicketKind, int],
    ) -> None:
        self._device_log = device_log
        self.actor = actor
        self.due_hours = dict(due_hours)
        self.tickets = Tickets(self)
        self.residents = Residents(self)
        self.visits = Visits(self)
        self.mailboxes = Mailboxes(self)
        self.parcels = Parcels(self)
        self.workers = Workers(self)
        self.attachments = Attachments(self)
        """Photos, signatures and documents on residents, tickets, visits and parcels."""

    # --- lifetime -------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        actor: str,
        now_ms: Callable[[], int] = system_time_ms,
        max_clock_forward_ms: int = DEFAULT_MAX_FORWARD_MS,
        due_hours: Mapping[TicketKind | str, int] | None = None,
        logger: logging.Logger | None = None,
        device_key: DeviceKey | None = None,
        read_only: bool = False,
    ) -> Replica:
        """Opens the replica file at ``path``, creating it (with a new replica id) if it does not exist.

        Args:
            path: the SQLite file.
            actor: who is working on this device (a worker id or name); recorded on every change.
            now_ms: the wall-clock source; tests pass a fake one.
            max_clock_forward_ms: how far stamps seen from other devices may push this device's clock.
            due_hours: hours from submission to due, by ticket kind (default 48; emergencies 2).
            logger: where to report migrations, deferred ops and clock anomalies.
            device_key: the key a new file is made with (default: a new random one), for a device whose
                identity is made elsewhere, or a repeatable simulation; a file that has a key keeps it.
            read_only: open an existing replica without ever writing to it (for commands that only read): a
                file that is not a replica (it says what the file is), or must first be upgraded or have a
                cut-off sync finished, is refused with a StoreError, and every change raises StoreError.

        Raises:
            StoreError: the file cannot be opened; StoreVersionError: it is from a newer caresync;
            InvalidInputError: ``device_key`` is not the key the file already has.
        """
        if not actor or not actor.strip():
            raise InvalidInputError("Say who is working on this device", [("actor", "must not be empty")])
        hours: dict[TicketKind, int] = {k: 48 for k in TicketKind}
        hours.update(DEFAULT_DUE_HOURS)
        for kind, h in (due_hours or {}).items():
            if kind not in TicketKind.__members__.values() or not isinstance(h, int) or h < 1:
                raise InvalidInputError(
                    "Cannot open the replica", [("due_hours", f"{kind!r}: {h!r} is not a ticket kind and hours")]
                )
            hours[TicketKind(kind)] = h
        device_log = DeviceLog.open(
            path,
            now_ms=now_ms,
            max_clock_forward_ms=max_clock_forward_ms,
            logger=logger,
            device_key=device_key,
            read_only=read_only,
        )
        return cls(device_log, actor=actor, due_hours=hours)

    def close(self) -> None:
        """Closes the replica file; calling it again does nothing."""
        self._device_log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def device_log(self) -> DeviceLog:
        """The device's op log under this replica: what sync, enrolment and relay bundles work on."""
        return self._device_log

    @property
    def path(self) -> Path:
        """The replica file."""
        return self._device_log.path

    @property
    def id(self) -> str:
        """This device's id: its key's fingerprint, the origin of every change it makes."""
        return self._device_log.id

    @property
    def clock(self) -> HybridClock:
        """This device's hybrid logical clock (its wall time corrected by what the server reports)."""
        return self._device_log.clock

    @property
    def device_key(self) -> DeviceKey:
        """This device's Ed25519 signing key; :attr:`id` is its fingerprint."""
        return self._device_log.device_key

    @property
    def log(self) -> logging.Logger:
        """Where this replica reports migrations, deferred ops and clock anomalies."""
        return self._device_log.logger

    @property
    def numbers(self) -> TicketNumbers:
        """Where this device's ticket numbers come from (server-reserved blocks, then a fallback)."""
        return self._device_log.numbers

    # --- writing --------------------------------------------------------------------------------------------

    def batch(self) -> AbstractContextManager[None]:
        """Groups local writes in one transaction: all of them land, or none (and about twice as fast)."""
        return self._device_log.batch()

    def _emit(
        self,
        kind: str,
        eid: str | None,
        body: dict[str, Any],
        *,
        actor: str | None,
        state: State | None = None,
        entity: EntityType | None = None,
        at: int | None = None,
    ) -> tuple[OpDict, State]:
        """Makes, validates and stores one local op (:meth:`DeviceLog.emit`) in the name of ``actor`` or, by
        default, of the person working on this device."""
        return self._device_log.emit(kind, eid, body, actor=actor or self.actor, state=state, entity=entity, at=at)

    def _state(self, entity: EntityType, eid: str, noun: str) -> State:
        state = self._device_log.state(entity, eid)
        if state is None or state["created"] is None:
            raise NotFoundError(
                f"No {noun} with id {eid!r} on this device. Check the id, or sync to fetch it from the station.",
                key="record.not_found",
                fields={"noun": noun, "ref": eid},
            )
        return state

    # --- reading --------------------------------------------------------------------------------------------

    def _record(self, state: State) -> Any:
        """The record of a state. Its history is read when it is first asked for (``history`` of the record), up
        to the newest op the state folds: a record shows the history it had when it was read."""
        log = self._device_log
        eid, last = state["id"], state["last"]

        def history() -> list[HistoryEntry]:
            ops = log.readable_ops(eid)
            if last is not None:
                newest = (last[0], last[1], last[2])
                ops = [op for op in ops if (op["hlc"], op["origin"], op["seq"]) <= newest]
            return history_of(ops, log.device_public_key)

        return build_record(log.readable(state), history)

    def history(self, entity_id: str) -> list[HistoryEntry]:
        """Every change to one record, oldest first: who did what, when, on which device, signed by which key."""
        log = self._device_log
        return history_of(log.readable_ops(entity_id), log.device_public_key)

    # --- keys -----------------------------------------------------------------------------------------------

    @property
    def station_public_key(self) -> bytes | None:
        """The station's X25519 public key private fields are sealed to (None: this device seals nothing)."""
        return self._device_log.station_public_key

    @property
    def station_key(self) -> StationKey | None:
        """The station's key pair, on a device the station trusts to read sealed fields; None elsewhere."""
        return self._device_log.station_key

    @property
    def station_signing_key(self) -> bytes | None:
        """The station's Ed25519 public key this device pinned (its identity; None until it learns one)."""
        return self._device_log.station_signing_key

    def set_station_public_key(self, public_key: bytes) -> None:
        """Pins the station's X25519 sealing key given by hand, when this device knows none yet: from now on the
        private fields of every change made here are sealed to it, and work kept for want of a key is sealed.

        Raises:
            TrustError: this device keeps another station key (a new one comes only as a signed rotation).
        """
        self._device_log.set_station_public_key(public_key)

    def trust_station_key(self, signing_public_key: bytes) -> None:
        """Pins the station's key by its Ed25519 public key (as ``caresync station-key show`` prints it), when
        this device knows none yet; enrolment and sync do the same from what the server says.

        Raises:
            InvalidInputError: not a station public key. TrustError: this device keeps another station key.
        """
        self._device_log.trust_station_key(signing_public_key)

    def install_station_key(self, key: StationKey) -> None:
        """Makes this a device that reads sealed fields (a station device): keeps ``key`` in the replica file
        and seals to it. Only for devices the station trusts with every resident's private data."""
        self._device_log.install_station_key(key)

    def conflicts(self) -> list[Conflict]:
        """Every unresolved conflict on this replica, across all records."""
        out: list[Conflict] = []
        for entity in EntityType:
            for state in self._device_log.conflicted_states(entity):
                out.extend(self._record(state).conflicts)
        return out

    def resolve(self, conflict: Conflict, value: Any = None, *, actor: str | None = None) -> None:
        """Settles a conflict with an ordinary later edit that saw every competing value.

        For a field, ``value`` is the value to keep (default: the one shown now). For ``status``, the
        current status is confirmed (record another transition instead to move on). Custody conflicts are
        settled by recording the next hand-over.
        """
        entity = conflict.entity
        state = self._state(entity, conflict.entity_id, entity.value)
        if conflict.field == "status":
            self.tickets._transition(conflict.entity_id, "confirm", actor=actor)
        elif conflict.field == "custody":
            raise IntentError(
                f"Parcel {conflict.entity_id}: custody conflicts are settled by recording the next hand-over",
                key="conflict.custody",
                fields={"parcel": conflict.entity_id},
            )
        else:
            chosen = conflict.chosen if value is None else value
            self._set_fields(entity, state, {conflict.field: chosen}, actor=actor)

    def _set_fields(self, entity: EntityType, state: State, changes: Mapping[str, Any], *, actor: str | None) -> State:
        allowed = SETTABLE_FIELDS[entity]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise InvalidInputError(
                f"Cannot edit {entity.value} {state['id']}",
                [(f, f"not a field you can edit; editable: {', '.join(sorted(allowed))}") for f in unknown],
            )
        with self.batch() if len(changes) > 1 else nullcontext():
            for field, value in changes.items():
                replaces = [e[0] for e in state["f"].get(field, [])]
                body = {"field": field, "value": value, "replaces": replaces}
                _, state = self._emit(f"{entity.value}.set", state["id"], body, actor=actor, state=state)
        return state

    # --- sync between replicas ------------------------------------------------------------------------------

    def version_vector(self) -> dict[str, int]:
        """For each device, the highest op seq this replica holds with none missing before it."""
        return self._device_log.version_vector()

    def export_ops(self, since: Mapping[str, int] | None = None, *, limit: int = 5000) -> list[dict[str, Any]]:
        """Up to ``limit`` ops a replica with version vector ``since`` may lack, as plain JSON objects."""
        return self._device_log.export_ops(since, limit=limit)

    def apply_ops(self, ops: Iterable[Mapping[str, Any]], *, defer_rows: bool = False) -> ApplyResult:
        """Validates and applies a batch of ops from another replica, all or nothing.

        Ops are never refused for being late: their effect is folded and what no longer fits is surfaced as a
        conflict. Ops of a kind or version this library does not know are kept and folded after an upgrade.
        Ops that came without their signature (a pull answer sends only the last of a run) and without the op
        that closes their run are left out, counted in ``unchecked``: nothing in the batch vouches for them.

        ``defer_rows=True`` is for one batch of a longer exchange: the touched records are marked pending in
        the same transaction and re-folded once by :meth:`settle` (and before any read), instead of having
        their rows rewritten by every batch.

        Raises:
            InvalidOpError: an op is malformed (the message names it and the field); nothing was applied.
            OpForkError: an op reuses the identity of a different op; nothing was applied.
        """
        return self._device_log.apply(ops, defer_rows=defer_rows)

    def sync_with(
        self, other: Replica, *, batch_size: int = 5000, progress: ProgressCallback | None = None
    ) -> SyncReport:
        """Exchanges ops both ways with another replica in this process, in bounded batches.

        Each batch is applied with :meth:`apply_ops`, the path network sync uses, and committed on its own,
        so an interrupted exchange resumes where it stopped. Then each takes the attachments' blobs it lacks
        (as its :attr:`Attachments.pull_mode` says), chunk by chunk, each chunk checked.
        """
        received = _pull(self, other, batch_size, progress)
        sent = _pull(other, self, batch_size, progress)
        for a, b in ((self, other), (other, self)):  # then the blobs each lacks of its live attachments
            blobs = a.device_log.blobs
            for ref in blobs.wanted(a.attachments.pull_mode):
                blobs.copy_from(b.device_log.blobs, ref.blob)
        self.settle()
        other.settle()
        return SyncReport(sent=sent, received=received)

    def enroll(self, server_url: str, code: str, *, client: httpx.Client | None = None) -> Enrolment:
        """Enrols this device with the sync server at ``server_url``, exchanging the one-time ``code`` the station
        gave for its credentials, which are kept in this replica: afterwards :meth:`sync` needs no arguments.

        Raises:
            InvalidInputError: the code is mistyped; ServerRefusedError: the server refused it (used, expired);
            SyncError: the server could not be reached; TrustError: this replica file predates device keys.
        """
        from caresync.sync import enrolment  # here, not at the top: keeps start-up fast

        return enrolment.enroll(self._device_log, server_url, code, client=client)

    def enrolment(self) -> Enrolment | None:
        """This device's enrolment (server, role, grids, token expiry, station key), or None if not enrolled."""
        from caresync.sync import enrolment  # here, not at the top: keeps start-up fast

        return enrolment.enrolment(self._device_log)

    def scope_changes(self) -> list[ScopeChange]:
        """Every change of this device's role or grids it applied, with what it removed and what it kept."""
        from caresync.sync import enrolment  # here, not at the top: keeps start-up fast

        return enrolment.scope_changes(self._device_log)

    def sync(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        progress: SyncProgressCallback | None = None,
        push_batch: int = 2000,
        pull_batch: int = 10_000,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        client: httpx.Client | None = None,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        deadline_s: float | None = DEFAULT_DEADLINE_S,
        on_wait: WaitCallback | None = None,
    ) -> SyncResult:
        """Syncs with the caresync server at ``url`` (protocol v1): pushes what it has not acknowledged, pulls
        what this device may see, corrects the clock if the server says it is off.

        Waits are bounded: ``connect_timeout_s`` for each connection, ``timeout_s`` for each answer, and
        ``deadline_s`` for the time without any answer, retries included (None: unbounded); ``on_wait`` hears of
        each retry before its wait, so a program can say why it waits.

        Without ``url`` and ``token``, syncs with the server this device enrolled with (:meth:`enroll`), renewing
        its token when due and applying a change of its scope (see :meth:`scope_changes`).

        Safe to interrupt at any point: the next call resumes. ``progress`` is called after every batch;
        ``client`` lets a caller supply its own :class:`httpx.Client` (proxies, certificates, tests).

        Raises:
            ServerRefusedError: the server refused the device or a batch (the message says why).
            ServerUnreachableError: no answer from the server (no connection, or none within the timeouts or the
                deadline); nothing is lost.
            SyncError: the server failed, or the device is not enrolled; nothing is lost.
        """
        from caresync.sync import enrolment, netsync  # here, not at the top: keeps start-up fast

        options: dict[str, Any] = {
            "connect_timeout_s": connect_timeout_s,
            "deadline_s": deadline_s,
            "on_wait": on_wait,
            "push_batch": push_batch,
            "pull_batch": pull_batch,
            "retries": retries,
            "backoff_s": backoff_s,
            "timeout_s": timeout_s,
            "progress": progress,
            "client": client,
        }
        if token is None:
            found = enrolment.enrolment(self._device_log)
            if url is not None and found is not None and url.rstrip("/") != found.server_url:
                raise InvalidInputError(
                    "Cannot sync", [("token", f"this device is enrolled with {found.server_url}, not {url}")]
                )
            return enrolment.sync(self._device_log, **options)
        if url is None:
            raise InvalidInputError("Cannot sync", [("url", "give the server address with the token")])
        return netsync.sync(self._device_log, url, token=token, **options)

    def unsent_count(self) -> int:
        """How many ops the sync server has not acknowledged yet (refused ones excluded)."""
        return self._device_log.unsent_count()

    def refusals(self) -> list[Refusal]:
        """Every op the sync server refused, with its reason; they stay on this device, unsent. An op of this
        device found damaged here is listed too (code ``corrupted``), with the kind and record it was about, once a
        signed statement that it is lost has taken its place in the log."""
        refused = self._device_log.store.refusals()
        if not refused:  # most of the time: no need to import the sync modules (and httpx) to say so
            return []
        from caresync.sync.netsync import Refusal  # here, not at the top: keeps start-up fast

        out = []
        for op, code, reason, _ in refused:
            kind, record = op["kind"], op["eid"]
            if kind == LOST_KIND:  # what the lost op was about, as its statement says
                kind, record = op["body"].get("kind") or kind, op["body"].get("eid") or record
            out.append(Refusal(op=op_id(op["origin"], op["seq"]), kind=kind, record=record, code=code, reason=reason))
        return out

    def retry_refused(self) -> int:
        """Queues the refused ops to be sent again (once the station changed what this device may do)."""
        return self._device_log.store.retry_refused()

    def settle(self) -> int:
        """Re-folds the records that batches applied with ``defer_rows`` left pending; returns how many.

        Reads do this by themselves; call it to choose when the work happens (say, at the end of a sync).
        """
        return self._device_log.settle()

    def state_digest(self) -> str:
        """A stable hash of every record's state and every op held: equal exactly when two replicas hold the
        same ops (with the same caresync version)."""
        return self._device_log.store.digest()

    def op_count(self) -> int:
        """How many ops this replica holds."""
        return self._device_log.store.op_count()

    def deferred(self) -> list[tuple[str, int, int]]:
        """``(kind, version, count)`` of ops held but not folded until caresync is upgraded."""
        return self._device_log.store.deferred_kinds()

    # --- clock ----------------------------------------------------------------------------------------------

    def set_clock_offset(self, offset_ms: int) -> None:
        """Corrects this device's wall clock by ``offset_ms`` (what the sync server reports); persisted."""
        self._device_log.set_clock_offset(offset_ms)

    def clock_anomalies(self) -> list[ClockAnomaly]:
        """Devices whose stamps arrived far ahead of this device's clock (either clock may be the wrong one)."""
        return [
            ClockAnomaly(device=o, ahead_ms=a, seen_at=ms_to_datetime(s))
            for o, a, s in self._device_log.clock_anomalies()
        ]


def _pull(into: Replica, source: Replica, batch_size: int, progress: ProgressCallback | None) -> int:
    scope = _ReceiverScope.of(into)
    total = 0
    declined: set[tuple[str, int]] = set()
    since = into.version_vector()
    with paused_gc():  # one pause for the whole exchange: exported and applied batches would be walked again
        while True:
            batch = source.export_ops(since if scope is not None else into.version_vector(), limit=batch_size)
            if not batch:
                return total
            if scope is not None:  # offered ops it leaves out are not offered again in this exchange
                for op in batch:
                    since[op["origin"]] = max(since.get(op["origin"], 0), op["seq"])
                taken = scope.keep(batch)
                kept = {id(op) for op in taken}
                declined.update((op["origin"], op["seq"]) for op in batch if id(op) not in kept)
                if not taken:
                    continue
                batch = taken
            # ops it declined itself are no gap in the peer's stream: what follows them is applied
            result = into.device_log.apply(batch, defer_rows=True, explained=declined)
            total += result.applied + result.deferred
            if progress is not None:
                progress(total, len(batch))
            if result.applied + result.deferred + result.held_back == 0 and scope is None:
                return total  # everything offered is already held (gaps beyond what the peer has)


class _ReceiverScope:
    """What an enrolled replica takes from a peer (:meth:`Replica.sync_with`): the ops of the records its role may
    read in its grids (:func:`caresync.trust.scopes.may_read`), as the server would send it; a courier takes no
    ticket and no resident from anyone. A replica that is not enrolled (a station's own file) takes everything."""

    def __init__(self, into: Replica, role: Role, grids: tuple[str, ...]) -> None:
        self.into = into
        self.role = role
        self.grids = grids
        self.scopes: dict[str, RecordScope | None] = {}

    @classmethod
    def of(cls, into: Replica) -> _ReceiverScope | None:
        found = into.enrolment()
        return None if found is None else cls(into, found.role, found.grids)

    def keep(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ops of ``batch`` whose record this replica may hold (creates first: a batch may create a record
        and change it)."""
        for op in batch:
            if op["kind"].endswith(".create") and op["eid"] not in self.scopes:
                self.scopes[op["eid"]] = self._created(op)
        taken = []
        for op in batch:
            scope = self.scopes[op["eid"]] if op["eid"] in self.scopes else self._held(op["eid"], op["kind"])
            if scope is not None and may_read(self.role, self.grids, scope):
                taken.append(op)
        return taken

    def _created(self, op: Mapping[str, Any]) -> RecordScope | None:
        rtype, body = entity_type_of(op["kind"]), op["body"]
        if not isinstance(body, Mapping):
            return None
        if rtype == EntityType.VISIT.value:
            resident = self.scopes.get(str(body.get("resident_id"))) or self._held(
                str(body.get("resident_id")), "resident."
            )
            return None if resident is None else RecordScope(rtype, resident.grid)
        grid = body.get("grid")
        kind = body.get("kind") if rtype == EntityType.TICKET.value else None
        return RecordScope(rtype, grid if isinstance(grid, str) else None, kind if isinstance(kind, str) else None)

    def _held(self, eid: str, kind: str) -> RecordScope | None:
        """The scope of a record this replica already holds (None: it holds none, so takes no change of it)."""
        if eid in self.scopes:
            return self.scopes[eid]
        rtype = entity_type_of(kind)
        try:
            state = self.into.device_log.state(EntityType(rtype), eid)
        except ValueError:
            state = None
        scope = None
        if state is not None and rtype == EntityType.VISIT.value:
            resident = self._held(str(value_of(state, "resident_id")), "resident.")
            scope = None if resident is None else RecordScope(rtype, resident.grid)
        elif state is not None:
            kind_now = value_of(state, "kind") if rtype == EntityType.TICKET.value else None
            scope = RecordScope(rtype, value_of(state, "grid"), kind_now)
        self.scopes[eid] = scope
        return scope


# --- collections ---------------------------------------------------------------------------------------------


class _Collection:
    entity: EntityType
    noun: str

    def __init__(self, replica: Replica) -> None:
        self._r = replica

    def _state(self, eid: str) -> State:
        return self._r._state(self.entity, eid, self.noun)

    def _typed(self, state: State) -> Any:
        """The record for a state, as this collection's record type (callers annotate it)."""
        return self._r._record(state)

    def _get(self, eid: str) -> Any:
        return self._r._record(self._state(eid))

    def _list(self, filters: dict[str, Any], include_deleted: bool, order: str = "id") -> list[Any]:
        states = self._r.device_log.states(self.entity, filters, include_deleted=include_deleted, order=order)
        return [self._r._record(state) for state in states]

    def edit(self, eid: str, *, actor: str | None = None, **fields: Any) -> Any:
        """Changes fields of a record; each change replaces every value this device has seen for it."""
        if not fields:
            raise InvalidInputError(f"Nothing to change on {self.noun} {eid}", [("fields", "name at least one")])
        return self._r._record(self._r._set_fields(self.entity, self._state(eid), fields, actor=actor))

    def delete(self, eid: str, *, actor: str | None = None) -> None:
        """Marks a record deleted (a tombstone: its history stays, and it can be restored)."""
        self._r._set_fields(self.entity, self._state(eid), {"deleted": True}, actor=actor)

    def restore(self, eid: str, *, actor: str | None = None) -> None:
        """Undoes a deletion."""
        self._r._set_fields(self.entity, self._state(eid), {"deleted": False}, actor=actor)

    def _note(self, eid: str, text: str, actor: str | None) -> None:
        state = self._state(eid)
        self._r._emit(f"{self.entity.value}.note", eid, {"text": text}, actor=actor, state=state)

    def _create(self, body: dict[str, Any], actor: str | None, at: int | None = None) -> Any:
        _, state = self._r._emit(f"{self.entity.value}.create", None, body, actor=actor, entity=self.entity, at=at)
        return self._r._record(state)


_NOUNS = {
    EntityType.RESIDENT: "resident",
    EntityType.TICKET: "ticket",
    EntityType.VISIT: "visit",
    EntityType.PARCEL: "parcel",
}
_BY_PREFIX = {ENTITY_PREFIX[entity]: entity for entity in ATTACHABLE}
#: Media types of documents by file suffix (anything else is application/octet-stream).
_DOCUMENT_TYPES = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


class Attachments:
    """Photos, signatures and documents on residents, tickets, visits (door-knocks) and parcels.

    An attachment is an op on its record (``<record>.attach``) that names a sealed blob; the blob (the bytes,
    sealed on this device with a fresh key that the op carries sealed) is kept beside the op log and synced
    apart from the ops, chunk by chunk. Photos are made small first (:attr:`media`), with a thumbnail;
    a signature is kept as a greyscale PNG; a document stays as it is. See docs/attachments.md.
    """

    def __init__(self, replica: Replica) -> None:
        self._r = replica
        self.media = MediaSettings()
        """How photos and signatures are made small before sealing (longest side, JPEG quality, thumbnail)."""

    def _record_state(self, record_id: str) -> tuple[EntityType, State]:
        entity = _BY_PREFIX.get(record_id.partition("-")[0])
        if entity is None:
            raise InvalidInputError(
                f"Cannot attach to {record_id!r}",
                [("record_id", "must be the id of a resident (R-), ticket (T-), visit (V-) or parcel (P-)")],
                key="attachment.cannot_attach_to",
                fields={"ref": repr(record_id)},
            )
        return entity, self._r._state(entity, record_id, _NOUNS[entity])

    def add(
        self,
        record_id: str,
        data: bytes | str | Path,
        *,
        kind: AttachmentKind = "photo",
        caption: str | None = None,
        on: str | None = None,
        actor: str | None = None,
    ) -> Attachment:
        """Attaches a photo, a signature or a document to a record.

        Args:
            record_id: a resident, ticket, visit or parcel id.
            data: the bytes, or the path of a file to read.
            kind: ``photo`` (made small, with a thumbnail), ``signature`` (an image of it) or ``document``.
            caption: a few words about it (private: sealed like every private field).
            on: the op id of the mediation session (on a ticket) or custody hop (on a parcel) it belongs to.

        Raises:
            InvalidInputError: an unknown record type, kind or ``on``, an unreadable file, or an image that is
                not one; NotFoundError: no such record here.
        """
        if kind not in ("photo", "signature", "document"):
            raise InvalidInputError(
                "Cannot attach this",
                [("kind", f"must be photo, signature or document, got {kind!r}")],
                key="attachment.cannot",
            )
        entity, state = self._record_state(record_id)
        media: str | None = None
        if isinstance(data, (str, Path)):
            path = Path(data)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise InvalidInputError(
                    f"Cannot attach {path}",
                    [("data", f"the file cannot be read ({exc.strerror})")],
                    key="attachment.cannot_attach_file",
                    fields={"path": str(path)},
                ) from None
            media = _DOCUMENT_TYPES.get(path.suffix.lower())
        elif isinstance(data, bytes):
            raw = data
        else:
            raise InvalidInputError(
                "Cannot attach this", [("data", "must be bytes or the path of a file")], key="attachment.cannot"
            )
        if on is not None:
            parts = {"ticket": "sessions", "parcel": "hops"}.get(entity.value)
            if parts is None or on not in {item[0] for item in state["c"].get(parts, [])}:
                raise InvalidInputError(
                    f"Cannot attach to {record_id}",
                    [("on", f"{on!r} is not a mediation session of this ticket or a custody hop of this parcel")],
                    key="attachment.cannot_attach_to",
                    fields={"ref": record_id},
                )
        prepared = prepare(raw, kind, self.media)
        key, sealed = seal_blob(prepared.data)
        log = self._r.device_log
        with log.batch():
            manifest = log.blobs.put(sealed)
            thumb = log.blobs.put(seal_blob(prepared.thumb, key)[1]) if prepared.thumb is not None else None
            op, new = self._r._emit(
                f"{entity.value}.attach",
                record_id,
                {
                    "kind": kind,
                    "blob": manifest.id,
                    "size": manifest.size,
                    "media": media if kind == "document" and media else prepared.media,
                    "key": key.hex(),
                    "caption": caption,
                    "thumb": thumb.id if thumb else None,
                    "thumb_size": thumb.size if thumb else None,
                    "on": on,
                },
                actor=actor,
                state=state,
            )
        return self._find(self._r._record(new).attachments, op_id(op["origin"], op["seq"]))

    @staticmethod
    def _find(attachments: list[Attachment], attachment_id: str) -> Attachment:
        for attachment in attachments:
            if attachment.id == attachment_id:
                return attachment
        raise NotFoundError(
            f"Attachment {attachment_id} was removed.", key="attachment.removed", fields={"attachment": attachment_id}
        )

    def list(self, record_id: str) -> list[Attachment]:
        """The attachments of a record that were not removed, oldest first."""
        _, state = self._record_state(record_id)
        attachments: list[Attachment] = self._r._record(state).attachments
        return attachments

    def _located(self, attachment_id: str) -> tuple[EntityType, State, dict[str, Any]]:
        """The record state and the (readable) attach body of a live attachment."""
        log = self._r.device_log
        record_id = log.record_of(attachment_id)
        if record_id is None:
            raise NotFoundError(
                f"No attachment {attachment_id!r} on this device. Check the id, or sync to fetch it.",
                key="attachment.not_found",
                fields={"attachment": repr(attachment_id)},
            )
        entity, state = self._record_state(record_id)
        removed = {ref for item in state["c"].get("detachments", []) for ref in item[6]["removes"]}
        for item in state["c"].get("attachments", []):
            if item[0] == attachment_id and attachment_id not in removed:
                return entity, state, log.readable(item[6])
        raise NotFoundError(
            f"Attachment {attachment_id} of {record_id} was removed.",
            key="attachment.removed_from",
            fields={"attachment": attachment_id, "ref": record_id},
        )

    def get(self, attachment_id: str) -> Attachment:
        """One attachment. Raises NotFoundError when it is unknown here or was removed."""
        _, state, _ = self._located(attachment_id)
        return self._find(self._r._record(state).attachments, attachment_id)

    def held(self, attachment_id: str, *, thumbnail: bool = False) -> bool:
        """True when the attachment's picture (or its thumbnail) is whole on this device and can be opened."""
        _, _, body = self._located(attachment_id)
        blob = body.get("thumb") if thumbnail else body["blob"]
        state = self._r.device_log.blobs.state(blob) if blob else None
        return state is not None and state.complete

    def open(self, attachment_id: str, *, thumbnail: bool = False, to: str | Path | None = None) -> Any:
        """The attachment's bytes (the picture, signature or document), or its thumbnail.

        Args:
            to: write the bytes to this file and return its path, instead of returning the bytes.

        Returns:
            ``bytes``, or the :class:`~pathlib.Path` written when ``to`` is given.

        Raises:
            NotFoundError: unknown or removed here, no thumbnail, or its blob is not on this device yet (sync,
                or fetch it: :meth:`fetch`); IntentError: a redaction erased it;
            TrustError: this device cannot read it (it is sealed to the station), or its bytes were altered.
        """
        _, _, body = self._located(attachment_id)
        key = body.get("key")
        if key is None:
            raise IntentError(
                f"Attachment {attachment_id} was erased with its resident's data: it cannot be opened.",
                key="attachment.erased",
                fields={"attachment": attachment_id},
            )
        if is_sealed(key):
            raise TrustError(
                f"Attachment {attachment_id} is sealed to the station: this device does not hold the key to open it.",
                key="attachment.sealed",
                fields={"attachment": attachment_id},
            )
        blob = body.get("thumb") if thumbnail else body["blob"]
        if blob is None:
            raise NotFoundError(
                f"Attachment {attachment_id} has no thumbnail (it is a {body['kind']}).",
                key="attachment.no_thumbnail",
                fields={"attachment": attachment_id, "noun": body["kind"]},
            )
        blobs = self._r.device_log.blobs
        sealed = blobs.read(blob)
        if sealed is None and blob not in {ref.blob for ref in blobs.named()}:
            raise IntentError(
                f"Attachment {attachment_id} was erased with its resident's data: it cannot be opened.",
                key="attachment.erased",
                fields={"attachment": attachment_id},
            )
        if sealed is None:
            raise NotFoundError(
                f"The {'thumbnail' if thumbnail else 'picture'} of attachment {attachment_id} is not on this device "
                "yet: sync, or fetch it with replica.attachments.fetch().",
                key="attachment.not_here",
                fields={"attachment": attachment_id, "part": "thumbnail" if thumbnail else "picture"},
            )
        plain = open_blob(bytes.fromhex(key), sealed)
        if to is None:
            return plain
        target = Path(to)
        try:
            target.write_bytes(plain)
        except OSError as exc:
            raise InvalidInputError(
                f"Cannot write {target}",
                [("to", exc.strerror or str(exc))],
                key="attachment.cannot_write",
                fields={"path": str(target)},
            ) from None
        return target

    def fetch(
        self,
        attachment_id: str,
        *,
        thumbnail: bool = False,
        url: str | None = None,
        token: str | None = None,
        client: httpx.Client | None = None,
    ) -> bool:
        """Fetches the attachment's picture (or thumbnail) from the sync server now, whatever :attr:`pull_mode`
        says (a lazy device about to open it); only the chunks not here yet. Returns whether it is now whole here.

        Without ``url`` and ``token``, uses the server this device enrolled with.

        Raises:
            SyncError: the server cannot be reached, or this device is not enrolled; ServerRefusedError: refused.
        """
        from caresync.sync import blobsync, enrolment  # here, not at the top: keeps start-up fast

        _, _, body = self._located(attachment_id)
        blob = body.get("thumb") if thumbnail else body["blob"]
        if blob is None:
            raise NotFoundError(
                f"Attachment {attachment_id} has no thumbnail (it is a {body['kind']}).",
                key="attachment.no_thumbnail",
                fields={"attachment": attachment_id, "noun": body["kind"]},
            )
        if token is None:
            found = enrolment.enrolment(self._r)
            token = enrolment.current_token(self._r)
            if found is None or token is None:
                raise SyncError(
                    "This device is not enrolled with a sync server: give url and token to fetch.",
                    key="sync.not_enrolled_fetch",
                )
            url = found.server_url
        if url is None:
            raise InvalidInputError(
                "Cannot fetch", [("url", "give the server address with the token")], key="attachment.cannot_fetch"
            )
        size = body["thumb_size"] if thumbnail else body["size"]
        ref = BlobRef(blob, int(size), thumbnail, attachment_id, self._r.device_log.record_of(attachment_id) or "")
        blobsync.fetch(self._r.device_log.blobs, url, token, ref, client=client)
        return self.held(attachment_id, thumbnail=thumbnail)

    def remove(self, attachment_id: str, *, actor: str | None = None) -> None:
        """Removes an attachment from its record; its blob is deleted from every replica once no live attachment
        names it. One added concurrently elsewhere (even of the same picture) stays: add wins."""
        entity, state, _ = self._located(attachment_id)
        self._r._emit(f"{entity.value}.detach", state["id"], {"removes": [attachment_id]}, actor=actor, state=state)

    @property
    def pull_mode(self) -> str:
        """Which blobs a sync fetches: ``eager`` (every one this device may hold, the default), ``thumbs``
        (thumbnails only: a knocker's phone) or ``lazy`` (none until fetched). Kept in the replica file."""
        return self._r.device_log.blobs.pull_mode

    @pull_mode.setter
    def pull_mode(self, mode: str) -> None:
        self._r.device_log.blobs.set_pull_mode(mode)


class Residents(_Collection):
    """Residents: who the station serves, where they live, how often to knock on their door."""

    entity = EntityType.RESIDENT
    noun = "resident"

    def register(
        self,
        *,
        name: str,
        grid: str,
        address: str | None = None,
        phone: str | None = None,
        flags: Iterable[str] = (),
        knock_every_days: int | None = None,
        birth_year: int | None = None,
        actor: str | None = None,
    ) -> Resident:
        """Registers a resident in a grid (``community/area/building``)."""
        if name is None:
            raise InvalidInputError("Cannot register a resident", [("name", "is required")])
        body = {
            "name": name,
            "grid": grid,
            "address": address,
            "phone": phone,
            "flags": list(flags),
            "knock_every_days": knock_every_days,
            "birth_year": birth_year,
        }
        result: Resident = self._create(body, actor)
        return result

    def get(self, resident_id: str) -> Resident:
        """One resident. Raises NotFoundError if unknown here."""
        result: Resident = self._get(resident_id)
        return result

    def list(self, *, grid: str | None = None, include_deleted: bool = False) -> list[Resident]:
        """Residents, optionally of one grid (exact path), by id."""
        return self._list({"grid": grid}, include_deleted)

    def summaries(self, *, grid: str | None = None, include_deleted: bool = False) -> builtins.list[ResidentSummary]:
        """What a list shows of each resident (optionally of one grid, exact path), by id, read from the replica's
        columns without building the records: :class:`~caresync.core.summaries.ResidentSummary`."""
        rows = self._r.device_log.rows(
            self.entity,
            ResidentSummary.COLUMNS,
            {"grid": grid},
            include_deleted=include_deleted,
            fields=ResidentSummary.FIELDS,
        )
        return [ResidentSummary.from_row(row) for row in rows]

    def note(self, resident_id: str, text: str, *, actor: str | None = None) -> None:
        """Adds a note about a resident."""
        self._note(resident_id, text, actor)

    def redact(
        self,
        resident_id: str,
        *,
        fields: Iterable[str] = ("name", "address", "phone", "birth_year", "notes", "attachments"),
        reason: str,
        actor: str | None = None,
    ) -> None:
        """Erases a resident's personal data from this replica's records and op log, and from every replica
        that receives this change. The record stays (so reports still count it)."""
        state = self._state(resident_id)
        self._r._emit(
            "resident.redact",
            resident_id,
            {"fields": list(fields), "reason": reason},
            actor=actor,
            state=state,
        )


class Workers(_Collection):
    """Workers and their roles: grid workers, knockers, couriers, mediators, station staff."""

    entity = EntityType.WORKER
    noun = "worker"

    def add(
        self, *, name: str, role: str, grids: Iterable[str] = (), phone: str | None = None, actor: str | None = None
    ) -> Worker:
        """Adds a worker with a role and the grids they look after.

        Raises:
            IntentError: a worker of that name and role is already registered here (named with its id): change
                that one (``edit``) instead of adding the same person twice.
        """
        for same in self.list(role=role):
            if same.name.strip().casefold() == str(name).strip().casefold():
                raise IntentError(
                    f"{same.name} is already registered as {role} ({same.id}); change that record instead of adding "
                    "the same person twice.",
                    key="worker.duplicate",
                    fields={"name": same.name, "role": str(role), "id": same.id},
                )
        result: Worker = self._create({"name": name, "role": role, "grids": list(grids), "phone": phone}, actor)
        return result

    def get(self, worker_id: str) -> Worker:
        """One worker."""
        result: Worker = self._get(worker_id)
        return result

    def list(self, *, role: str | None = None, include_deleted: bool = False) -> list[Worker]:
        """Workers, optionally of one role."""
        return self._list({"role": role}, include_deleted)


class Tickets(_Collection):
    """Requests: submit, accept (接单), start, resolve, close (回单), rate, cancel, escalate, reopen."""

    entity = EntityType.TICKET
    noun = "ticket"

    def _typed(self, state: State) -> Ticket:
        record: Ticket = self._r._record(state)
        return record

    def submit(
        self,
        *,
        title: str,
        kind: str,
        grid: str,
        channel: str = "walk_in",
        description: str | None = None,
        resident_id: str | None = None,
        priority: str = "normal",
        due_at: datetime | int | None = None,
        visit_id: str | None = None,
        parcel_id: str | None = None,
        actor: str | None = None,
    ) -> Ticket:
        """Places a request (下单). Due by default 48 hours after submission (see ``due_hours``).

        The ticket gets the device's next human-readable number (``ticket.number``, see :attr:`Replica.numbers`).
        """
        try:
            hours = self._r.due_hours[TicketKind(kind)]
        except ValueError:
            raise InvalidInputError(
                "Cannot submit the ticket",
                [("kind", f"{kind!r} is not a ticket kind; use one of {', '.join(k.value for k in TicketKind)}")],
            ) from None
        if resident_id is not None:
            self._r.residents.get(resident_id)
        now = self._r.clock.physical_ms()
        body = {
            "title": title,
            "kind": kind,
            "channel": channel,
            "grid": grid,
            "description": description,
            "resident_id": resident_id,
            "priority": priority,
            "due_at": _to_ms(due_at, now + hours * 3_600_000),
            "visit_id": visit_id,
            "parcel_id": parcel_id,
        }
        with self._r.batch():  # the number is taken in the ticket's transaction: a failed submit gives it back
            body["number"] = self._r.numbers.take()
            result: Ticket = self._create(body, actor, at=now)
        return result

    def provisional(self) -> list[Ticket]:
        """This device's own tickets still showing a provisional number, oldest first: the next sync gives them
        short numbers from a block the server reserves (see :mod:`caresync.store.numbers`)."""
        return [self._typed(s) for s in self._r._device_log.provisional_tickets()]

    def get(self, ticket_id: str) -> Ticket:
        """One ticket with its notes, history and conflicts. Raises NotFoundError if unknown here."""
        result: Ticket = self._get(ticket_id)
        return result

    def list(
        self,
        *,
        status: str | None = None,
        grid: str | None = None,
        assignee: str | None = None,
        resident_id: str | None = None,
        kind: str | None = None,
        include_deleted: bool = False,
    ) -> list[Ticket]:
        """Tickets matching every filter given, soonest due first."""
        return self._list(
            {"status": status, "grid": grid, "assignee": assignee, "resident_id": resident_id, "kind": kind},
            include_deleted,
            order="due_at, id",
        )

    def summaries(
        self,
        *,
        status: str | None = None,
        grid: str | None = None,
        assignee: str | None = None,
        resident_id: str | None = None,
        kind: str | None = None,
        include_deleted: bool = False,
    ) -> builtins.list[TicketSummary]:
        """What a list shows of each ticket matching every filter given, soonest due first, read from the
        replica's columns without building the records (:class:`~caresync.core.summaries.TicketSummary`), where
        :meth:`list` builds every record."""
        filters = {"status": status, "grid": grid, "assignee": assignee, "resident_id": resident_id, "kind": kind}
        rows = self._r.device_log.rows(
            self.entity, TicketSummary.COLUMNS, filters, include_deleted=include_deleted, order="due_at, id"
        )
        return [TicketSummary.from_row(row) for row in rows]

    def _transition(self, ticket_id: str, action: str, *, actor: str | None, **extra: Any) -> Ticket:
        state = self._state(ticket_id)
        st = state["st"]
        grid = st["grid"]
        assignee = extra.get("assignee", value_of(state, "assignee"))
        after = ticket_transition(
            st["v"],
            action,
            has_assignee=assignee is not None,
            has_parent_grid=grid is not None and grid_parent(grid) is not None,
        )
        if after is None:
            raise _refusal(_number(state), action, st["v"], grid)
        if (
            action == "close"
            and value_of(state, "kind") not in CLOSABLE_WITHOUT_OUTCOME
            and value_of(state, "outcome") is None
        ):
            raise IntentError(
                f"Ticket {_number(state)} is a dispute: record the mediation outcome (settled, not settled or "
                "referred) before closing it.",
                key="ticket.needs_outcome",
                fields={"number": _number(state)},
            )
        body: dict[str, Any] = {"action": action, "follows": [h[0] for h in st["heads"]], **extra}
        if action == "accept":
            body["assignee_replaces"] = [e[0] for e in state["f"].get("assignee", [])]
        if action == "escalate":
            body["to_grid"] = grid_parent(grid)
        _, state = self._r._emit("ticket.transition", ticket_id, body, actor=actor, state=state)
        return self._typed(state)

    def accept(self, ticket_id: str, *, assignee: str, actor: str | None = None) -> Ticket:
        """A worker takes the request (接单)."""
        return self._transition(ticket_id, "accept", actor=actor, assignee=assignee)

    def start(self, ticket_id: str, *, actor: str | None = None) -> Ticket:
        """Work on an accepted request begins."""
        return self._transition(ticket_id, "start", actor=actor)

    def resolve(self, ticket_id: str, *, resolution: str | None = None, actor: str | None = None) -> Ticket:
        """The work is done; ``resolution`` says how (kept in the ticket's history)."""
        return self._transition(ticket_id, "resolve", actor=actor, reason=resolution)

    def close(self, ticket_id: str, *, actor: str | None = None) -> Ticket:
        """The result is returned to the resident (回单). Only a resolved ticket can be closed."""
        return self._transition(ticket_id, "close", actor=actor)

    def cancel(self, ticket_id: str, *, reason: str, actor: str | None = None) -> Ticket:
        """Cancels an open request, saying why."""
        return self._transition(ticket_id, "cancel", actor=actor, reason=reason)

    def reopen(self, ticket_id: str, *, reason: str, actor: str | None = None) -> Ticket:
        """Reopens a resolved, closed or cancelled request, saying why."""
        return self._transition(ticket_id, "reopen", actor=actor, reason=reason)

    def escalate(self, ticket_id: str, *, reason: str | None = None, actor: str | None = None) -> Ticket:
        """Hands an open request up to the parent grid (building → area → community)."""
        return self._transition(ticket_id, "escalate", actor=actor, reason=reason)

    def confirm(self, ticket_id: str, *, actor: str | None = None) -> Ticket:
        """Keeps the current status, settling a status conflict."""
        return self._transition(ticket_id, "confirm", actor=actor)

    def rate(self, ticket_id: str, *, score: int, comment: str | None = None, actor: str | None = None) -> Ticket:
        """Records the resident's rating (1 to 5) of a returned request, once: a second rating is refused (the
        first is what the resident gave on return; reopen and close the request for a new round of work).

        Raises:
            IntentError: not returned yet, or already rated (the message shows the rating it has).
        """
        state = self._state(ticket_id)
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            raise InvalidInputError(
                f"Cannot rate ticket {_number(state)}",
                [("score", f"must be 1 to 5, got {score!r}")],
                key="ticket.cannot_rate",
                fields={"number": _number(state)},
            )
        if state["st"]["v"] != "closed":
            status = state["st"]["v"]
            raise IntentError(
                f"Ticket {_number(state)} is {_words(status)}: a rating is given once the result is returned "
                "to the resident (close the ticket first).",
                key="ticket.rate_not_closed",
                fields={"number": _number(state), "status": status},
            )
        given = value_of(state, "rating")
        rated_at = state["f"]["rating"][-1][5] if given is not None else None  # a field entry's "at"
        if rated_at is not None and rated_at >= state["st"]["at"]["close"]:  # rated since this return
            rated = self._typed(state)
            raise IntentError(
                f"Ticket {rated.number or ticket_id} is already rated {given['score']}/5; a rating is given once per "
                "return (reopen and close it again for a new round of work, then rate that).",
                key="ticket.already_rated",
                fields={"number": rated.number or ticket_id, "score": given["score"]},
            )
        rating: dict[str, Any] = {"score": score}
        if comment:
            rating["comment"] = comment
        return self._typed(self._r._set_fields(self.entity, state, {"rating": rating}, actor=actor))

    def note(self, ticket_id: str, text: str, *, actor: str | None = None) -> None:
        """Adds a note to a ticket (notes are never overwritten)."""
        self._note(ticket_id, text, actor)

    # disputes ------------------------------------------------------------------------------------------------

    def _dispute(self, ticket_id: str) -> State:
        state = self._state(ticket_id)
        if value_of(state, "kind") != "dispute":
            raise IntentError(
                f"Ticket {_number(state)} is not a dispute; only disputes have mediation records.",
                key="ticket.not_dispute",
                fields={"number": _number(state)},
            )
        return state

    def add_party(
        self,
        ticket_id: str,
        *,
        name: str,
        side: str | None = None,
        resident_id: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Adds a party to a dispute."""
        state = self._dispute(ticket_id)
        self._r._emit(
            "ticket.party",
            ticket_id,
            {"name": name, "side": side, "resident_id": resident_id},
            actor=actor,
            state=state,
        )

    def record_session(
        self,
        ticket_id: str,
        *,
        mediator: str,
        summary: str,
        held_at: datetime | int | None = None,
        attendees: Iterable[str] = (),
        actor: str | None = None,
    ) -> None:
        """Records a mediation session of a dispute."""
        state = self._dispute(ticket_id)
        body = {
            "held_at": _to_ms(held_at, self._r.clock.physical_ms()),
            "mediator": mediator,
            "summary": summary,
            "attendees": list(attendees),
        }
        self._r._emit("ticket.session", ticket_id, body, actor=actor, state=state)

    def set_outcome(
        self, ticket_id: str, outcome: str, *, mediator: str | None = None, actor: str | None = None
    ) -> Ticket:
        """Records how a mediation ended: settled, not_settled or referred."""
        state = self._dispute(ticket_id)
        changes: dict[str, Any] = {"outcome": outcome}
        if mediator is not None:
            changes["mediator"] = mediator
        return self._typed(self._r._set_fields(self.entity, state, changes, actor=actor))


def _number(state: State) -> str:
    """The name people use for a ticket: its number (else, before it has one, its record id)."""
    return str(value_of(state, "number") or state["id"])


def _words(value: str) -> str:
    """A stored state (``in_progress``) in words (``in progress``)."""
    return value.replace("_", " ")


#: Why an action is refused in each state, by action: said after "cannot <action> it".
_HINTS = {
    "accept": "only a submitted ticket can be accepted",
    "start": "accept the ticket first",
    "resolve": "only an open ticket can be resolved",
    "close": "resolve the ticket before returning it to the resident",
    "cancel": "only an open ticket can be cancelled",
    "reopen": "only a resolved, closed or cancelled ticket can be reopened",
    "escalate": "only an open ticket can be escalated",
}


def _refusal(number: str, action: str, status: str, grid: str | None) -> IntentError:
    """The refusal of a transition that makes no sense in the ticket's status, naming the ticket by its number and
    the status in words (``key`` and ``fields`` let a program say it in Chinese)."""
    if action == "escalate" and status in ("submitted", "accepted", "in_progress"):
        return IntentError(
            f"Ticket {number} is already at the top grid ({grid}); it cannot be escalated further.",
            key="ticket.top_grid",
            fields={"number": number, "grid": grid},
        )
    return IntentError(
        f"Ticket {number} is {_words(status)}; cannot {action} it: {_HINTS.get(action, 'not allowed now')}.",
        key="ticket.refused",
        fields={"number": number, "status": status, "action": action},
    )


class Visits(_Collection):
    """Door-knocks (敲门): who knocked, when, and what they found."""

    entity = EntityType.VISIT
    noun = "visit"

    def record(
        self,
        *,
        resident_id: str,
        outcome: str,
        visitor: str | None = None,
        visited_at: datetime | int | None = None,
        note: str | None = None,
        ticket_id: str | None = None,
        actor: str | None = None,
        photo: bytes | str | Path | None = None,
    ) -> Visit:
        """Records a door-knock on a resident; ``photo`` (bytes or a file) attaches what the knocker saw, in
        the same transaction (see :class:`Attachments`)."""
        self._r.residents.get(resident_id)
        if ticket_id is not None:
            self._r.tickets.get(ticket_id)
        body = {
            "resident_id": resident_id,
            "visitor": visitor or actor or self._r.actor,
            "visited_at": _to_ms(visited_at, self._r.clock.physical_ms()),
            "outcome": outcome,
            "note": note,
            "ticket_id": ticket_id,
        }
        with self._r.device_log.batch():
            result: Visit = self._create(body, actor)
            if photo is not None:
                self._r.attachments.add(result.id, photo, actor=actor)
                result = self.get(result.id)
        return result

    def get(self, visit_id: str) -> Visit:
        """One visit."""
        result: Visit = self._get(visit_id)
        return result

    def list(
        self, *, resident_id: str | None = None, visitor: str | None = None, include_deleted: bool = False
    ) -> list[Visit]:
        """Visits, newest first."""
        return self._list(
            {"resident_id": resident_id, "visitor": visitor}, include_deleted, order="visited_at DESC, id"
        )

    def note(self, visit_id: str, text: str, *, actor: str | None = None) -> None:
        """Adds a note to a visit."""
        self._note(visit_id, text, actor)


class Mailboxes(_Collection):
    """Neighbourhood convenience mailboxes (便民邮筒)."""

    entity = EntityType.MAILBOX
    noun = "mailbox"

    def add(self, *, code: str, name: str, grid: str, location: str | None = None, actor: str | None = None) -> Mailbox:
        """Registers a mailbox by the code printed on it."""
        if self.by_code(code) is not None:
            raise IntentError(f"A mailbox with code {code!r} is already registered.")
        result: Mailbox = self._create({"code": code, "name": name, "grid": grid, "location": location}, actor)
        return result

    def get(self, mailbox_id: str) -> Mailbox:
        """One mailbox."""
        result: Mailbox = self._get(mailbox_id)
        return result

    def by_code(self, code: str) -> Mailbox | None:
        """The mailbox with this printed code, if known here."""
        found = self._list({"code": code}, include_deleted=False)
        return found[0] if found else None

    def list(self, *, grid: str | None = None, include_deleted: bool = False) -> list[Mailbox]:
        """Mailboxes."""
        return self._list({"grid": grid}, include_deleted)


class Parcels(_Collection):
    """Paperwork carried between mailboxes, the station and residents' doors, hop by hop."""

    entity = EntityType.PARCEL
    noun = "parcel"

    def _typed(self, state: State) -> Parcel:
        record: Parcel = self._r._record(state)
        return record

    def register(
        self,
        *,
        code: str,
        grid: str,
        direction: str = "to_station",
        resident_id: str | None = None,
        mailbox_id: str | None = None,
        summary: str | None = None,
        delivery_code: str | None = None,
        actor: str | None = None,
    ) -> Parcel:
        """Registers a parcel by the code on its envelope. ``delivery_code`` (the code printed on the resident's
        slip) is kept only as a salted hash: the delivery is refused unless the resident gives it back.

        Raises:
            InvalidInputError: a field is malformed (the delivery code is 4 to 12 letters or digits).
        """
        body = {
            "code": code,
            "grid": grid,
            "direction": direction,
            "resident_id": resident_id,
            "mailbox_id": mailbox_id,
            "summary": summary,
        }
        if delivery_code is not None:
            body["delivery_code_check"] = _delivery_code_check(code, delivery_code)
        result: Parcel = self._create(body, actor)
        return result

    def set_delivery_code(self, parcel_id: str, delivery_code: str, *, actor: str | None = None) -> Parcel:
        """Sets (or replaces) the resident's delivery code of a parcel, kept only as a salted hash.

        Raises:
            NotFoundError: no such parcel. InvalidInputError: the code is not 4 to 12 letters or digits.
        """
        state = self._state(parcel_id)
        check = _delivery_code_check(parcel_id, delivery_code)
        state = self._r._set_fields(self.entity, state, {"delivery_code_check": check}, actor=actor)
        return self._typed(state)

    def get(self, parcel_id: str) -> Parcel:
        """One parcel with its chain of custody."""
        result: Parcel = self._get(parcel_id)
        return result

    def summaries(self, *, include_deleted: bool = False) -> builtins.list[ParcelSummary]:
        """What a route shows of each parcel, by id, read from the replica's columns without building the records
        (:class:`~caresync.core.summaries.ParcelSummary`)."""
        rows = self._r.device_log.rows(
            self.entity,
            ParcelSummary.COLUMNS,
            {},
            include_deleted=include_deleted,
            fields=ParcelSummary.FIELDS,
            paths=ParcelSummary.PATHS,
        )
        return [ParcelSummary.from_row(row) for row in rows]

    def by_code(self, code: str) -> Parcel | None:
        """The parcel with this envelope code, if known here."""
        found = self._list({"code": code}, include_deleted=False)
        return found[0] if found else None

    def list(
        self,
        *,
        stage: str | None = None,
        holder: str | None = None,
        grid: str | None = None,
        include_deleted: bool = False,
    ) -> list[Parcel]:
        """Parcels matching every filter given."""
        return self._list({"stage": stage, "holder": holder, "grid": grid}, include_deleted)

    def hop(
        self,
        parcel_id: str,
        stage: str,
        *,
        place: str | None = None,
        confirm_code: str | None = None,
        reason: str | None = None,
        contents: str | None = None,
        content_hash: str | None = None,
        actor: str | None = None,
    ) -> Parcel:
        """Records a hand-over: dropped, picked_up, handed_in, out_for_delivery, delivered, returned.

        A hop that does not follow from the current stage is still recorded (it happened) and shows as a
        custody conflict for the station to review. ``contents`` must already be sealed to the station
        (:func:`caresync.trust.keys.seal_value`); :func:`caresync.field.courier.pickup` does that.
        """
        state = self._state(parcel_id)
        checked = None
        if stage == "delivered":
            if not confirm_code:
                raise InvalidInputError(
                    f"Cannot deliver parcel {parcel_id}",
                    [("confirm_code", "the resident's confirmation code is required")],
                )
            check = value_of(state, "delivery_code_check")
            if check is not None:
                if not delivery_code_matches(check, confirm_code):
                    raise InvalidInputError(
                        f"Cannot deliver parcel {parcel_id}",
                        [("confirm_code", "not the delivery code on the resident's slip")],
                    )
                confirm_code, checked = None, True  # checked: the code itself is never kept
        body = {
            "stage": stage,
            "follows": [h[0] for h in state["hop"]["heads"]],
            "place": place,
            "confirm_code": confirm_code,
            "code_checked": checked,
            "reason": reason,
            "contents": contents,
            "content_hash": content_hash,
        }
        _, state = self._r._emit("parcel.hop", parcel_id, body, actor=actor, state=state)
        return self._typed(state)


def _delivery_code_check(parcel: str, code: str) -> str:
    try:
        return delivery_code_check(code)
    except ValueError as exc:
        raise InvalidInputError(
            f"Cannot set the delivery code of parcel {parcel}", [("delivery_code", str(exc))]
        ) from None


def find_ticket(replica: Replica, ref: str) -> Ticket:
    """The ticket a clerk means by ``ref``: its number (what the resident was told), a provisional number it
    had before, its id, or the end of a provisional number from the last four characters of the device on
    (``eb50-17`` for ``3f9a0c1d2b4eeb50-17``), when only one ticket here ends that way.

    Raises:
        NotFoundError: no ticket with that number or id on this device.
        IntentError: the number belongs to several tickets (old data numbered from blocks typed by hand: every
            one is named, and the clerk picks one by its id), or the end of a provisional number matches
            several tickets.
    """
    ref = ref.strip()
    if ref.startswith("T-"):
        return replica.tickets.get(ref)
    tail = _TAIL_RE.match(ref)
    if is_ticket_number(ref) or tail:
        # the numbers from the column (no record built); whole records only for a number a ticket had before
        numbered = [t.id for t in replica.tickets.summaries(include_deleted=True) if t.number == ref]
        if numbered:
            tickets = [replica.tickets.get(eid) for eid in numbered]
        else:
            tickets = replica.tickets.list(include_deleted=True)
        same = [t for t in tickets if t.number == ref] or [t for t in tickets if ref in t.former_numbers]
        if len(same) == 1:
            return same[0]
        if same:
            named = "; ".join(f"{t.id} ({t.title}, {t.grid})" for t in sorted(same, key=lambda t: t.id))
            raise IntentError(
                f"The number {ref} belongs to {len(same)} tickets: {named}. Give the ticket's record id instead.",
                key="ticket.number_shared",
                fields={"number": ref, "count": len(same), "named": named},
            )
        if tail:
            found = [t for t in tickets if t.number and "-" in t.number and t.number.endswith(ref)]
            if len(found) == 1:
                return found[0]
            if found:
                numbers = ", ".join(sorted(t.number or "" for t in found))
                raise IntentError(
                    f"{ref!r} is the end of several ticket numbers ({numbers}); give the whole number.",
                    key="ticket.tail_shared",
                    fields={"ref": ref, "numbers": numbers},
                )
    raise NotFoundError(
        f"No ticket with number or id {ref!r} on this device. Check the number on the slip, or sync to fetch it.",
        key="ticket.not_found",
        fields={"ref": ref},
    )


def find_resident(replica: Replica, ref: str) -> Resident:
    """The resident a clerk means by ``ref``: their record id, or their name (any case) when only one resident on
    this device has it.

    Raises:
        NotFoundError: no resident with that id or name here.
        IntentError: several residents have that name: each is named with their grid and id, to pick one.
    """
    ref = ref.strip()
    if ref.startswith("R-"):
        return replica.residents.get(ref)
    wanted = ref.casefold()
    same = [r for r in replica.residents.list() if (r.name or "").strip().casefold() == wanted]
    if len(same) == 1:
        return same[0]
    if same:
        named = "; ".join(f"{r.id} ({r.grid})" for r in sorted(same, key=lambda r: (r.grid, r.id)))
        raise IntentError(
            f"{len(same)} residents are named {ref}: {named}. Give the resident's id instead.",
            key="resident.name_shared",
            fields={"name": ref, "count": len(same), "named": named},
        )
    raise NotFoundError(
        f"No resident named {ref!r} (nor with that id) on this device. Check the name, or sync to fetch them.",
        key="resident.not_found",
        fields={"ref": ref},
    )


_TAIL_RE = re.compile(r"^[0-9a-f]{4,15}-[1-9][0-9]{0,11}$")
