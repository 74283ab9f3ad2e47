"""The care domain's vocabulary: grids, kinds, channels, statuses and the state machines. Pure, no I/O.

Everything here is shared by the op schemas (what may be written), the fold (how ops combine) and the
public read models (what a query returns), so that a word means one thing everywhere.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "CLOSABLE_WITHOUT_OUTCOME",
    "COURIER_REPORT_KINDS",
    "DEFAULT_DUE_HOURS",
    "OPEN_STATUSES",
    "Channel",
    "DisputeOutcome",
    "EntityType",
    "GridPath",
    "HopStage",
    "Priority",
    "ResidentFlag",
    "Role",
    "TicketAction",
    "TicketKind",
    "TicketStatus",
    "VisitOutcome",
    "check_grid",
    "grid_parent",
    "hop_fits",
    "in_grid",
    "ticket_transition",
]


class EntityType(StrEnum):
    """The kinds of record a replica holds; each has its own materialised table."""

    RESIDENT = "resident"
    WORKER = "worker"
    TICKET = "ticket"
    VISIT = "visit"
    MAILBOX = "mailbox"
    PARCEL = "parcel"


class TicketKind(StrEnum):
    """What a request is about (the five-in-one mechanism and the station's other services)."""

    REPAIR = "repair"
    DISPUTE = "dispute"
    LEGAL_AID = "legal_aid"
    COUNSELLING = "counselling"
    VOLUNTEER_HELP = "volunteer_help"
    ERRAND = "errand"
    WISH = "wish"
    EARLY_WARNING = "early_warning"
    EMERGENCY = "emergency"
    SENTIMENT = "sentiment"
    OTHER = "other"


#: What an outdoor worker (a courier) may report from the round: an early warning, an emergency, what residents
#: are saying.
COURIER_REPORT_KINDS: tuple[str, ...] = (
    TicketKind.EARLY_WARNING.value,
    TicketKind.EMERGENCY.value,
    TicketKind.SENTIMENT.value,
)


class Channel(StrEnum):
    """How a request reached the station."""

    WALK_IN = "walk_in"
    WISH_BOX = "wish_box"
    MAILBOX = "mailbox"
    DOOR_KNOCK = "door_knock"
    OUTDOOR_REPORT = "outdoor_report"
    PHONE = "phone"
    PROXY = "proxy"


class Priority(StrEnum):
    """How urgent a request is; ``green`` is the green-channel fast lane."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    GREEN = "green"


class TicketStatus(StrEnum):
    """Where a request stands: placed (下单), taken (接单), returned (回单)."""

    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class TicketAction(StrEnum):
    """A status change, as recorded in a ``ticket.transition`` op."""

    ACCEPT = "accept"
    START = "start"
    RESOLVE = "resolve"
    CLOSE = "close"
    CANCEL = "cancel"
    REOPEN = "reopen"
    ESCALATE = "escalate"
    CONFIRM = "confirm"


class DisputeOutcome(StrEnum):
    """How a mediation ended; only ``settled`` counts as a success."""

    SETTLED = "settled"
    NOT_SETTLED = "not_settled"
    REFERRED = "referred"


class VisitOutcome(StrEnum):
    """What a door-knocker found."""

    WELL = "well"
    NEEDS_HELP = "needs_help"
    UNWELL = "unwell"
    NO_ANSWER = "no_answer"
    HOSPITALISED = "hospitalised"
    EMERGENCY = "emergency"
    MOVED = "moved"


class HopStage(StrEnum):
    """A hand-over in a parcel's chain of custody."""

    DROPPED = "dropped"
    PICKED_UP = "picked_up"
    HANDED_IN = "handed_in"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    RETURNED = "returned"


class ResidentFlag(StrEnum):
    """Why a resident needs attention: "the old and the young" (一老一小) first."""

    LIVES_ALONE = "lives_alone"
    ELDERLY = "elderly"
    LEFT_BEHIND_CHILD = "left_behind_child"
    DISABLED = "disabled"


class Role(StrEnum):
    """What a worker (and the device they carry) does."""

    COURIER = "courier"
    KNOCKER = "knocker"
    GRID_WORKER = "grid_worker"
    MEDIATOR = "mediator"
    STATION = "station"
    ADMIN = "admin"


OPEN_STATUSES = frozenset({TicketStatus.SUBMITTED, TicketStatus.ACCEPTED, TicketStatus.IN_PROGRESS})
#: Default hours from submission to due, per kind; anything not listed is due in 48 hours.
DEFAULT_DUE_HOURS: dict[TicketKind, int] = {
    TicketKind.EMERGENCY: 2,
    TicketKind.EARLY_WARNING: 24,
}
#: Kinds that close without a mediation outcome (every kind but dispute).
CLOSABLE_WITHOUT_OUTCOME = frozenset(k for k in TicketKind if k is not TicketKind.DISPUTE)

_SEGMENT = re.compile(r"^[^/\s][^/]{0,63}$")


def check_grid(value: str) -> str:
    """Validates a grid path ``community[/area[/building]]``: one to three non-empty segments."""
    parts = value.split("/")
    if not 1 <= len(parts) <= 3 or not all(_SEGMENT.match(p) and p.strip() == p for p in parts):
        raise ValueError(f"{value!r} is not a grid path; write community, community/area or community/area/building")
    return value


GridPath = Annotated[str, AfterValidator(check_grid)]


def in_grid(grid: str, within: str) -> bool:
    """True when ``grid`` is ``within`` or nested in it (a building in its area, an area in its community): the one
    rule of grid nesting that scopes, knock rounds, reports and the server all use."""
    return grid == within or grid.startswith(within + "/")


def grid_parent(grid: str) -> str | None:
    """The grid one level up (building → area → community), or None for a community."""
    head, sep, _ = grid.rpartition("/")
    return head if sep else None


_OPEN = {s.value for s in OPEN_STATUSES}


def ticket_transition(status: str, action: str, *, has_assignee: bool, has_parent_grid: bool) -> str | None:
    """The status after ``action``, or None when the action is not valid from ``status``.

    The lifecycle: submitted → accepted → (in_progress) → resolved → closed; cancel from any open status;
    reopen from resolved, closed or cancelled (so a cancellation that won a status conflict can be undone);
    escalate (to the parent grid) while open; confirm keeps the status and
    settles a status conflict.
    """
    if action == "accept":
        return "accepted" if status == "submitted" else None
    if action == "start":
        return "in_progress" if status == "accepted" else None
    if action == "resolve":
        return "resolved" if status in _OPEN else None
    if action == "close":
        return "closed" if status == "resolved" else None
    if action == "cancel":
        return "cancelled" if status in _OPEN else None
    if action == "reopen":
        if status in ("resolved", "closed", "cancelled"):
            return "accepted" if has_assignee else "submitted"
        return None
    if action == "escalate":
        return status if status in _OPEN and has_parent_grid else None
    if action == "confirm":
        return status
    return None


_HOP_AFTER: dict[str, frozenset[str]] = {
    "dropped": frozenset({""}),
    "picked_up": frozenset({"", "dropped", "returned"}),
    "handed_in": frozenset({"picked_up", "handed_in"}),  # the second: the station confirms the courier's hand-in
    "out_for_delivery": frozenset({"handed_in", "returned"}),
    "delivered": frozenset({"out_for_delivery"}),
    "returned": frozenset({"picked_up", "out_for_delivery"}),
}


def hop_fits(previous: str, stage: str, *, to_resident: bool = False) -> bool:
    """True when a custody hop to ``stage`` may follow ``previous`` ("" for none yet). A parcel registered at
    the station for a resident's door (``to_resident``) starts there, so it may go out for delivery first."""
    if to_resident and previous == "" and stage == "out_for_delivery":
        return True
    return previous in _HOP_AFTER.get(stage, frozenset())
