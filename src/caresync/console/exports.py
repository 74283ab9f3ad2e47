"""The Exports page and its downloads: CSV and XLSX of requests, visits, residents, parcels and the report, and
requests as Open311 GeoReport v2 JSON (no private details). The tables are :mod:`caresync.exports`'."""

from __future__ import annotations

import io
import json
from datetime import date

from starlette.responses import Response

from caresync.console.context import Page
from caresync.console.reports import period_of
from caresync.console.routing import route
from caresync.errors import InvalidInputError
from caresync.field.exports import EXPORTS, csv_bytes, open311_requests, table, write_xlsx
from caresync.replica import Replica

__all__: list[str] = []

_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}


@route("/exports")
def exports(page: Page, replica: Replica) -> Response:
    """The downloads, one link each."""
    return page.render("exports.html", names=EXPORTS)


@route("/exports/{name}.{fmt}")
def download(page: Page, replica: Replica) -> Response:
    """One export as a file to save (named for the station and the day)."""
    name, fmt = str(page.params["name"]), str(page.params["fmt"])
    day = date.today().isoformat()
    if name == "open311" and fmt == "json":
        body = json.dumps(open311_requests(replica), ensure_ascii=False, indent=2).encode()
    elif fmt in ("csv", "xlsx") and name in EXPORTS:
        start, end = period_of(page)
        data = table(replica, name, lang=page.lang, tz=page.console.settings.tz, start=start, end=end)
        if fmt == "csv":
            body = csv_bytes(data)
        else:
            buffer = io.BytesIO()
            write_xlsx([data], buffer)
            body = buffer.getvalue()
    else:
        raise InvalidInputError("Cannot export", [("file", f"{name}.{fmt} is not an export of the console")])
    filename = f"caresync-{name}-{day}.{fmt}"
    return Response(
        body,
        media_type=_TYPES[fmt],
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
