"""Sync with a caresync server over HTTP (protocol v1, docs/protocol.md): push what the server lacks, pull
what this device may see.

* **Push**: the ops the server has not acknowledged (``ops.sent = 0``), in ``(hlc, origin, seq)`` order, in
  bounded batches in the compact wire form. An op is marked sent only when the server's answer acknowledges
  it; refused ops are kept with the server's reason (:meth:`DeviceLog.refusals`); ops the server cannot place
  yet ("waiting") stay queued for the next sync.
* **Pull**: from the cursor the server gave last time. Each batch is applied and the new cursor saved in the
  same transaction, so a cut link or a killed process resumes exactly where it stopped. The next pages are
  fetched and validated on another thread while one is stored; the records a page touches are marked pending and
  folded once at the end, from the log, or, in a replica that was empty when the pull began, from states folded
  in memory as the pages were stored (:class:`_Folded`).
* Every answer carries the device's clock offset from the server; a device whose clock is off by more than
  :data:`CLOCK_TOLERANCE_MS` corrects it (:meth:`DeviceLog.set_clock_offset`).
* Network failures and busy servers (5xx, 429) are retried with exponential backoff; push is idempotent and
  pull reads only, so a retry never doubles anything.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import httpx

from caresync.core.gcpause import paused_gc
from caresync.core.ids import op_id
from caresync.core.merge import State, apply_sorted, new_state
from caresync.core.ops import FORMAT_VERSION, LOST_KIND, OpDict, validate_ops
from caresync.errors import CaresyncError, InvalidInputError, ServerRefusedError, SyncError, TrustError
from caresync.store.devicelog import ApplyResult, DeviceLog, HasDeviceLog, device_log_of
from caresync.sync import blobsync
from caresync.sync._http import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_DEADLINE_S, Link, Wait, WaitCallback
from caresync.sync.blobsync import BlobTransfer
from caresync.sync.bundles.format import MAX_DELETED
from caresync.sync.gridkeys import GridKeySync, sync_grid_keys
from caresync.sync.wire import encode_envelope
from caresync.trust.keys import StationKeyLink
from caresync.trust.signing import failing_signatures

__all__ = [
    "CLOCK_TOLERANCE_MS",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_DEADLINE_S",
    "QUARANTINE_CODE",
    "SERVER_KEY_META",
    "STATION_REFUSED_META",
    "Refusal",
    "SyncProgress",
    "SyncResult",
    "Wait",
    "WaitCallback",
    "learn_station_key",
    "sync",
]

#: The replica meta key holding the sync server's Ed25519 public key (hex), learnt at enrolment or first sync.
SERVER_KEY_META = "server_public_key"
#: A device asks for a new block of ticket numbers when it has fewer than this many left ...
NUMBERS_LOW = 20
#: ... and asks for this many.
NUMBERS_BLOCK = 100

#: A device clock off by more than this from the server's is corrected after a sync exchange.
CLOCK_TOLERANCE_MS = 2_000


@dataclass(frozen=True)
class Refusal:
    """An op the server refused: which, what it was, and the reason to show the person who made it."""

    op: str
    kind: str
    record: str
    code: str
    reason: str


@dataclass(frozen=True)
class SyncProgress:
    """Where a sync is: ``phase`` is ``"push"``, ``"pull"``, ``"blobs_up"`` or ``"blobs_down"`` (those two count
    sealed bytes); ``total`` is None when unknown."""

    phase: str
    done: int
    total: int | None


@dataclass
class SyncResult:
    """What one :meth:`DeviceLog.sync` did."""

    pushed: int = 0
    """Ops the server stored from this device's queue."""
    already_held: int = 0
    """Ops the server already had (sent before, or relayed by someone else)."""
    refused: list[Refusal] = field(default_factory=list)
    """Ops refused in this sync; they stay on the device (see :meth:`DeviceLog.refusals`)."""
    waiting: int = 0
    """Ops the server could not place yet (a record or a device it does not know yet); sent again next time."""
    pulled: int = 0
    """New ops received and applied."""
    unsent: int = 0
    """Ops still waiting to be sent after this sync."""
    held: int = 0
    """Ops of this device kept on it, unsent, because they hold free text in clear and the device has no station
    key to seal it with yet (see :meth:`caresync.store.devicelog.DeviceLog.held_from`); they are sealed and sent
    once it has the key."""
    station_key_problem: str | None = None
    """Why this device refused the station key the server offers (another key, with no rotation signed by the
    one it pinned), or None; the device goes on sealing to the key it has."""
    clock_offset_ms: int | None = None
    """The server's view of this device's clock error at the last exchange (server minus device)."""
    blobs: BlobTransfer = field(default_factory=BlobTransfer)
    """What moved of the attachments' blobs (:mod:`caresync.sync.blobsync`)."""
    grid_keys: GridKeySync = field(default_factory=GridKeySync)
    """The readers' keys this device learned (and, on the station's desk, granted) at this sync
    (:mod:`caresync.sync.gridkeys`)."""


