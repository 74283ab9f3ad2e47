"""Station commands: ``init``, ``ticket``, ``resident``, ``worker`` and ``dispute``.

Each command parses its options, calls one or two library functions and renders the result as text (in the
clerk's language) or JSON. No rule lives here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from caresync.cli._common import CONFIG_FILE, Env, common_options, fmt_time, now_utc, parse_past_moment
from caresync.core.domain import (
    Channel,
    DisputeOutcome,
    Priority,
    ResidentFlag,
    Role,
    TicketKind,
    TicketStatus,
    in_grid,
)
from caresync.errors import CaresyncError, InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from caresync.core.model import Resident, Ticket, Worker
    from caresync.replica import Replica

__all__ = ["dispute", "init", "resident", "ticket", "ticket_json", "worker"]


def _choice(enum: Any) -> click.Choice[str]:
    return click.Choice([m.value for m in enum])


# --- init --------------------------------------------------------------------------------------------------


@click.command()
@click.option("--server", "server", default=None, help="The sync server's address, saved for caresync sync.")
@common_options
def init(env: Env, server: str | None) -> None:
    """Sets up this device: its folder, its replica file and who works on it (--actor)."""
    from caresync.replica import Replica  # here, not at the top: keeps start-up fast

    path = env.replica_path
    existed = path.exists()
    if existed:
        env.check_replica(path)  # init makes a new replica, never one out of another file
    actor = env.actor or env.config().get("actor")
    if not actor:
        raise CaresyncError(env.t("err.init_actor"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with Replica.open(path, actor=actor) as replica:
        info = {
            "home": str(env.home),
            "replica": str(path),
            "device": replica.id,
            "actor": actor,
            "created": not existed,
        }
    if env.db is None:
        config = env.config()
        config["actor"] = actor
        if server:
            config["server"] = server
        (env.home / CONFIG_FILE).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        info["server"] = config.get("server")
    key = "init.created" if not existed else "init.exists"
    env.out(info, env.t(key, path=path, device=info["device"], actor=actor))


# --- tickets -----------------------------------------------------------------------------------------------


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


def _show_ticket(env: Env, ticket: Ticket, now: datetime) -> None:
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
        ("resident", ticket.resident_id or "-"),
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
        console.print(f"  {fmt_time(h.at)}  {h.actor:<14} {h.action}", markup=False)


def _ticket_done(env: Env, replica: Replica, ticket: Ticket, key: str) -> None:
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
@click.option("--kind", type=_choice(TicketKind), required=True)
@click.option("--grid", required=True, help="community/area/building")
@click.option("--channel", type=_choice(Channel), default="walk_in", show_default=True)
@click.option("--resident", "resident_id", default=None, help="The resident's id.")
@click.option("--priority", type=_choice(Priority), default="normal", show_default=True)
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
@click.option("--status", type=_choice(TicketStatus), default=None)
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@click.option("--assignee", default=None)
@click.option("--kind", type=_choice(TicketKind), default=None)
@click.option("--all", "show_all", is_flag=True, help="Also resolved, closed and cancelled tickets.")
@common_options
def ticket_list(
    env: Env, status: str | None, grid: str | None, assignee: str | None, kind: str | None, show_all: bool
) -> None:
    """Tickets, overdue ones first, then soonest due."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast
    from caresync.field.sla import is_overdue, sla_sorted  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        now = now_utc()
        found = replica.tickets.list(status=status, assignee=assignee, kind=kind)
        found = [
            t
            for t in found
            if (grid is None or in_grid(t.grid, grid)) and (show_all or status is not None or t.is_open)
        ]
        ordered = sla_sorted(found, now)

    def text() -> None:
        if not ordered:
            click.echo(env.t("ticket.none"))
            return
        table = Table(
            title=env.t("ticket.list_title", n=len(ordered), overdue=sum(is_overdue(t, now) for t in ordered))
        )
        for col in ("number", "title", "kind", "status", "grid", "assignee", "due"):
            table.add_column(env.t("field." + col))
        for t in ordered:
            due = fmt_time(t.due_at)
            if is_overdue(t, now):
                due = f"[bold red]{due} {env.t('ticket.overdue_mark')}[/bold red]"
            table.add_row(
                t.number or t.id,
                t.title,
                label("kind", t.kind, env.lang),
                label("status", t.status, env.lang),
                t.grid,
                t.assignee or "",
                due,
            )
        env.console().print(table)

    env.out({"tickets": [ticket_json(t, now) for t in ordered]}, text)


