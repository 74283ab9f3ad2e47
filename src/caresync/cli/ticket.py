"""``caresync ticket``: requests from order (下单) to taken (接单) to returned (回单), by their numbers.

Each command parses its options, calls one or two library functions and renders the result as text (in the
clerk's language) or JSON. No rule lives here.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from caresync.cli._common import Env, common_options, enum_choice, fmt_time, local_tz, now_utc
from caresync.core.domain import (
    Channel,
    Priority,
    TicketKind,
    TicketStatus,
    in_grid,
)
from caresync.errors import NotFoundError

if TYPE_CHECKING:
    from caresync.core.model import Ticket
    from caresync.replica import Replica

__all__ = ["show_ticket", "ticket", "ticket_done", "ticket_json"]


def ticket_json(ticket: Ticket, now: datetime, *, history: bool = False) -> dict[str, Any]:
    """A ticket as JSON for the station commands (with its SLA state)."""
    from caresync.core.ids import is_provisional  # here, not at the top: keeps start-up fast
    from caresync.field.sla import is_overdue  # here, not at the top: keeps start-up fast

    data: dict[str, Any] = {
        "id": ticket.id,
        "number": ticket.number,
        "number_provisional": is_provisional(ticket.number),
        "former_numbers": ticket.former_numbers,
        "title": ticket.title,
        "kind": ticket.kind.value,
        "channel": ticket.channel.value,
        "grid": ticket.grid,
        "status": ticket.status.value,
        "priority": ticket.priority.value,
        "description": ticket.description,
        "resident_id": ticket.resident_id,
        "visit_id": ticket.visit_id,
        "parcel_id": ticket.parcel_id,
        "assignee": ticket.assignee,
        "submitted_by": ticket.submitted_by,
        "submitted_at": ticket.submitted_at.isoformat(),
        "due_at": ticket.due_at.isoformat(),
        "overdue": is_overdue(ticket, now),
        "resolved_at": None if ticket.resolved_at is None else ticket.resolved_at.isoformat(),
        "resolution": ticket.resolution,
        "closed_at": None if ticket.closed_at is None else ticket.closed_at.isoformat(),
        "rating": None if ticket.rating is None else ticket.rating.model_dump(),
        "mediator": ticket.mediator,
        "outcome": None if ticket.outcome is None else ticket.outcome.value,
        "parties": [p.model_dump(mode="json") for p in ticket.parties],
        "sessions": [s.model_dump(mode="json") for s in ticket.sessions],
        "notes": [n.model_dump(mode="json") for n in ticket.notes],
        "conflicts": len(ticket.conflicts),
        "deleted": ticket.deleted,
    }
    if history:
        data["history"] = [h.model_dump(mode="json") for h in ticket.history]
    return data


def show_ticket(env: Env, ticket: Ticket, now: datetime, resident: str | None = None) -> None:
    """A ticket as a clerk reads it: labels and values in their language, the resident by name (``resident``),
    times local, the history's steps in words."""
    from caresync.cli._names import history_words  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast
    from caresync.field.sla import is_overdue  # here, not at the top: keeps start-up fast

    lang = env.lang
    console = env.console()
    overdue = env.t("ticket.overdue_mark") if is_overdue(ticket, now) else ""
    rows = [
        ("number", ticket.number or "-"),
        ("id", ticket.id),
        ("title", ticket.title),
        ("status", label("status", ticket.status, lang)),
        ("kind", label("kind", ticket.kind, lang)),
        ("channel", label("channel", ticket.channel, lang)),
        ("priority", label("priority", ticket.priority, lang)),
        ("grid", ticket.grid),
        ("assignee", ticket.assignee or "-"),
        ("resident", resident or ticket.resident_id or "-"),
        ("submitted", f"{fmt_time(ticket.submitted_at)} ({ticket.submitted_by})"),
        ("due", f"{fmt_time(ticket.due_at)} {overdue}".strip()),
        ("resolved", fmt_time(ticket.resolved_at) or "-"),
        ("resolution", ticket.resolution or "-"),
        ("closed", fmt_time(ticket.closed_at) or "-"),
        ("rating", "-" if ticket.rating is None else f"{ticket.rating.score}/5 {ticket.rating.comment or ''}".strip()),
    ]
    if ticket.description:
        rows.append(("description", ticket.description))
    if ticket.kind is TicketKind.DISPUTE:
        rows.append(("mediator", ticket.mediator or "-"))
        rows.append(("outcome", "-" if ticket.outcome is None else label("outcome", ticket.outcome, lang)))
        for p in ticket.parties:
            rows.append(("party", f"{p.name}" + (f" ({p.side})" if p.side else "")))
        for s in ticket.sessions:
            rows.append(("session", f"{fmt_time(s.held_at)} {s.mediator}: {s.summary}"))
    for n in ticket.notes:
        rows.append(("note", f"{fmt_time(n.at)} {n.actor}: {n.text or ''}"))
    for a in ticket.attachments:
        rows.append(("attachment", f"{a.id} {a.kind} {a.size} B {fmt_time(a.at)} {a.actor}: {a.caption or ''}"))
    if ticket.conflicts:
        rows.append(("conflicts", env.t("ticket.has_conflicts", n=len(ticket.conflicts))))
    for key, value in rows:
        console.print(f"{env.t('field.' + key)}: {value}", markup=False)
    console.print(env.t("ticket.history"), markup=False)
    for h in ticket.history:
        console.print(f"  {fmt_time(h.at)}  {h.actor:<14} {history_words(h, lang)}", markup=False)


