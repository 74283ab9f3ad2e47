"""Parcels and mailboxes: what waits where, each parcel's chain of custody, and how long couriers carried it.

The chain and its anomalies are :mod:`caresync.custody`'s; time in couriers' hands is
:func:`caresync.reports.courier_hours`.
"""

from __future__ import annotations

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.routing import route
from caresync.core.domain import HopStage
from caresync.core.model import Parcel
from caresync.errors import NotFoundError
from caresync.field.custody import chain, parcel_anomalies
from caresync.field.reports import courier_hours
from caresync.replica import Replica

__all__: list[str] = []

_STAGES = ["none", *(s.value for s in HopStage)]


def _stage(parcel: Parcel) -> str:
    return parcel.stage.value if parcel.stage is not None else "none"


@route("/parcels")
def parcels(page: Page, replica: Replica) -> Response:
    """Parcels grouped by where they are now, with hours in couriers' hands; and the mailboxes."""
    now = page.now()
    found = replica.parcels.list()
    first = min((h.at for p in found for h in p.hops), default=now)
    groups = {stage: [p for p in found if _stage(p) == stage] for stage in _STAGES}
    hours = {p.id: courier_hours(p, first, now) for p in found}
    mailboxes = replica.mailboxes.list()
    waiting = {m.id: sum(1 for p in found if p.mailbox_id == m.id and p.stage is HopStage.DROPPED) for m in mailboxes}
    return page.render("parcels.html", groups=groups, hours=hours, mailboxes=mailboxes, waiting=waiting)


@route("/parcels/{code}")
def parcel(page: Page, replica: Replica) -> Response:
    """One parcel by the code on its envelope: its chain of custody and any anomaly in it."""
    code = str(page.params["code"])
    found = replica.parcels.by_code(code)
    if found is None:
        raise NotFoundError(f"No parcel with code {code!r} on this desk.")
    now = page.now()
    first = found.hops[0].at if found.hops else now
    mailbox = replica.mailboxes.get(found.mailbox_id) if found.mailbox_id else None
    return page.render(
        "parcel.html",
        parcel=found,
        steps=chain(found),
        anomalies=parcel_anomalies(found),
        hours=courier_hours(found, first, now),
        mailbox=mailbox,
        stage=_stage(found),
    )
