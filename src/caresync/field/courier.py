"""A courier's work on a handheld: the route, pick-ups, hand-ins, deliveries, returns and outdoor reports.

Every rule of the courier's day lives here, so the ``caresync-courier`` command (and any other program) only
parses, calls and renders:

* a parcel is found by the code on its envelope; one picked up from a mailbox that nobody registered yet is
  registered on the spot (the resident dropped it in the lane);
* what the resident asks for is sealed to the station at capture (:func:`caresync.trust.keys.seal_value`): the
  handheld keeps only the sealed text and its content hash, so a lost phone leaks nothing;
* custody passes at the station only when the station receipts the hand-in too (:mod:`caresync.field.custody`);
* a delivery needs the resident's confirmation code from the slip: when the station set a delivery code (kept only
  as a salted hash, :func:`caresync.trust.codes.delivery_code_check`), a wrong code is refused and the hop keeps
  only "checked", never the code; a parcel with no code set takes any well-formed code, recorded as given;
* a local action that makes no sense now is refused with a :class:`CourierError` and records nothing.

Each :class:`CourierError` carries a message key and fields, so a program can show it in Chinese or English
(:data:`ERRORS`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caresync.core.domain import COURIER_REPORT_KINDS, HopStage, TicketKind, hop_fits
from caresync.core.model import Parcel, Ticket, ms_to_datetime
from caresync.errors import IntentError, NotFoundError
from caresync.field.custody import anomalies, chain, handover_pending
from caresync.field.i18n import Catalog
from caresync.trust.codes import delivery_code_matches
from caresync.trust.keys import seal_value

if TYPE_CHECKING:
    from caresync.core.summaries import ParcelSummary
    from caresync.replica import Replica

__all__ = [
    "ERRORS",
    "REPORT_KINDS",
    "REPORT_TITLES",
    "ROUTE_DUE_HOURS",
    "STATION_KEY_META",
    "CourierError",
    "CourierStatus",
    "RouteParcel",
    "RouteStop",
    "confirm_handover",
    "deliver",
    "find_parcel",
    "handover",
    "next_stages",
    "pickup",
    "record_hop",
    "record_sync",
    "remember_station_key",
    "report",
    "return_parcel",
    "route",
    "station_public_key",
    "status",
]

#: Where a replica keeps the station's X25519 public key (hex), learnt at enrolment.
STATION_KEY_META = "station_public_key"
#: A parcel waiting longer than this since its last hand-over is due: it comes first on the route.
ROUTE_DUE_HOURS = 24
#: What an outdoor worker may report: an early warning, an emergency, what residents are saying.
REPORT_KINDS = COURIER_REPORT_KINDS

ERRORS = Catalog(
    {
        "no_parcel": {
            "en": "No parcel with code {code} on this handheld. Check the code on the envelope, or sync to fetch it.",
            "zh": "本机没有编号为 {code} 的邮件。请核对信封上的编号，或先同步。",
        },
        "no_mailbox": {
            "en": "No mailbox with code {mailbox} on this handheld. Check the code on the mailbox, or sync to fetch "
            "the station's mailboxes.",
            "zh": "本机没有编号为 {mailbox} 的邮筒。请核对邮筒上的编号，或先同步以获取驿站的邮筒。",
        },
        "no_station_key": {
            "en": "This handheld does not know the station's key yet, so it cannot seal what the resident asks for. "
            "Enrol or sync first, or pick up without --contents.",
            "zh": "本机还没有驿站的密钥，无法封存居民的诉求内容。请先登记或同步，或不带 --contents 取件。",
        },
        "already_taken": {
            "en": "Parcel {code} is already {stage} by {holder}; it is not waiting to be picked up. If you hold it, "
            "tell the station.",
            "zh": "邮件 {code} 已由 {holder} {stage}，不在待取状态。如果它在你手上，请告诉驿站。",
        },
        "not_at_mailbox": {
            "en": "Parcel {code} is {stage}; only a parcel dropped in a mailbox (or returned) is picked up there.",
            "zh": "邮件 {code} 当前状态为 {stage}；只有投进邮筒（或被退回）的邮件才能在邮筒取件。",
        },
        "not_at_station": {
            "en": "Parcel {code} is {stage}, not at the station: only a parcel the station has receipted can be "
            "taken out for delivery.",
            "zh": "邮件 {code} 当前状态为 {stage}，不在驿站：只有驿站已签收的邮件才能带出派送。",
        },
        "awaiting_receipt": {
            "en": "Parcel {code} was handed in by {holder} and waits for the station to confirm it; custody stays "
            "with {holder} until then.",
            "zh": "邮件 {code} 已由 {holder} 交站，正在等驿站确认；确认前仍由 {holder} 保管。",
        },
        "not_yours": {
            "en": "Parcel {code} is {stage} by {holder}, not by you ({actor}); only its holder can {action} it.",
            "zh": "邮件 {code} 由 {holder} {stage}，不是你（{actor}）；只有持有人才能{action}。",
        },
        "no_claim": {
            "en": "Parcel {code} has no courier hand-in waiting for a receipt (it is {stage}).",
            "zh": "邮件 {code} 没有等待签收的交站记录（当前状态为 {stage}）。",
        },
        "own_claim": {
            "en": "Parcel {code} was handed in on this very device; the station must receipt it on its own device.",
            "zh": "邮件 {code} 是在本机交站的；必须由驿站在自己的设备上签收。",
        },
        "wrong_code": {
            "en": "{code_given} is not the delivery code for parcel {code}. Ask the resident for the code on their "
            "slip; nothing was recorded.",
            "zh": "{code_given} 不是邮件 {code} 的取件确认码。请向居民核对回执上的确认码；本次未作任何记录。",
        },
        "use_receipt": {
            "en": "Parcel {code} was handed in by {holder} and waits for the station's receipt: receipt it with "
            "caresync parcel receipt {code} (nothing was recorded).",
            "zh": "邮件 {code} 已由 {holder} 交站，正在等驿站签收：请用 caresync parcel receipt {code} 签收"
            "（本次未作任何记录）。",
        },
        "hop_out_of_order": {
            "en": "Parcel {code} is {stage}; {next} does not follow from that (it can be {allowed}). Nothing was "
            "recorded; if it really happened, give --anyway: it is recorded and listed in caresync parcel anomalies.",
            "zh": "邮件 {code} 当前状态为 {stage}，不能接着记为 {next}（可以记为：{allowed}）。本次未作任何记录；"
            "如果确实如此，请加 --anyway：会照实记录，并列入 caresync parcel anomalies。",
        },
        "return_reason": {
            "en": "Say why parcel {code} comes back: --reason TEXT (nothing was recorded).",
            "zh": "请说明邮件 {code} 退回的原因：--reason 原因（本次未作任何记录）。",
        },
        "bad_report_kind": {
            "en": "{kind} is not a kind of report; use early_warning, emergency or sentiment.",
            "zh": "{kind} 不是可上报的类型；请用 early_warning（异常预警）、emergency（突发事件）"
            "或 sentiment（社情民意）。",
        },
        "empty_report": {
            "en": "Say what you saw: the report text is empty.",
            "zh": "请写下你看到的情况：上报内容为空。",
        },
    }
)


class CourierError(IntentError):
    """A courier's action that makes no sense now; nothing was recorded. ``key`` and ``fields`` name the
    message in :data:`ERRORS`, so it can be shown in Chinese or English."""

    code = "courier_refused"

    def __init__(self, key: str, **fields: Any) -> None:
        super().__init__(ERRORS(key, "en", **fields))
        self.key = key
        self.fields = fields

    def in_language(self, lang: str) -> str:
        """The message in ``lang`` (``"zh"`` or ``"en"``)."""
        return ERRORS(str(self.key), lang, **self.fields)


# --- the station's key ------------------------------------------------------------------------------------


def station_public_key(replica: Replica) -> bytes | None:
    """The station's X25519 public key, when this replica knows it (from enrolment)."""
    return replica.station_public_key


