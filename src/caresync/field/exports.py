"""Exports of the station's records: requests, visits, residents, parcels and the report as tables (CSV or
XLSX), and requests as Open311 GeoReport v2 JSON.

A :class:`Table` is built from a replica (headers and words in the clerk's language) and written by
:func:`write_csv` or :func:`write_xlsx`. CSV and XLSX are the station's own files and hold residents' private
details (names, addresses, descriptions, notes): keep them as safely as the replica itself. The Open311 form
is for sharing: :func:`open311_requests` writes only structure (number, kind, status, times, grid), never a
title, a description, a name or an address.

XLSX needs ``openpyxl`` (the ``console`` extra).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from caresync.core.model import ms_to_datetime
from caresync.errors import CaresyncError, InvalidInputError
from caresync.field._export_names import EXPORTS
from caresync.field.custody import chain
from caresync.field.i18n import Catalog
from caresync.field.knock import knock_round
from caresync.field.labels import label
from caresync.field.reports import StationReport, courier_hours, station_report
from caresync.field.sla import is_overdue

if TYPE_CHECKING:
    from caresync.replica import Replica

__all__ = [
    "EXPORTS",
    "Table",
    "csv_bytes",
    "open311_requests",
    "parcels_table",
    "report_table",
    "requests_table",
    "residents_table",
    "table",
    "visits_table",
    "write_csv",
    "write_xlsx",
]

_H = Catalog(
    {
        key: {"zh": zh, "en": en}
        for key, (zh, en) in {
            "number": ("编号", "Number"),
            "title": ("标题", "Title"),
            "kind": ("类别", "Kind"),
            "channel": ("渠道", "Channel"),
            "grid": ("网格", "Grid"),
            "status": ("状态", "Status"),
            "priority": ("优先级", "Priority"),
            "assignee": ("承办人", "Assignee"),
            "resident": ("居民", "Resident"),
            "submitted_by": ("登记人", "Submitted by"),
            "submitted_at": ("下单时间", "Submitted"),
            "due_at": ("截止时间", "Due"),
            "overdue": ("超时", "Overdue"),
            "resolved_at": ("办结时间", "Resolved"),
            "closed_at": ("回单时间", "Returned"),
            "hours": ("办结用时（小时）", "Hours to resolve"),
            "score": ("评分", "Score"),
            "comment": ("评价意见", "Comment"),
            "description": ("描述", "Description"),
            "visited_at": ("探访时间", "Visited"),
            "visitor": ("探访人", "Knocker"),
            "outcome": ("结果", "Outcome"),
            "note": ("备注", "Note"),
            "request": ("诉求编号", "Request"),
            "name": ("姓名", "Name"),
            "address": ("地址", "Address"),
            "phone": ("电话", "Phone"),
            "flags": ("标记", "Flags"),
            "knock_every": ("探访周期（天）", "Knock every (days)"),
            "birth_year": ("出生年份", "Birth year"),
            "last_visit": ("上次探访", "Last knock"),
            "next_due": ("下次到期", "Next due"),
            "code": ("编码", "Code"),
            "direction": ("方向", "Direction"),
            "stage": ("环节", "Stage"),
            "holder": ("持有人", "Held by"),
            "mailbox": ("邮筒", "Mailbox"),
            "hops": ("交接次数", "Hand-overs"),
            "first_hop": ("首次交接", "First hand-over"),
            "last_hop": ("最近交接", "Last hand-over"),
            "courier_hours": ("快递小哥持有（小时）", "Hours with couriers"),
            "figure": ("指标", "Figure"),
            "value": ("数值", "Value"),
            "yes": ("是", "yes"),
            "no": ("否", "no"),
        }.items()
    }
)

_REPORT_FIGURES = [
    ("period_start", "统计开始", "Period start"),
    ("period_end", "统计结束", "Period end"),
    ("grid", "网格", "Grid"),
    ("tickets_received", "收到诉求", "Requests received"),
    ("tickets_resolved", "办结诉求", "Requests resolved"),
    ("tickets_rated", "已评价", "Requests rated"),
    ("satisfaction_rate", "满意率", "Satisfaction"),
    ("resolved_within_48h_rate", "48小时内办结率", "Resolved within 48 h"),
    ("resolved_on_time_rate", "按时办结率", "Resolved on time"),
    ("median_hours_to_resolve", "办结用时中位数（小时）", "Median hours to resolve"),
    ("tickets_open", "未办结", "Open"),
    ("tickets_overdue", "其中超时", "Of which overdue"),
    ("disputes_mediated", "调解纠纷", "Disputes mediated"),
    ("disputes_settled", "调解成功", "Disputes settled"),
    ("mediation_success_rate", "调解成功率", "Mediation success"),
    ("visits", "敲门探访", "Door-knocks"),
    ("residents_served", "服务居民", "Residents served"),
    ("residents_overdue", "逾期未探访居民", "Residents overdue a knock"),
    ("courier_transit_hours", "快递小哥传递用时（小时）", "Courier transit hours"),
    ("courier_transit_share", "传递用时占比", "Share of time in courier transit"),
]


@dataclass(frozen=True)
class Table:
    """One export: a name (for the file and the sheet), column headers, and rows of plain values.

    Cells are ``str``, ``int``, ``float``, ``bool``, ``datetime`` (aware) or None.
    """

    name: str
    headers: list[str]
    rows: list[list[Any]]


def _moment(value: datetime | None, tz: tzinfo | None) -> datetime | None:
    return None if value is None else value.astimezone(tz)


def requests_table(
    replica: Replica, *, lang: str = "en", tz: tzinfo | None = None, now: datetime | None = None
) -> Table:
    """Every request (deleted ones left out), oldest first, with its resident's name."""
    now = now or ms_to_datetime(replica.clock.physical_ms())
    names = {r.id: r.name for r in replica.residents.list(include_deleted=True)}
    keys = [
        "number",
        "title",
        "kind",
        "channel",
        "grid",
        "status",
        "priority",
        "assignee",
        "resident",
        "submitted_by",
        "submitted_at",
        "due_at",
        "overdue",
        "resolved_at",
        "closed_at",
        "hours",
        "score",
        "comment",
        "description",
    ]
    rows = []
    for t in sorted(replica.tickets.list(), key=lambda t: (t.submitted_at, t.id)):
        hours = None if t.resolved_at is None else round((t.resolved_at - t.submitted_at).total_seconds() / 3600, 2)
        rows.append(
            [
                t.number or t.id,
                t.title,
                label("kind", t.kind, lang),
                label("channel", t.channel, lang),
                t.grid,
                label("status", t.status, lang),
                label("priority", t.priority, lang),
                t.assignee,
                names.get(t.resident_id or ""),
                t.submitted_by,
                _moment(t.submitted_at, tz),
                _moment(t.due_at, tz),
                _H("yes" if is_overdue(t, now) else "no", lang),
                _moment(t.resolved_at, tz),
                _moment(t.closed_at, tz),
                hours,
                None if t.rating is None else t.rating.score,
                None if t.rating is None else t.rating.comment,
                t.description,
            ]
        )
    return Table("requests", [_H(k, lang) for k in keys], rows)