SyncProgressCallback = Callable[[SyncProgress], None]


def sync(
    holder: DeviceLog | HasDeviceLog,
    url: str,
    *,
    token: str,
    push_batch: int = 2000,
    pull_batch: int = 10_000,
    retries: int = 5,
    backoff_s: float = 0.5,
    timeout_s: float = 60.0,
    progress: SyncProgressCallback | None = None,
    client: httpx.Client | None = None,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    deadline_s: float | None = DEFAULT_DEADLINE_S,
    on_wait: WaitCallback | None = None,
    ask_device: bool = True,
) -> SyncResult:
    """Pushes this replica's unsent ops to the server at ``url`` and pulls what it may see; see the module doc.

    First it asks ``GET /v1/device`` and learns the station key the server offers, by the pinning rule
    (``ask_device``; :func:`caresync.sync.enrolment.sync` asks it itself and passes False). After the push and the
    pull it takes the readers' keys the station published and those wrapped to it, and on the station's desk grants
    them (:func:`caresync.sync.gridkeys.sync_grid_keys`).

    ``connect_timeout_s`` bounds each wait for a connection, ``timeout_s`` each wait for an answer, and
    ``deadline_s`` the time the sync goes without any answer, retries included (None: no bound; every answer
    starts it again, so a long sync that keeps moving is never cut); ``on_wait`` hears of each retry before its
    wait (see :class:`~caresync.sync._http.Wait`).

    Raises:
        ServerRefusedError: the server refused the device (unknown or revoked token, another device's
            identity) or a batch; nothing was lost.
        ServerUnreachableError: no answer: no connection, or none within the timeouts or the deadline.
        SyncError: the server failed or sent something unreadable; what was exchanged before is kept, and the
            next sync resumes from there.
    """
    device = device_log_of(holder)
    link = Link(
        url,
        token,
        client,
        retries,
        backoff_s,
        timeout_s,
        connect_timeout_s=connect_timeout_s,
        deadline_s=deadline_s,
        on_wait=on_wait,
    )
    result = SyncResult()
    try:
        if ask_device:
            _ask_device(device, link, result)
        _top_up_numbers(device, link)  # first: the short numbers it gives provisional tickets travel in this push
        _push(device, link, push_batch, result, progress)
        _pull(device, link, pull_batch, result, progress)
        result.grid_keys = _grid_keys(device, link)
        _learn_server_key(device, link)
        blobs = device.blobs
        on_blob = _blob_progress(progress)
        blobsync.upload(blobs, link, result.blobs, on_blob)  # after the ops: the server takes blobs its ops name
        blobsync.download(blobs, link, blobs.pull_mode, result.blobs, on_blob)
    finally:
        link.close()
        device.settle()
    result.unsent = device.unsent_count()
    return result


def _blob_progress(progress: SyncProgressCallback | None) -> blobsync.BlobProgressCallback | None:
    """The sync's progress callback, told of blob transfers as phases ``blobs_up`` and ``blobs_down`` (bytes)."""
    if progress is None:
        return None
    report = progress
    return lambda p: report(SyncProgress(f"blobs_{p.direction}", p.done, p.total))


#: Where the device keeps the last station key offer it refused (JSON: when, why).
STATION_REFUSED_META = "station_key_refused"


