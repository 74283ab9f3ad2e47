"""Residents and door-knocks, knock rounds to print, and mediation: the console's pages about people.

The rules are the library's: who is due and who is flagged come from ``knock``; raising a request from a
flagged resident's knock is :func:`~caresync.knock.raise_ticket`.
"""

from __future__ import annotations

from datetime import datetime

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.pages import number_of, ticket_of
from caresync.console.routing import route
from caresync.core.domain import DisputeOutcome, TicketKind, VisitOutcome, in_grid
from caresync.core.model import Resident, Visit
from caresync.errors import IntentError, InvalidInputError
from caresync.field.knock import KnockDue, knock_round, raise_ticket
from caresync.replica import Replica

__all__ = ["resident_rows"]


def resident_rows(replica: Replica, at: datetime) -> list[tuple[Resident, KnockDue | None]]:
    """Every resident with their knock-round entry (cadence, last knock, next due), by grid then name."""
    entries = {e.resident_id: e for e in knock_round(replica, now=at, include_ok=True).entries}
    residents = sorted(replica.residents.list(), key=lambda r: (r.grid, r.name or "", r.id))
    return [(r, entries.get(r.id)) for r in residents]


@route("/residents")
def residents(page: Page, replica: Replica) -> Response:
    """Residents with their knock cadence, last knock and next due; filtered by grid."""
    grid = page.query.get("grid", "").strip()
    rows = [(r, e) for r, e in resident_rows(replica, page.now()) if not grid or in_grid(r.grid, grid)]
    return page.render("residents.html", rows=rows, grid=grid)


@route("/residents/find", "POST")
def residents_find(page: Page, replica: Replica) -> Response:
    """Residents whose name holds the words typed (a POST: names stay out of URLs and logs)."""
    needle = page.form.get("q", "").strip().casefold()
    rows = [(r, e) for r, e in resident_rows(replica, page.now()) if needle and needle in (r.name or "").casefold()]
    return page.render("residents.html", rows=rows, grid="", searched=True)


@route("/residents/{resident_id}")
def resident(page: Page, replica: Replica) -> Response:
    """One resident: details, every knock (newest first), their requests, and the knock form."""
    found = replica.residents.get(str(page.params["resident_id"]))
    visits = replica.visits.list(resident_id=found.id)
    tickets = replica.tickets.list(resident_id=found.id)
    numbers = {t.id: number_of(t) for t in tickets}
    entry = next(
        (
            e
            for e in knock_round(replica, grid=found.grid, now=page.now(), include_ok=True).entries
            if e.resident_id == found.id
        ),
        None,
    )
    return page.render(
        "resident.html",
        resident=found,
        visits=visits,
        tickets=tickets,
        numbers=numbers,
        entry=entry,
        outcomes=list(VisitOutcome),
        kinds=list(TicketKind),
        workers=replica.workers.list(role="knocker"),
    )


@route("/residents/{resident_id}/visit", "POST")
def resident_visit(page: Page, replica: Replica) -> Response:
    """Records a door-knock (by the knocker named, else the clerk) on this resident."""
    found = replica.residents.get(str(page.params["resident_id"]))
    replica.visits.record(
        resident_id=found.id,
        outcome=page.form.get("outcome", ""),
        visitor=page.form.get("visitor", "").strip() or page.user,
        note=page.form.get("note", "").strip() or None,
        actor=page.user,
    )
    page.flash(page.t("resident.visit_done"))
    return page.redirect(f"/residents/{found.id}")


@route("/visits/{visit_id}/raise", "POST")
def visit_raise(page: Page, replica: Replica) -> Response:
    """Raises a request from a knock in one step, linked to the resident and the knock.

    A flagged resident's latest knock goes through :func:`~caresync.knock.raise_ticket` (an emergency or an
    early warning on the green channel); any other knock becomes a request of the kind chosen, on the
    door-knock channel, that the knock then points to.
    """
    visit: Visit = replica.visits.get(str(page.params["visit_id"]))
    who = replica.residents.get(visit.resident_id)
    if visit.ticket_id is not None:
        raise IntentError(f"This knock already raised request {number_of(replica.tickets.get(visit.ticket_id))}.")
    title = page.form.get("title", "").strip()
    if not title:
        try:
            made = raise_ticket(replica, who.id, actor=page.user)
        except IntentError:
            raise InvalidInputError("Cannot raise a request", [("title", "say what the request is")]) from None
    else:
        with replica.batch():
            made = replica.tickets.submit(
                title=title,
                kind=page.form.get("kind", "other"),
                grid=who.grid,
                channel="door_knock",
                resident_id=who.id,
                visit_id=visit.id,
                description=visit.note,
                actor=page.user,
            )
            replica.visits.edit(visit.id, ticket_id=made.id, actor=page.user)
    page.flash(page.t("resident.raised", number=number_of(made)))
    return page.redirect(f"/requests/{number_of(made)}")


@route("/rounds")
def rounds(page: Page, replica: Replica) -> Response:
    """A knock round sheet for one knocker (their grids), or everyone, flagged first, then by building."""
    knocker = page.query.get("knocker", "").strip()
    knockers = replica.workers.list(role="knocker")
    sheet = knock_round(replica, knocker=knocker or None, now=page.now()) if knocker or "all" in page.query else None
    return page.render("rounds.html", knocker=knocker, knockers=knockers, sheet=sheet, everyone="all" in page.query)


# --- mediation ----------------------------------------------------------------------------------------------------


@route("/mediation")
def mediation(page: Page, replica: Replica) -> Response:
    """Disputes: parties, sessions and outcomes, open ones first."""
    disputes = replica.tickets.list(kind="dispute")
    disputes.sort(key=lambda t: (not t.is_open, t.submitted_at), reverse=False)
    settled = sum(t.outcome is DisputeOutcome.SETTLED for t in disputes)
    with_outcome = sum(t.outcome is not None for t in disputes)
    return page.render("mediation.html", disputes=disputes, settled=settled, with_outcome=with_outcome)


@route("/mediation/{number}/party", "POST")
def mediation_party(page: Page, replica: Replica) -> Response:
    """Adds a party to a dispute."""
    ticket = ticket_of(page, replica)
    replica.tickets.add_party(
        ticket.id,
        name=page.form.get("name", "").strip(),
        side=page.form.get("side", "").strip() or None,
        actor=page.user,
    )
    page.flash(page.t("mediation.saved"))
    return page.redirect(f"/requests/{number_of(ticket)}")


@route("/mediation/{number}/session", "POST")
def mediation_session(page: Page, replica: Replica) -> Response:
    """Records a mediation session."""
    ticket = ticket_of(page, replica)
    replica.tickets.record_session(
        ticket.id,
        mediator=page.form.get("mediator", "").strip() or page.user,
        summary=page.form.get("summary", "").strip(),
        actor=page.user,
    )
    page.flash(page.t("mediation.saved"))
    return page.redirect(f"/requests/{number_of(ticket)}")


@route("/mediation/{number}/outcome", "POST")
def mediation_outcome(page: Page, replica: Replica) -> Response:
    """Records how the mediation ended (settled, not settled, referred)."""
    ticket = ticket_of(page, replica)
    replica.tickets.set_outcome(ticket.id, page.form.get("outcome", ""), actor=page.user)
    page.flash(page.t("mediation.saved"))
    return page.redirect(f"/requests/{number_of(ticket)}")
