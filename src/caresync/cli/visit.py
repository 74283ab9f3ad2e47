"""``caresync visit``: door-knocks (一米叮咚): record them, list them, see who is due, raise a request."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from caresync.cli._common import (
    Env,
    common_options,
    enum_choice,
    fmt_time,
    now_utc,
    parse_moment,
    parse_past_moment,
)
from caresync.cli.ticket import ticket_json
from caresync.core.domain import VisitOutcome

if TYPE_CHECKING:
    from caresync.field.knock import KnockDue

__all__ = ["visit"]


@click.group()
def visit() -> None:
    """Door-knocks (一米叮咚): record them, list them, see who is due."""


@visit.command("record")
@click.argument("resident_id")
@click.option("--outcome", type=enum_choice(VisitOutcome), required=True)
@click.option("--note", default=None)
@click.option("--visitor", default=None, help="Who knocked (default: who is working).")
@click.option("--at", "visited_at", default=None, help="When (default now), e.g. 2026-11-29T09:30.")
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A photo of what the knocker found (made small and sealed on this device).",
)
@common_options
def visit_record(
    env: Env,
    resident_id: str,
    outcome: str,
    note: str | None,
    visitor: str | None,
    visited_at: str | None,
    photo: Path | None,
) -> None:
    """Records a door-knock on a resident, with a photo if one was taken."""
    from caresync.field.knock import knock_round  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast
    from caresync.replica import find_resident  # here, not at the top: keeps start-up fast

    when = None if visited_at is None else parse_past_moment(visited_at, "at")
    with env.open() as replica:
        person = find_resident(replica, resident_id)
        resident_id = person.id
        made = replica.visits.record(
            resident_id=resident_id, outcome=outcome, note=note, visitor=visitor, visited_at=when, photo=photo
        )
        round_ = knock_round(replica, grid=replica.residents.get(resident_id).grid, include_ok=True)
        entry = next((e for e in round_.entries if e.resident_id == resident_id), None)
        flags = entry.flags if entry else []
        data = {**made.model_dump(mode="json", exclude={"history"}), "flags": flags}
    message = env.t("visit.recorded", resident=resident_id, outcome=label("visit", made.outcome, env.lang))
    if made.attachments:
        message += "\n" + env.t("visit.photo", id=made.attachments[0].id)
    if flags:
        message += "\n" + env.t("visit.flagged", reason=label("flag", flags[0], env.lang), resident=resident_id)
    env.out(data, message)


@visit.command("list")
@click.option("--resident", "resident_id", default=None)
@click.option("--visitor", default=None)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@common_options
def visit_list(env: Env, resident_id: str | None, visitor: str | None, limit: int) -> None:
    """Door-knocks, newest first."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        found = replica.visits.list(resident_id=resident_id, visitor=visitor)[:limit]
        names = {r.id: r.name for r in replica.residents.list(include_deleted=True)}

    def text() -> None:
        table = Table(title=env.t("visit.list_title", n=len(found)))
        for col in ("when", "resident", "visitor", "outcome", "note"):
            table.add_column(env.t("field." + col))
        for v in found:
            table.add_row(
                fmt_time(v.visited_at),
                f"{names.get(v.resident_id) or ''} {v.resident_id}",
                v.visitor,
                label("visit", v.outcome, env.lang),
                v.note or "",
            )
        env.console().print(table)

    env.out({"visits": [v.model_dump(mode="json", exclude={"history"}) for v in found]}, text)


def _due_row(env: Env, e: KnockDue) -> list[str]:
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    last = e.last_visit
    state = label("due", e.state, env.lang)
    if e.state == "overdue":
        state = f"[bold red]{state} {e.overdue_days}{env.t('unit.days')}[/bold red]"
    return [
        e.name or "",
        e.resident_id,
        e.address or "",
        "" if last is None else f"{fmt_time(last.visited_at)} {label('visit', last.outcome, env.lang)}",
        fmt_time(e.due_at),
        state,
    ]


@visit.command("due")
@click.option("--knocker", default=None, help="A knocker's worker id or name: their grids.")
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@click.option("--all", "include_ok", is_flag=True, help="Also residents not due yet.")
@click.option("--at", "at", default=None, help="Compute for this time instead of now.")
@common_options
def visit_due(env: Env, knocker: str | None, grid: str | None, include_ok: bool, at: str | None) -> None:
    """Who is due a knock and who is overdue, by building; flagged residents at the top."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.knock import knock_round  # here, not at the top: keeps start-up fast
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    when = None if at is None else parse_moment(at, "at")
    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        round_ = knock_round(replica, knocker=knocker, grid=grid, now=when, include_ok=include_ok)

    def text() -> None:
        console = env.console()
        console.print(
            env.t("due.summary", overdue=round_.count("overdue"), due=round_.count("due"), flagged=len(round_.flagged)),
            markup=False,
        )
        if round_.flagged:
            table = Table(title=env.t("due.flagged_title"), title_style="bold red")
            for col in ("name", "id", "reason", "last_visit", "ticket"):
                table.add_column(env.t("field." + col))
            for e in round_.flagged:
                last = e.last_visit
                table.add_row(
                    e.name or "",
                    e.resident_id,
                    ", ".join(label("flag", f, env.lang) for f in e.flags),
                    "" if last is None else f"{fmt_time(last.visited_at)} {last.visitor}",
                    e.open_ticket or env.t("due.raise_hint", resident=e.resident_id),
                )
            console.print(table)
        for building, rows in round_.by_building.items():
            table = Table(title=building)
            for col in ("name", "id", "address", "last_visit", "due", "state"):
                table.add_column(env.t("field." + col))
            for e in rows:
                table.add_row(*_due_row(env, e))
            console.print(table)

    env.out(round_.to_json(), text)


@visit.command("raise")
@click.argument("resident_id")
@common_options
def visit_raise(env: Env, resident_id: str) -> None:
    """Raises a request about a flagged resident in one step (emergency or early warning, green channel)."""
    from caresync.field.knock import raise_ticket  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        titles = {
            "no_answer_twice": env.t("raise.no_answer_twice"),
            "unwell": env.t("raise.unwell"),
            "emergency": env.t("raise.emergency"),
        }
        from caresync.replica import find_resident  # here, not at the top: keeps start-up fast

        made = raise_ticket(replica, find_resident(replica, resident_id).id, titles=titles)
        env.out(ticket_json(made, now_utc()), env.t("visit.raised", number=made.number, title=made.title))