def visits_table(replica: Replica, *, lang: str = "en", tz: tzinfo | None = None) -> Table:
    """Every door-knock, newest first, with the resident's name and the request it raised."""
    residents = {r.id: r for r in replica.residents.list(include_deleted=True)}
    numbers = {t.id: t.number or t.id for t in replica.tickets.list(include_deleted=True)}
    keys = ["visited_at", "resident", "grid", "visitor", "outcome", "note", "request"]
    rows = []
    for v in replica.visits.list():
        who = residents.get(v.resident_id)
        rows.append(
            [
                _moment(v.visited_at, tz),
                who.name if who else v.resident_id,
                who.grid if who else None,
                v.visitor,
                label("visit", v.outcome, lang),
                v.note,
                numbers.get(v.ticket_id or ""),
            ]
        )
    return Table("visits", [_H(k, lang) for k in keys], rows)


def residents_table(
    replica: Replica, *, lang: str = "en", tz: tzinfo | None = None, now: datetime | None = None
) -> Table:
    """Every resident by grid and name, with their knock cadence, last knock and next due."""
    entries = {e.resident_id: e for e in knock_round(replica, now=now, include_ok=True).entries}
    keys = ["name", "grid", "address", "phone", "flags", "knock_every", "birth_year", "last_visit", "next_due"]
    rows = []
    for r in sorted(replica.residents.list(), key=lambda r: (r.grid, r.name or "", r.id)):
        e = entries.get(r.id)
        rows.append(
            [
                r.name,
                r.grid,
                r.address,
                r.phone,
                ", ".join(label("resident", f, lang) for f in r.flags),
                r.knock_every_days,
                r.birth_year,
                None if e is None or e.last_visit is None else _moment(e.last_visit.visited_at, tz),
                None if e is None else _moment(e.due_at, tz),
            ]
        )
    return Table("residents", [_H(k, lang) for k in keys], rows)


def parcels_table(
    replica: Replica, *, lang: str = "en", tz: tzinfo | None = None, now: datetime | None = None
) -> Table:
    """Every parcel: where it is, who holds it, its hand-overs and the hours it spent with couriers."""
    now = now or ms_to_datetime(replica.clock.physical_ms())
    mailboxes = {m.id: m.code for m in replica.mailboxes.list(include_deleted=True)}
    keys = ["code", "direction", "grid", "stage", "holder", "mailbox", "hops", "first_hop", "last_hop", "courier_hours"]
    rows = []
    for p in sorted(replica.parcels.list(), key=lambda p: p.code):
        steps = chain(p)
        first = steps[0].when if steps else None
        rows.append(
            [
                p.code,
                p.direction,
                p.grid,
                None if p.stage is None else p.stage.value,
                p.holder,
                mailboxes.get(p.mailbox_id or ""),
                len(steps),
                _moment(first, tz),
                _moment(steps[-1].when, tz) if steps else None,
                round(courier_hours(p, first, now), 2) if first else 0.0,
            ]
        )
    return Table("parcels", [_H(k, lang) for k in keys], rows)


