"""Dashboard cards for conversion by visit number and the weekly trend of the two old medians.

Self-contained HTML + inline SVG (no script, no external reference), wired into the page by one call to
`conversion_cards`. Every rate is drawn with its 95 % interval: the Kaplan–Meier share bought as a shaded
band, each hazard as a bar with a whisker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from xccel_cli import charts
from xccel_cli.charts import BLUE, ORANGE, Series
from xccel_cli.conversion import DEFINITIONS, WeekRow

INK = "#1f2933"
MUTED = "#5b6675"
GRID = "#e3e7ee"
BAND = "#c9daf0"
RIGHT, TOP = 16, 34
TICKS = (0, 0.25, 0.5, 0.75, 1.0)  # gridlines, as shares of the y axis
PLOT_HEIGHT = 208
LINE = 16  # baseline to baseline of the legend's lines
SIZE = charts.MIN_FONT  # every text: the page never shows a drawing much narrower than its width
CHART_IDS = ("chart-km", "chart-hazard", "chart-weekly-visits", "chart-weekly-minutes")
MAX_STEPS = 30  # the charts stop at this session number
# a table on the page lists this many rows at most, then says how many more there are and where they are:
# the page's size must not grow with the data (a customer of thousands of sessions, a referrer per session)
TABLE_ROWS = 100


@dataclass(frozen=True)
class Plot:
    """One drawing's geometry: its width (a layout's), the session numbers on its x axis, the y axis's tick labels
    (the plot starts right of the widest), and its legend wrapped to the width (the drawing grows downwards by a
    line per wrapped line)."""

    width: int
    steps: int
    ticks: list[str]
    legend: list[str]

    @property
    def left(self) -> float:
        """The x of the y axis: room for the rotated axis label and the widest tick label."""
        return 26 + max(charts.text_width(tick, SIZE) for tick in self.ticks) + 8

    @property
    def bottom(self) -> float:
        """The y of the x axis."""
        return TOP + PLOT_HEIGHT

    @property
    def height(self) -> int:
        return int(self.bottom + 46 + LINE * max(len(self.legend), 1))

    @property
    def slot(self) -> float:
        """The width given to one session number."""
        return (self.width - self.left - RIGHT) / self.steps

    def x(self, k: float) -> float:
        """The centre of session number k's slot."""
        return self.left + (k - 0.5) * self.slot

    def y(self, value: float) -> float:
        return TOP + PLOT_HEIGHT * (1 - value)


