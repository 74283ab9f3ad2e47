"""The console's pages. Each handler reads or changes the replica through its public API and renders a
template; no rule lives here (the library's collections, ``knock``, ``review`` and ``reports`` hold them).

Requests are addressed by their ticket numbers (what the resident was told), never by internal ids.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.routing import route
from caresync.core.domain import Channel, Priority, TicketKind, TicketStatus, in_grid
from caresync.core.model import Ticket
from caresync.errors import InvalidInputError, NotFoundError
from caresync.field.knock import knock_round
from caresync.field.labels import label
from caresync.field.review import review_queue, settle
from caresync.field.sla import is_overdue, sla_sorted
from caresync.replica import Replica, find_ticket

__all__ = ["filtered", "number_of", "ticket_of"]


def number_of(ticket: Ticket) -> str:
    """A request's number as clerks say it (its id only for a ticket from before numbers)."""
    return ticket.number or ticket.id


# --- today ------------------------------------------------------------------------------------------------------


@route("/")
def today(page: Page, replica: Replica) -> Response:
    """What needs doing today: due and overdue requests, residents to check on, conflicts, parcels, devices."""
    now = page.now()
    soon = now + timedelta(hours=24)
    due = sla_sorted([t for t in replica.tickets.list() if t.is_open and t.due_at <= soon], now)
    round_ = knock_round(replica, now=now)
    residents = [e for e in round_.entries if e.flagged or e.state == "overdue"]
    conflicts = review_queue(replica, parallel=False)
    parcels = replica.parcels.list(stage="handed_in")
    return page.render(
        "today.html",
        due=due,
        now=now,
        is_overdue=is_overdue,
        residents=residents,
        conflicts=conflicts,
        parcels=parcels,
        devices=_stale_devices(page, replica),
    )


def _stale_devices(page: Page, replica: Replica) -> list[Any] | None:
    """The server's devices not synced for two days or more; None when this desk has no server to ask."""
    from . import devices

    return devices.stale(page, replica)


@route("/sync", "POST")
def sync_now(page: Page, replica: Replica) -> Response:
    """The "sync now" button: the background sync runs as soon as this page is done."""
    page.console.worker.sync_soon()
    page.flash(page.t("sync.asked"))
    return page.redirect(page.form.get("back") or "/")


# --- intake -----------------------------------------------------------------------------------------------------

_INTAKE_FIELDS = ("title", "kind", "channel", "grid", "description", "priority", "resident_id")


@route("/intake")
def intake(page: Page, replica: Replica) -> Response:
    """The form for walk-in and phone requests."""
    kind = page.query.get("kind", "")
    values = {"channel": "walk_in", "priority": "normal", "kind": kind if kind in set(TicketKind) else "repair"}
    chosen = None
    resident_id = page.query.get("resident")
    if resident_id:
        chosen = replica.residents.get(resident_id)
        values["resident_id"] = chosen.id
        values["grid"] = chosen.grid
    return _intake_page(page, replica, values, chosen=chosen)


def _intake_page(
    page: Page,
    replica: Replica,
    values: dict[str, str],
    *,
    chosen: Any = None,
    errors: dict[str, str] | None = None,
    found: list[Any] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "intake.html",
        status=status,
        grids=sorted({g for w in replica.workers.list() for g in w.grids if g}),  # the workers' grids: few, cheap
        values=values,
        chosen=chosen,
        errors=errors or {},
        found=found,
        kinds=list(TicketKind),
        channels=list(Channel),
        priorities=list(Priority),
    )


@route("/intake/find", "POST")
def intake_find(page: Page, replica: Replica) -> Response:
    """Finds residents by part of their name (a POST, so the name never sits in a URL or a log), or takes the one
    picked from the list; what the clerk typed in the form so far is kept."""
    values = {k: page.form.get(k, "") for k in _INTAKE_FIELDS}
    picked = page.form.get("pick", "")
    if picked:  # a resident chosen from the list: their grid unless the clerk typed one
        picked_one = replica.residents.get(picked)
        values["resident_id"] = picked_one.id
        values["grid"] = values["grid"] or picked_one.grid
        return _intake_page(page, replica, values, chosen=picked_one)
    needle = page.form.get("q", "").strip().casefold()
    found = [r for r in replica.residents.list() if needle and needle in (r.name or "").casefold()][:20]
    chosen = replica.residents.get(values["resident_id"]) if values.get("resident_id") else None
    return _intake_page(page, replica, values, chosen=chosen, found=found)


