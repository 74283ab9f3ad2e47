"""What queries return: frozen pydantic records built from folded state. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field

from caresync.core.domain import (
    Channel,
    DisputeOutcome,
    EntityType,
    HopStage,
    Priority,
    ResidentFlag,
    Role,
    TicketKind,
    TicketStatus,
    VisitOutcome,
)
from caresync.core.merge import State, conflicts_of, value_of
from caresync.core.ops import OpDict, signer_of

__all__ = [
    "Attachment",
    "ClockAnomaly",
    "Conflict",
    "ConflictValue",
    "HistoryEntry",
    "Hop",
    "Mailbox",
    "MediationSession",
    "Note",
    "Parcel",
    "Party",
    "Rating",
    "Resident",
    "Ticket",
    "Visit",
    "Worker",
    "ms_to_datetime",
]


def ms_to_datetime(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else ms_to_datetime(ms)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class HistoryEntry(_Record):
    """One change to a record: who did what, when, on which device."""

    op_id: str
    kind: str
    actor: str
    device: str
    at: datetime
    hlc: int
    details: dict[str, Any]
    signed_by: str | None = None
    """The Ed25519 public key (hex) that signed the change; its fingerprint is ``device``. None only for a
    change written before caresync signed ops (every op received since is checked before it is stored: by its
    own signature, or by the signature of a later op of its device whose chain of links pins it)."""

    @property
    def action(self) -> str:
        """What was done, e.g. ``set title``, ``accept``, ``note``."""
        action = self.kind.partition(".")[2]
        if action == "set":
            return f"set {self.details.get('field')}"
        if action == "transition":
            return str(self.details.get("action"))
        if action == "hop":
            return f"hop {self.details.get('stage')}"
        return action


class ConflictValue(_Record):
    """One of the competing values of a conflict, and who wrote it."""

    value: Any
    op_id: str
    actor: str
    device: str
    at: datetime
    applied: bool


class Conflict(_Record):
    """Work made in parallel that needs a person's decision; it stays until a later edit settles it.

    ``field`` is a field name, ``status`` (transitions made without seeing each other, or one that no longer
    fits) or ``custody`` (hand-overs of a parcel that do not add up). ``chosen`` is what the record shows now.
    """

    entity: EntityType
    entity_id: str
    field: str
    chosen: Any
    values: list[ConflictValue]

    def describe(self) -> str:
        """One line a clerk can read."""
        parts = ", ".join(f"{v.value!r} by {v.actor} on {v.device}" for v in self.values)
        return f"{self.entity.value} {self.entity_id}: {self.field} has competing values: {parts}"


def _conflicts(state: State) -> list[Conflict]:
    return [
        Conflict(
            entity=EntityType(state["type"]),
            entity_id=state["id"],
            field=c["field"],
            chosen=c["chosen"],
            values=[
                ConflictValue(
                    value=v["value"],
                    op_id=v["op"],
                    actor=v["actor"],
                    device=v["device"],
                    at=ms_to_datetime(v["at"]),
                    applied=v["applied"],
                )
                for v in c["values"]
            ],
        )
        for c in conflicts_of(state)
    ]


def history_of(ops: list[OpDict], key_of: Callable[[str], str | None] | None = None) -> list[HistoryEntry]:
    """History entries for a record's ops (already in HLC order). ``key_of`` gives a device's public key (hex)
    for the ops that arrived without their own signature, pinned by a later op of their device."""
    return [
        HistoryEntry(
            op_id=f"{o['origin']}:{o['seq']}",
            kind=o["kind"],
            actor=o["actor"],
            device=o["origin"],
            at=ms_to_datetime(o["at"]),
            hlc=o["hlc"],
            details=o["body"],
            signed_by=signer_of(o) or (key_of(o["origin"]) if key_of is not None and o["v"] >= 2 else None),
        )
        for o in ops
    ]


class Note(_Record):
    """A note added to a record (grow-only: notes are never overwritten)."""

    op_id: str
    text: str | None
    actor: str
    device: str
    at: datetime


class Party(_Record):
    """A party to a dispute."""

    op_id: str
    name: str
    side: str | None = None
    resident_id: str | None = None


class MediationSession(_Record):
    """One mediation session: when, who mediated, what happened."""

    op_id: str
    held_at: datetime
    mediator: str
    summary: str
    attendees: list[str]


class Rating(_Record):
    """A resident's rating of a returned request."""

    score: int
    comment: str | None = None


