"""``caresync export``: the station's records as CSV or XLSX, or requests as Open311 GeoReport v2 JSON.

The tables are :mod:`caresync.field.exports`'; this command opens the replica, builds one and writes it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from caresync.cli._common import Env, common_options, day_start, parse_day
from caresync.field._export_names import EXPORTS

if TYPE_CHECKING:
    pass

__all__ = ["export"]


@click.command()
@click.argument("what", type=click.Choice([*EXPORTS, "open311"]))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx", "json"]),
    default=None,
    help="csv or xlsx (open311: json). Default: from the file's ending, else csv.",
)
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="The file to write.")
@click.option("--from", "first", default=None, help="The report's first day, YYYY-MM-DD (report only).")
@click.option("--to", "last", default=None, help="The report's last day, YYYY-MM-DD (report only, included).")
@common_options
def export(env: Env, what: str, fmt: str | None, out: Path, first: str | None, last: str | None) -> None:
    """Writes requests, visits, residents, parcels or the report as CSV or XLSX (headers in --lang), or requests as
    Open311 GeoReport v2 JSON (open311: no private details). CSV and XLSX hold residents' private details."""
    from caresync.field.exports import (  # here, not at the top: keeps start-up fast
        open311_requests,
        table,
        write_csv,
        write_xlsx,
    )

    fmt = fmt or {".xlsx": "xlsx", ".json": "json"}.get(out.suffix.lower(), "csv")
    if (what == "open311") != (fmt == "json"):
        raise click.UsageError(env.t("export.format", what=what, fmt=fmt))
    start = None if first is None else day_start(parse_day(first, "from"))
    end = None if last is None else day_start(parse_day(last, "to")) + timedelta(days=1)
    with env.read() as replica:
        if what == "open311":
            data = open311_requests(replica)
            rows = len(data)
            out.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        else:
            made = table(replica, what, lang=env.lang, start=start, end=end)
            rows = len(made.rows)
            if fmt == "xlsx":
                write_xlsx([made], out)
            else:
                with out.open("w", encoding="utf-8-sig", newline="") as f:
                    write_csv(made, f)
    env.out({"what": what, "format": fmt, "rows": rows, "file": str(out)}, env.t("export.written", n=rows, path=out))
