"""A parcel's chain of custody as the station sees it, and the parcels whose hops do not add up.

Custody passes at the station only when both sides record it: the courier records ``handed_in`` (their
claim), and a station device records ``handed_in`` after it (the receipt). Until the receipt, the courier
still holds the parcel. Pure functions over :class:`~caresync.core.model.Parcel` records; :func:`anomalies`
reads a replica.

>>> for anomaly in anomalies(station):
...     print(anomaly.parcel_code, anomaly.message)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from caresync.core.domain import HopStage
from caresync.core.model import Hop, Parcel
from caresync.core.summaries import ParcelSummary
from caresync.errors import TrustError
from caresync.trust.keys import unseal_value

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = [
    "ContentCheck",
    "CustodyAnomaly",
    "CustodyStep",
    "anomalies",
    "chain",
    "check_contents",
    "custodian",
    "handover_pending",
    "parcel_anomalies",
]


@dataclass(frozen=True)
class CustodyStep:
    """One hop as the station reads it: what happened, who did it on which device, when and where."""

    op: str
    stage: HopStage
    who: str
    device: str
    when: datetime
    where: str | None
    role: str
    """``claim`` (a courier's hand-in, not yet receipted), ``receipt`` (the station confirming a hand-in), or
    ``hop`` (any other hand-over)."""
    confirmed_by: str | None = None
    """For a courier's hand-in: who at the station receipted it (None while it waits)."""
    sealed_contents: bool = False
    """True when the hop carries the resident's request, sealed to the station."""


@dataclass(frozen=True)
class CustodyAnomaly:
    """A parcel whose hops do not add up: a conflict for the station to review. ``code`` is stable."""

    parcel_id: str
    parcel_code: str
    code: str
    message: str
    ops: list[str] = field(default_factory=list)


def chain(parcel: Parcel) -> list[CustodyStep]:
    """Every hop of ``parcel`` in order, with hand-ins paired to the station's receipts."""
    hops = parcel.hops
    steps: list[CustodyStep] = []
    for i, hop in enumerate(hops):
        role = "hop"
        confirmed_by = None
        if hop.stage is HopStage.HANDED_IN:
            before = hops[i - 1] if i else None
            if before is not None and before.stage is HopStage.HANDED_IN and _is_claim(hops, i - 1):
                role = "receipt"
            else:
                role = "claim"
                after = hops[i + 1] if i + 1 < len(hops) else None
                if after is not None and after.stage is HopStage.HANDED_IN:
                    confirmed_by = after.actor
        steps.append(
            CustodyStep(
                op=hop.op_id,
                stage=hop.stage,
                who=hop.actor,
                device=hop.device,
                when=hop.at,
                where=hop.place,
                role=role,
                confirmed_by=confirmed_by,
                sealed_contents=hop.contents is not None,
            )
        )
    return steps


def _is_claim(hops: list[Hop], i: int) -> bool:
    """True when hop ``i`` (a hand-in) is a courier's claim rather than a receipt of the hop before it."""
    j = i
    while j > 0 and hops[j - 1].stage is HopStage.HANDED_IN:
        j -= 1
    return (i - j) % 2 == 0


def handover_pending(parcel: Parcel) -> bool:
    """True when the last hop is a courier's hand-in the station has not receipted yet."""
    steps = chain(parcel)
    return bool(steps) and steps[-1].role == "claim"


def custodian(parcel: Parcel) -> str | None:
    """Who holds the parcel now: the courier until the station receipts their hand-in; None before any hop."""
    if not parcel.hops:
        return None
    return parcel.hops[-1].actor


def parcel_anomalies(parcel: Parcel) -> list[CustodyAnomaly]:
    """What does not add up in one parcel's chain (see :func:`anomalies`)."""
    out: list[CustodyAnomaly] = []
    steps = chain(parcel)

    def flag(code: str, message: str, ops: list[str]) -> None:
        out.append(CustodyAnomaly(parcel.id, parcel.code, code, message, ops))

    for i, step in enumerate(steps):
        before = steps[i - 1] if i else None
        twice = before is not None and before.stage is HopStage.PICKED_UP and before.who != step.who
        if step.stage is HopStage.PICKED_UP and before is not None and twice:
            flag(
                "picked_up_twice",
                f"parcel {parcel.code} was picked up by {before.who} ({before.when:%Y-%m-%d %H:%M}) and again by "
                f"{step.who} ({step.when:%Y-%m-%d %H:%M}) with no hand-in between: ask both couriers who holds it",
                [before.op, step.op],
            )
        if step.role == "receipt" and before is not None and before.device == step.device:
            flag(
                "self_receipted",
                f"parcel {parcel.code}: the hand-in by {before.who} was receipted on the same device, "
                "not by the station",
                [before.op, step.op],
            )
        if step.stage is HopStage.DELIVERED:
            earlier = steps[:i]
            picked = [s for s in earlier if s.stage is HopStage.PICKED_UP]
            since = earlier[earlier.index(picked[-1]) :] if picked else earlier
            handed = any(s.role == "receipt" for s in since)
            if (picked or parcel.direction == "to_station") and not handed:
                flag(
                    "delivered_not_handed_in",
                    f"parcel {parcel.code} was delivered by {step.who} ({step.when:%Y-%m-%d %H:%M}) but never "
                    "handed in at the station and receipted",
                    [step.op],
                )
    flagged = {op for a in out for op in a.ops}
    for conflict in parcel.conflicts:
        if conflict.field != "custody":
            continue
        ops = [v.op_id for v in conflict.values]
        if set(ops) <= flagged:
            continue
        who = ", ".join(f"{v.value} by {v.actor}" for v in conflict.values)
        flag("custody_conflict", f"parcel {parcel.code}: hand-overs that do not follow each other ({who})", ops)
    return out  # a hand-in waiting for its receipt is normal, not a conflict: chain() shows it


def anomalies(replica: Replica) -> list[CustodyAnomaly]:
    """Every parcel on ``replica`` whose hops do not add up, for the station to review.

    Codes: ``picked_up_twice`` (two couriers picked it up, no hand-in between), ``delivered_not_handed_in``
    (it reached a door without the station receipting it), ``self_receipted`` (a hand-in "receipted" on the
    courier's own device), ``custody_conflict`` (hops made without seeing each other, or out of order), and
    ``duplicate_code`` (two parcels registered with one envelope code).
    """
    summaries = replica.parcels.summaries()  # from the columns: only a parcel with hops or a conflict is read whole
    out: list[CustodyAnomaly] = []
    for summary in summaries:
        if summary.stage is not None or summary.conflicts:
            out.extend(parcel_anomalies(replica.parcels.get(summary.id)))
    by_code: dict[str, list[ParcelSummary]] = defaultdict(list)
    for summary in summaries:
        by_code[summary.code].append(summary)
    for code, same in sorted(by_code.items()):
        if len(same) > 1:
            for parcel in same:
                others = ", ".join(p.id for p in same if p is not parcel)
                out.append(
                    CustodyAnomaly(
                        parcel.id,
                        code,
                        "duplicate_code",
                        f"envelope code {code} was registered twice ({parcel.id} and {others}): merge them by hand",
                    )
                )
    return out


@dataclass(frozen=True)
class ContentCheck:
    """What the station found when it opened the contents a courier sealed at one hop."""

    op: str
    """The hop's op id."""
    who: str
    """Who captured the contents."""
    intact: bool
    """True when the opened contents hash to the content hash taken at capture; False when they do not, or the
    seal cannot be opened with this station's key (altered, or sealed to another station)."""
    text: Any = None
    """What the resident asked for, opened (None when the seal could not be opened)."""


def check_contents(replica: Replica, parcel_id: str) -> list[ContentCheck]:
    """Opens, with the station's keys (the current one, then those rotated away from), every sealed ``contents``
    of a parcel's hops, and compares each with the
    content hash taken when it was captured: proof that the seal was intact from the pickup to the station.

    Raises:
        TrustError: this device does not hold the station's key (only station devices can check).
        NotFoundError: no such parcel here.
    """
    keys = replica.device_log.station_keys  # the current key first, then those rotated away from
    if not keys:
        raise TrustError("Only a station device (one holding the station's key) can open and check sealed contents.")
    replica.parcels.get(parcel_id)  # NotFoundError for an unknown parcel
    out = []
    for op in replica.device_log.ops_of(parcel_id):  # as stored: sealed, whatever this device shows when reading
        body = op["body"]
        if op["kind"] != "parcel.hop" or not body.get("contents"):
            continue
        text, intact = None, False
        for key in keys:
            try:
                text, digest = unseal_value(key, body["contents"])
            except TrustError:
                continue
            intact = digest == body.get("content_hash")
            break
        out.append(ContentCheck(op=f"{op['origin']}:{op['seq']}", who=op["actor"], intact=intact, text=text))
    return out