def learn_station_key(device: DeviceLog, answer: Mapping[str, Any]) -> str | None:
    """Takes the station key a server answer carries (enrolment, token renewal, ``GET /v1/device``), whatever
    the order of set-up: a device enrolled before the station registered its key learns it at its next sync,
    seals the work it kept for want of it, and sends it.

    The key is pinned (:meth:`~caresync.store.devicelog.DeviceLog.learn_station_key`): a server that offers
    another key without a rotation signed by the pinned one is refused; the refusal is kept in the replica
    (``station_key_refused``, shown by :func:`caresync.sync.enrolment.enrolment`), logged, and returned; the
    device goes on sealing to the key it has."""
    station, raw_chain = answer.get("station_public_key"), answer.get("station_key_chain") or []
    try:
        legacy = bytes.fromhex(str(station)) if station is not None else None
        if not isinstance(raw_chain, list):
            raise TrustError("The station key chain is not a list.", key="station_key.chain_not_list")
        chain = [StationKeyLink.from_json(link) for link in raw_chain]
        device.learn_station_key(chain, legacy)
    except (TrustError, InvalidInputError, ValueError) as exc:
        problem = str(exc)
        device.store.set_meta(
            STATION_REFUSED_META, json.dumps({"at": device.clock.physical_ms(), "reason": problem}, ensure_ascii=False)
        )
        device.logger.warning("station key refused: %s", problem)
        return problem
    device.forget_meta(key=STATION_REFUSED_META)
    return None


def _ask_device(device: DeviceLog, link: Link, result: SyncResult) -> None:
    """Asks the server what it knows of this device (``GET /v1/device``) before pushing, and learns the station
    key from the answer (:func:`learn_station_key`), for a device synced with a direct token (an enrolled device's
    sync asks it itself)."""
    info = link.request("GET", "/v1/device")  # retried and bounded like the push that follows
    if isinstance(info, dict):
        result.station_key_problem = learn_station_key(device, info)


def _grid_keys(device: DeviceLog, link: Link) -> GridKeySync:
    """The readers' keys step, after the push and the pull (:func:`caresync.sync.gridkeys.sync_grid_keys`): a link
    that fails here fails no work already exchanged; the failure is kept in the result and the next sync asks again."""
    try:
        return sync_grid_keys(device, link)
    except SyncError as exc:
        device.logger.warning("readers' keys not fetched this time (%s); the next sync asks again", exc)
        return GridKeySync(problems=[f"readers' keys not fetched this time: {exc}"])


def _learn_server_key(device: DeviceLog, link: Link) -> None:
    """Keeps the server's public key (``GET /v1/info``), the first time this device syncs with it directly: the
    answers couriers bring back from the server are believed only when signed by it."""
    store = device.store
    if store.get_meta(SERVER_KEY_META):
        return
    info = link.get("/v1/info")
    key = info.get("server_public_key") if isinstance(info, dict) else None
    if isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdefABCDEF" for c in key):
        store.set_meta(SERVER_KEY_META, key.lower())


def _top_up_numbers(device: DeviceLog, link: Link) -> None:
    """Asks the server for a new block of ticket numbers when this device has fewer than :data:`NUMBERS_LOW`
    left beyond what its provisionally numbered tickets need, then gives those tickets their short numbers (see
    :mod:`caresync.store.numbers`). A server that refuses (an older one) only delays it to the next sync; one that
    cannot be reached fails the sync, as the push would."""
    waiting = device.provisional_count()  # a count from the index of provisional numbers: no state read
    left = sum(block.left for block in device.numbers.blocks())
    if left - waiting < NUMBERS_LOW:
        try:
            answer = link.post("/v1/numbers", json={"count": min(1000, max(NUMBERS_BLOCK, waiting + NUMBERS_LOW))})
            device.numbers.add_block(int(answer["start"]), int(answer["count"]))
        except (ServerRefusedError, KeyError, TypeError, ValueError, InvalidInputError) as exc:
            device.logger.warning("no new block of ticket numbers this time (%s); the next sync asks again", exc)
    if waiting:
        device.renumber()


