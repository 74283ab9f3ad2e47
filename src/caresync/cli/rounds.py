"""Door-knock, review and report commands: ``visit``, ``conflicts`` and ``report``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from caresync.cli._common import (
    Env,
    common_options,
    day_start,
    days,
    fmt_time,
    local_tz,
    now_utc,
    parse_day,
    parse_moment,
    parse_past_moment,
    t,
)
from caresync.cli.station import ticket_json
from caresync.core.domain import VisitOutcome

if TYPE_CHECKING:
    from rich.console import Console

    from caresync.field.knock import KnockDue
    from caresync.field.reports import StationReport

__all__ = ["conflicts", "render_report", "report", "visit"]


@click.group()
def visit() -> None:
    """Door-knocks (一米叮咚): record them, list them, see who is due."""


@visit.command("record")
@click.argument("resident_id")
@click.option("--outcome", type=click.Choice([o.value for o in VisitOutcome]), required=True)
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

    when = None if visited_at is None else parse_past_moment(visited_at, "at")
    with env.open() as replica:
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
        made = raise_ticket(replica, resident_id, titles=titles)
        env.out(ticket_json(made, now_utc()), env.t("visit.raised", number=made.number, title=made.title))


# --- the conflict review queue -----------------------------------------------------------------------------


@click.group()
def conflicts() -> None:
    """The review queue: conflicts that need a decision, and edits made in parallel (for information)."""


@conflicts.command("list")
@click.option("--no-parallel", "no_parallel", is_flag=True, help="Only conflicts that need a decision.")
@click.option("--days", "days_back", type=click.IntRange(1, 365), default=7, show_default=True)
@common_options
def conflicts_list(env: Env, no_parallel: bool, days_back: int) -> None:
    """Every unresolved conflict with the competing values: who, on which device, when."""
    from caresync.field.labels import label  # here, not at the top: keeps start-up fast
    from caresync.field.review import review_queue  # here, not at the top: keeps start-up fast

    with env.read() as replica:
        items = review_queue(replica, parallel=not no_parallel, days=days_back)
    decide = [i for i in items if i.needs_decision]

    def text() -> None:
        console = env.console()
        if not items:
            console.print(env.t("conflicts.none"), markup=False)
            return
        console.print(
            env.t("conflicts.summary", conflicts=len(decide), parallel=len(items) - len(decide)), markup=False
        )
        for item in items:
            head = f"[{label('level', item.level, env.lang)}] {item.key}  {item.label}"
            console.print(head, markup=False, style="bold red" if item.needs_decision else "yellow")
            for n, c in enumerate(item.changes, 1):
                shown = env.t("conflicts.shown") if c.shown and item.needs_decision else ""
                console.print(
                    f"  {n}. {c.field} = {c.value!r}  {c.actor} @ {c.device[:8]}  {fmt_time(c.at)} {shown}".rstrip(),
                    markup=False,
                )
            if item.needs_decision:
                hints = {"status": "conflicts.hint_status", "custody": "conflicts.hint_custody"}
                hint = hints.get(item.field or "", "conflicts.hint")
                console.print("     " + env.t(hint, key=item.key), markup=False)

    env.out({"needs_decision": len(decide), "items": [i.to_json() for i in items]}, text)


@conflicts.command("resolve")
@click.argument("key")
@click.option("--value", "value_text", default=None, help="The value to keep (JSON or text).")
@click.option("--pick", type=click.IntRange(1), default=None, help="Keep the N-th competing value as listed.")
@common_options
def conflicts_resolve(env: Env, key: str, value_text: str | None, pick: int | None) -> None:
    """Settles one conflict (RECORD#FIELD) with an ordinary later edit; sync carries it to everyone."""
    from caresync.field.review import find_conflict, parse_value, settle  # here, not at the top: keeps start-up fast

    with env.open() as replica:
        value: Any = None
        if value_text is not None:  # text for a text field (a title of digits stays text), else JSON
            texts = all(isinstance(v.value, str) for v in find_conflict(replica, key).values)
            value = value_text if texts else parse_value(value_text)
        before = settle(replica, key, value=value, pick=pick)
        left = len(replica.conflicts())
    env.out(
        {"resolved": key, "field": before.field, "left": left},
        env.t("conflicts.resolved", key=key, left=left),
    )


# --- reports -----------------------------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _report_rows(lang: str, r: StationReport) -> list[tuple[str, str]]:
    return [
        (t("report.received", lang), str(r.tickets_received)),
        (t("report.resolved", lang), str(r.tickets_resolved)),
        (t("report.satisfaction", lang), f"{_pct(r.satisfaction_rate)} ({r.tickets_rated})"),
        (t("report.within48", lang), _pct(r.resolved_within_48h_rate)),
        (t("report.on_time", lang), _pct(r.resolved_on_time_rate)),
        (
            t("report.median", lang),
            "-" if r.median_hours_to_resolve is None else f"{r.median_hours_to_resolve:.1f} h",
        ),
        (t("report.open", lang), f"{r.tickets_open} ({t('report.overdue_n', lang, n=r.tickets_overdue)})"),
        (t("report.transit", lang), f"{r.courier_transit_hours:.1f} h ({_pct(r.courier_transit_share)})"),
        (t("report.mediated", lang), str(r.disputes_mediated)),
        (t("report.mediation_success", lang), _pct(r.mediation_success_rate)),
        (t("report.visits", lang), str(r.visits)),
        (t("report.served", lang), str(r.residents_served)),
        (t("report.residents_overdue", lang), str(r.residents_overdue)),
    ]


@click.command()
@click.option("--from", "start_text", default=None, help="First day, YYYY-MM-DD (default: from the beginning).")
@click.option("--to", "end_text", default=None, help="Last day, YYYY-MM-DD, included (default: now).")
@click.option("--grid", default=None, help="Only this grid and the grids in it.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@common_options
def report(env: Env, start_text: str | None, end_text: str | None, grid: str | None, html_file: Path | None) -> None:
    """The station's figures from the records: a table, JSON, or a page with charts for the wall (--html)."""
    from caresync.field.grids import check_known_grid  # here, not at the top: keeps start-up fast
    from caresync.field.report_html import render_html  # here, not at the top: keeps start-up fast
    from caresync.field.reports import station_report  # here, not at the top: keeps start-up fast

    start = None if start_text is None else day_start(parse_day(start_text, "from"))
    end = None if end_text is None else day_start(parse_day(end_text, "to")) + days(1)
    with env.read() as replica:
        if grid is not None:
            check_known_grid(replica, grid, filtering=True)
        result = station_report(replica, start=start, end=end, grid=grid)
    if html_file is not None:
        html_file.write_text(render_html(result, lang=env.lang, tz=local_tz()), encoding="utf-8")
        if not env.as_json:
            click.echo(env.t("report.written", path=html_file))
            return

    data: dict[str, Any] = result.to_json()
    env.out(data, lambda: render_report(env.console(), result, env.lang))


def render_report(console: Console, result: StationReport, lang: str) -> None:
    """Prints a station report as `caresync report` shows it: a title, the table of figures, and the counts by
    kind, channel and grid (``caresync demo`` prints its report with this too)."""
    from rich.table import Table  # here, not at the top: keeps start-up fast

    from caresync.field.labels import label  # here, not at the top: keeps start-up fast

    period = f"{fmt_time(result.period_start) or '…'} – {fmt_time(result.period_end)}"
    grid = result.grid or t("report.all_grids", lang)
    console.print(t("report.title", lang, period=period, grid=grid), markup=False)
    table = Table()
    table.add_column(t("report.figure", lang))
    table.add_column(t("report.value", lang), justify="right")
    for name, value in _report_rows(lang, result):
        table.add_row(name, value)
    console.print(table)
    for title, counts, group in (
        (t("report.by_kind", lang), result.by_kind, "kind"),
        (t("report.by_channel", lang), result.by_channel, "channel"),
        (t("report.by_grid", lang), result.by_grid, None),
    ):
        if counts:
            parts = ", ".join(f"{label(group, k, lang) if group else k} {v}" for k, v in counts.items())
            console.print(f"{title}: {parts}", markup=False)