def remember_station_key(replica: Replica, public_key: bytes) -> None:
    """Stores the station's public key (32 bytes), so captured contents are sealed to it."""
    replica.set_station_public_key(public_key)


# --- parcels ----------------------------------------------------------------------------------------------


def find_parcel(replica: Replica, code: str) -> Parcel:
    """The parcel with this envelope code (or record id). Raises CourierError ``no_parcel``."""
    found = replica.parcels.by_code(code)
    if found is None and code.startswith("P-"):
        try:
            found = replica.parcels.get(code)
        except NotFoundError:
            found = None
    if found is None:
        raise CourierError("no_parcel", code=code)
    return found


def _stage(parcel: Parcel) -> str:
    return parcel.stage.value if parcel.stage is not None else "registered"


def pickup(
    replica: Replica,
    code: str,
    *,
    mailbox: str | None = None,
    contents: str | None = None,
    actor: str | None = None,
) -> Parcel:
    """The courier takes a parcel: from a mailbox (``mailbox`` given: ``picked_up``), or at the station for
    delivery (``out_for_delivery``, once the station receipted the hand-in or registered it for the door).

    A parcel picked up from a mailbox that is not registered yet is registered first (in the mailbox's grid).
    ``contents`` (what the resident asks for) is sealed to the station before it is stored.

    Raises:
        CourierError: unknown mailbox or parcel, a parcel someone else holds, no station key to seal with.
    """
    who = actor or replica.actor
    sealed: tuple[str, str] | None = None
    if contents is not None:
        key = station_public_key(replica)
        if key is None:
            raise CourierError("no_station_key")
        sealed = seal_value(key, contents)
    if mailbox is not None:
        box = replica.mailboxes.by_code(mailbox)
        if box is None:
            raise CourierError("no_mailbox", mailbox=mailbox)
        parcel = replica.parcels.by_code(code)
        with replica.batch():
            if parcel is None:
                parcel = replica.parcels.register(code=code, grid=box.grid, mailbox_id=box.id, actor=who)
            elif parcel.stage not in (None, HopStage.DROPPED, HopStage.RETURNED):
                if parcel.stage in (HopStage.PICKED_UP, HopStage.OUT_FOR_DELIVERY):
                    raise CourierError("already_taken", code=code, stage=_stage(parcel), holder=parcel.holder)
                raise CourierError("not_at_mailbox", code=code, stage=_stage(parcel))
            return replica.parcels.hop(
                parcel.id,
                "picked_up",
                place=box.code,
                contents=sealed[0] if sealed else None,
                content_hash=sealed[1] if sealed else None,
                actor=who,
            )
    parcel = find_parcel(replica, code)
    if handover_pending(parcel):
        raise CourierError("awaiting_receipt", code=code, holder=parcel.holder)
    at_station = parcel.stage is HopStage.HANDED_IN or (parcel.stage is None and parcel.direction == "to_resident")
    if not at_station:
        if parcel.stage in (HopStage.PICKED_UP, HopStage.OUT_FOR_DELIVERY):
            raise CourierError("already_taken", code=code, stage=_stage(parcel), holder=parcel.holder)
        raise CourierError("not_at_station", code=code, stage=_stage(parcel))
    return replica.parcels.hop(
        parcel.id,
        "out_for_delivery",
        place="station",
        contents=sealed[0] if sealed else None,
        content_hash=sealed[1] if sealed else None,
        actor=who,
    )