def ticket_done(env: Env, replica: Replica, ticket: Ticket, key: str) -> None:
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    now = now_utc()
    fresh = replica.tickets.get(ticket.id)
    env.out(
        ticket_json(fresh, now),
        env.t(key, number=fresh.number or fresh.id, status=label("status", fresh.status, env.lang)),
    )


@click.group()
def ticket() -> None:
    """Requests from order (下单) to taken (接单) to returned (回单)."""


@ticket.command("submit")
@click.option("--title", required=True, help="What the resident asks for, in a few words.")
@click.option("--kind", type=enum_choice(TicketKind), required=True)
@click.option("--grid", required=True, help="community/area/building")
@click.option("--channel", type=enum_choice(Channel), default="walk_in", show_default=True)
@click.option(
    "--resident", "resident_id", default=None, help="The resident: their id, or their name when only one has it."
)
@click.option("--priority", type=enum_choice(Priority), default="normal", show_default=True)
@click.option("--description", default=None)
@click.option("--due-hours", type=click.IntRange(1, 24 * 365), default=None, help="Due this many hours from now.")
@click.option("--parcel", "parcel_id", default=None, help="The parcel (id or envelope code) that carried the request.")
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def ticket_submit(
    env: Env,
    title: str,
    kind: str,
    grid: str,
    channel: str,
    resident_id: str | None,
    priority: str,
    description: str | None,
    due_hours: int | None,
    parcel_id: str | None,
    new_grid: bool,
) -> None:
    """Places a request and prints the number to tell the resident."""
    from caresync.core.ids import is_provisional  # here, not at the top: keeps start-up fast
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        if parcel_id is not None:  # the code on the envelope, or the parcel's id
            parcel = replica.parcels.by_code(parcel_id)
            if parcel is not None:
                parcel_id = parcel.id
            elif not re.match(r"^P-[0-9a-f]{16}-[0-9]+$", parcel_id):
                raise NotFoundError(env.t("ticket.no_parcel", code=parcel_id))
        if resident_id is not None:
            from caresync.replica import find_resident  # here, not at the top: keeps start-up fast

            resident_id = find_resident(replica, resident_id).id
        due = None if due_hours is None else now_utc() + timedelta(hours=due_hours)
        made = replica.tickets.submit(
            title=title,
            kind=kind,
            grid=grid,
            channel=channel,
            resident_id=resident_id,
            priority=priority,
            description=description,
            due_at=due,
            parcel_id=parcel_id,
        )
        key = "ticket.submitted_provisional" if is_provisional(made.number) else "ticket.submitted"
        env.out(
            ticket_json(made, now_utc()),
            env.t(key, number=made.number, id=made.id, due=fmt_time(made.due_at)),
        )


