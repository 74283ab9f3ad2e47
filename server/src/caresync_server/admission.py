"""What the server does with each op of a pushed batch: the rules of ``POST /v1/push``, with no I/O.

The storage layer loads what the server already knows about the batch (:class:`Knowledge`), calls
:func:`admit`, and writes the :class:`Verdict` in the same transaction. Each op ends as exactly one of:

* **stored**: new, placed on a record the server knows, allowed for the device that made it;
* **duplicate**: already stored, identical (a replayed batch, or an op another device relayed first);
* **refused**: it will never be stored, with a reason to show the person who made it; remembered, so the same
  refusal is answered every time it comes again, and so the ops that depend on it are refused too;
* **waiting**: it cannot be placed yet (its record, its device, or earlier ops of its device have not reached
  the server); it is not stored, and the device sends it again later.

Two problems refuse the whole batch instead, as nothing of it can be trusted: an op that reuses the identity
of a different op (``op_fork``), and a gap in the pushing device's own ops (``seq_gap``).

Ops are taken in ``(hlc, origin, seq)`` order, the order every replica folds them in, so a record's create
comes before the changes made on it. Permissions are those of the device that *made* the op (its origin), not
of the device that carries it: a courier may relay a grid worker's edits, never make its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from caresync.core.domain import EntityType, Role, grid_parent, in_grid
from caresync.core.ids import entity_id_for, op_id
from caresync.core.ops import LOST_KIND, TEXT_FORMAT, OpDict, entity_type_of, rewritable
from caresync.trust.sealing import unsealed_fields
from caresync.trust.signing import content_digests

from .errors import ApiError, ErrorCode, ErrorDetail
from .roles import EVERYWHERE, GLOBAL_TYPES, KIND_ONLY, PERMISSIONS, covers

__all__ = [
    "LOST_RECORD_TYPE",
    "Admitted",
    "Knowledge",
    "OpKey",
    "OriginDevice",
    "PriorRefusal",
    "Record",
    "Verdict",
    "admit",
    "body_text",
    "check_sealed",
    "check_signers",
    "fingerprint",
    "referenced_ops",
]

OpKey = tuple[str, int]
#: The record type a lost-op statement is stored under: no role reads it, so only devices that see everything
#: (the station's) pull it; others see the seq as a gap, as they do any op outside their scope.
LOST_RECORD_TYPE = "log"

_CREATED_BY = re.compile(r"^[A-Z]-([0-9a-f]{16})-([1-9][0-9]{0,17})$")
_REF_KEYS = ("replaces", "follows", "assignee_replaces")


@dataclass
class Record:
    """What the server knows of a record: enough to decide scope and permission."""

    type: str
    grid: str
    grid_hlc: int
    """The stamp of the op that put the record in ``grid``; a later stamp is needed to move it again."""
    resident: str | None = None
    """A visit's resident: a visit lives in its resident's grid and moves with them."""
    kind: str | None = None
    """A ticket's kind (a mediator holds disputes only)."""
    kind_hlc: int = 0
    """The stamp of the op that set ``kind``; a later stamp is needed to change it again."""


@dataclass(frozen=True)
class OriginDevice:
    """An enrolled device, found by the replica id it is bound to."""

    name: str
    role: Role
    grids: tuple[str, ...]
    revoked: bool
    public_key: bytes | None = None
    """The Ed25519 key the device enrolled with (None for a device enrolled with a direct token)."""


@dataclass(frozen=True)
class PriorRefusal:
    """A refusal the server already answered for an op."""

    fingerprint: str
    code: str
    reason: str


@dataclass
class Knowledge:
    """What the server holds that bears on one batch (loaded by the storage layer)."""

    contig: dict[str, int]
    """Per origin, the highest seq such that every seq up to it is stored or refused."""
    beyond: dict[str, set[int]]
    """Per origin, the seqs above ``contig`` already stored or refused."""
    stored: dict[OpKey, str]
    """The fingerprints of the batch's ops the server already stores."""
    refused: dict[OpKey, PriorRefusal]
    """Earlier refusals of the batch's ops and of the ops they depend on."""
    devices: dict[str, OriginDevice]
    """The enrolled devices of the batch's origins, by replica id."""
    records: dict[str, Record]
    """The records the batch's ops are about (and the residents of its visits)."""
    sealing: bool = False
    """The deployment has a station key: free text must arrive sealed (:func:`check_sealed`)."""


