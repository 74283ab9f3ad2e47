"""The conflict review queue: work made in parallel, in two levels as people understand them.

* **conflict** (``needs_decision``): the same field written on two devices without either seeing the
  other, or status changes (or parcel hand-overs) that do not add up. The record shows one value; the
  others wait. Someone decides with :func:`settle`, an ordinary later edit that syncs like any other.
* **edited in parallel** (``for_information``): two devices changed *different* fields of one record
  within a short time of each other. Both changes are kept and merged; nothing needs deciding, but the
  station may want to know. The op log does not say which other fields a device had seen when it wrote,
  so this level is an approximation: field edits from different devices within ``window`` of each other,
  on a record changed in the last ``days``. Conflicts proper are exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from caresync.core.domain import EntityType
from caresync.core.model import Conflict, HistoryEntry, ms_to_datetime
from caresync.errors import IntentError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = [
    "Change",
    "ReviewItem",
    "conflict_key",
    "conflict_name",
    "find_conflict",
    "parse_value",
    "people_ref",
    "review_queue",
    "settle",
]

Level = Literal["conflict", "parallel"]


@dataclass(frozen=True)
class Change:
    """One competing value or one parallel edit: what, by whom, on which device, when."""

    field: str
    value: Any
    actor: str
    device: str
    at: datetime
    shown: bool
    """True for the value the record shows now."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "field": self.field,
            "value": self.value,
            "actor": self.actor,
            "device": self.device,
            "at": self.at.isoformat(),
            "shown": self.shown,
        }


@dataclass(frozen=True)
class ReviewItem:
    """One entry of the review queue."""

    key: str
    """``<name>#<field>`` for a conflict (what :func:`find_conflict` takes), ``<name>`` otherwise: the name people
    use for the record (a ticket's number, a parcel's or mailbox's code; else its id)."""
    level: Level
    entity: EntityType
    entity_id: str
    label: str
    """What the record is, in words: a ticket's number and title, a resident's name, a parcel's code."""
    field: str | None
    chosen: Any
    changes: list[Change]

    @property
    def needs_decision(self) -> bool:
        """True for a conflict; False for edits in parallel that were merged."""
        return self.level == "conflict"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "key": self.key,
            "level": self.level,
            "needs_decision": self.needs_decision,
            "entity": self.entity.value,
            "entity_id": self.entity_id,
            "label": self.label,
            "field": self.field,
            "chosen": self.chosen,
            "changes": [c.to_json() for c in self.changes],
        }


def conflict_key(conflict: Conflict, record: Any = None) -> str:
    """The key a clerk types to settle a conflict: ``<name>#<field>``, the record named as people name it
    (:func:`people_ref` of ``record``; its id when no record is given)."""
    return f"{conflict.entity_id if record is None else people_ref(record)}#{conflict.field}"


def conflict_name(replica: Replica, conflict: Conflict) -> str:
    """The key of ``conflict`` as people read it: ``1000#assignee``."""
    return conflict_key(conflict, _get(replica, conflict.entity, conflict.entity_id))


def people_ref(record: Any) -> str:
    """What people call a record and can type back: a ticket's number, a parcel's or mailbox's code; else its id."""
    entity = type(record).__name__
    if entity == "Ticket" and record.number:
        return str(record.number)
    if entity in ("Parcel", "Mailbox") and record.code:
        return str(record.code)
    return str(record.id)


def _label(record: Any) -> str:
    entity = type(record).__name__
    if entity == "Ticket":
        return f"{record.number or record.id} {record.title}"
    if entity in ("Resident", "Worker"):
        return str(record.name or record.id)
    if entity in ("Parcel", "Mailbox"):
        return str(record.code)
    if entity == "Visit":
        return f"{record.resident_id} {record.visited_at:%Y-%m-%d}"
    return str(record.id)


def _get(replica: Replica, entity: EntityType, eid: str) -> Any:
    collections: dict[EntityType, Any] = {
        EntityType.TICKET: replica.tickets,
        EntityType.RESIDENT: replica.residents,
        EntityType.VISIT: replica.visits,
        EntityType.WORKER: replica.workers,
        EntityType.MAILBOX: replica.mailboxes,
        EntityType.PARCEL: replica.parcels,
    }
    return collections[entity].get(eid)


def _parallel(history: list[HistoryEntry], since: datetime, window: timedelta, skip: set[str]) -> list[Change]:
    edits = [h for h in history if h.kind.endswith(".set") and h.at >= since and h.details.get("field") not in skip]
    picked: dict[str, HistoryEntry] = {}
    for i, a in enumerate(edits):
        for b in edits[i + 1 :]:
            if a.device != b.device and a.details["field"] != b.details["field"] and abs(a.at - b.at) <= window:
                picked.setdefault(a.op_id, a)
                picked.setdefault(b.op_id, b)
    return [
        Change(field=h.details["field"], value=h.details["value"], actor=h.actor, device=h.device, at=h.at, shown=True)
        for h in sorted(picked.values(), key=lambda h: h.hlc)
    ]


