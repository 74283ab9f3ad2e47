"""Ops: the immutable records of intent that make up the log, their schemas and their validation.

An op travels and is stored as a plain JSON object::

    {"v": 2, "kind": "ticket.set", "origin": "3f9a0c1d2b4e5f60", "seq": 17, "hlc": 1902323410468864000,
     "eid": "T-3f9a0c1d2b4e5f60-3", "actor": "wang-li", "at": 1764392877123,
     "body": {"field": "title", "value": "Septic tank blocked", "replaces": ["3f9a0c1d2b4e5f60:3"]}}

``(origin, seq)`` is the op's identity; ``hlc`` its place in the total order; ``eid`` the record it is about;
``actor`` who did it and ``at`` when (the device's corrected wall time, for people to read). ``sig`` is the
signature of the op's device and ``pd``, on every op after a device's first, the link to its previous op
(see :mod:`caresync.trust.signing`; a batch may leave ``pd`` out where the op before it is in the batch
too). ``v`` is the op format version and ``kind`` selects the body schema: one pydantic schema per kind, checked
together as a discriminated union in one call per batch (TypedDict schemas: a batch of 100,000 ops validates in
about a second on two cores). An op whose kind or version this library does not know is kept, not dropped: it passes an
envelope check, is stored as *deferred*, and is folded once the library is upgraded.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired, TypeAlias, Union

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    with_config,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError, from_json, to_json
from typing_extensions import TypedDict

from caresync.core.domain import (
    Channel,
    DisputeOutcome,
    EntityType,
    GridPath,
    HopStage,
    Priority,
    ResidentFlag,
    Role,
    TicketAction,
    TicketKind,
    VisitOutcome,
)
from caresync.core.gcpause import paused_gc
from caresync.core.ids import BLOCK_NUMBER_PATTERN, NUMBER_PATTERN
from caresync.errors import InvalidOpError

__all__ = [
    "ATTACHABLE",
    "FORMAT_VERSION",
    "KNOWN_KINDS",
    "LINK_KINDS",
    "LOST_KIND",
    "MAX_BLOB_BYTES",
    "REDACTABLE_KINDS",
    "SETTABLE_FIELDS",
    "TEXT_FORMAT",
    "TEXT_KINDS",
    "AttachBody",
    "BlobId",
    "DetachBody",
    "EntityId",
    "OpDict",
    "OpIdStr",
    "ReplicaIdStr",
    "entity_type_of",
    "erased_texts",
    "field_digest",
    "format_for",
    "resident_link",
    "rewritable",
    "signer_of",
    "validate_ops",
]

#: The op format this library writes and understands completely. Format 2 changed only what a signature covers
#: (the body itself rather than a digest per value, except for the redactable kinds: :mod:`caresync.trust.signing`);
#: format 3 is signed as format 2, and may carry sealed values where format 2 held free text in clear (titles,
#: rating comments, reasons, parties' sides), which a library of format 2 would refuse as too long: it keeps a
#: format 3 op deferred instead, until it is upgraded; format 4 is signed as format 2 too, and may carry values
#: sealed to several readers (``sealed:2:``, readers' keys), which a library of format 3 would refuse. Format 5 signs
#: a digest per body value for the ops that carry the free text of tickets and visits (:data:`TEXT_KINDS`), as format
#: 1 did for every kind and every format does for the resident's own ops, so that a resident's erasure can reach that
#: text too (:func:`redact_body`). A device writes each op in the oldest format that can carry it
#: (:func:`format_for`): format 5 only for those ops (and a lost-op statement), format 4 for the rest. Formats 1 to 4
#: are still read, checked and folded.
FORMAT_VERSION = 5
#: The format from which the ops of :data:`TEXT_KINDS` are signed per value, and a lost-op statement declares its link.
TEXT_FORMAT = 5
#: The format of every op that does not need format 5 (:func:`format_for`).
_BASE_FORMAT = 4
#: The newest format whose signatures a library of format 2 to 4 can check (it keeps such ops deferred until it is
#: upgraded); the ops of later formats are left out of the pulls of a device that does not read them.
CHECKABLE_BY_OLDER = 4

_OPID_RE = r"^[0-9a-f]{16}:[1-9][0-9]{0,17}$"
ReplicaIdStr = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
OpIdStr = Annotated[str, StringConstraints(pattern=_OPID_RE)]
EntityId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{3,24}$")]
Millis = Annotated[int, Field(ge=0)]
Refs = Annotated[list[OpIdStr], Field(max_length=64)]
_SEALED_RE = re.compile(r"^sealed:[12]:[A-Za-z0-9+/]+={0,2}$")
_MAX_SEALED = 24_000


def _sealed_or(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A private field holds its plain value (checked as usual) or, once sealed, a well-formed sealed text."""
    if type(value) is str and value.startswith(("sealed:1:", "sealed:2:")):
        if len(value) > _MAX_SEALED or not _SEALED_RE.match(value):
            raise PydanticCustomError("sealed", "is not a well-formed sealed value")
        return value
    return handler(value)