@ticket.command("show")
@click.argument("ref")
@common_options
def ticket_show(env: Env, ref: str) -> None:
    """One ticket by its number or id: details, notes, mediation record and history."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = find_ticket(replica, ref)
        now = now_utc()
        env.out(ticket_json(found, now, history=True), lambda: _show_ticket(env, found, now))


@ticket.command("accept")
@click.argument("ref")
@click.option("--assignee", required=True, help="Who takes the request (接单).")
@common_options
def ticket_accept(env: Env, ref: str, assignee: str) -> None:
    """A worker takes the request (接单)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        _ticket_done(env, replica, replica.tickets.accept(found.id, assignee=assignee), "ticket.moved")


@ticket.command("start")
@click.argument("ref")
@common_options
def ticket_start(env: Env, ref: str) -> None:
    """Work on an accepted request begins."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        _ticket_done(env, replica, replica.tickets.start(find_ticket(replica, ref).id), "ticket.moved")


@ticket.command("resolve")
@click.argument("ref")
@click.option("--resolution", default=None, help="How it was solved.")
@common_options
def ticket_resolve(env: Env, ref: str, resolution: str | None) -> None:
    """The work is done."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        _ticket_done(env, replica, replica.tickets.resolve(found.id, resolution=resolution), "ticket.moved")


@ticket.command("close")
@click.argument("ref")
@common_options
def ticket_close(env: Env, ref: str) -> None:
    """The result is returned to the resident (回单)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        _ticket_done(env, replica, replica.tickets.close(find_ticket(replica, ref).id), "ticket.moved")


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
        _ticket_done(env, replica, replica.tickets.rate(found.id, score=score, comment=comment), "ticket.rated")


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
        _ticket_done(env, replica, replica.tickets.reopen(find_ticket(replica, ref).id, reason=reason), "ticket.moved")


@ticket.command("cancel")
@click.argument("ref")
@click.option("--reason", required=True)
@common_options
def ticket_cancel(env: Env, ref: str, reason: str) -> None:
    """Cancels an open request, saying why."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        _ticket_done(env, replica, replica.tickets.cancel(find_ticket(replica, ref).id, reason=reason), "ticket.moved")


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
        _ticket_done(env, replica, found, "ticket.noted")


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


# --- residents ---------------------------------------------------------------------------------------------


def resident_json(resident: Resident) -> dict[str, Any]:
    """A resident as JSON (without the change history)."""
    return resident.model_dump(mode="json", exclude={"history"})


@click.group()
def resident() -> None:
    """Residents the station serves, and how often to knock on their door."""


_RESIDENT_OPTIONS = [
    click.option("--address", default=None),
    click.option("--phone", default=None),
    click.option("--flag", "flags", multiple=True, type=_choice(ResidentFlag), help="Repeat for several."),
    click.option(
        "--knock-every", "knock_every", type=click.IntRange(1, 365), default=None, help="Days between knocks."
    ),
    click.option("--birth-year", type=int, default=None),
]


def _resident_options(func: Any) -> Any:
    for option in reversed(_RESIDENT_OPTIONS):
        func = option(func)
    return func


@resident.command("add")
@click.option("--name", required=True)
@click.option("--grid", required=True, help="community/area/building")
@_resident_options
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def resident_add(
    env: Env,
    name: str,
    grid: str,
    address: str | None,
    phone: str | None,
    flags: tuple[str, ...],
    knock_every: int | None,
    birth_year: int | None,
    new_grid: bool,
) -> None:
    """Registers a resident in a grid."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        made = replica.residents.register(
            name=name,
            grid=grid,
            address=address,
            phone=phone,
            flags=flags,
            knock_every_days=knock_every,
            birth_year=birth_year,
        )
        env.out(resident_json(made), env.t("resident.added", name=made.name, id=made.id))


@resident.command("list")
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@common_options
def resident_list(env: Env, grid: str | None) -> None:
    """Residents, by grid."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        found = [r for r in replica.residents.list() if grid is None or in_grid(r.grid, grid)]
        found.sort(key=lambda r: (r.grid, r.name or "", r.id))

    def text() -> None:
        table = Table(title=env.t("resident.list_title", n=len(found)))
        for col in ("id", "name", "grid", "address", "flags", "knock_every"):
            table.add_column(env.t("field." + col))
        for r in found:
            table.add_row(
                r.id,
                r.name or "",
                r.grid,
                r.address or "",
                ", ".join(label("resident", f, env.lang) for f in r.flags),
                str(r.knock_every_days or ""),
            )
        env.console().print(table)

    env.out({"residents": [resident_json(r) for r in found]}, text)