def _held_by(replica: Replica, code: str, stages: tuple[HopStage, ...], action: str, who: str) -> Parcel:
    parcel = find_parcel(replica, code)
    if parcel.stage not in stages or parcel.holder != who:
        holder = parcel.holder or "-"
        raise CourierError("not_yours", code=code, stage=_stage(parcel), holder=holder, actor=who, action=action)
    return parcel


def handover(replica: Replica, code: str, *, actor: str | None = None) -> Parcel:
    """The courier hands a picked-up parcel in at the station (their claim). Custody passes once the station
    receipts it (:func:`confirm_handover`); until then the courier still holds it.

    Raises:
        CourierError: unknown parcel, or one this courier does not hold as picked up.
    """
    who = actor or replica.actor
    parcel = _held_by(replica, code, (HopStage.PICKED_UP,), "handover", who)
    return replica.parcels.hop(parcel.id, "handed_in", place="station", actor=who)


def confirm_handover(replica: Replica, code: str, *, actor: str | None = None) -> Parcel:
    """The station receipts a courier's hand-in (on a station device): custody passes to the station.

    Raises:
        CourierError: no hand-in waits for a receipt, or it was made on this same device.
    """
    parcel = find_parcel(replica, code)
    steps = chain(parcel)
    if not steps or steps[-1].role != "claim":
        raise CourierError("no_claim", code=code, stage=_stage(parcel))
    if steps[-1].device == replica.id:
        raise CourierError("own_claim", code=code)
    return replica.parcels.hop(parcel.id, "handed_in", place="station", reason="receipted", actor=actor)