def _push(device: DeviceLog, link: Link, batch: int, result: SyncResult, progress: SyncProgressCallback | None) -> None:
    """Pushes the unsent ops in ``(hlc, origin, seq)`` order, ``batch`` at a time.

    Ops the server answers "waiting" (it cannot place them yet) are sent again at the head of every later batch
    of this sync: the server requires a device's own ops without holes, and a waiting op left out of the next
    batch would be one, refusing everything after it."""
    store = device.store
    device.seal_held()  # work kept for want of a key, sealed now if the device has learned one
    held = device.held()
    if held is not None:
        result.held = device.held_count()
        device.logger.warning(
            "keeping %d change(s) on this device, unsent: they hold free text and this device has no station key "
            "to seal it with yet; they are sealed and sent once it has one",
            result.held,
        )
    backlog = _Backlog(store.unsent_times(held=held))
    total = backlog.count(None)
    after: tuple[int, str, int] | None = None
    carried: list[OpDict] = []
    done = 0
    blocked = _quarantined_from(device)
    while len(carried) < batch:
        before = after
        fresh = store.unsent(after, limit=batch - len(carried), own=device.id, held=held)
        if not fresh:
            break
        ops = carried + fresh
        after = (ops[-1]["hlc"], ops[-1]["origin"], ops[-1]["seq"])
        if blocked is not None:  # the device's own ops after a damaged one of its own wait (the server wants no hole)
            ops = [op for op in ops if op["origin"] != device.id or op["seq"] < blocked]
            if not ops:
                continue
        pending, oldest = backlog.count(after[0]), backlog.oldest(after[0])  # what waits once this batch is in
        envelope = {
            "replica": device.id,
            "time_ms": device.clock.physical_ms() - device.clock.offset_ms,
            "pending": pending,
            "oldest_unsent_ms": oldest,
            "ops": ops,
        }
        try:
            answer = link.post("/v1/push", content=encode_envelope(envelope))
        except ServerRefusedError as exc:
            before_count = len(result.refused)
            stuck = _quarantine(device, ops, exc, result)
            if len(result.refused) == before_count:
                raise
            own = [op["seq"] for op in stuck if op["origin"] == device.id]
            blocked = min([*own, *([] if blocked is None else [blocked])], default=blocked)
            after = before  # the same ops again: a lost-op statement in each damaged one's place
            continue
        by_id = {op_id(o["origin"], o["seq"]): o for o in ops}
        try:
            refused = [
                (item["op"], str(item["code"]), str(item["reason"]))
                for item in answer.get("refused", [])
                if item.get("op") in by_id
            ]
            acked = [(str(o), int(lo), int(hi)) for o, lo, hi in answer.get("acked", [])]
            waiting = {str(item["op"]) for item in answer.get("waiting", [])}
            stored, duplicates = int(answer.get("stored", 0)), int(answer.get("duplicates", 0))
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise SyncError(
                f"The sync server at {link.base} sent a push answer this device cannot read",
                key="sync.unreadable_push_answer",
                fields={"url": link.base},
            ) from exc
        now = device.clock.physical_ms()
        with store.write():
            store.mark_refused((by_id[o]["origin"], by_id[o]["seq"], c, r, now) for o, c, r in refused)
            store.mark_sent(acked)
        carried = [op for key, op in by_id.items() if key in waiting]
        result.pushed += stored
        result.already_held += duplicates
        result.refused.extend(
            Refusal(op=o, kind=by_id[o]["kind"], record=by_id[o]["eid"], code=c, reason=r) for o, c, r in refused
        )
        _correct_clock(device, answer, result)
        done += len(fresh)
        if progress is not None:
            progress(SyncProgress("push", done, total))
    result.waiting = len(carried)


#: The code a device gives an op of its own log that it finds damaged (its signature no longer checks): it is kept,
#: listed with the refusals (``Replica.refusals()``), and never sent.
QUARANTINE_CODE = "corrupted"


def _quarantined_from(device: DeviceLog) -> int | None:
    """The lowest seq of the device's own ops it quarantined and could not replace by a signed "op N is lost"
    statement (:meth:`DeviceLog.mark_lost`); its later own ops wait behind it. Quarantined ops not replaced yet (by
    an older caresync) are replaced now."""
    blocked: list[int] = []
    for op, code, _, _ in device.store.refusals():
        if code != QUARANTINE_CODE or op["origin"] != device.id or op["kind"] == LOST_KIND:
            continue
        if not _replaced(device, op):
            blocked.append(op["seq"])
    return min(blocked, default=None)