class Hop(_Record):
    """One hand-over in a parcel's chain of custody."""

    op_id: str
    stage: HopStage
    actor: str
    device: str
    at: datetime
    place: str | None = None
    confirm_code: str | None = None
    """The code given at a delivery, kept only when the parcel had no delivery code to check it against."""
    code_checked: bool = False
    """True when the resident's code was checked against the parcel's delivery code (which is never kept)."""
    reason: str | None = None
    contents: str | None = None
    """What the resident asks for, sealed to the station (``sealed:1:...``); open it with the station key."""
    content_hash: str | None = None


class Attachment(_Record):
    """A photo, signature or document on a record. Its bytes are a sealed blob kept beside the op log; open it
    with ``replica.attachments.open(attachment.id)``."""

    id: str
    """The attach op's id (``origin:seq``): what ``open`` and ``remove`` take."""
    record_id: str
    kind: Literal["photo", "signature", "document"]
    media: str
    """The media type of the opened bytes (``image/jpeg`` for photos, ``image/png`` for signatures)."""
    size: int
    """The sealed blob's size in bytes."""
    blob: str
    """The blob's name: a hash of its sealed bytes, which says nothing about the picture."""
    thumb: str | None = None
    """The thumbnail's blob (photos and signatures)."""
    caption: str | None = None
    on: str | None = None
    """The mediation session or custody hop (its op id) the attachment belongs to, if not the whole record."""
    actor: str
    device: str
    at: datetime
    erased: bool = False
    """True once a redaction erased its key: the picture can no longer be opened anywhere."""


def _items(state: State, name: str) -> list[list[Any]]:
    items: list[list[Any]] = state["c"].get(name, [])
    return items


def _attachments(state: State) -> list[Attachment]:
    """The live attachments: those no detach op removed, in HLC order."""
    removed = {ref for item in _items(state, "detachments") for ref in item[6]["removes"]}
    return [
        Attachment(
            id=i[0],
            record_id=state["id"],
            kind=i[6]["kind"],
            media=i[6]["media"],
            size=i[6]["size"],
            blob=i[6]["blob"],
            thumb=i[6].get("thumb"),
            caption=i[6].get("caption"),
            on=i[6].get("on"),
            actor=i[4],
            device=i[2],
            at=ms_to_datetime(i[5]),
            erased=i[6].get("key") is None,
        )
        for i in _items(state, "attachments")
        if i[0] not in removed
    ]


def _notes(state: State) -> list[Note]:
    return [
        Note(op_id=i[0], text=i[6]["text"], actor=i[4], device=i[2], at=ms_to_datetime(i[5]))
        for i in _items(state, "notes")
    ]


HistorySource = list[HistoryEntry] | Callable[[], list[HistoryEntry]]
"""A record's history, or the function that reads it when it is first asked for (see :func:`build_record`)."""


class _Entity(_Record):
    id: str
    deleted: bool = False
    conflicts: list[Conflict] = []
    _history: HistorySource = PrivateAttr(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def history(self) -> list[HistoryEntry]:
        """Every change to the record, oldest first, up to the newest one the record shows.

        A record a replica returns reads its history from the replica file the first time it is asked for, so
        writing, getting and listing records never reads back their whole histories: ask while the replica is
        open (after it is closed, asking raises :class:`~caresync.errors.StoreError`)."""
        history = self._history
        if callable(history):
            history = self._history = history()
        return history

    def __eq__(self, other: object) -> bool:
        """Records are equal when their fields and their histories are."""
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Entity)
        return self.__dict__ == other.__dict__ and self.history == other.history

    __hash__ = _Record.__hash__