@ticket.command("list")
@click.option("--status", type=enum_choice(TicketStatus), default=None)
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@click.option("--assignee", default=None)
@click.option("--kind", type=enum_choice(TicketKind), default=None)
@click.option("--all", "show_all", is_flag=True, help="Also resolved, closed and cancelled tickets.")
@common_options
def ticket_list(
    env: Env, status: str | None, grid: str | None, assignee: str | None, kind: str | None, show_all: bool
) -> None:
    """Tickets, overdue ones first, then soonest due. Reads only what it shows of each ticket (``--json``: the
    list's fields; `ticket show` gives a ticket whole)."""
    from caresync.cli._table import table_text  # here, not at the top: keeps start-up fast
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        now = now_utc()
        found = [
            t
            for t in replica.tickets.summaries(status=status, assignee=assignee, kind=kind)
            if (grid is None or in_grid(t.grid, grid)) and (show_all or status is not None or t.is_open)
        ]
    ordered = sorted(found, key=lambda t: (not t.is_overdue(now), t.due_at, t.id))  # as field.sla.sla_sorted

    def text() -> None:
        if not ordered:
            click.echo(env.t("ticket.none"))
            return
        overdue = sum(t.is_overdue(now) for t in ordered)
        tz = local_tz()
        late = env.t("ticket.overdue_mark")
        kinds: dict[str, str] = {}
        statuses: dict[str, str] = {}
        rows = [
            [
                t.number or t.id,
                t.title,
                kinds.setdefault(t.kind, label("kind", t.kind, env.lang)),
                statuses.setdefault(t.status, label("status", t.status, env.lang)),
                t.grid,
                t.assignee or "",
                f"{fmt_time(t.due_at, tz)} {late}" if t.is_overdue(now) else fmt_time(t.due_at, tz),
            ]
            for t in ordered
        ]
        headings = [env.t("field." + col) for col in ("number", "title", "kind", "status", "grid", "assignee", "due")]
        click.echo(table_text(env.t("ticket.list_title", n=len(ordered), overdue=overdue), headings, rows))

    if env.as_json:
        env.out({"tickets": [t.to_json(now) for t in ordered]}, text)
    else:
        text()


@ticket.command("show")
@click.argument("ref")
@common_options
def ticket_show(env: Env, ref: str) -> None:
    """One ticket by its number or id: details, notes, mediation record and history."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = find_ticket(replica, ref)
        now = now_utc()
        resident = None
        if found.resident_id is not None:
            person = replica.residents.get(found.resident_id)
            resident = f"{person.name or '-'} ({person.id})"
        env.out(ticket_json(found, now, history=True), lambda: show_ticket(env, found, now, resident))


@ticket.command("accept")
@click.argument("ref")
@click.option("--assignee", required=True, help="Who takes the request (接单).")
@common_options
def ticket_accept(env: Env, ref: str, assignee: str) -> None:
    """A worker takes the request (接单)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        ticket_done(env, replica, replica.tickets.accept(found.id, assignee=assignee), "ticket.moved")


@ticket.command("start")
@click.argument("ref")
@common_options
def ticket_start(env: Env, ref: str) -> None:
    """Work on an accepted request begins."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        ticket_done(env, replica, replica.tickets.start(find_ticket(replica, ref).id), "ticket.moved")


@ticket.command("resolve")
@click.argument("ref")
@click.option("--resolution", default=None, help="How it was solved.")
@common_options
def ticket_resolve(env: Env, ref: str, resolution: str | None) -> None:
    """The work is done."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        ticket_done(env, replica, replica.tickets.resolve(found.id, resolution=resolution), "ticket.moved")