#: A private field's type: its plain type, or a value sealed to the station (see :mod:`caresync.trust.signing`).
_Private = WrapValidator(_sealed_or)
#: An op's signature: base64 of the signer's Ed25519 public key (32 bytes) then the signature (64 bytes).
Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{128}$")]
#: The link to the device's previous op (:func:`caresync.trust.signing.chain_link`), on ops after its first.
Link = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
#: Digests of the values a redaction erased, by body key, so the op's signature still checks.
Redacted = Annotated[dict[str, Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]], Field(max_length=8)]
#: Text that must arrive sealed (what a courier captures at pickup is sealed on the handheld).
SealedText = Annotated[str, StringConstraints(pattern=r"^sealed:[12]:[A-Za-z0-9+/]+={0,2}$", max_length=8000)]

OpDict = dict[str, Any]
_SCALARS = (str, int, bool, type(None))

#: The op kinds whose bodies a ``resident.redact`` rewrites: their signatures cover a digest per body value.
REDACTABLE_KINDS: frozenset[str] = frozenset({"resident.attach", "resident.create", "resident.note", "resident.set"})
#: The free text of tickets and visits a resident's erasure (``resident.redact`` with ``notes``) erases, by op kind:
#: the body keys for most kinds, the fields (``body["field"]``) for ``.set``. Ops of these kinds that carry such text
#: are written in format 5, whose signature covers a digest per body value (the rating's, per key of the rating).
TEXT_KINDS: dict[str, frozenset[str]] = {
    "ticket.create": frozenset({"title", "description"}),
    "ticket.set": frozenset({"title", "description", "rating"}),
    "ticket.transition": frozenset({"reason"}),
    "ticket.note": frozenset({"text"}),
    "ticket.party": frozenset({"name", "side"}),
    "ticket.session": frozenset({"summary", "attendees"}),
    "ticket.attach": frozenset({"key", "caption"}),
    "visit.create": frozenset({"note"}),
    "visit.set": frozenset({"note"}),
    "visit.note": frozenset({"text"}),
    "visit.attach": frozenset({"key", "caption"}),
}


def format_for(kind: str, body: Mapping[str, Any]) -> int:
    """The format a device writes an op in: the oldest that can carry it, so that a replica of an older release
    still reads as much as it can (the server does not send it ops of a format it cannot check, see
    docs/protocol.md). Format 5 for an op that carries a ticket's or visit's free text (:data:`TEXT_KINDS`)."""
    texts = TEXT_KINDS.get(kind)
    if kind == LOST_KIND:  # its link is declared, not derived: a library of format 3 could not follow the chain
        return TEXT_FORMAT
    if texts is None:
        return _BASE_FORMAT
    if kind.endswith(".set"):
        return TEXT_FORMAT if body.get("field") in texts else _BASE_FORMAT
    return TEXT_FORMAT if any(body.get(key) is not None for key in texts) else _BASE_FORMAT


def rewritable(op: Mapping[str, Any]) -> bool:
    """Whether a redaction may rewrite the op's body (its signature covers a digest per value, so it still checks):
    the resident's own ops (:data:`REDACTABLE_KINDS`) and the format 5 ops of :data:`TEXT_KINDS`."""
    kind = op["kind"]
    return kind in REDACTABLE_KINDS or (op["v"] >= TEXT_FORMAT and kind in TEXT_KINDS)