def _plot(width: int, steps: int, legend: str, legend_x: float, tick_scale: float = 1.0) -> Plot:
    """The geometry for width; the gridlines are labelled 0-100 % times tick_scale."""
    ticks = [f"{tick * tick_scale * 100:g}%" for tick in TICKS]
    return Plot(width, steps, ticks, charts.wrap(legend, SIZE, width - legend_x - 8))


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{SIZE}" fill="{INK}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _frame(plot: Plot, chart_id: str, title: str, description: str, x_label: str, y_label: str) -> list[str]:
    """The svg's opening, gridlines with their labels, session numbers and axis labels."""
    out = [
        f'<svg class="chart" id="{chart_id}" role="img" viewBox="0 0 {plot.width} {plot.height}" '
        f'width="{plot.width}" height="{plot.height}" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
    ]
    for tick, label in zip(TICKS, plot.ticks, strict=True):
        y = plot.y(tick)
        out.append(f'<line x1="{plot.left:.1f}" x2="{plot.width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(plot.left - 6, y + 4, label, anchor="end"))
    # as many session numbers as fit side by side, always the first
    needed = charts.text_width(str(plot.steps), SIZE) + 10
    every = max(1, math.ceil(plot.steps / max((plot.width - plot.left - RIGHT) / needed, 1)))
    for k in range(1, plot.steps + 1):
        if k == 1 or k % every == 0:
            out.append(_text(plot.x(k), plot.bottom + 16, str(k), anchor="middle"))
    out.append(_text((plot.left + plot.width - RIGHT) / 2, plot.bottom + 36, x_label, anchor="middle"))
    middle = TOP + PLOT_HEIGHT / 2
    out.append(_text(14, middle, y_label, anchor="middle", extra=f' transform="rotate(-90 14 {middle:.1f})"'))
    return out


def _legend(plot: Plot, x: float) -> list[str]:
    return [_text(x, plot.bottom + 58 + LINE * i, line) for i, line in enumerate(plot.legend)]


def km_chart(svg_id: str, width: int, rows: Sequence[dict[str, Any]], median: int | None) -> str:
    """The Kaplan–Meier share bought by session k with its 95 % band, drawn width wide."""
    title = "Share of customers who have bought, by session number (Kaplan–Meier)"
    if not rows:
        return charts.empty_chart(svg_id, title, "No customers in this window.", width)
    shown = rows[:MAX_STEPS]
    plot = _plot(width, len(shown), "95 % band (Greenwood, log-log)", 24)
    description = (
        f"Kaplan–Meier share bought by session k for k = 1 to {plot.steps}, with its 95 % band; "
        + ("half of all customers have bought by session " + str(median) if median else "half is not reached")
        + "."
    )
    out = _frame(plot, svg_id, title, description, "session number k", "bought by session k (%)")
    # the band: one rectangle per session number where the interval is defined
    for row in shown:
        band = row["cumulative_interval"]
        if band["low"] is not None:
            x0 = plot.left + (row["session_number"] - 1) * plot.slot
            out.append(
                f'<rect class="km-band" x="{x0:.1f}" y="{plot.y(band["high"]):.1f}" width="{plot.slot:.1f}" '
                f'height="{max(plot.y(band["low"]) - plot.y(band["high"]), 0.5):.1f}" fill="{BAND}"/>'
            )
    points = []
    previous = 0.0
    for row in shown:
        x0 = plot.left + (row["session_number"] - 1) * plot.slot
        share = row["cumulative_share"]
        points += [(x0, plot.y(previous)), (x0, plot.y(share)), (x0 + plot.slot, plot.y(share))]
        previous = share
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    out.append(f'<polyline points="{path}" fill="none" stroke="{BLUE}" stroke-width="2"/>')
    for row in shown:
        band = row["cumulative_interval"]
        out.append(
            f'<circle cx="{plot.x(row["session_number"]):.1f}" cy="{plot.y(row["cumulative_share"]):.1f}" r="2.5" '
            f'fill="{BLUE}"><title>session {row["session_number"]}: {_pct(row["cumulative_share"])} bought '
            f"(95 %: {_pct(band['low'])}–{_pct(band['high'])})</title></circle>"
        )
    half = plot.y(0.5)
    out.append(
        f'<line x1="{plot.left:.1f}" x2="{plot.width - RIGHT}" y1="{half:.1f}" y2="{half:.1f}" stroke="{MUTED}" '
        'stroke-dasharray="4 3"/>'
    )
    # over the curve and its band, with a white halo so that it stays legible
    halo = ' paint-order="stroke" stroke="#fff" stroke-width="3"'
    out.append(_text(plot.width - RIGHT, half - 4, "half of all customers", anchor="end", extra=halo))
    out.append(f'<rect x="8" y="{plot.bottom + 49:.1f}" width="12" height="9" fill="{BAND}"/>')
    out += _legend(plot, 24)
    out.append("</svg>")
    return "".join(out)


def hazard_chart(svg_id: str, width: int, rows: Sequence[dict[str, Any]]) -> str:
    """The hazard of a first order per session number with its 95 % Wilson interval, drawn width wide."""
    title = "Chance of a first order in session k, for customers who have not bought yet"
    if not rows:
        return charts.empty_chart(svg_id, title, "No customers in this window.", width)
    shown = rows[:MAX_STEPS]
    top = max([r["hazard_interval"]["high"] or r["hazard"] for r in shown] + [0.01])
    scale = 1.0 if top > 0.5 else 0.5 if top > 0.25 else 0.25 if top > 0.1 else 0.1
    plot = _plot(width, len(shown), "bars: hazard; lines: 95 % Wilson interval", 8, scale)
    description = f"Hazard of a first order per session number k = 1 to {plot.steps}, bars with 95 % Wilson intervals."
    out = _frame(plot, svg_id, title, description, "session number k", "hazard (% of those at risk)")
    bar_w = max(plot.slot * 0.6, 1.0)
    for row in shown:
        k = row["session_number"]
        x = plot.x(k)
        interval = row["hazard_interval"]
        out.append(
            f'<rect class="hazard-bar" x="{x - bar_w / 2:.1f}" y="{plot.y(row["hazard"] / scale):.1f}" '
            f'width="{bar_w:.1f}" height="{plot.y(0) - plot.y(row["hazard"] / scale):.1f}" fill="{ORANGE}">'
            f"<title>session {k}: {row['first_orders']:,} of {row['at_risk']:,} at risk bought, "
            f"{_pct(row['hazard'])} (95 %: {_pct(interval['low'])}–{_pct(interval['high'])})</title></rect>"
        )
        if interval["low"] is not None:
            y_low, y_high = plot.y(min(interval["low"] / scale, 1)), plot.y(min(interval["high"] / scale, 1))
            out.append(
                f'<line class="whisker" x1="{x:.1f}" x2="{x:.1f}" y1="{y_low:.1f}" y2="{y_high:.1f}" '
                f'stroke="{INK}" stroke-width="1.2"/>'
            )
    out += _legend(plot, 8)
    out.append("</svg>")
    return "".join(out)


def weekly_charts(weeks: Sequence[WeekRow]) -> tuple[str, str]:
    """The two weekly trend charts, each drawn for every layout (or a frame saying why there is no trend)."""
    title_visits = "Median sessions before the first order, by week of the first session"
    title_minutes = "Median session duration before the first order, by week of the first session"
    if len(weeks) < 2:
        message = (
            "No customers in this window."
            if not weeks
            else f"One week of first sessions ({weeks[0].week_start}): no trend yet; see the numbers."
        )
        return _empty("chart-weekly-visits", title_visits, message), _empty(
            "chart-weekly-minutes", title_minutes, message
        )
    # one year under month-day labels only when every week is in it, as on the day-by-day charts
    same_year = weeks[0].week_start.year == weeks[-1].week_start.year
    categories = [f"{w.week_start:%m-%d}" if same_year else w.week_start.isoformat() for w in weeks]
    axis = f"week starting (Monday, UTC, {weeks[0].week_start.year})" if same_year else "week starting (Monday, UTC)"
    visits = charts.variants(
        "chart-weekly-visits",
        lambda svg_id, width: charts.line_chart(
            chart_id=svg_id,
            title=title_visits,
            description=f"median_visits_before_order per week of the customers' first session, {len(weeks)} weeks.",
            categories=categories,
            series=[
                Series("median sessions before the first order", [w.median_visits_before_order for w in weeks], BLUE)
            ],
            x_label=axis,
            y_label="sessions",
            width=width,
        ),
    )
    minutes = charts.variants(
        "chart-weekly-minutes",
        lambda svg_id, width: charts.line_chart(
            chart_id=svg_id,
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
            width=width,
        ),
    )
    return visits, minutes


def _empty(chart_id: str, title: str, message: str) -> str:
    return charts.variants(chart_id, lambda svg_id, width: charts.empty_chart(svg_id, title, message, width))


def _cell(raw: Any, shown: str) -> str:
    value = "null" if raw is None else escape(repr(raw))
    return f'<td data-value="{value}">{escape(shown)}</td>'


def more_rows(table_id: str, hidden: int, what: str, where: str) -> str:
    """The line under a table cut at TABLE_ROWS: how many rows it leaves out and where every row is (where is
    HTML), or '' when nothing is left out."""
    if hidden <= 0:
        return ""
    return (
        f'<p class="more" id="{table_id}-more">{hidden:,} more {escape(what)} not listed here; every row: {where}.</p>'
    )


def window_query(window: dict[str, Any]) -> tuple[str, str]:
    """(command options, URL query) asking for the same window as the page's, both '' for none."""
    bounds = [(name, window.get(name)) for name in ("since", "until") if window.get(name) is not None]
    options = "".join(f" --{name} {value}" for name, value in bounds)
    query = "&".join(f"{name}={value}" for name, value in bounds)
    return options, f"?{query}" if query else ""


def _interval_text(value: float, interval: dict[str, Any]) -> str:
    return f"{_pct(value)} ({_pct(interval['low'])}–{_pct(interval['high'])})"


def conversion_cards(
    conversion: dict[str, Any] | None, weeks: Sequence[WeekRow], weeks_note: str, window: dict[str, Any]
) -> str:
    """The two figures (conversion by visit number; weekly trend) as HTML for the dashboard; weeks_note says
    which weeks are left out, if any."""
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
        listed = "all" if len(rows) <= TABLE_ROWS else f"sessions 1 to {TABLE_ROWS}"
        caption += f" The charts show sessions 1 to {MAX_STEPS} of {len(rows)}; the table lists {listed}."
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
        for r in rows[:TABLE_ROWS]
    )
    options, query = window_query(window)
    more = more_rows(
        "table-conversion",
        len(rows) - TABLE_ROWS,
        f"session numbers ({TABLE_ROWS + 1:,} to {len(rows):,}) are",
        f"<code>xccel report --by visit{escape(options)}</code> or <code>GET /metrics/conversion{escape(query)}</code>",
    )
    table = (
        f'<details><summary>Numbers</summary><div class="table-wrap"><table id="table-conversion"><thead><tr>{head}'
        f"</tr></thead><tbody>{body}</tbody></table></div>{more}</details>"
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
        f'<details><summary>Numbers</summary><div class="table-wrap"><table id="table-weekly"><thead><tr>'
        f"{week_head}</tr></thead><tbody>{week_rows}</tbody></table></div></details>"
    )
    km = charts.variants("chart-km", lambda svg_id, width: km_chart(svg_id, width, rows, median))
    hazard = charts.variants("chart-hazard", lambda svg_id, width: hazard_chart(svg_id, width, rows))
    visits, minutes = weekly_charts(weeks)
    return (
        f'<figure id="figure-conversion" class="wide" data-km-median="{"null" if median is None else median}">'
        f"<h2>Conversion by visit number</h2><figcaption>{escape(caption + scope)}</figcaption>"
        f'<div class="pair"><div>{km}</div><div>{hazard}</div></div>{table}</figure>'
        f'<figure id="figure-weekly" class="wide"><h2>Weekly trend of the two medians</h2>'
        f"<figcaption>{escape(weekly_caption)}</figcaption>"
        + (f'<p class="note">{escape(weeks_note)}</p>' if weeks_note else "")
        + f'<div class="pair"><div>{visits}</div><div>{minutes}</div>'
        "</div>"
        f"{week_table}</figure>"
    )


def _num(value: float | None) -> str:
    return "–" if value is None else charts.number(value)