def deliver(
    replica: Replica,
    code: str,
    *,
    confirm_code: str,
    actor: str | None = None,
    photo: bytes | str | Path | None = None,
) -> Parcel:
    """The courier hands the parcel to the resident, who gives the confirmation code from the slip; ``photo`` (a
    picture of the parcel handed over at the door) is attached to that hop, sealed, in the same transaction.

    When the parcel has a delivery code set, ``confirm_code`` must be that code; the hop then records only that
    it was checked. A parcel with no delivery code keeps the old rule: any well-formed code, kept as given.

    Raises:
        CourierError: unknown parcel, one this courier has not taken out for delivery, or a wrong code
            (``wrong_code``: nothing is recorded).
        InvalidInputError: the confirmation code is missing or malformed, or the photo is not an image.
    """
    who = actor or replica.actor
    parcel = _held_by(replica, code, (HopStage.OUT_FOR_DELIVERY,), "deliver", who)
    check = parcel.delivery_code_check
    if check is not None and not delivery_code_matches(check, confirm_code):
        raise CourierError("wrong_code", code=parcel.code, code_given=confirm_code)
    with replica.batch():
        delivered = replica.parcels.hop(parcel.id, "delivered", confirm_code=confirm_code, actor=who)
        if photo is None:
            return delivered
        replica.attachments.add(parcel.id, photo, on=delivered.hops[-1].op_id, actor=who)
    return replica.parcels.get(parcel.id)


def next_stages(parcel: Parcel) -> list[HopStage]:
    """The hand-overs that may follow ``parcel``'s last one (:func:`caresync.core.domain.hop_fits`)."""
    previous = parcel.stage.value if parcel.stage is not None else ""
    door = parcel.direction == "to_resident"
    return [s for s in HopStage if hop_fits(previous, s.value, to_resident=door)]


def record_hop(
    replica: Replica,
    code: str,
    stage: HopStage | str,
    *,
    place: str | None = None,
    reason: str | None = None,
    confirm_code: str | None = None,
    anyway: bool = False,
    actor: str | None = None,
) -> Parcel:
    """The station records a hand-over it made or saw: a clerk taking a parcel to a door himself
    (``out_for_delivery``, then ``delivered`` with the resident's code), a parcel brought back (``returned``, with
    a reason), a resident dropping an envelope at the desk (``dropped``), or a hop a courier could not record.

    A hop that does not follow the parcel's last one is refused (nothing recorded) unless ``anyway``: then it is
    recorded as it happened and shows in :func:`caresync.field.custody.anomalies`. A courier's hand-in waiting
    for its receipt is receipted with :func:`confirm_handover`, not here.

    Raises:
        CourierError: unknown parcel (``no_parcel``), a hand-in to receipt (``use_receipt``), a hop out of order
            (``hop_out_of_order``), a return without a reason (``return_reason``), a wrong delivery code
            (``wrong_code``).
        InvalidInputError: a delivery without a confirmation code, or a malformed one.
    """
    stage = HopStage(stage)
    parcel = find_parcel(replica, code)
    if stage is HopStage.HANDED_IN and handover_pending(parcel):
        raise CourierError("use_receipt", code=parcel.code, holder=parcel.holder or "-")
    if stage is HopStage.RETURNED and not (reason or "").strip():
        raise CourierError("return_reason", code=parcel.code)
    allowed = next_stages(parcel)
    if stage not in allowed and not anyway:
        raise CourierError(
            "hop_out_of_order",
            code=parcel.code,
            stage=_stage(parcel),
            next=stage.value,
            allowed=", ".join(s.value for s in allowed) or "-",
        )
    check = parcel.delivery_code_check
    if (
        stage is HopStage.DELIVERED
        and confirm_code
        and check is not None
        and not delivery_code_matches(check, confirm_code)
    ):
        raise CourierError("wrong_code", code=parcel.code, code_given=confirm_code)
    return replica.parcels.hop(
        parcel.id, stage.value, place=place, reason=reason, confirm_code=confirm_code, actor=actor or replica.actor
    )