def field_digest(value: Any) -> str:
    """The digest a signature covers for one body value: blake2b-128 of its canonical JSON, in hex."""
    if type(value) in _SCALARS:
        canonical = to_json(value)
    else:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def signer_of(op: Mapping[str, Any]) -> str | None:
    """The hex public key that signed ``op`` (None for an op written before signing existed)."""
    sig = op.get("sig")
    return base64.b64decode(sig)[:32].hex() if sig else None


def redact_body(kind: str, body: dict[str, Any], fields: Iterable[str], v: int = 1) -> dict[str, Any]:
    """The body of a ``kind`` op of format ``v`` written before a redaction of ``fields``: those set to None
    (``notes`` erases note texts, and the free text of the resident's tickets and visits in their format 5 ops:
    :data:`TEXT_KINDS`), each erased value's digest kept under ``redacted`` so the op's signature still checks.
    Every holder of the log applies it, replicas and the server alike; the caller picks the ops (a ticket's are
    erased when the ticket is the resident's)."""
    names = set(fields)
    if kind in TEXT_KINDS:
        trigger = "attachments" if kind.endswith(".attach") else "notes"
        return _erase_text(kind, body) if v >= TEXT_FORMAT and trigger in names else body
    if kind == "resident.create":
        erased = [key for key, value in body.items() if key in names and value is not None]
    elif kind == "resident.set" and body.get("field") in names and body.get("value") is not None:
        erased = ["value"]
    elif kind == "resident.note" and "notes" in names and body.get("text") is not None:
        erased = ["text"]
    elif kind == "resident.attach" and "attachments" in names:
        erased = [key for key in ("key", "caption") if body.get(key) is not None]
    else:
        return body
    if not erased:
        return body
    digests = dict(body.get("redacted") or {})
    digests.update((key, field_digest(body[key])) for key in erased)
    return {**{key: (None if key in erased else value) for key, value in body.items()}, "redacted": digests}


