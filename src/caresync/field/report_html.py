"""The station report as one self-contained HTML page for the wall: headline figures, ring gauges for the
rates and bar charts for the counts, drawn as inline SVG (no script, no web font, nothing fetched)."""

from __future__ import annotations

import math
from datetime import tzinfo
from html import escape

from caresync.field.i18n import Catalog
from caresync.field.labels import label
from caresync.field.reports import StationReport

__all__ = ["render_html"]

_TEXT = Catalog(
    {
        "title": {"zh": "服务站工作报表", "en": "Station report"},
        "period": {"zh": "统计时段", "en": "Period"},
        "grid": {"zh": "网格", "en": "Grid"},
        "all": {"zh": "全部网格", "en": "all grids"},
        "since": {"zh": "开始以来", "en": "the beginning"},
        "received": {"zh": "收到诉求", "en": "Requests received"},
        "resolved": {"zh": "办结诉求", "en": "Requests resolved"},
        "median": {"zh": "办结用时中位数（小时）", "en": "Median hours to resolve"},
        "mediated": {"zh": "调解纠纷", "en": "Disputes mediated"},
        "visits": {"zh": "敲门探访", "en": "Door-knocks"},
        "served": {"zh": "服务居民", "en": "Residents served"},
        "overdue_residents": {"zh": "逾期未探访居民", "en": "Residents overdue a knock"},
        "open": {"zh": "未办结 / 其中超时", "en": "Open / of which overdue"},
        "satisfaction": {"zh": "满意率", "en": "Satisfaction"},
        "within48": {"zh": "48小时内办结", "en": "Resolved within 48 h"},
        "on_time": {"zh": "按时办结", "en": "Resolved on time"},
        "mediation_success": {"zh": "调解成功率", "en": "Mediation success"},
        "transit": {"zh": "快递小哥传递用时占比", "en": "Share of time in courier transit"},
        "by_kind": {"zh": "诉求类别", "en": "Requests by kind"},
        "by_channel": {"zh": "诉求渠道", "en": "Requests by channel"},
        "by_grid": {"zh": "诉求网格", "en": "Requests by grid"},
        "none": {"zh": "无", "en": "none"},
        "footer": {
            "zh": "数据来自本站记录，由 caresync 生成。满意率：评分4或5分的占已评分诉求的比例。",
            "en": "Computed from the station's records by caresync. Satisfaction: rated requests rated 4 or 5.",
        },
    }
)

_COLOURS = ["#c0392b", "#d35400", "#2980b9", "#27ae60", "#8e44ad", "#16a085", "#7f8c8d", "#f39c12"]


def _ring(rate: float | None, caption: str, colour: str) -> str:
    """A ring gauge: the arc is the rate, the middle says it in figures."""
    r, c = 52.0, 2 * math.pi * 52.0
    shown = "–" if rate is None else f"{rate * 100:.1f}%"
    arc = 0.0 if rate is None else max(0.0, min(1.0, rate)) * c
    return (
        f'<figure class="ring"><svg viewBox="0 0 140 140" width="160" height="160" role="img" '
        f'aria-label="{escape(caption)}: {escape(shown)}" data-rate="{"" if rate is None else f"{rate:.6f}"}">'
        f'<circle cx="70" cy="70" r="{r}" fill="none" stroke="#eee" stroke-width="16"/>'
        f'<circle cx="70" cy="70" r="{r}" fill="none" stroke="{colour}" stroke-width="16" '
        f'stroke-dasharray="{arc:.2f} {c:.2f}" transform="rotate(-90 70 70)"/>'
        f'<text x="70" y="78" text-anchor="middle" font-size="22" font-weight="bold">{escape(shown)}</text>'
        f"</svg><figcaption>{escape(caption)}</figcaption></figure>"
    )