@resident.command("show")
@click.argument("resident_id")
@common_options
def resident_show(env: Env, resident_id: str) -> None:
    """One resident, with their recent knocks and requests."""
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = replica.residents.get(resident_id)
        visits = replica.visits.list(resident_id=resident_id)[:10]
        tickets = replica.tickets.list(resident_id=resident_id)
        data = {
            **resident_json(found),
            "visits": [v.model_dump(mode="json", exclude={"history"}) for v in visits],
            "tickets": [{"number": t.number, "id": t.id, "title": t.title, "status": t.status.value} for t in tickets],
        }

    def text() -> None:
        console = env.console()
        for key, value in (
            ("id", found.id),
            ("name", found.name or ""),
            ("grid", found.grid),
            ("address", found.address or ""),
            ("phone", found.phone or ""),
            ("flags", ", ".join(label("resident", f, env.lang) for f in found.flags)),
            ("knock_every", found.knock_every_days or ""),
            ("birth_year", found.birth_year or ""),
        ):
            console.print(f"{env.t('field.' + key)}: {value}", markup=False)
        for v in visits:
            line = f"  {fmt_time(v.visited_at)} {v.visitor}: {label('visit', v.outcome, env.lang)} {v.note or ''}"
            console.print(line, markup=False)
        for t in tickets:
            console.print(f"  {t.number or t.id} {t.title} ({label('status', t.status, env.lang)})", markup=False)

    env.out(data, text)


@resident.command("edit")
@click.argument("resident_id")
@click.option("--name", default=None)
@click.option("--grid", default=None)
@_resident_options
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def resident_edit(
    env: Env,
    resident_id: str,
    name: str | None,
    grid: str | None,
    address: str | None,
    phone: str | None,
    flags: tuple[str, ...],
    knock_every: int | None,
    birth_year: int | None,
    new_grid: bool,
) -> None:
    """Changes a resident's details (only the options given; --flag replaces the flags)."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("name", name),
            ("grid", grid),
            ("address", address),
            ("phone", phone),
            ("knock_every_days", knock_every),
            ("birth_year", birth_year),
        )
        if v is not None
    }
    if flags:
        changes["flags"] = list(flags)
    if not changes:
        raise InvalidInputError(env.t("resident.nothing"), [("options", "--name, --grid, --address, ...")])
    with env.open() as replica:
        if grid is not None:
            grid = check_known_grid(replica, grid, new=new_grid)
        edited = replica.residents.edit(resident_id, **changes)
        env.out(resident_json(edited), env.t("resident.edited", name=edited.name, fields=", ".join(changes)))


# --- workers -----------------------------------------------------------------------------------------------


def _worker_json(w: Worker) -> dict[str, Any]:
    return w.model_dump(mode="json", exclude={"history"})


@click.group()
def worker() -> None:
    """Grid workers, knockers, mediators and couriers, with the grids they look after."""


@worker.command("add")
@click.option("--name", required=True)
@click.option("--role", type=_choice(Role), required=True)
@click.option("--grid", "grids", multiple=True, help="A grid they look after; repeat for several.")
@click.option("--phone", default=None)
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def worker_add(env: Env, name: str, role: str, grids: tuple[str, ...], phone: str | None, new_grid: bool) -> None:
    """Adds a worker."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grids = tuple(check_known_grid(replica, g, new=new_grid) for g in grids)
        made = replica.workers.add(name=name, role=role, grids=grids, phone=phone)
        env.out(_worker_json(made), env.t("worker.added", name=made.name, id=made.id))