def _replaced(device: DeviceLog, op: OpDict) -> bool:
    """Replaces a quarantined own op by a signed statement that it is lost; False when that cannot be done."""
    try:
        device.mark_lost(op)
    except CaresyncError as exc:
        device.logger.warning("op %s:%s stays quarantined, and the ops after it wait: %s", op["origin"], op["seq"], exc)
        return False
    return True


def _quarantine(device: DeviceLog, ops: list[OpDict], exc: ServerRefusedError, result: SyncResult) -> list[OpDict]:
    """When the server refuses a batch as forged or invalid, finds the ops of it whose own signature no longer
    checks on this device (a byte of the file damaged), and quarantines them: listed with the refusals, never
    sent, so that the rest of the log is not wedged behind them. Returns them (none: the refusal stands)."""
    if exc.server_code not in ("bad_signature", "invalid_ops"):
        return []
    bad = {(op["origin"], op["seq"]) for op in failing_signatures(ops)}
    damaged = [op for op in ops if (op["origin"], op["seq"]) in bad]
    if not damaged:
        return []
    now = device.clock.physical_ms()
    reasons = {
        id(op): (
            f"this device's copy of the change ({op['kind']} on {op['eid']}) was damaged on disk (its signature no "
            "longer checks), so it cannot be sent; a signed statement that it is lost takes its place, so the changes "
            "this device made after it are sent. Make the change again if it is still needed."
        )
        for op in damaged
    }
    with device.store.write():
        device.store.mark_refused((op["origin"], op["seq"], QUARANTINE_CODE, reasons[id(op)], now) for op in damaged)
    result.refused.extend(
        Refusal(
            op=op_id(op["origin"], op["seq"]),
            kind=op["kind"],
            record=op["eid"],
            code=QUARANTINE_CODE,
            reason=reasons[id(op)],
        )
        for op in damaged
    )
    return [op for op in damaged if op["origin"] != device.id or not _replaced(device, op)]


class _Backlog:
    """What waits to be sent once a batch is in, for the server's listing of devices (a push's ``pending`` and
    ``oldest_unsent_ms``). It comes from one ordered scan of the unsent ops as the push starts, two numbers per op
    (its ``hlc``, and the oldest ``at`` from that op on), instead of a count of what is left at every batch: that
    read every unsent op once per batch, quadratic in the backlog (1.3 s of the device's 2.7 s of CPU in a push of
    100,000 ops). Ops written while the push runs are not counted; the next sync counts them."""

    def __init__(self, times: Iterable[tuple[int, int]]) -> None:
        self.hlcs = array("q")
        oldest = array("q")
        for hlc, at in times:
            self.hlcs.append(hlc)
            oldest.append(at)
        for i in range(len(oldest) - 2, -1, -1):  # oldest[i]: the least at from op i on
            if oldest[i + 1] < oldest[i]:
                oldest[i] = oldest[i + 1]
        self.oldest_from = oldest

    def _after(self, hlc: int | None) -> int:
        return 0 if hlc is None else bisect_right(self.hlcs, hlc)

    def count(self, hlc: int | None) -> int:
        """How many unsent ops sort after ``hlc`` (all of them for None)."""
        return len(self.hlcs) - self._after(hlc)

    def oldest(self, hlc: int | None) -> int | None:
        """The ``at`` of the oldest of them; None when none is left."""
        i = self._after(hlc)
        return self.oldest_from[i] if i < len(self.oldest_from) else None


@dataclass
class _Page:
    """One pull answer, its ops already validated (on the fetching thread)."""

    known: list[OpDict]
    deferred: list[OpDict]
    after: str
    """The cursor it was asked for with."""
    cursor: str
    more: bool
    answer: Mapping[str, Any]

    @property
    def last(self) -> bool:
        """No page follows (a cursor that does not move ends the pull too, rather than asking forever)."""
        return not self.more or self.cursor == self.after


#: Pages the fetching thread asks for ahead of the one being stored. A page's round trip (the server reading and
#: encoding it, then decoding and validating it here) costs about as much as storing it (some 0.3 s per 10,000
#: ops on loopback), so with one page ahead the next request waited for the store to take the page before, and
#: every delay on either side stalled the other; with two, it goes out as soon as an answer has arrived.
PAGES_AHEAD = 2