def review_queue(
    replica: Replica,
    *,
    parallel: bool = True,
    days: int = 7,
    window: timedelta = timedelta(hours=24),
    now: datetime | None = None,
) -> list[ReviewItem]:
    """Every unresolved conflict, then (if ``parallel``) recent edits made in parallel, for information.

    Args:
        replica: the replica to read.
        parallel: also list records whose different fields were edited on different devices.
        days: how far back to look for parallel edits.
        window: how close in time two devices' edits must be to count as parallel.
        now: the moment to look back from (default: this device's clock).
    """
    items: list[ReviewItem] = []
    for conflict in replica.conflicts():
        record = _get(replica, conflict.entity, conflict.entity_id)
        items.append(
            ReviewItem(
                key=conflict_key(conflict, record),
                level="conflict",
                entity=conflict.entity,
                entity_id=conflict.entity_id,
                label=_label(record),
                field=conflict.field,
                chosen=conflict.chosen,
                changes=[
                    Change(
                        field=conflict.field, value=v.value, actor=v.actor, device=v.device, at=v.at, shown=v.applied
                    )
                    for v in conflict.values
                ],
            )
        )
    if not parallel:
        return items
    since = (now or ms_to_datetime(replica.clock.physical_ms())) - timedelta(days=days)
    in_conflict: dict[str, set[str]] = {}
    for item in items:
        in_conflict.setdefault(item.entity_id, set()).add(item.field or "")
    for entity, collection in (
        (EntityType.TICKET, replica.tickets),
        (EntityType.RESIDENT, replica.residents),
        (EntityType.VISIT, replica.visits),
        (EntityType.PARCEL, replica.parcels),
    ):
        for record in collection.list():
            if not record.history or record.history[-1].at < since:
                continue
            changes = _parallel(record.history, since, window, in_conflict.get(record.id, set()))
            if changes:
                items.append(
                    ReviewItem(
                        key=record.id,
                        level="parallel",
                        entity=entity,
                        entity_id=record.id,
                        label=_label(record),
                        field=None,
                        chosen=None,
                        changes=changes,
                    )
                )
    return items


def find_conflict(replica: Replica, key: str, field: str | None = None) -> Conflict:
    """The unresolved conflict named by ``key``: ``<name>#<field>`` as the queue shows it (a ticket's number, a
    parcel's or mailbox's code, or a record id, then the field), or the name alone with ``field`` given apart
    (``find_conflict(replica, "1000", "assignee")``).

    Raises:
        InvalidInputError: no field named.
        NotFoundError: no such unresolved conflict here (settled already, or not synced yet).
    """
    ref, _, named = key.strip().partition("#")
    field = (field or named).strip()
    if not ref or not field:
        raise InvalidInputError(
            f"Cannot find conflict {key!r}",
            [("key", "write it as NUMBER#FIELD (as the queue shows it), or give the field after the number")],
            key="conflict.which",
            fields={"key": key},
        )
    for conflict in replica.conflicts():
        if conflict.field != field:
            continue
        if conflict.entity_id == ref or people_ref(_get(replica, conflict.entity, conflict.entity_id)) == ref:
            return conflict
    shown = f"{ref}#{field}"
    raise NotFoundError(
        f"No unresolved conflict {shown!r} on this device: it may be settled already; list the queue again.",
        key="conflict.not_found",
        fields={"key": shown},
    )


def settle(
    replica: Replica,
    key: str,
    *,
    value: Any = None,
    pick: int | None = None,
    actor: str | None = None,
    field: str | None = None,
) -> Conflict:
    """Settles one conflict of the queue with an ordinary later edit (it syncs like any other change).

    Args:
        replica: where to record the decision.
        key: the conflict, ``<name>#<field>`` as the queue shows it (or the name, with ``field``).
        value: the value to keep (for a field conflict); default the one shown now.
        pick: instead of ``value``, the number (from 1) of a competing value as the queue lists them.
        actor: who decided.
        field: the field, when ``key`` names only the record.

    Returns:
        The conflict as it stood before the decision.

    Raises:
        InvalidInputError: both ``value`` and ``pick``, a pick out of range, or a value the field refuses.
        IntentError: a value for a status or custody conflict (move on with a transition or a hand-over).
    """
    conflict = find_conflict(replica, key, field)
    if value is not None and pick is not None:
        raise InvalidInputError(f"Cannot settle {key}", [("value", "give a value or a pick, not both")])
    if pick is not None:
        if not 1 <= pick <= len(conflict.values):
            raise InvalidInputError(f"Cannot settle {key}", [("pick", f"choose 1 to {len(conflict.values)}")])
        value = conflict.values[pick - 1].value
    if conflict.field in ("status", "custody") and value is not None:
        raise IntentError(
            f"{key}: a status or custody conflict is settled by confirming the current state (no value), or by "
            "recording the next transition or hand-over.",
            key="conflict.no_value",
            fields={"key": key},
        )
    replica.resolve(conflict, value, actor=actor)
    return conflict


def parse_value(text: str) -> Any:
    """A value typed on the command line: JSON if it parses (numbers, null, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