def return_parcel(replica: Replica, code: str, *, reason: str, actor: str | None = None) -> Parcel:
    """The courier could not deliver or hand in the parcel and brings it back, saying why.

    Raises:
        CourierError: unknown parcel, or one this courier does not hold.
    """
    who = actor or replica.actor
    parcel = _held_by(replica, code, (HopStage.PICKED_UP, HopStage.OUT_FOR_DELIVERY), "return", who)
    return replica.parcels.hop(parcel.id, "returned", reason=reason, actor=who)


#: A report's title by kind, built from structure only: what the outdoor worker said goes in the description,
#: which is sealed (a title copied from the text would carry it in clear).
REPORT_TITLES = {
    "early_warning": "Outdoor report: early warning in {grid}",
    "emergency": "Outdoor report: emergency in {grid}",
    "sentiment": "Outdoor report: what residents are saying in {grid}",
}


def report(
    replica: Replica,
    kind: str,
    text: str,
    *,
    grid: str,
    actor: str | None = None,
    titles: Mapping[str, str] | None = None,
) -> Ticket:
    """An outdoor worker's report (early warning, emergency, what residents are saying), as a ticket.

    The text is the ticket's description, sealed to the station on this handheld; the title is built from the
    kind and the grid (``titles``, by kind, formatted with ``{grid}``: the handheld passes its language).

    Raises:
        CourierError: not a kind of report, or no text. InvalidInputError: the grid is not a grid path.
    """
    if kind not in REPORT_KINDS:
        raise CourierError("bad_report_kind", kind=kind)
    text = text.strip()
    if not text:
        raise CourierError("empty_report")
    title = {**REPORT_TITLES, **(titles or {})}[kind].format(grid=grid)
    return replica.tickets.submit(
        title=title,
        kind=TicketKind(kind).value,
        channel="outdoor_report",
        grid=grid,
        description=text,
        priority="high" if kind == "emergency" else "normal",
        actor=actor,
    )


# --- the route --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteParcel:
    """A parcel on the route: its code, stage and how long it has waited since its last hand-over."""

    id: str
    code: str
    stage: str
    since: datetime
    waited_hours: float
    due: bool


@dataclass(frozen=True)
class RouteStop:
    """One stop: ``pickup`` at a mailbox, ``collect`` at the station (parcels for residents' doors), or
    ``deliver`` in a building; its parcels oldest first."""

    action: str
    place: str
    """The mailbox code, or the building's grid path."""
    name: str
    grid: str
    parcels: list[RouteParcel] = field(default_factory=list)

    @property
    def due(self) -> bool:
        """True when a parcel at this stop has waited past :data:`ROUTE_DUE_HOURS`."""
        return any(p.due for p in self.parcels)


def _summary_at_station(replica: Replica, parcel: ParcelSummary) -> bool:
    """True when the station holds the parcel: registered there, or a hand-in it receipted (the whole record is
    read only for a hand-in, to see the receipt)."""
    if parcel.stage is None:
        return True
    return parcel.stage == HopStage.HANDED_IN and not handover_pending(replica.parcels.get(parcel.id))