#: A pull into an empty replica folds at most this many records in memory (the others are folded from the log):
#: a record of ten field edits holds about 2.5 KiB there, so some 50 MiB at most in that case.
FOLD_IN_MEMORY_RECORDS = 20_000
_ORDER = itemgetter("hlc", "origin", "seq")


class _Folded:
    """The records of a pull into an empty device, folded in memory as its pages are stored.

    Pages are still stored with ``defer_rows`` (their records marked pending in the page's transaction), so a
    crash leaves a file that :meth:`Store.settle` repairs from the log as always; but at the end of the pull
    the rows are written from these states (``settle(folded=...)``) instead of every op being read back from
    the log and folded again. A state is kept only while it is provably the fold of every op its record holds:
    the replica held no op when the pull began, and every op of the record arrived after the ones folded
    (:func:`caresync.core.merge.apply_sorted` on a saved state, as the store's own incremental fold). A record with
    an op from its past, or a redaction (which rewrites stored ops), is left to the log; so is everything if a
    page held an op the replica already had, or the replica gained ops some other way during the pull."""

    def __init__(self, limit: int | None = None) -> None:
        self.states: dict[str, dict[str, State]] = {}
        """By record type, then id."""
        self.spoiled: set[str] = set()
        self.count = 0
        self.held = 0
        self.limit = FOLD_IN_MEMORY_RECORDS if limit is None else limit
        self.valid = True

    def add(self, known: list[OpDict], deferred: int, applied: ApplyResult) -> None:
        """Folds a page's known ops, once the page is committed (``applied`` says what was stored)."""
        if not self.valid:
            return
        self.valid = False  # until the page is folded: an error or an interrupt half-way leaves every row to the log
        if applied.applied != len(known) or applied.deferred != deferred or applied.duplicates:
            return
        groups: dict[str, dict[str, list[OpDict]]] = {}
        by_kind: dict[str, dict[str, list[OpDict]]] = {}
        unsorted: list[list[OpDict]] = []
        spoiled = self.spoiled
        for op in known:
            kind = op["kind"]
            items = by_kind.get(kind)
            if items is None:
                items = by_kind[kind] = groups.setdefault(kind[: kind.index(".")], {})
                if kind.endswith(".redact"):  # it rewrites the stored ops before it: leave the record to the log
                    spoiled.update(o["eid"] for o in known if o["kind"] == kind)
            eid = op["eid"]
            ops = items.get(eid)
            if ops is None:
                items[eid] = [op]
            else:
                if op["hlc"] <= ops[-1]["hlc"]:
                    unsorted.append(ops)
                ops.append(op)
        for ops in unsorted:
            ops.sort(key=_ORDER)
        for entity, items in groups.items():
            states = self.states.setdefault(entity, {})
            for eid, ops in items.items():
                if eid in spoiled:
                    states.pop(eid, None)
                    continue
                state = states.get(eid)
                if state is None:
                    if self.count >= self.limit:
                        spoiled.add(eid)
                        continue
                    state = states[eid] = new_state(entity, eid)
                    self.count += 1
                else:
                    first = ops[0]
                    if [first["hlc"], first["origin"], first["seq"]] <= state["last"]:  # an op from its past
                        spoiled.add(eid)
                        del states[eid]
                        continue
                apply_sorted(state, ops)
        self.held += applied.applied + applied.deferred
        self.valid = True

    def settle(self, device: DeviceLog) -> None:
        """Writes the pending rows, from these states where they hold."""
        store = device.store
        usable = self.valid and self.count and store.op_count() == self.held
        store.settle(folded=self.states if usable else None)


def _refused_ops(link: Link, exc: CaresyncError) -> SyncError:
    return SyncError(
        f"The sync server at {link.base} sent ops this device refuses ({exc}); nothing of that batch was applied. "
        "Tell the station.",
        key="sync.ops_refused",
        fields={"url": link.base, "reason": str(exc)},
    )


