"""``caresync report``: the station's figures, as a table, JSON or a page for the wall."""

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
    parse_day,
    t,
)

if TYPE_CHECKING:
    from rich.console import Console

    from caresync.field.reports import StationReport

__all__ = ["render_report", "report"]


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