@ticket.command("close")
@click.argument("ref")
@common_options
def ticket_close(env: Env, ref: str) -> None:
    """The result is returned to the resident (回单)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        ticket_done(env, replica, replica.tickets.close(find_ticket(replica, ref).id), "ticket.moved")


@ticket.command("rate")
@click.argument("ref")
@click.argument("score", type=click.IntRange(1, 5))
@click.option("--comment", default=None)
@common_options
def ticket_rate(env: Env, ref: str, score: int, comment: str | None) -> None:
    """Records the resident's rating, 1 to 5, of a returned request."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        ticket_done(env, replica, replica.tickets.rate(found.id, score=score, comment=comment), "ticket.rated")


@ticket.command("escalate")
@click.argument("ref")
@click.option("--reason", default=None)
@common_options
def ticket_escalate(env: Env, ref: str, reason: str | None) -> None:
    """Hands an open request up to the parent grid (building → area → community)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = replica.tickets.escalate(find_ticket(replica, ref).id, reason=reason)
        env.out(
            ticket_json(found, now_utc()), env.t("ticket.escalated", number=found.number or found.id, grid=found.grid)
        )


@ticket.command("reopen")
@click.argument("ref")
@click.option("--reason", required=True)
@common_options
def ticket_reopen(env: Env, ref: str, reason: str) -> None:
    """Reopens a resolved, closed or cancelled request."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        ticket_done(env, replica, replica.tickets.reopen(find_ticket(replica, ref).id, reason=reason), "ticket.moved")


@ticket.command("cancel")
@click.argument("ref")
@click.option("--reason", required=True)
@common_options
def ticket_cancel(env: Env, ref: str, reason: str) -> None:
    """Cancels an open request, saying why."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        ticket_done(env, replica, replica.tickets.cancel(find_ticket(replica, ref).id, reason=reason), "ticket.moved")


@ticket.command("note")
@click.argument("ref")
@click.argument("text")
@common_options
def ticket_note(env: Env, ref: str, text: str) -> None:
    """Adds a note to a ticket (notes are never overwritten)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        replica.tickets.note(found.id, text)
        ticket_done(env, replica, found, "ticket.noted")


@ticket.command("attach")
@click.argument("ref")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["photo", "signature", "document"]), default="photo", show_default=True)
@click.option("--caption", default=None, help="A few words about it (sealed like every private field).")
@common_options
def ticket_attach(env: Env, ref: str, file: Path, kind: str, caption: str | None) -> None:
    """Attaches a photo, a signature or a document to a ticket (a photo is made small first)."""
    from caresync.core.media import AttachmentKind  # here, not at the top: keeps start-up fast
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        added = replica.attachments.add(found.id, file, kind=cast(AttachmentKind, kind), caption=caption)
    env.out(
        added.model_dump(mode="json"),
        env.t("ticket.attached", number=found.number or found.id, kind=kind, id=added.id, size=added.size),
    )


@ticket.command("numbers")
@common_options
def ticket_numbers(env: Env) -> None:
    """This device's ticket numbers: the blocks the server reserved for it, the next number, and the tickets
    still showing a provisional number (its next sync gives them short ones)."""
    with env.read() as replica:
        blocks = replica.numbers.blocks()
        waiting = replica.tickets.provisional()
        info = {
            "next": replica.numbers.peek(),
            "blocks": [{"start": b.start, "count": b.count, "used": b.used} for b in blocks],
            "provisional": [{"number": t.number, "id": t.id} for t in waiting],
        }

    def text() -> None:
        for b in blocks:
            click.echo(env.t("numbers.block", start=b.start, end=b.end, left=b.left))
        if not blocks:
            click.echo(env.t("numbers.no_block"))
        click.echo(env.t("numbers.next", number=info["next"]))
        if waiting:
            click.echo(env.t("numbers.waiting", n=len(waiting)))

    env.out(info, text)