@route("/intake", "POST")
def intake_submit(page: Page, replica: Replica) -> Response:
    """Registers the request and shows its number; a mistake re-shows the form with what was typed."""
    values = {k: page.form.get(k, "").strip() for k in _INTAKE_FIELDS}
    errors = {k: page.t("intake.required") for k in ("title", "grid") if not values[k]}
    chosen = None
    if values["resident_id"]:
        chosen = replica.residents.get(values["resident_id"])
    if not errors:
        try:
            made = replica.tickets.submit(
                title=values["title"],
                kind=values["kind"],
                grid=values["grid"],
                channel=values["channel"],
                description=values["description"] or None,
                resident_id=values["resident_id"] or None,
                priority=values["priority"],
                actor=page.user,
            )
        except InvalidInputError as exc:
            errors = {_field(f): m for f, m in exc.problems}
        else:
            page.flash(page.t("intake.done", number=number_of(made)))
            return page.redirect(f"/requests/{number_of(made)}")
    page.flash(page.t("intake.bad"), "error")
    return _intake_page(page, replica, values, chosen=chosen, errors=errors, status=400)


def _field(name: str) -> str:
    return "resident_id" if name == "resident" else name


# --- requests ---------------------------------------------------------------------------------------------------

_FILTERS = ("status", "grid", "kind", "assignee", "channel", "overdue", "all", "view")


def filtered(replica: Replica, query: dict[str, str], now: Any) -> list[Ticket]:
    """Requests matching the list's filters, overdue first, then soonest due."""
    found = replica.tickets.list(
        status=query.get("status") or None,
        assignee=query.get("assignee") or None,
        kind=query.get("kind") or None,
    )
    grid, channel = query.get("grid"), query.get("channel")
    show_all = bool(query.get("all")) or bool(query.get("status")) or query.get("view") == "board"
    found = [
        t
        for t in found
        if (not grid or in_grid(t.grid, grid))
        and (not channel or t.channel.value == channel)
        and (show_all or t.is_open)
        and (not query.get("overdue") or is_overdue(t, now))
    ]
    return sla_sorted(found, now)


@route("/requests")
def requests(page: Page, replica: Replica) -> Response:
    """The requests as a list or a board by status, with filters."""
    now = page.now()
    query = {k: page.query.get(k, "") for k in _FILTERS}
    found = filtered(replica, query, now)
    board = {s: [t for t in found if t.status is s] for s in TicketStatus}
    workers = sorted({t.assignee for t in replica.tickets.list() if t.assignee})
    return page.render(
        "requests.html",
        tickets=found,
        board=board,
        query=query,
        now=now,
        is_overdue=is_overdue,
        statuses=list(TicketStatus),
        kinds=list(TicketKind),
        channels=list(Channel),
        workers=workers,
        overdue=sum(is_overdue(t, now) for t in found),
    )


@route("/requests/{number}")
def request_page(page: Page, replica: Replica) -> Response:
    """One request: its details, its whole history (who, when, which device), its conflicts, and actions."""
    ticket = ticket_of(page, replica)
    now = page.now()
    resident = replica.residents.get(ticket.resident_id) if ticket.resident_id else None
    conflicts = [item for item in review_queue(replica, parallel=False) if item.entity_id == ticket.id]
    workers = replica.workers.list()
    return page.render(
        "request.html",
        ticket=ticket,
        number=number_of(ticket),
        resident=resident,
        conflicts=conflicts,
        overdue=is_overdue(ticket, now),
        workers=workers,
        actions=_actions(ticket),
    )


@route("/attachments/{attachment}")
def attachment_file(page: Page, replica: Replica) -> Response:
    """An attachment's picture (``?thumb=1``: its thumbnail) or document, opened with the station's key. Never
    cached by the browser (the console answers everything no-store): it is a resident's private data."""
    attachment = replica.attachments.get(str(page.params["attachment"]))
    thumbnail = page.query.get("thumb") == "1" and attachment.thumb is not None
    data = replica.attachments.open(attachment.id, thumbnail=thumbnail)
    media = ("image/png" if attachment.kind == "signature" else "image/jpeg") if thumbnail else attachment.media
    headers = {"Content-Disposition": "inline"}  # no-store and nosniff: every console answer has them
    return Response(data, media_type=media, headers=headers)


def ticket_of(page: Page, replica: Replica) -> Ticket:
    """The request the page's ``{number}`` names (a 404 page when there is none)."""
    number = str(page.params["number"])
    try:
        return find_ticket(replica, number)
    except NotFoundError:
        raise NotFoundError(page.t("request.not_found", number=number)) from None


def _actions(ticket: Ticket) -> list[str]:
    """The one-click transitions that make sense from the request's status."""
    status = ticket.status
    if status is TicketStatus.SUBMITTED:
        return ["cancel"]  # accept needs an assignee: its own small form
    if status is TicketStatus.ACCEPTED:
        return ["start", "resolve", "cancel"]
    if status is TicketStatus.IN_PROGRESS:
        return ["resolve", "cancel"]
    if status is TicketStatus.RESOLVED:
        return ["close", "reopen"]
    return ["reopen"]