@dataclass(frozen=True)
class Admitted:
    """An op to store, with where its record lives, so pulls can tell who may see it."""

    op: OpDict
    type: str
    grid: str
    grid_to: str | None
    """Where the op moves its record to, if it moves it (devices of both grids see the move)."""
    kind: str | None = None
    """The record's kind once the op is applied (tickets)."""
    kind_from: str | None = None
    """The record's kind before the op, when the op changed it (devices that held it see the change)."""


@dataclass
class Verdict:
    """What :func:`admit` decided for one batch."""

    admitted: list[Admitted] = field(default_factory=list)
    duplicates: int = 0
    refused: list[tuple[OpDict, str, str]] = field(default_factory=list)
    """New refusals: ``(op, code, reason)``."""
    repeated: list[tuple[OpKey, str, str]] = field(default_factory=list)
    """Refusals answered before, answered again: ``(key, code, reason)``."""
    waiting: list[tuple[OpKey, str]] = field(default_factory=list)
    held: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    """Per origin, the batch's seqs the server now holds or has refused (the device may mark them sent)."""
    new_records: dict[str, Record] = field(default_factory=dict)
    moved: dict[str, Record] = field(default_factory=dict)
    """Records (already stored) whose grid or kind changed."""

    def acked(self) -> list[tuple[str, int, int]]:
        """``held`` as ``(origin, lo, hi)`` ranges of consecutive seqs."""
        out: list[tuple[str, int, int]] = []
        for origin in sorted(self.held):
            seqs = sorted(self.held[origin])
            lo = prev = seqs[0]
            for seq in seqs[1:]:
                if seq != prev + 1:
                    out.append((origin, lo, prev))
                    lo = seq
                prev = seq
            out.append((origin, lo, prev))
        return out