class Resident(_Entity):
    """A resident the station serves."""

    name: str | None
    grid: str
    address: str | None = None
    phone: str | None = None
    flags: list[ResidentFlag] = []
    knock_every_days: int | None = None
    birth_year: int | None = None
    notes: list[Note] = []
    attachments: list[Attachment] = []
    redacted: list[str] = []


class Worker(_Entity):
    """A grid worker, knocker, courier, mediator or station member, with their grids."""

    name: str
    role: Role
    grids: list[str] = []
    phone: str | None = None


class Ticket(_Entity):
    """A resident's request, from order (下单) to taken (接单) to returned (回单)."""

    title: str
    kind: TicketKind
    channel: Channel
    grid: str
    status: TicketStatus
    priority: Priority = Priority.NORMAL
    description: str | None = None
    resident_id: str | None = None
    visit_id: str | None = None
    parcel_id: str | None = None
    number: str | None = None
    """The human-readable number told to the resident (see caresync.store.numbers); None on older tickets."""
    former_numbers: list[str] = []
    """The provisional number the ticket had before its device gave it a short one (see caresync.store.numbers)."""
    assignee: str | None = None
    submitted_by: str
    submitted_at: datetime
    due_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    rating: Rating | None = None
    mediator: str | None = None
    outcome: DisputeOutcome | None = None
    notes: list[Note] = []
    attachments: list[Attachment] = []
    parties: list[Party] = []
    sessions: list[MediationSession] = []

    @property
    def is_open(self) -> bool:
        """True while the request still waits for someone."""
        return self.status in (TicketStatus.SUBMITTED, TicketStatus.ACCEPTED, TicketStatus.IN_PROGRESS)

    @property
    def resolution(self) -> str | None:
        """How the request was solved: the reason given with its latest resolution, while it is resolved or closed
        (kept in the history, as every transition's reason is)."""
        if self.status not in (TicketStatus.RESOLVED, TicketStatus.CLOSED):
            return None
        for entry in reversed(self.history):
            if entry.kind == "ticket.transition" and entry.details.get("action") == "resolve":
                reason = entry.details.get("reason")
                return None if reason is None else str(reason)
        return None


class Visit(_Entity):
    """A door-knock: who knocked on whose door, when, and what they found."""

    resident_id: str
    visitor: str
    visited_at: datetime
    outcome: VisitOutcome
    note: str | None = None
    ticket_id: str | None = None
    notes: list[Note] = []
    attachments: list[Attachment] = []


class Mailbox(_Entity):
    """A neighbourhood convenience mailbox (便民邮筒)."""

    code: str
    name: str
    grid: str
    location: str | None = None


class Parcel(_Entity):
    """Paperwork travelling mailbox → courier → station → courier → door, with its chain of custody."""

    code: str
    grid: str
    direction: Literal["to_station", "to_resident"]
    resident_id: str | None = None
    mailbox_id: str | None = None
    summary: str | None = None
    delivery_code_check: str | None = None
    """The salted hash of the resident's delivery code (``salt:hash``), or None when the station set none."""
    stage: HopStage | None = None
    holder: str | None = None
    hops: list[Hop] = []
    attachments: list[Attachment] = []


class ClockAnomaly(_Record):
    """A device whose stamps were seen far ahead of this device's clock: one of the two clocks is wrong."""

    device: str
    ahead_ms: int
    seen_at: datetime


def _v(state: State, name: str) -> Any:
    return value_of(state, name)


def _text_list(value: Any) -> list[str]:
    """A list of texts; sealed (read on a device without the station key) it is one sealed text in a list."""
    return [value] if isinstance(value, str) else list(value)


def build_record(state: State, history: HistorySource) -> _Entity:
    """The public record for a folded state. ``history`` is its history, or a function that reads it, called the
    first time the record's ``history`` is asked for (a write returns its record without reading the history)."""
    record = _build_record(state)
    record._history = history
    return record