def _bars(counts: dict[str, int], title: str, names: dict[str, str], empty: str) -> str:
    """A horizontal bar chart of counts, biggest first."""
    if not counts:
        return f"<section><h2>{escape(title)}</h2><p>{escape(empty)}</p></section>"
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = max(v for _, v in rows) or 1
    height, label_w, bar_w = 30, 190, 420
    parts = [
        f'<svg class="bars" viewBox="0 0 {label_w + bar_w + 60} {height * len(rows) + 10}" '
        f'width="100%" role="img" aria-label="{escape(title)}">'
    ]
    for i, (key, value) in enumerate(rows):
        y = 5 + i * height
        w = bar_w * value / top
        name = names.get(key, key)
        if len(name) > 22:  # long grid paths: keep the end, which names the building
            name = "…" + name[-21:]
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end" font-size="15">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{height - 8}" rx="3" '
            f'fill="{_COLOURS[i % len(_COLOURS)]}" data-key="{escape(key)}" data-value="{value}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 19}" font-size="15">{value}</text>'
        )
    parts.append("</svg>")
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def render_html(report: StationReport, *, lang: str = "zh", tz: tzinfo | None = None) -> str:
    """The report as a complete HTML page in ``lang`` (``zh`` or ``en``), ready to print or to open offline.

    Times are shown in ``tz`` (default UTC, as the report carries them).
    """

    def tx(key: str) -> str:
        return _TEXT(key, lang)

    start = tx("since") if report.period_start is None else f"{report.period_start.astimezone(tz):%Y-%m-%d}"
    period = f"{start} – {report.period_end.astimezone(tz):%Y-%m-%d %H:%M}"
    grid = report.grid or tx("all")
    median = "–" if report.median_hours_to_resolve is None else f"{report.median_hours_to_resolve:.1f}"
    tiles = [
        ("tickets_received", tx("received"), str(report.tickets_received)),
        ("tickets_resolved", tx("resolved"), str(report.tickets_resolved)),
        ("median_hours_to_resolve", tx("median"), median),
        ("disputes_mediated", tx("mediated"), str(report.disputes_mediated)),
        ("visits", tx("visits"), str(report.visits)),
        ("residents_served", tx("served"), str(report.residents_served)),
        ("residents_overdue", tx("overdue_residents"), str(report.residents_overdue)),
        ("tickets_open", tx("open"), f"{report.tickets_open} / {report.tickets_overdue}"),
    ]
    tile_html = "".join(
        f'<div class="tile" data-figure="{key}"><div class="num">{escape(value)}</div>'
        f'<div class="cap">{escape(caption)}</div></div>'
        for key, caption, value in tiles
    )
    rings = "".join(
        _ring(rate, caption, colour)
        for rate, caption, colour in (
            (report.satisfaction_rate, tx("satisfaction"), "#c0392b"),
            (report.resolved_within_48h_rate, tx("within48"), "#2980b9"),
            (report.resolved_on_time_rate, tx("on_time"), "#16a085"),
            (report.mediation_success_rate, tx("mediation_success"), "#27ae60"),
            (report.courier_transit_share, tx("transit"), "#d35400"),
        )
    )
    kinds = {k: label("kind", k, lang) for k in report.by_kind}
    channels = {k: label("channel", k, lang) for k in report.by_channel}
    charts = "".join(
        (
            _bars(report.by_kind, tx("by_kind"), kinds, tx("none")),
            _bars(report.by_channel, tx("by_channel"), channels, tx("none")),
            _bars(report.by_grid, tx("by_grid"), {}, tx("none")),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="{"zh-CN" if lang == "zh" else "en"}">
<head>
<meta charset="utf-8">
<title>{escape(tx("title"))} {escape(period)}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; margin: 2em; color: #222; }}
h1 {{ color: #c0392b; margin-bottom: 0.2em; }}
.meta {{ color: #555; margin-bottom: 1.5em; }}
.tiles {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.tile {{ border: 2px solid #c0392b; border-radius: 10px; padding: 0.8em 1.2em; min-width: 9em; }}
.num {{ font-size: 2.4em; font-weight: bold; color: #c0392b; }}
.cap {{ font-size: 1em; color: #444; }}
.rings {{ display: flex; flex-wrap: wrap; gap: 1.5em; margin: 1.5em 0; }}
figure.ring {{ margin: 0; text-align: center; }}
section {{ margin-top: 1.5em; max-width: 60em; }}
footer {{ margin-top: 2em; color: #777; font-size: 0.9em; }}
@media print {{ body {{ margin: 0.5cm; }} }}
</style>
</head>
<body>
<h1>{escape(tx("title"))}</h1>
<div class="meta">{escape(tx("period"))}: {escape(period)} · {escape(tx("grid"))}: {escape(grid)}</div>
<div class="tiles">{tile_html}</div>
<div class="rings">{rings}</div>
{charts}
<footer>{escape(tx("footer"))}</footer>
</body>
</html>
"""