def _erase_text(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """:func:`redact_body` of a format 5 op of :data:`TEXT_KINDS`: its text values set to None; a rating keeps its
    score and loses its comment (the digest kept as ``value.comment``, see :mod:`caresync.trust.signing`)."""
    texts = TEXT_KINDS[kind]
    digests = dict(body.get("redacted") or {})
    if kind.endswith(".set"):
        field, value = body.get("field"), body.get("value")
        if field not in texts or value is None:
            return body
        if type(value) is dict:  # a rating: the score is structure, the comment is text
            if value.get("comment") is None:
                return body
            digests["value.comment"] = field_digest(value["comment"])
            return {**body, "value": {**value, "comment": None}, "redacted": digests}
        digests["value"] = field_digest(value)
        return {**body, "value": None, "redacted": digests}
    erased = [key for key in sorted(texts) if body.get(key) is not None]
    if not erased:
        return body
    digests.update((key, field_digest(body[key])) for key in erased)
    return {**{key: (None if key in erased else value) for key, value in body.items()}, "redacted": digests}


#: The kinds of op that may tie a ticket or visit to a resident (:func:`resident_link`).
LINK_KINDS: tuple[str, ...] = ("ticket.create", "ticket.party", "ticket.set", "visit.create")


def resident_link(op: Mapping[str, Any]) -> tuple[str, bool] | None:
    """The resident an op ties text to, and whether it ties its whole record (a ticket or visit created about the
    resident, or a ticket later set to be about them) or only itself (a dispute's party who is the resident):
    whose erasure reaches that text (:func:`redact_body`). None for any other op."""
    kind, body = op["kind"], op["body"]
    if kind == "ticket.set":
        value = body.get("value") if body.get("field") == "resident_id" else None
        return (value, True) if type(value) is str else None
    if kind in LINK_KINDS:
        resident = body.get("resident_id")
        return (resident, kind != "ticket.party") if type(resident) is str else None
    return None


def erasure_reach(
    links: Iterable[OpDict], erased: Iterable[str], fresh: Iterable[OpDict]
) -> tuple[set[str], set[str], list[OpDict]]:
    """What the ``links`` ops (with the text ops at hand; :func:`resident_link` keeps the ones that tie text to a
    resident) reach, when the residents ``erased`` have just been erased and ``fresh`` are the ops being taken in
    now: the residents they name (whose redactions the store then looks up), the records a new erasure reaches
    whole (whose stored text ops it then looks up), and the stored ops that are themselves the erased resident's
    text (a party who is the resident). The replicas and the server sort their ops by this one rule."""
    new = set(erased)
    fresh_ids = {id(o) for o in fresh}
    residents: set[str] = set()
    records: set[str] = set()
    stored_texts: list[OpDict] = []
    for op in links:
        found = resident_link(op)
        if found is None:
            continue
        residents.add(found[0])
        if found[0] in new and found[1]:
            records.add(op["eid"])
        elif found[0] in new and id(op) not in fresh_ids:  # a party who is the resident
            stored_texts.append(op)
    return residents, records, stored_texts


def erased_texts(
    texts: Iterable[OpDict], links: Iterable[Mapping[str, Any]], redactions: Iterable[Mapping[str, Any]]
) -> list[tuple[OpDict, dict[str, Any]]]:
    """Which of the ``texts`` ops (format 5 ops of :data:`TEXT_KINDS`) a resident's erasure reaches, with the body
    each is to have: those written before a ``resident.redact`` of a resident that ``links`` (ops of
    :data:`LINK_KINDS`; any that tied the op's record to the resident count, so a ticket once about a resident
    stays erasable by them) or the op itself (a party) ties them to. The replicas and the server look up the
    ``links`` and ``redactions`` of the ops at hand in their own stores; the rule is this one."""
    residents_of: dict[str, set[str]] = {}
    for op in links:
        link = resident_link(op)
        if link is not None and link[1]:
            residents_of.setdefault(op["eid"], set()).add(link[0])
    by_resident: dict[str, list[tuple[tuple[int, str, int], list[str]]]] = {}
    for op in redactions:
        key = (op["hlc"], op["origin"], op["seq"])
        by_resident.setdefault(op["eid"], []).append((key, op["body"]["fields"]))
    out: list[tuple[OpDict, dict[str, Any]]] = []
    for op in texts:
        if not rewritable(op) or op["kind"] not in TEXT_KINDS:
            continue
        residents = set(residents_of.get(op["eid"], ()))
        own = resident_link(op)
        if own is not None:
            residents.add(own[0])
        key = (op["hlc"], op["origin"], op["seq"])
        body = op["body"]
        for resident in sorted(residents):
            for when, fields in by_resident.get(resident, ()):
                if key < when:
                    body = redact_body(op["kind"], body, fields, op["v"])
        if body is not op["body"]:
            out.append((op, body))
    return out


def ops_from_rows(rows: Sequence[Sequence[Any]]) -> list[OpDict]:
    """Ops from stored rows ``(origin, seq, hlc, eid, kind, v, actor, at, body, sig, pd)``, ``body`` as JSON
    text, ``sig`` None for an op written before signing and ``pd`` None for a device's first op (how replicas
    and the server store them). The bodies are parsed in one call, several times faster than one by one."""
    if not rows:
        return []
    bodies = from_json("[" + ",".join(row[8] for row in rows) + "]")
    ops: list[OpDict] = [
        {
            "v": v,
            "kind": kind,
            "origin": origin,
            "seq": seq,
            "hlc": hlc,
            "eid": eid,
            "actor": actor,
            "at": at,
            "body": b,
            "sig": sig,
            "pd": pd,
        }
        for (origin, seq, hlc, eid, kind, v, actor, at, _, sig, pd), b in zip(rows, bodies, strict=True)
    ]
    for op in ops:
        if op["sig"] is None:
            del op["sig"]
        if op["pd"] is None:
            del op["pd"]
    return ops


def entity_type_of(kind: str) -> str:
    """The record type an op kind applies to (``ticket.set`` → ``"ticket"``)."""
    return kind[: kind.index(".")]


_FORBID = ConfigDict(extra="forbid")


def _choice(enum: type[StrEnum]) -> Any:
    """The enum's values as a Literal: validates several times faster than the enum, and stays a plain str."""
    return Literal[tuple(member.value for member in enum)]


if TYPE_CHECKING:
    KindChoice: TypeAlias = str
    ChannelChoice: TypeAlias = str
    PriorityChoice: TypeAlias = str
    RoleChoice: TypeAlias = str
    FlagChoice: TypeAlias = str
    VisitOutcomeChoice: TypeAlias = str
    StageChoice: TypeAlias = str
    ActionChoice: TypeAlias = str
    OutcomeChoice: TypeAlias = str
else:
    KindChoice, ChannelChoice, PriorityChoice = _choice(TicketKind), _choice(Channel), _choice(Priority)
    RoleChoice, FlagChoice, VisitOutcomeChoice = _choice(Role), _choice(ResidentFlag), _choice(VisitOutcome)
    StageChoice, ActionChoice, OutcomeChoice = _choice(HopStage), _choice(TicketAction), _choice(DisputeOutcome)


# --- bodies ---------------------------------------------------------------------------------------------


@with_config(_FORBID)
class Rating(TypedDict):
    """A resident's rating of a returned request: 1 to 5, with an optional comment."""

    score: Annotated[int, Field(ge=1, le=5)]
    comment: NotRequired[Annotated[Text, _Private] | None]


@with_config(_FORBID)
class ResidentCreate(TypedDict):
    name: Annotated[Name, _Private] | None  # None only once erased by a redaction
    grid: GridPath
    address: NotRequired[Annotated[ShortText, _Private] | None]
    phone: NotRequired[Annotated[Phone, _Private] | None]
    flags: NotRequired[list[FlagChoice]]
    knock_every_days: NotRequired[Annotated[int, Field(ge=1, le=365)] | None]
    birth_year: NotRequired[Annotated[int, Field(ge=1890, le=2100)] | None]
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class WorkerCreate(TypedDict):
    name: Name
    role: RoleChoice
    grids: NotRequired[list[GridPath]]
    phone: NotRequired[Phone | None]


@with_config(_FORBID)
class TicketCreate(TypedDict):
    title: Annotated[ShortText, _Private] | None  # None only once erased by a redaction (format 5)
    kind: KindChoice
    channel: ChannelChoice
    grid: GridPath
    due_at: Millis
    priority: NotRequired[PriorityChoice]
    description: NotRequired[Annotated[Text, _Private] | None]
    resident_id: NotRequired[EntityId | None]
    visit_id: NotRequired[EntityId | None]
    parcel_id: NotRequired[EntityId | None]
    number: NotRequired[Annotated[str, StringConstraints(pattern=NUMBER_PATTERN)] | None]  # see caresync.store.numbers
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class TicketNumberBody(TypedDict):
    """The short number a device gives one of its own tickets that was created with a provisional number, once
    the server has reserved a block for it (see caresync.store.numbers). Folded only from the ticket's own device."""

    number: Annotated[str, StringConstraints(pattern=BLOCK_NUMBER_PATTERN)]


@with_config(_FORBID)
class VisitCreate(TypedDict):
    resident_id: EntityId
    visitor: Name
    visited_at: Millis
    outcome: VisitOutcomeChoice
    note: NotRequired[Annotated[Text, _Private] | None]
    ticket_id: NotRequired[EntityId | None]
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class MailboxCreate(TypedDict):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")]
    name: Name
    grid: GridPath
    location: NotRequired[ShortText | None]


#: A delivery code's salt and hash (caresync.trust.codes.DELIVERY_CODE_CHECK_PATTERN); one value, so two stations
#: setting a code at once never mix one's salt with the other's hash.
DeliveryCodeCheck = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}:[0-9a-f]{64}$")]


