"""Dashboard cards for conversion by visit number and the weekly trend of the two old medians.

Self-contained HTML + inline SVG (no script, no external reference), wired into the page by one call to
`conversion_cards`. Every rate is drawn with its 95 % interval: the Kaplan–Meier share bought as a shaded
band, each hazard as a bar with a whisker.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from xccel_cli import charts
from xccel_cli.charts import BLUE, ORANGE, Series
from xccel_cli.conversion import DEFINITIONS, WeekRow

INK = "#1f2933"
MUTED = "#5b6675"
GRID = "#e3e7ee"
BAND = "#c9daf0"
WIDTH, HEIGHT = 520, 300
LEFT, RIGHT, TOP, BOTTOM = 58, 16, 34, 58
CHART_IDS = ("chart-km", "chart-hazard", "chart-weekly-visits", "chart-weekly-minutes")
MAX_STEPS = 30  # the charts stop at this session number; the table under them lists every row


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12, extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{INK}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _frame(chart_id: str, title: str, description: str, steps: int, x_label: str, y_label: str) -> list[str]:
    out = [
        f'<svg class="chart" id="{chart_id}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg" aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
    ]
    plot_h = HEIGHT - TOP - BOTTOM
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        y = TOP + plot_h * (1 - tick)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(LEFT - 6, y + 4, f"{tick * 100:.0f}%", anchor="end", size=11))
    every = max(1, -(-steps // 10))
    for k in range(1, steps + 1):
        if k == 1 or k % every == 0:
            out.append(_text(_x(k, steps), TOP + plot_h + 16, str(k), anchor="middle", size=11))
    out.append(_text(LEFT + (WIDTH - LEFT - RIGHT) / 2, HEIGHT - 20, x_label, anchor="middle"))
    middle = TOP + plot_h / 2
    out.append(_text(14, middle, y_label, anchor="middle", extra=f' transform="rotate(-90 14 {middle:.1f})"'))
    return out


def _x(k: float, steps: int) -> float:
    """The centre of session number k's slot."""
    slot = (WIDTH - LEFT - RIGHT) / steps
    return LEFT + (k - 0.5) * slot


def _y(value: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value)


def km_chart(rows: Sequence[dict[str, Any]], median: int | None) -> str:
    chart_id = "chart-km"
    title = "Share of customers who have bought, by session number (Kaplan–Meier)"
    if not rows:
        return charts.empty_chart(chart_id, title, "No customers in this window.")
    shown = rows[:MAX_STEPS]
    steps = len(shown)
    slot = (WIDTH - LEFT - RIGHT) / steps
    description = (
        f"Kaplan–Meier share bought by session k for k = 1 to {steps}, with its 95 % band; "
        + ("half of all customers have bought by session " + str(median) if median else "half is not reached")
        + "."
    )
    out = _frame(chart_id, title, description, steps, "session number k", "bought by session k (%)")
    # the band: one rectangle per session number where the interval is defined
    for row in shown:
        band = row["cumulative_interval"]
        if band["low"] is not None:
            x0 = LEFT + (row["session_number"] - 1) * slot
            out.append(
                f'<rect class="km-band" x="{x0:.1f}" y="{_y(band["high"]):.1f}" width="{slot:.1f}" '
                f'height="{max(_y(band["low"]) - _y(band["high"]), 0.5):.1f}" fill="{BAND}"/>'
            )
    points = []
    previous = 0.0
    for row in shown:
        x0 = LEFT + (row["session_number"] - 1) * slot
        points += [(x0, _y(previous)), (x0, _y(row["cumulative_share"])), (x0 + slot, _y(row["cumulative_share"]))]
        previous = row["cumulative_share"]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
    for row in shown:
        band = row["cumulative_interval"]
        out.append(
            f'<circle cx="{_x(row["session_number"], steps):.1f}" cy="{_y(row["cumulative_share"]):.1f}" r="2.5" '
            f'fill="{BLUE}"><title>session {row["session_number"]}: {_pct(row["cumulative_share"])} bought '
            f"(95 %: {_pct(band['low'])}–{_pct(band['high'])})</title></circle>"
        )
    out.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_y(0.5):.1f}" y2="{_y(0.5):.1f}" stroke="{MUTED}" '
        'stroke-dasharray="4 3"/>'
    )
    out.append(_text(WIDTH - RIGHT, _y(0.5) - 4, "half of all customers", anchor="end", size=11))
    out.append(
        f'<rect x="{LEFT}" y="{HEIGHT - 12}" width="12" height="8" fill="{BAND}"/>'
        + _text(LEFT + 16, HEIGHT - 4, "95 % band (Greenwood, log-log)", size=11)
    )
    out.append("</svg>")
    return "".join(out)