def route(replica: Replica, *, now_ms: int | None = None, actor: str | None = None) -> list[RouteStop]:
    """The parcels to pick up (by mailbox), to collect at the station for residents' doors, and to deliver (by
    building), stops with due parcels first, then the longest-waiting."""
    who = actor or replica.actor
    now = replica.clock.physical_ms() if now_ms is None else now_ms
    boxes = {m.id: m for m in replica.mailboxes.list()}
    stops: dict[tuple[str, str], RouteStop] = {}
    waits: dict[tuple[str, str], list[tuple[int, RouteParcel]]] = defaultdict(list)
    for parcel in replica.parcels.summaries():  # what a route shows, from the columns: no record is built
        if parcel.stage in (None, HopStage.DROPPED) and parcel.direction == "to_station" and parcel.mailbox_id:
            box = boxes.get(parcel.mailbox_id)
            key = ("pickup", box.code if box else parcel.mailbox_id)
            if key not in stops:
                stops[key] = RouteStop("pickup", key[1], box.name if box else key[1], box.grid if box else parcel.grid)
        elif parcel.direction == "to_resident" and _summary_at_station(replica, parcel):
            key = ("collect", "station")
            if key not in stops:
                stops[key] = RouteStop("collect", "station", "station", "")
        elif parcel.stage == HopStage.OUT_FOR_DELIVERY and parcel.holder == who:
            key = ("deliver", parcel.grid)
            if key not in stops:
                stops[key] = RouteStop("deliver", parcel.grid, parcel.grid, parcel.grid)
        else:
            continue
        since = parcel.since_ms
        hours = max(0, now - since) / 3_600_000
        waits[key].append(
            (
                since,
                RouteParcel(
                    parcel.id,
                    parcel.code,
                    parcel.stage or "registered",
                    ms_to_datetime(since),
                    round(hours, 1),
                    hours >= ROUTE_DUE_HOURS,
                ),
            )
        )
    out = []
    for key, stop in stops.items():
        ordered = [p for _, p in sorted(waits[key], key=lambda w: (w[0], w[1].code))]
        out.append(RouteStop(stop.action, stop.place, stop.name, stop.grid, ordered))
    out.sort(key=lambda s: (not s.due, min(p.since for p in s.parcels), s.action, s.place))
    return out


# --- sync and status --------------------------------------------------------------------------------------

_LAST_SYNC_META = "courier_last_sync_ms"


def record_sync(replica: Replica, *, now_ms: int | None = None) -> None:
    """Remembers when this handheld last finished a sync with the server."""
    replica.device_log.store.set_meta(_LAST_SYNC_META, str(replica.clock.physical_ms() if now_ms is None else now_ms))


@dataclass(frozen=True)
class CourierStatus:
    """What a courier's handheld holds and owes: see :func:`status`."""

    replica: str
    actor: str
    unsent: int
    """Changes the server has not acknowledged yet (kept here until it does)."""
    carried: dict[str, int]
    """Relay bundles in the bag, by status (carried, delivered, handed_back, refused, expired)."""
    last_sync: datetime | None
    clock_offset_ms: int
    conflicts: list[str]
    """Conflicts on this handheld's records, described."""
    custody: list[str]
    """Parcels whose hops do not add up (:func:`caresync.field.custody.anomalies`)."""
    refusals: list[dict[str, str]]
    """Changes the server refused, with its reason: they stay on the handheld."""
    holding: list[str]
    """Codes of the parcels this courier holds now (hand-ins the station has not receipted included)."""
    held: int = 0
    """Changes kept on this handheld, unsent, until it has the station's key to seal their free text."""


def status(replica: Replica, carried: dict[str, int] | None = None) -> CourierStatus:
    """Unsent changes, carried bundles, last sync, clock offset, conflicts, custody anomalies and refusals."""
    last = replica.device_log.store.get_meta(_LAST_SYNC_META)
    held_stages = (HopStage.PICKED_UP, HopStage.OUT_FOR_DELIVERY, HopStage.HANDED_IN)
    holding = [  # from the columns; a hand-in's record is read to see whether the station receipted it
        p.code
        for p in replica.parcels.summaries()
        if p.holder == replica.actor
        and p.stage in held_stages
        and (p.stage != HopStage.HANDED_IN or handover_pending(replica.parcels.get(p.id)))
    ]
    return CourierStatus(
        replica=replica.id,
        actor=replica.actor,
        unsent=replica.unsent_count(),
        carried=dict(carried or {}),
        last_sync=ms_to_datetime(int(last)) if last else None,
        clock_offset_ms=replica.clock.offset_ms,
        conflicts=[c.describe() for c in replica.conflicts()],
        custody=[a.message for a in anomalies(replica)],
        refusals=[{"op": r.op, "kind": r.kind, "record": r.record, "reason": r.reason} for r in replica.refusals()],
        holding=sorted(holding),
        held=replica.device_log.held_count(),
    )