@worker.command("list")
@click.option("--role", type=_choice(Role), default=None)
@common_options
def worker_list(env: Env, role: str | None) -> None:
    """Workers, optionally of one role."""
    with env.read() as replica:
        found = replica.workers.list(role=role)

    def text() -> None:
        for w in found:
            click.echo(f"{w.id}  {w.name}  {w.role.value}  {', '.join(w.grids)}")

    env.out({"workers": [_worker_json(w) for w in found]}, text)


# --- disputes ----------------------------------------------------------------------------------------------


def _party(text: str) -> tuple[str, str | None]:
    name, _, side = text.partition(":")
    return name.strip(), (side.strip() or None)


@click.group()
def dispute() -> None:
    """Mediation (和事佬): open a dispute, record sessions, record the outcome."""


@dispute.command("open")
@click.option("--title", required=True)
@click.option("--grid", required=True)
@click.option("--party", "parties", multiple=True, help="NAME or NAME:SIDE; repeat for each party.")
@click.option("--resident", "resident_id", default=None)
@click.option("--channel", type=_choice(Channel), default="walk_in", show_default=True)
@click.option("--description", default=None)
@click.option("--mediator", default=None, help="Who will mediate.")
@click.option(
    "--new-grid", is_flag=True, help="The grid is new to this deployment (else a grid no record is in is refused)."
)
@common_options
def dispute_open(
    env: Env,
    title: str,
    grid: str,
    parties: tuple[str, ...],
    resident_id: str | None,
    channel: str,
    description: str | None,
    mediator: str | None,
    new_grid: bool,
) -> None:
    """Opens a dispute for mediation, with its parties, in one step."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        grid = check_known_grid(replica, grid, new=new_grid)
        with replica.batch():
            made = replica.tickets.submit(
                title=title,
                kind="dispute",
                grid=grid,
                channel=channel,
                resident_id=resident_id,
                description=description,
            )
            for text in parties:
                name, side = _party(text)
                replica.tickets.add_party(made.id, name=name, side=side)
            if mediator:
                replica.tickets.edit(made.id, mediator=mediator)
        fresh = replica.tickets.get(made.id)
        env.out(ticket_json(fresh, now_utc()), env.t("dispute.opened", number=fresh.number, parties=len(parties)))


@dispute.command("party")
@click.argument("ref")
@click.argument("party")
@click.option("--resident", "resident_id", default=None)
@common_options
def dispute_party(env: Env, ref: str, party: str, resident_id: str | None) -> None:
    """Adds a party (NAME or NAME:SIDE) to a dispute."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        name, side = _party(party)
        replica.tickets.add_party(found.id, name=name, side=side, resident_id=resident_id)
        _ticket_done(env, replica, found, "dispute.party_added")


@dispute.command("session")
@click.argument("ref")
@click.option("--mediator", required=True)
@click.option("--summary", required=True, help="What was said and agreed.")
@click.option("--attendee", "attendees", multiple=True)
@click.option("--at", "held_at", default=None, help="When it was held (default now), e.g. 2026-11-29T14:30.")
@common_options
def dispute_session(
    env: Env, ref: str, mediator: str, summary: str, attendees: tuple[str, ...], held_at: str | None
) -> None:
    """Records a mediation session."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    when = None if held_at is None else parse_past_moment(held_at, "at")
    with env.open() as replica:
        found = find_ticket(replica, ref)
        replica.tickets.record_session(found.id, mediator=mediator, summary=summary, held_at=when, attendees=attendees)
        _ticket_done(env, replica, found, "dispute.session_added")


@dispute.command("outcome")
@click.argument("ref")
@click.argument("outcome", type=_choice(DisputeOutcome))
@click.option("--mediator", default=None)
@click.option("--close", "close", is_flag=True, help="Also resolve and return (close) the dispute.")
@common_options
def dispute_outcome(env: Env, ref: str, outcome: str, mediator: str | None, close: bool) -> None:
    """Records how the mediation ended: settled, not_settled or referred (a dispute closes only with one)."""
    from caresync.replica import find_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        found = find_ticket(replica, ref)
        with replica.batch():
            replica.tickets.set_outcome(found.id, outcome, mediator=mediator)
            if close:
                if replica.tickets.get(found.id).is_open:
                    replica.tickets.resolve(found.id, resolution=outcome)
                replica.tickets.close(found.id)
        _ticket_done(env, replica, found, "dispute.outcome_set")