@route("/requests/{number}/act", "POST")
def request_act(page: Page, replica: Replica) -> Response:
    """One click: accept (with an assignee), start, resolve, return (close), cancel, reopen, escalate."""
    ticket = ticket_of(page, replica)
    action = page.form.get("action", "")
    reason = page.form.get("reason", "").strip() or None
    tickets = replica.tickets
    user = page.user
    if action == "accept":
        done = tickets.accept(ticket.id, assignee=page.form.get("assignee", "").strip() or user, actor=user)
    elif action == "start":
        done = tickets.start(ticket.id, actor=user)
    elif action == "resolve":
        done = tickets.resolve(ticket.id, resolution=reason, actor=user)
    elif action == "close":
        done = tickets.close(ticket.id, actor=user)
    elif action == "cancel":
        done = tickets.cancel(ticket.id, reason=reason or page.t("request.cancel"), actor=user)
    elif action == "reopen":
        done = tickets.reopen(ticket.id, reason=reason or page.t("request.reopen"), actor=user)
    elif action == "escalate":
        done = tickets.escalate(ticket.id, reason=reason, actor=user)
        page.flash(page.t("request.escalated", number=number_of(done), grid=done.grid))
        return page.redirect(f"/requests/{number_of(done)}")
    else:
        raise InvalidInputError("Cannot change the request", [("action", f"{action!r} is not an action")])
    status = label("status", done.status, page.lang)
    page.flash(page.t("request.moved", number=number_of(done), status=status))
    return page.redirect(f"/requests/{number_of(done)}")


@route("/requests/{number}/assign", "POST")
def request_assign(page: Page, replica: Replica) -> Response:
    """Gives the request to a worker (an edit of its assignee, which syncs like any other change)."""
    ticket = ticket_of(page, replica)
    assignee = page.form.get("assignee", "").strip()
    if not assignee:
        raise InvalidInputError("Cannot assign the request", [("assignee", "say who takes it")])
    replica.tickets.edit(ticket.id, assignee=assignee, actor=page.user)
    page.flash(page.t("request.assigned", number=number_of(ticket), assignee=assignee))
    return page.redirect(f"/requests/{number_of(ticket)}")


@route("/requests/{number}/note", "POST")
def request_note(page: Page, replica: Replica) -> Response:
    """Adds a note (notes are never overwritten)."""
    ticket = ticket_of(page, replica)
    text = page.form.get("text", "").strip()
    if not text:
        raise InvalidInputError("Cannot add the note", [("text", "write the note")])
    replica.tickets.note(ticket.id, text, actor=page.user)
    page.flash(page.t("request.noted", number=number_of(ticket)))
    return page.redirect(f"/requests/{number_of(ticket)}")


@route("/requests/{number}/rate", "POST")
def request_rate(page: Page, replica: Replica) -> Response:
    """Records the resident's rating of a returned request."""
    ticket = ticket_of(page, replica)
    try:
        score = int(page.form.get("score", ""))
    except ValueError:
        raise InvalidInputError("Cannot rate the request", [("score", "choose 1 to 5")]) from None
    replica.tickets.rate(ticket.id, score=score, comment=page.form.get("comment", "").strip() or None, actor=page.user)
    page.flash(page.t("request.rated", number=number_of(ticket)))
    return page.redirect(f"/requests/{number_of(ticket)}")


# --- conflicts --------------------------------------------------------------------------------------------------


@route("/conflicts")
def conflicts(page: Page, replica: Replica) -> Response:
    """Every conflict waiting for a decision, each with its competing values and who made them."""
    items = review_queue(replica, parallel=False)
    numbers = {i.entity_id: number_of(replica.tickets.get(i.entity_id)) for i in items if i.entity.value == "ticket"}
    return page.render("conflicts.html", items=items, numbers=numbers)


@route("/conflicts/settle", "POST")
def conflict_settle(page: Page, replica: Replica) -> Response:
    """Settles one conflict: keeps the value picked, or confirms the current status."""
    key = page.form.get("key", "")
    pick_text = page.form.get("pick", "")
    pick = int(pick_text) if pick_text.isdigit() else None
    try:
        conflict = settle(replica, key, pick=pick, actor=page.user)
    except NotFoundError:
        page.flash(page.t("conflict.gone"), "error")
    else:
        page.flash(page.t("conflict.settled", what=conflict.field))
    return page.redirect(page.form.get("back") or "/conflicts")