def report_table(report: StationReport, *, lang: str = "en", tz: tzinfo | None = None) -> Table:
    """The station report as two columns (figure, value), then requests by kind, channel and grid."""
    rows: list[list[Any]] = []
    for key, zh, en in _REPORT_FIGURES:
        value = getattr(report, key)
        if isinstance(value, datetime):
            value = _moment(value, tz)
        elif isinstance(value, float):
            value = round(value, 4)
        rows.append([zh if lang == "zh" else en, value])
    for group, counts in (("kind", report.by_kind), ("channel", report.by_channel), ("grid", None)):
        source = report.by_grid if counts is None else counts
        for code, count in source.items():
            name = code if group == "grid" else label(group, code, lang)
            rows.append([f"{_H(group, lang)}: {name}", count])
    return Table("report", [_H("figure", lang), _H("value", lang)], rows)


#: The tables :func:`table` makes, by name.


def table(
    replica: Replica,
    name: str,
    *,
    lang: str = "en",
    tz: tzinfo | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Table:
    """The export ``name`` (one of :data:`EXPORTS`); ``start`` and ``end`` bound the report's period.

    Raises:
        InvalidInputError: ``name`` is not an export.
    """
    makers: dict[str, Callable[[], Table]] = {
        "requests": lambda: requests_table(replica, lang=lang, tz=tz),
        "visits": lambda: visits_table(replica, lang=lang, tz=tz),
        "residents": lambda: residents_table(replica, lang=lang, tz=tz),
        "parcels": lambda: parcels_table(replica, lang=lang, tz=tz),
        "report": lambda: report_table(station_report(replica, start=start, end=end), lang=lang, tz=tz),
    }
    if name not in makers:
        raise InvalidInputError("Cannot export", [("what", f"{name!r} is not one of {', '.join(EXPORTS)}")])
    return makers[name]()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # text a resident typed is never a formula in a spreadsheet (CSV injection)
    return value


def write_csv(data: Table, out: IO[str]) -> None:
    """Writes the table as CSV (open ``out`` with ``encoding="utf-8-sig"`` so spreadsheet programs read the
    Chinese right, and ``newline=""``). Text that a spreadsheet would take for a formula (it starts with ``=``,
    ``+``, ``-`` or ``@``) is written with a leading ``'``."""
    writer = csv.writer(out)
    writer.writerow(data.headers)
    for row in data.rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])


def csv_bytes(data: Table) -> bytes:
    """The table as CSV bytes in UTF-8 with a byte-order mark (what spreadsheet programs expect)."""
    buffer = io.StringIO(newline="")
    write_csv(data, buffer)
    return buffer.getvalue().encode("utf-8-sig")


def write_xlsx(tables: Sequence[Table], out: str | Path | IO[bytes]) -> None:
    """Writes each table as a sheet of one XLSX workbook (times as real dates, in the station's zone; text is
    always text, never a formula).

    Raises:
        CaresyncError: openpyxl is not installed (``pip install 'caresync[console]'``).
    """
    try:
        from openpyxl import Workbook
    except ImportError:
        raise CaresyncError("Writing XLSX needs openpyxl: pip install 'caresync[console]'") from None
    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for data in tables:
        sheet = book.create_sheet(data.name[:31])
        sheet.append(data.headers)
        for row in data.rows:
            sheet.append([v.replace(tzinfo=None) if isinstance(v, datetime) else v for v in row])
        for column in sheet.iter_cols(min_row=2):
            for cell in column:
                if isinstance(cell.value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif cell.data_type == "f":  # openpyxl reads text that starts with "=" as a formula: keep it text
                    cell.data_type = "s"
        sheet.freeze_panes = "A2"
    book.save(out)


_OPEN311_STATUS = {
    "submitted": "open",
    "accepted": "open",
    "in_progress": "open",
    "resolved": "closed",
    "closed": "closed",
    "cancelled": "closed",
}


def open311_requests(replica: Replica) -> list[dict[str, Any]]:
    """Requests as Open311 GeoReport v2 service requests (the JSON form of ``GET /requests.json``).

    Only structure leaves: ``service_request_id`` is the request's number, ``service_code`` its kind,
    ``status`` open or closed (``status_notes`` the station's own status word), the requested, updated and
    expected times, and the grid as ``agency_responsible``. Titles, descriptions, residents, addresses and
    notes are private and are left out, as are coordinates (the records hold none).
    """
    out = []
    for t in sorted(replica.tickets.list(), key=lambda t: (t.submitted_at, t.id)):
        updated = max((h.at for h in t.history), default=t.submitted_at)
        out.append(
            {
                "service_request_id": t.number or t.id,
                "status": _OPEN311_STATUS[t.status.value],
                "status_notes": t.status.value,
                "service_name": label("kind", t.kind, "en"),
                "service_code": t.kind.value,
                "agency_responsible": t.grid,
                "requested_datetime": t.submitted_at.astimezone(UTC).isoformat(),
                "updated_datetime": updated.astimezone(UTC).isoformat(),
                "expected_datetime": t.due_at.astimezone(UTC).isoformat(),
            }
        )
    return out