def body_text(body: Any) -> str:
    """The canonical JSON text of an op body, as the server stores it."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(hlc: int, eid: str, kind: str, actor: str, at: int, body: str, v: int) -> str:
    """What makes two ops with one identity the same op (a redaction may rewrite a body its signature covers
    value by value: :func:`caresync.core.ops.rewritable`)."""
    compared = body
    if rewritable({"kind": kind, "v": v}):  # a redaction may erase values: what the signature covers stays
        compared = content_digests(kind, v, json.loads(body)) if v >= TEXT_FORMAT else ""
    return hashlib.sha256(json.dumps([hlc, eid, kind, actor, at, compared]).encode()).hexdigest()


def _fingerprint_of(op: OpDict) -> str:
    return fingerprint(op["hlc"], op["eid"], op["kind"], op["actor"], op["at"], body_text(op["body"]), op["v"])


def _parse_ref(text: str) -> OpKey:
    origin, _, seq = text.partition(":")
    return origin, int(seq)


def referenced_ops(op: OpDict) -> list[OpKey]:
    """The ops ``op`` depends on: the create of its record (and of a visit's resident) and the ops it names."""
    refs: list[OpKey] = []
    eids = [op["eid"]]
    if op["kind"] == "visit.create":
        eids.append(op["body"]["resident_id"])
    for eid in eids:
        match = _CREATED_BY.match(eid)
        if match is not None:
            refs.append((match[1], int(match[2])))
    body = op["body"]
    for key in _REF_KEYS:
        refs.extend(_parse_ref(ref) for ref in body.get(key) or ())
    own = (op["origin"], op["seq"])
    return [ref for ref in refs if ref != own]


def check_signers(ops: Sequence[OpDict], devices: dict[str, OriginDevice]) -> None:
    """Refuses the batch when an op is signed by another key than the one its device enrolled with.

    The library's checks tie a signature's key to the op's origin by the key's 64-bit fingerprint; the server also
    holds each device's whole key, bound when it redeemed its enrolment code, and compares it, so that a key made
    to collide with a device's fingerprint still cannot sign in its name. Call after the signatures were verified
    (each ``sig`` is then readable). Devices enrolled with a direct token have no key bound, and are checked by
    fingerprint only.

    Raises:
        ApiError: ``bad_signature``, naming the op; nothing of the batch may be stored.
    """
    for op in ops:
        device = devices.get(op["origin"])
        sig = op.get("sig")
        if device is None or device.public_key is None or not sig:
            continue
        if base64.b64decode(sig)[:32] != device.public_key:
            who = op_id(op["origin"], op["seq"])
            raise ApiError(
                ErrorCode.BAD_SIGNATURE,
                f"Op {who} is signed by another key than the one device {device.name} enrolled with: it was forged. "
                "Nothing from this batch was stored.",
                [{"field": "sig", "problem": "not the key the device enrolled with", "op": who}],
            )


def _first_missing(contig: int, present: set[int]) -> int:
    seq = contig + 1
    while seq in present:
        seq += 1
    return seq


class _Admission:
    def __init__(self, pusher: str, known: Knowledge) -> None:
        self.pusher = pusher
        self.known = known
        self.verdict = Verdict()
        self.records = dict(known.records)
        self.refused_now: dict[OpKey, tuple[str, str]] = {}
        self.first_missing: dict[str, int] = {}

    # --- identity: duplicates and forks ----------------------------------------------------------------------

    def fresh_ops(self, ops: Sequence[OpDict]) -> list[OpDict]:
        """The ops the server has never seen; answers duplicates and known refusals; raises on a fork."""
        fresh: list[OpDict] = []
        seen: dict[OpKey, OpDict] = {}
        for op in ops:
            key = (op["origin"], op["seq"])
            refusal = self.known.refused.get(key)
            if key in seen:
                prior: str | None = _fingerprint_of(seen[key])
            else:
                prior = self.known.stored.get(key) or (refusal.fingerprint if refusal is not None else None)
            if prior is not None and prior != _fingerprint_of(op):
                raise ApiError(
                    ErrorCode.OP_FORK,
                    f"Two different ops both claim to be op {op_id(*key)}: the device {key[0]} was probably "
                    "restored from a backup or copied to another phone. Stop using that copy and ask the station "
                    "to enrol the device again. Nothing from this batch was stored.",
                    [{"field": "ops", "problem": "same (origin, seq), different content", "op": op_id(*key)}],
                )
            if key in seen:
                continue  # the same op twice in one batch: answered with its first copy
            seen[key] = op
            if refusal is not None:
                self.verdict.repeated.append((key, refusal.code, refusal.reason))
                self.verdict.held[key[0]].add(key[1])
            elif key in self.known.stored:
                self.verdict.duplicates += 1
                self.verdict.held[key[0]].add(key[1])
            else:
                fresh.append(op)
        present: dict[str, set[int]] = defaultdict(set)
        for origin, seq in seen:
            present[origin].add(seq)
        for origin, seqs in present.items():
            beyond = self.known.beyond.get(origin, set())
            self.first_missing[origin] = _first_missing(self.known.contig.get(origin, 0), seqs | beyond)
        return fresh

    def check_own_gap(self, fresh: Iterable[OpDict]) -> None:
        """Raises ``seq_gap`` when the pushing device's own new ops skip a seq nothing fills."""
        expected = self.first_missing.get(self.pusher)
        if expected is None:
            return
        ahead = [op["seq"] for op in fresh if op["origin"] == self.pusher and op["seq"] > expected]
        if ahead:
            raise ApiError(
                ErrorCode.SEQ_GAP,
                f"This device's changes must reach the server in order: the server expects change "
                f"{op_id(self.pusher, expected)} next, but the batch skips it (it sends "
                f"{op_id(self.pusher, min(ahead))}). Send the device's unsent changes from "
                f"{op_id(self.pusher, expected)} on. Nothing from this batch was stored.",
                [{"field": "ops", "problem": f"expected seq {expected}", "expected_seq": expected}],
            )

    # --- placement -------------------------------------------------------------------------------------------

    def place(self, op: OpDict) -> str | None:
        """Stores, refuses or keeps ``op`` waiting; returns a reason instead when it waits for a record, which
        a later op of the same batch may create (the caller tries it again)."""
        key = (op["origin"], op["seq"])
        origin, kind, eid = op["origin"], op["kind"], op["eid"]
        if op["seq"] > self.first_missing[origin]:
            missing = op_id(origin, self.first_missing[origin])
            self.wait(key, f"change {missing} of the same device has not reached the server yet")
            return None
        device = self.known.devices.get(origin)
        if device is None:
            self.wait(key, f"it was made on device {origin}, which has not synced with this server yet")
            return None
        if device.revoked:
            self.refuse(
                op,
                "origin_revoked",
                f"it was made on device {device.name}, which the station revoked; its changes are no longer "
                "accepted. Ask the station to make this change.",
            )
            return None
        for ref in referenced_ops(op) if self.known.refused or self.refused_now else ():
            prior = self.known.refused.get(ref)
            cause = self.refused_now.get(ref) or (None if prior is None else (prior.code, prior.reason))
            if cause is not None:
                code, reason = cause
                if code != "depends_on_refused":  # else its reason already names the change it all builds on
                    reason = f"it builds on change {op_id(*ref)}, which the server refused: {reason}"
                self.refuse(op, "depends_on_refused", reason)
                return None
        if kind == LOST_KIND:  # a device's signed "op N is lost": it fills the seq, and is of no record
            if eid != f"lost-{origin}-{op['seq']}":
                self.refuse(
                    op, "wrong_record", f"a {kind} op of {op_id(origin, op['seq'])} is lost-{origin}-{op['seq']}"
                )
                return None
            self.verdict.admitted.append(Admitted(op, LOST_RECORD_TYPE, EVERYWHERE, None, None, None))
            self.verdict.held[origin].add(op["seq"])
            return None
        rtype = entity_type_of(kind)
        record = self.records.get(eid)
        if kind.endswith(".create"):
            expected = entity_id_for(EntityType(rtype), origin, op["seq"])
            if eid != expected:
                self.refuse(op, "wrong_record", f"a {kind} op must create record {expected}, not {eid}")
                return None
            resident = self.records.get(op["body"]["resident_id"]) if rtype == "visit" else None
            if resident is not None and resident.type != "resident":
                self.refuse(
                    op,
                    "wrong_record",
                    f"a visit is of a resident, and {op['body']['resident_id']} is a {resident.type}",
                )
                return None
            grid = self.grid_of_new(op)
            if grid is None:
                return f"resident {op['body']['resident_id']} is not on the server yet"
            record = Record(
                rtype,
                grid,
                op["hlc"],
                op["body"]["resident_id"] if rtype == "visit" else None,
                op["body"].get("kind") if rtype == "ticket" else None,
                op["hlc"],
            )
        elif record is None:
            return f"record {eid} is not on the server yet"
        elif record.type != rtype:
            self.refuse(op, "wrong_record", f"a {kind} op cannot change {eid}, which is a {record.type}")
            return None
        destination = _destination(op, record.grid)
        problem = _forbidden(device, kind, rtype, eid, record, destination)
        if problem is not None:
            self.refuse(op, "forbidden", problem)
            return None
        new_kind = _new_kind(op)
        rekind = new_kind is not None and new_kind != record.kind and op["hlc"] > record.kind_hlc
        after = new_kind if rekind else record.kind
        self.verdict.admitted.append(
            Admitted(op, rtype, record.grid, destination, after, record.kind if rekind else None)
        )
        self.verdict.held[origin].add(op["seq"])
        if kind.endswith(".create"):
            self.records[eid] = self.verdict.new_records[eid] = record
            return None
        if rekind:
            record = replace(record, kind=new_kind, kind_hlc=op["hlc"])
            self.changed(eid, record)
        if destination is not None and op["hlc"] > record.grid_hlc:
            self.move(eid, record, destination, op["hlc"])
        return None

    def grid_of_new(self, op: OpDict) -> str | None:
        """The grid a record created by ``op`` lives in; None while a visit's resident is unknown."""
        rtype = entity_type_of(op["kind"])
        if rtype in GLOBAL_TYPES:
            return EVERYWHERE
        if rtype == "visit":
            resident = self.records.get(op["body"]["resident_id"])
            return None if resident is None else resident.grid
        grid: str = op["body"]["grid"]
        return grid

    def changed(self, eid: str, record: Record) -> None:
        self.records[eid] = record
        if eid in self.verdict.new_records:
            self.verdict.new_records[eid] = record
        else:
            self.verdict.moved[eid] = record

    def move(self, eid: str, record: Record, grid: str, hlc: int) -> None:
        self.changed(eid, replace(record, grid=grid, grid_hlc=hlc))
        for other_id, other in list(self.records.items()):
            if other.resident == eid:  # the resident's visits (those the batch names) move with them
                self.move(other_id, other, grid, hlc)

    def refuse(self, op: OpDict, code: str, reason: str) -> None:
        key = (op["origin"], op["seq"])
        self.refused_now[key] = (code, reason)
        self.verdict.refused.append((op, code, reason))
        self.verdict.held[key[0]].add(key[1])

    def wait(self, key: OpKey, reason: str) -> None:
        self.verdict.waiting.append((key, reason))


def admit(ops: Sequence[OpDict], *, pusher: str, known: Knowledge) -> Verdict:
    """Decides what becomes of each op of a validated batch pushed by the device bound to replica ``pusher``.

    Raises:
        ApiError: ``op_fork`` (an op reuses the identity of a different one) or ``seq_gap`` (the pushing
            device's own ops skip a seq); nothing of the batch may be stored.
    """
    admission = _Admission(pusher, known)
    fresh = admission.fresh_ops(sorted(ops, key=lambda o: (o["hlc"], o["origin"], o["seq"])))
    if known.sealing:
        check_sealed(fresh)
    admission.check_own_gap(fresh)
    unplaced = [(op, reason) for op in fresh if (reason := admission.place(op)) is not None]
    while unplaced:  # a record created later in the batch (by clock order) lets waiting ops in
        again = [(op, reason) for op, _ in unplaced if (reason := admission.place(op)) is not None]
        if len(again) == len(unplaced):
            break
        unplaced = again
    for op, reason in unplaced:
        admission.wait((op["origin"], op["seq"]), reason)
    return admission.verdict


def check_sealed(ops: Sequence[OpDict]) -> None:
    """Refuses a batch in which an op the server does not hold yet carries free text in clear in a field that must
    be sealed (:func:`caresync.trust.sealing.unsealed_fields`): once the deployment has a station key, free text
    reaches the server sealed or not at all. Ops stored before (duplicates) are not checked again.

    Raises:
        ApiError: ``unsealed_field`` (422), naming every such op and field; nothing of the batch is stored.
    """
    details: list[ErrorDetail] = []
    for op in ops:
        for path in unsealed_fields(op["kind"], op["body"]):
            details.append(
                {
                    "field": f"body.{path}",
                    "problem": "free text in clear; seal it to the station key",
                    "op": op_id(op["origin"], op["seq"]),
                }
            )
    if details:
        first = details[0]
        raise ApiError(
            ErrorCode.UNSEALED_FIELD,
            f"Op {first['op']} carries {first['field']} in clear, and this server has a station key: free text must "
            "be sealed on the device that captures it. Let the device learn the station key (it does at its next "
            f"sync) and send the work again. Nothing from this batch was stored ({len(details)} field(s) in clear).",
            details[:100],
        )


def _destination(op: OpDict, grid: str) -> str | None:
    """Where ``op`` moves its record, or None if it does not move it."""
    kind, body = op["kind"], op["body"]
    if kind == "resident.set" and body["field"] == "grid":
        return str(body["value"])
    if kind == "ticket.transition" and body["action"] == "escalate":
        return body.get("to_grid") or grid_parent(grid)
    return None


def _new_kind(op: OpDict) -> str | None:
    """The kind a ticket op gives its ticket, or None if it does not set it."""
    if op["kind"] == "ticket.set" and op["body"]["field"] == "kind":
        return str(op["body"]["value"])
    return None


def _forbidden(
    device: OriginDevice, kind: str, rtype: str, eid: str, record: Record, destination: str | None
) -> str | None:
    """Why the device that made an op may not make it, or None when it may (see :mod:`caresync.trust.scopes`)."""
    grid = record.grid
    if kind not in PERMISSIONS[device.role].writes:
        return (
            f"a {device.role.value} device ({device.name}) may not make {kind} changes; "
            "ask the station to make this change"
        )
    only = KIND_ONLY[device.role].get(rtype)
    if only is not None and record.kind != only:
        return (
            f"a {device.role.value} device ({device.name}) may change only {rtype}s of kind {only}, and {eid} "
            f"is of kind {record.kind}; ask the station to make this change"
        )
    if rtype in GLOBAL_TYPES:
        return None
    where = ", ".join(g or "everywhere" for g in device.grids)
    if not covers(device.grids, grid):
        return (
            f"{rtype} {eid} is in grid {grid}, outside the grids of device {device.name} ({where}); ask the station "
            "to make this change or to widen the device's grids"
        )
    if destination is not None and not covers(device.grids, destination) and not in_grid(grid, destination):
        return (
            f"moving {rtype} {eid} to grid {destination} is outside the grids of device {device.name} ({where}): a "
            "device moves a record within its grids or up to a parent grid; ask the station to move it"
        )
    return None