@with_config(_FORBID)
class ParcelCreate(TypedDict):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")]
    grid: GridPath
    direction: Literal["to_station", "to_resident"]
    resident_id: NotRequired[EntityId | None]
    mailbox_id: NotRequired[EntityId | None]
    summary: NotRequired[Annotated[ShortText, _Private] | None]
    delivery_code_check: NotRequired[DeliveryCodeCheck | None]
    """The salted hash of the resident's delivery code (caresync.trust.codes.delivery_code_check), never the code."""


@with_config(_FORBID)
class TicketTransition(TypedDict):
    action: ActionChoice
    follows: Refs
    reason: NotRequired[Annotated[Text, _Private] | None]
    to_grid: NotRequired[GridPath | None]
    assignee: NotRequired[EntityId | None]
    assignee_replaces: NotRequired[Refs]
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class NoteBody(TypedDict):
    text: Annotated[Text, _Private] | None  # None only once erased by a redaction
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class PartyBody(TypedDict):
    name: Annotated[Name, _Private] | None  # None only once erased by a redaction (format 5)
    side: NotRequired[Annotated[ShortText, _Private] | None]
    resident_id: NotRequired[EntityId | None]
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class SessionBody(TypedDict):
    held_at: Millis
    mediator: Name
    summary: Annotated[Text, _Private] | None  # None only once erased by a redaction (format 5)
    attendees: NotRequired[Annotated[list[Name], _Private] | None]
    redacted: NotRequired[Redacted]