def hazard_chart(rows: Sequence[dict[str, Any]]) -> str:
    chart_id = "chart-hazard"
    title = "Chance of a first order in session k, for customers who have not bought yet"
    if not rows:
        return charts.empty_chart(chart_id, title, "No customers in this window.")
    shown = rows[:MAX_STEPS]
    steps = len(shown)
    slot = (WIDTH - LEFT - RIGHT) / steps
    top = max([r["hazard_interval"]["high"] or r["hazard"] for r in shown] + [0.01])
    scale = 1.0 if top > 0.5 else 0.5 if top > 0.25 else 0.25 if top > 0.1 else 0.1
    description = f"Hazard of a first order per session number k = 1 to {steps}, bars with 95 % Wilson intervals."
    out = _frame(chart_id, title, description, steps, "session number k", "hazard (% of those at risk)")
    # the frame's gridlines are 0-100 %; relabel them for the chosen scale
    out = [part for part in out if not (part.startswith("<text") and part.endswith("%</text>"))]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(_text(LEFT - 6, _y(tick) + 4, f"{tick * scale * 100:g}%", anchor="end", size=11))
    for row in shown:
        k = row["session_number"]
        x = _x(k, steps)
        bar_w = max(slot * 0.6, 1.0)
        interval = row["hazard_interval"]
        out.append(
            f'<rect class="hazard-bar" x="{x - bar_w / 2:.1f}" y="{_y(row["hazard"] / scale):.1f}" '
            f'width="{bar_w:.1f}" height="{_y(0) - _y(row["hazard"] / scale):.1f}" fill="{ORANGE}">'
            f"<title>session {k}: {row['first_orders']:,} of {row['at_risk']:,} at risk bought, "
            f"{_pct(row['hazard'])} (95 %: {_pct(interval['low'])}–{_pct(interval['high'])})</title></rect>"
        )
        if interval["low"] is not None:
            y_low, y_high = _y(min(interval["low"] / scale, 1)), _y(min(interval["high"] / scale, 1))
            out.append(
                f'<line class="whisker" x1="{x:.1f}" x2="{x:.1f}" y1="{y_low:.1f}" y2="{y_high:.1f}" '
                f'stroke="{INK}" stroke-width="1.2"/>'
            )
    out.append(_text(LEFT, HEIGHT - 4, "bars: hazard; lines: 95 % Wilson interval", size=11))
    out.append("</svg>")
    return "".join(out)


def weekly_charts(weeks: Sequence[WeekRow]) -> str:
    title_visits = "Median sessions before the first order, by week of the first session"
    title_minutes = "Median session duration before the first order, by week of the first session"
    if not weeks:
        return charts.empty_chart("chart-weekly-visits", title_visits, "No customers in this window.") + (
            charts.empty_chart("chart-weekly-minutes", title_minutes, "No customers in this window.")
        )
    if len(weeks) == 1:
        message = f"One week of first sessions ({weeks[0].week_start}): no trend yet; see the numbers."
        return charts.empty_chart("chart-weekly-visits", title_visits, message) + (
            charts.empty_chart("chart-weekly-minutes", title_minutes, message)
        )
    categories = [f"{w.week_start:%m-%d}" for w in weeks]
    axis = f"week starting (Monday, UTC, {weeks[0].week_start.year})"
    visits = charts.line_chart(
        chart_id="chart-weekly-visits",
        title=title_visits,
        description=f"median_visits_before_order per week of the customers' first session, {len(weeks)} weeks.",
        categories=categories,
        series=[Series("median sessions before the first order", [w.median_visits_before_order for w in weeks], BLUE)],
        x_label=axis,
        y_label="sessions",
    )
    minutes = charts.line_chart(
        chart_id="chart-weekly-minutes",
        title=title_minutes,
        description="median_session_duration_minutes_before_order per week of the customers' first session.",
        categories=categories,
        series=[
            Series(
                "median session minutes before the first order",
                [w.median_session_duration_minutes_before_order for w in weeks],
                ORANGE,
            )
        ],
        x_label=axis,
        y_label="minutes",
    )
    return visits + minutes


def _cell(raw: Any, shown: str) -> str:
    value = "null" if raw is None else escape(repr(raw))
    return f'<td data-value="{value}">{escape(shown)}</td>'