def _build_record(state: State) -> _Entity:
    common: dict[str, Any] = {
        "id": state["id"],
        "deleted": bool(_v(state, "deleted")),
        "conflicts": _conflicts(state),
    }
    entity = state["type"]
    if entity == "ticket":
        st = state["st"]
        rating = _v(state, "rating")
        return Ticket(
            **common,
            title=_v(state, "title") or "",  # empty once a resident's erasure reached it
            kind=_v(state, "kind"),
            channel=_v(state, "channel"),
            grid=st["grid"],
            status=st["v"],
            priority=_v(state, "priority") or Priority.NORMAL,
            description=_v(state, "description"),
            resident_id=_v(state, "resident_id"),
            visit_id=_v(state, "visit_id"),
            parcel_id=_v(state, "parcel_id"),
            number=_v(state, "number"),
            former_numbers=state.get("former_numbers", []),
            assignee=_v(state, "assignee"),
            submitted_by=state["created"][1],
            submitted_at=ms_to_datetime(state["created"][2]),
            due_at=ms_to_datetime(_v(state, "due_at")),
            resolved_at=_dt(st["at"].get("resolve")),
            closed_at=_dt(st["at"].get("close")),
            rating=Rating(**rating) if rating else None,
            mediator=_v(state, "mediator"),
            outcome=_v(state, "outcome"),
            notes=_notes(state),
            attachments=_attachments(state),
            parties=[Party(op_id=i[0], **{**i[6], "name": i[6].get("name") or ""}) for i in _items(state, "parties")],
            sessions=[
                MediationSession(
                    op_id=i[0],
                    held_at=ms_to_datetime(i[6]["held_at"]),
                    mediator=i[6]["mediator"],
                    summary=i[6].get("summary") or "",  # empty once a resident's erasure reached it
                    attendees=_text_list(i[6].get("attendees") or []),
                )
                for i in _items(state, "sessions")
            ],
        )
    if entity == "resident":
        redacted = sorted({f for r in state.get("redactions", []) for f in r[3]})
        return Resident(
            **common,
            name=_v(state, "name"),
            grid=_v(state, "grid"),
            address=_v(state, "address"),
            phone=_v(state, "phone"),
            flags=_v(state, "flags") or [],
            knock_every_days=_v(state, "knock_every_days"),
            birth_year=_v(state, "birth_year"),
            notes=_notes(state),
            attachments=_attachments(state),
            redacted=redacted,
        )
    if entity == "visit":
        return Visit(
            **common,
            resident_id=_v(state, "resident_id"),
            visitor=_v(state, "visitor"),
            visited_at=ms_to_datetime(_v(state, "visited_at")),
            outcome=_v(state, "outcome"),
            note=_v(state, "note"),
            ticket_id=_v(state, "ticket_id"),
            notes=_notes(state),
            attachments=_attachments(state),
        )
    if entity == "mailbox":
        return Mailbox(
            **common,
            code=_v(state, "code"),
            name=_v(state, "name"),
            grid=_v(state, "grid"),
            location=_v(state, "location"),
        )
    if entity == "parcel":
        return Parcel(
            **common,
            code=_v(state, "code"),
            grid=_v(state, "grid"),
            direction=_v(state, "direction"),
            resident_id=_v(state, "resident_id"),
            mailbox_id=_v(state, "mailbox_id"),
            summary=_v(state, "summary"),
            delivery_code_check=_v(state, "delivery_code_check"),
            attachments=_attachments(state),
            stage=state["hop"]["stage"],
            holder=state["hop"]["holder"],
            hops=[
                Hop(
                    op_id=i[0],
                    stage=i[6]["stage"],
                    actor=i[4],
                    device=i[2],
                    at=ms_to_datetime(i[5]),
                    place=i[6].get("place"),
                    confirm_code=i[6].get("confirm_code"),
                    code_checked=bool(i[6].get("code_checked")),
                    reason=i[6].get("reason"),
                    contents=i[6].get("contents"),
                    content_hash=i[6].get("content_hash"),
                )
                for i in _items(state, "hops")
            ],
        )
    return Worker(
        **common,
        name=_v(state, "name"),
        role=_v(state, "role"),
        grids=_v(state, "grids") or [],
        phone=_v(state, "phone"),
    )