@with_config(_FORBID)
class HopBody(TypedDict):
    stage: StageChoice
    follows: Refs
    place: NotRequired[ShortText | None]
    confirm_code: NotRequired[Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{4,12}$")] | None]
    """The code the resident gave, kept only for a parcel with no delivery code set (unchecked)."""
    code_checked: NotRequired[bool | None]
    """True when the resident's code was checked against the parcel's delivery code (the code is not kept)."""
    reason: NotRequired[Annotated[Text, _Private] | None]
    contents: NotRequired[SealedText | None]
    """What the resident asks for, sealed to the station at capture (never plaintext: see caresync.trust.keys)."""
    content_hash: NotRequired[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")] | None]
    """The salted hash of the sealed contents, so the station can prove them intact."""


#: A blob's name (:mod:`caresync.trust.blobs`): 64 hex digits, a hash of its sealed bytes' chunk hashes.
BlobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: The largest blob an attach op may name (the server's own limit is usually lower).
MAX_BLOB_BYTES = 1 << 30
_BlobSize = Annotated[int, Field(ge=1, le=MAX_BLOB_BYTES)]
#: What an attachment is: a photo (made small, with a thumbnail), a signature (an image), a document (as it is).
AttachmentKindChoice = Literal["photo", "signature", "document"]


@with_config(_FORBID)
class AttachBody(TypedDict):
    """An attachment on a record: a sealed blob named by its hash, and the key that opens it (private).

    ``on`` names the part of the record it belongs to, when not the record as a whole: a mediation session's
    or a custody hop's op id. ``key`` and ``caption`` are None only once erased by a redaction."""

    kind: AttachmentKindChoice
    blob: BlobId
    size: _BlobSize
    media: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,80}$")]
    key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$"), _Private] | None
    caption: NotRequired[Annotated[ShortText, _Private] | None]
    thumb: NotRequired[BlobId | None]
    thumb_size: NotRequired[_BlobSize | None]
    on: NotRequired[OpIdStr | None]
    redacted: NotRequired[Redacted]


#: The kind of a device's signed statement that its own op of that seq is lost (damaged on its disk before it was
#: sent): it takes the lost op's place in the device's chain, so that the ops after it can be sent and checked.
LOST_KIND = "log.lost"


@with_config(_FORBID)
class LostBody(TypedDict):
    """Op ``origin:seq`` is lost: ``link`` is the link the lost op had (the one the device's next op signed), which
    stands for this op's own in the chain (:func:`caresync.trust.signing.chain_link`); ``kind`` and ``eid`` say what
    the lost op was, where the damaged copy still showed it. Folded into no record."""

    link: Link
    kind: NotRequired[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}\.[a-z_]{1,32}$")] | None]
    eid: NotRequired[EntityId | None]


@with_config(_FORBID)
class DetachBody(TypedDict):
    """Removes attachments: the attach ops it saw (observed-remove, so an attachment added concurrently stays)."""

    removes: Annotated[list[OpIdStr], Field(min_length=1, max_length=64)]


#: The record types that carry attachments (``<record>.attach`` and ``<record>.detach`` ops).
ATTACHABLE: tuple[EntityType, ...] = (EntityType.RESIDENT, EntityType.TICKET, EntityType.VISIT, EntityType.PARCEL)

#: Fields that ``<entity>.set`` ops may change, with the type each value must have.
SETTABLE_FIELDS: dict[EntityType, dict[str, Any]] = {
    EntityType.RESIDENT: {
        "name": Annotated[Name, _Private] | None,
        "grid": GridPath,
        "address": Annotated[ShortText, _Private] | None,
        "phone": Annotated[Phone, _Private] | None,
        "flags": list[FlagChoice],
        "knock_every_days": Annotated[int, Field(ge=1, le=365)] | None,
        "birth_year": Annotated[int, Field(ge=1890, le=2100)] | None,
        "deleted": bool,
    },
    EntityType.WORKER: {
        "name": Name,
        "role": RoleChoice,
        "grids": list[GridPath],
        "phone": Phone | None,
        "deleted": bool,
    },
    EntityType.TICKET: {
        "title": Annotated[ShortText, _Private] | None,  # None only once erased by a redaction (format 5)
        "kind": KindChoice,
        "channel": ChannelChoice,
        "description": Annotated[Text, _Private] | None,
        "resident_id": EntityId | None,
        "priority": PriorityChoice,
        "due_at": Millis,
        "assignee": EntityId | None,
        "rating": Rating | None,
        "mediator": Name | None,
        "outcome": OutcomeChoice | None,
        "deleted": bool,
    },
    EntityType.VISIT: {
        "visitor": Name,
        "visited_at": Millis,
        "outcome": VisitOutcomeChoice,
        "note": Annotated[Text, _Private] | None,
        "ticket_id": EntityId | None,
        "deleted": bool,
    },
    EntityType.MAILBOX: {
        "name": Name,
        "grid": GridPath,
        "location": ShortText | None,
        "deleted": bool,
    },
    EntityType.PARCEL: {
        "grid": GridPath,
        "resident_id": EntityId | None,
        "mailbox_id": EntityId | None,
        "summary": Annotated[ShortText, _Private] | None,
        "delivery_code_check": DeliveryCodeCheck | None,
        "deleted": bool,
    },
}


@with_config(_FORBID)
class RedactBody(TypedDict):
    """Erases a resident's personal fields (and notes, and attachments) written before it."""

    fields: Annotated[
        list[Literal["name", "address", "phone", "birth_year", "notes", "attachments"]], Field(min_length=1)
    ]
    reason: Annotated[Text, _Private]


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    factory: Any = TypedDict  # built at import time from SETTABLE_FIELDS, so not a literal mypy can check
    cls = factory(name, fields)
    cls.__pydantic_config__ = _FORBID
    return cls


#: The record types whose ``.set`` ops a redaction may rewrite (the resident's; tickets' and visits' texts).
_ERASABLE_SETS = (EntityType.RESIDENT, EntityType.TICKET, EntityType.VISIT)


def _set_body(entity: EntityType) -> Any:
    variants = [
        _typed_dict(
            f"{entity.value.title()}Set_{field}",
            {"field": Literal[field], "value": annotation, "replaces": Refs}
            | ({"redacted": NotRequired[Redacted]} if entity in _ERASABLE_SETS else {}),
        )
        for field, annotation in SETTABLE_FIELDS[entity].items()
    ]
    return Annotated[Union[tuple(variants)], Discriminator("field")]  # noqa: UP007


_BODIES: dict[str, Any] = {
    "resident.create": ResidentCreate,
    "resident.note": NoteBody,
    "resident.redact": RedactBody,
    "worker.create": WorkerCreate,
    "ticket.create": TicketCreate,
    "ticket.transition": TicketTransition,
    "ticket.number": TicketNumberBody,
    "ticket.note": NoteBody,
    "ticket.party": PartyBody,
    "ticket.session": SessionBody,
    "visit.create": VisitCreate,
    "visit.note": NoteBody,
    "mailbox.create": MailboxCreate,
    "parcel.create": ParcelCreate,
    "parcel.hop": HopBody,
    LOST_KIND: LostBody,
}
for _entity in EntityType:
    _BODIES[f"{_entity.value}.set"] = _set_body(_entity)
for _entity in ATTACHABLE:
    _BODIES[f"{_entity.value}.attach"] = AttachBody
    _BODIES[f"{_entity.value}.detach"] = DetachBody

#: Every op kind this library can fold.
KNOWN_KINDS: frozenset[str] = frozenset(_BODIES)


def _envelope(kind_type: Any, body_type: Any, name: str) -> Any:
    return _typed_dict(
        name,
        {
            "v": Annotated[int, Field(ge=1)],
            "kind": kind_type,
            "origin": ReplicaIdStr,
            "seq": Annotated[int, Field(ge=1, lt=2**62)],
            "hlc": Annotated[int, Field(ge=0, lt=2**63)],
            "eid": EntityId,
            "actor": Name,
            "at": Millis,
            "body": body_type,
            "sig": NotRequired[Signature],  # checked by caresync.trust.signing.verify_ops
            "pd": NotRequired[Link],  # checked (and filled in where a batch left it out) by verify_ops
        },
    )


_OP_VARIANTS = [
    _envelope(Literal[kind], body, f"Op_{kind.replace('.', '_')}") for kind, body in sorted(_BODIES.items())
]
_KNOWN_OP: Any = Annotated[Union[tuple(_OP_VARIANTS)], Discriminator("kind")]  # noqa: UP007
_UNKNOWN_OP: Any = _envelope(
    Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}\.[a-z_]{1,32}$")], dict[str, Any], "UnknownOp"
)


@functools.cache
def _adapter(known: bool) -> TypeAdapter[list[OpDict]]:
    """The validator of a list of ops of the known kinds (or of any kind), built on first use: building it takes
    about a tenth of a second, which a program that only reads (``caresync ticket list``) never needs to pay."""
    return TypeAdapter(list[_KNOWN_OP] if known else list[_UNKNOWN_OP])


def _problems(exc: PydanticValidationError, raw: Sequence[Any], index_map: Sequence[int]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False)[:10]:
        loc = list(err["loc"])
        where = index_map[int(loc[0])] if loc and isinstance(loc[0], int) else 0
        rest = [str(p) for p in loc[1:] if not str(p).startswith(("Op_", "function-"))]
        # drop the union tags pydantic adds (kind / field names) so the path reads as the op's own keys
        rest = [p for p in rest if not _is_tag(p)]
        item = raw[where] if where < len(raw) else None
        label = f"op #{where}"
        if isinstance(item, Mapping):
            label += f" ({item.get('kind', '?')} {item.get('origin', '?')}:{item.get('seq', '?')})"
        out.append((f"{label} {'.'.join(rest) or '(op)'}", err["msg"]))
    return out


_TAG_RE = re.compile(r"^[a-z_]+\.[a-z_]+$|^[A-Z][a-z]+Set_")


def _is_tag(part: str) -> bool:
    return bool(_TAG_RE.match(part))


def validate_ops(raw: Iterable[Any]) -> tuple[list[OpDict], list[OpDict]]:
    """Validates a batch of ops as they arrived (plain JSON objects).

    Returns:
        ``(known, deferred)``: ops this library can fold, and well-formed ops of a kind or format version it
        does not know yet, which are stored and folded after an upgrade.

    Raises:
        InvalidOpError: naming the first problems found; no op of the batch may be applied.
    """
    with paused_gc():
        return _validate_ops(raw)


def _validate_ops(raw: Iterable[Any]) -> tuple[list[OpDict], list[OpDict]]:
    items = raw if isinstance(raw, list) else list(raw)
    known_idx: list[int] = []
    other_idx: list[int] = []
    known_kinds, version_max = KNOWN_KINDS, FORMAT_VERSION
    for i, item in enumerate(items):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise InvalidOpError("An op must be a JSON object", [(f"op #{i}", f"got {type(item).__name__}")])
        kind, version = item.get("kind"), item.get("v")
        if type(kind) is str and kind in known_kinds and (type(version) is not int or version <= version_max):
            known_idx.append(i)
        else:
            other_idx.append(i)
    try:
        known = _adapter(True).validate_python(items if not other_idx else [items[i] for i in known_idx])
    except PydanticValidationError as exc:
        raise InvalidOpError("Refused a batch of ops", _problems(exc, items, known_idx)) from exc
    try:
        deferred = _adapter(False).validate_python([items[i] for i in other_idx])
    except PydanticValidationError as exc:
        raise InvalidOpError("Refused a batch of ops", _problems(exc, items, other_idx)) from exc
    return known, deferred