def _interval_text(value: float, interval: dict[str, Any]) -> str:
    return f"{_pct(value)} ({_pct(interval['low'])}–{_pct(interval['high'])})"


def conversion_cards(conversion: dict[str, Any] | None, weeks: Sequence[WeekRow], window: dict[str, Any]) -> str:
    """The two figures (conversion by visit number; weekly trend) as HTML for the dashboard."""
    conversion = conversion or {"rows": [], "km_median_order_session": None, "km_median_interval": {}}
    rows = conversion["rows"]
    median = conversion["km_median_order_session"]
    interval = conversion.get("km_median_interval") or {}
    buyers = conversion.get("buyers_median_order_session")
    low = "–" if interval.get("low") is None else f"{interval['low']:.0f}"
    high = "not reached" if interval.get("high") is None else f"{interval['high']:.0f}"
    median_text = (
        f"Half of all customers have bought by session {median} (95 %: {low}–{high})"
        if median is not None
        else "Half of all customers have not bought within the data (median not reached)"
    )
    buyers_text = "–" if buyers is None else charts.number(buyers)
    caption = (
        f"{median_text}; among buyers only, the median first-order session is {buyers_text}. "
        f"{DEFINITIONS['cumulative_share']} {DEFINITIONS['hazard']}"
    )
    if len(rows) > MAX_STEPS:
        caption += f" The charts show sessions 1 to {MAX_STEPS} of {len(rows)}; the table lists all."
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ("k", "reached", "at risk", "first orders", "censored", "hazard (95 %)", "bought by k (95 %)")
    )
    body = "".join(
        "<tr>"
        + _cell(r["session_number"], str(r["session_number"]))
        + _cell(r["customers_reached"], f"{r['customers_reached']:,}")
        + _cell(r["at_risk"], f"{r['at_risk']:,}")
        + _cell(r["first_orders"], f"{r['first_orders']:,}")
        + _cell(r["censored"], f"{r['censored']:,}")
        + _cell(r["hazard"], _interval_text(r["hazard"], r["hazard_interval"]))
        + _cell(r["cumulative_share"], _interval_text(r["cumulative_share"], r["cumulative_interval"]))
        + "</tr>"
        for r in rows
    )
    table = (
        f'<details><summary>Numbers</summary><table id="table-conversion"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></details>"
    )
    since, until = window.get("since"), window.get("until")
    scope = (
        ""
        if since is None and until is None
        else f" Customers whose first session starts from {since or 'the start'} to {until or 'the end'} "
        "(UTC days, both included)."
    )
    weekly_caption = (
        "Customers grouped by the week (Monday, UTC) of their first session; the first and last weeks may be "
        "partial, and a week without buyers has no point. Customers of recent weeks have had less time to come "
        "back before the data ends, so their buyers-only medians lean low (the Kaplan–Meier figures above "
        "account for that)." + scope
    )
    week_rows = "".join(
        "<tr>"
        + _cell(w.week_start.isoformat(), w.week_start.isoformat())
        + _cell(w.customers, f"{w.customers:,}")
        + _cell(w.customers_with_orders, f"{w.customers_with_orders:,}")
        + _cell(w.median_visits_before_order, _num(w.median_visits_before_order))
        + _cell(w.median_session_duration_minutes_before_order, _num(w.median_session_duration_minutes_before_order))
        + "</tr>"
        for w in weeks
    )
    week_head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ("week (Monday)", "customers", "with an order", "median sessions before", "median minutes before")
    )
    week_table = (
        f'<details><summary>Numbers</summary><table id="table-weekly"><thead><tr>{week_head}</tr></thead>'
        f"<tbody>{week_rows}</tbody></table></details>"
    )
    return (
        f'<figure id="figure-conversion" class="wide" data-km-median="{"null" if median is None else median}">'
        f"<h2>Conversion by visit number</h2><figcaption>{escape(caption + scope)}</figcaption>"
        f'<div class="pair">{km_chart(rows, median)}{hazard_chart(rows)}</div>{table}</figure>'
        f'<figure id="figure-weekly" class="wide"><h2>Weekly trend of the two medians</h2>'
        f'<figcaption>{escape(weekly_caption)}</figcaption><div class="pair">{weekly_charts(weeks)}</div>'
        f"{week_table}</figure>"
    )


def _num(value: float | None) -> str:
    return "–" if value is None else charts.number(value)