def _pull(device: DeviceLog, link: Link, batch: int, result: SyncResult, progress: SyncProgressCallback | None) -> None:
    """Pulls pages until the server has no more, fetching and validating up to :data:`PAGES_AHEAD` pages on
    another thread while the current one is stored.

    The request for page k+1 uses the cursor page k returned, so it goes out as soon as page k has arrived, before
    page k is committed; the cursor saved is still only ever the one of a committed page. A crash or an error
    loses at most the pages in flight, which the next sync asks for again."""
    key = f"sync_cursor {link.base}"
    deleted = device.blobs.deleted()[:MAX_DELETED]  # blobs deleted here since the server was last told
    format_key = f"sync_format {link.base}"

    def fetch(cursor: str, told: list[str] | None = None) -> _Page:
        time_ms = device.clock.physical_ms() - device.clock.offset_ms  # read as the request leaves
        request: dict[str, Any] = {
            "replica": device.id,
            "cursor": cursor,
            "limit": batch,
            "time_ms": time_ms,
            "format": FORMAT_VERSION,
        }
        if told:
            request["deleted"] = told
        answer = link.post("/v1/pull", json=request, compact=True)
        try:
            ops, new_cursor, more = answer["ops"], str(answer["cursor"]), bool(answer["more"])
        except (KeyError, TypeError) as exc:
            raise SyncError(
                f"The sync server at {link.base} sent a pull answer this device cannot read",
                key="sync.unreadable_pull_answer",
                fields={"url": link.base},
            ) from exc
        try:
            known, deferred = validate_ops(ops)  # pure: done here, while the main thread stores the page before
        except CaresyncError as exc:
            raise _refused_ops(link, exc) from exc
        return _Page(known, deferred, cursor, new_cursor, more, answer)

    def fetch_after(previous: Future[_Page | None]) -> _Page | None:
        # the one worker runs its tasks in order, so the page before is in (or failed, which fails this one too)
        before = previous.result()
        return None if before is None or before.last else fetch(before.cursor)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="caresync-pull")
    folded = _Folded() if device.store.op_count() == 0 else None
    try:
        with paused_gc():  # the pages' ops stay alive across the loop; collections would walk them for nothing
            newest: Future[_Page | None] = pool.submit(fetch, _start(device, key, format_key), deleted)
            ahead = deque([newest])
            while ahead:
                got = ahead.popleft().result()
                if got is None:
                    break
                if deleted:  # the server answered: it holds this device no longer a holder of those
                    device.blobs.told(deleted)
                    deleted = []
                dropped = got.answer.get("drop_blobs")
                if isinstance(dropped, list):  # removed or erased where this device may not see: delete them
                    device.blobs.drop(str(b) for b in dropped)
                if not got.last:
                    while len(ahead) < PAGES_AHEAD:
                        newest = pool.submit(fetch_after, newest)
                        ahead.append(newest)
                try:
                    applied = device.apply_valid(
                        got.known,
                        got.deferred,
                        defer_rows=True,
                        from_server=True,
                        meta={key: got.cursor, format_key: str(FORMAT_VERSION)},
                    )
                except CaresyncError as exc:
                    raise _refused_ops(link, exc) from exc
                if folded is not None:
                    folded.add(got.known, len(got.deferred), applied)
                result.pulled += applied.applied + applied.deferred
                _correct_clock(device, got.answer, result)
                del got  # its ops are stored: let them go before the next page arrives
                if progress is not None:
                    progress(SyncProgress("pull", result.pulled, None))
    finally:
        # on an error the page in flight is abandoned, not waited for (its answer would be thrown away anyway)
        pool.shutdown(wait=False, cancel_futures=True)
        if folded is not None:
            folded.settle(device)


def _start(device: DeviceLog, key: str, format_key: str) -> str:
    """Where a pull starts: the saved cursor, or the start when this device pulled up to it while reading an older op
    format (the server left out the ops of newer formats: it pulls again from the start once, to get them; what
    it holds already is recognised and skipped)."""
    cursor = device.store.get_meta(key) or ""
    if cursor and device.store.get_meta(format_key) != str(FORMAT_VERSION):
        device.logger.info("this caresync reads op format %d: pulling again from the start once", FORMAT_VERSION)
        return ""
    return cursor


def _correct_clock(device: DeviceLog, answer: Mapping[str, Any], result: SyncResult) -> None:
    offset = answer.get("clock_offset_ms")
    if type(offset) is not int:
        return
    result.clock_offset_ms = offset
    if abs(offset - device.clock.offset_ms) > CLOCK_TOLERANCE_MS:
        device.logger.warning(
            "this device's clock is off by %.1f s from the sync server's; correcting it", offset / 1000
        )
        device.set_clock_offset(offset)
