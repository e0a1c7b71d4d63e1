"""The dashboard: one self-contained HTML page (inline CSS and SVG, no script, no external reference)
with the report's figures and the distributions behind them, from one publication of the tables.

`xccel serve` answers /dashboard with `render_page(dashboard_data(db))`; `xccel report --html` writes the same
page with `write_dashboard`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

from xccel_cli import charts, conversion_cards
from xccel_cli.charts import (
    BLUE,
    DESKTOP,
    GREY,
    LAYOUTS,
    ORANGE,
    PHONE,
    WIDE,
    Panel,
    Series,
    number,
    percent,
    variants,
)
from xccel_cli.config import SessionRules
from xccel_cli.conversion import WeekRow, Window, weekly_medians, wilson
from xccel_cli.conversion_cards import TABLE_ROWS, more_rows
from xccel_cli.db import Database
from xccel_cli.errors import ConfigError
from xccel_cli.metrics import DEFINITIONS, Report, report
from xccel_cli.publications import latest_publication
from xccel_cli.referrers import ReferrerRow, referrer_rows

QUERIES = {
    "visits": "dashboard_visits.sql",
    "durations": "dashboard_durations.sql",
    "daily": "dashboard_daily.sql",
    "funnel": "dashboard_funnel.sql",
}
CHART_IDS = (
    "chart-visits",
    "chart-durations",
    "chart-referrers",
    "chart-daily-counts",
    "chart-daily-share",
    "chart-funnel",
    *conversion_cards.CHART_IDS,
)
# Each chart is drawn once per layout (charts.LAYOUTS; the referrer panels WIDE_LAYOUTS) and CSS shows the one
# that fits the screen (see CSS).
WIDE_LAYOUTS: tuple[tuple[str, int], ...] = (("wide", WIDE), ("mid", DESKTOP), ("phone", PHONE))
CHART_VARIANT_IDS = {
    chart_id: [chart_id] + [f"{chart_id}-{layout}" for layout, _ in (WIDE_LAYOUTS if wide else LAYOUTS)[1:]]
    for chart_id, wide in ((c, c == "chart-referrers") for c in CHART_IDS)
}
HEADLINES = (
    ("median_visits_before_order", "sessions before the first order", "sessions"),
    ("median_session_duration_minutes_before_order", "duration of a session before the first order", "min"),
    ("median_total_minutes_before_order", "time spent in sessions before the first order", "min"),
)
EXTRA_DEFINITIONS = {
    "referrer": "A session's referrer is its first event's; sessions without one are '(direct)'. Conversion = "
    "share of sessions with a placed_order event.",
    "funnel": "Per session: a page_view, then a product visit (event types visit_*), then add_product_to_cart, "
    "then placed_order; each step counts sessions that also hold every earlier step's event.",
    "daily": "Days are UTC calendar days of the session start (orders: of the placed_order event). The first "
    "and last day of a dump are usually partial (the data covers less than 23 hours of them): they are drawn as "
    "open circles, joined by dotted lines only.",
}
FUNNEL_LABELS = {
    "session": "all sessions",
    "page_view": "page view",
    "visit_*": "product visit",
    "add_product_to_cart": "add to cart",
    "placed_order": "order",
}
HISTOGRAM_MEDIANS = ("median_visits_before_order", "median_session_duration_minutes_before_order")
VISIT_BARS = 20  # the histogram groups customers with this many sessions before the order or more
REFERRER_ROWS = 12  # the chart shows the largest referrers; the table under it the TABLE_ROWS largest
# a referrer is written on the page cut to this many characters: it may be as long as a line, and the chart
# repeats it in every drawing and tooltip, so whole it would make the page grow with the data
REFERRER_CHARS = 300


@dataclass
class DashboardData:
    report: Report
    visits: list[dict[str, Any]]
    durations: list[dict[str, Any]]
    referrers: list[dict[str, Any]]
    daily: list[dict[str, Any]]
    funnel: list[dict[str, Any]]
    weeks: list[WeekRow] = field(default_factory=list)
    # the medians marked on the visit and duration histograms, which cover every customer; None: the report's
    # own (no window)
    histogram_medians: dict[str, float | None] | None = None


@dataclass
class WrittenPage:
    path: Path
    size_bytes: int
    report: Report


def dashboard_data(db: Database, window: Window | None = None, helper: Database | None = None) -> DashboardData:
    """The report and every chart's rows, all from the same publication.

    The page's queries run on two connections at once: db, and helper (default: a second connection that
    db opens, when it can; without one, all on db in turn). Each side reads in snapshots of its own (report()
    takes one, the charts another), so they check that every snapshot saw the same publication and read
    again in the rare case a load published in between. The window applies to the headline figures, the
    conversion and the weekly trend.
    """
    if helper is None:
        with db.helper() as opened:
            return _dashboard_data(db, window, opened)
    return _dashboard_data(db, window, helper)


def _dashboard_data(db: Database, window: Window | None, helper: Database | None) -> DashboardData:
    for _attempt in range(5):
        if helper is None:
            headline, (weekly_id, weekly) = _report_side(db, window)
            charts_id, charts = _charts(db)
        else:
            with ThreadPoolExecutor(1) as side:
                other = side.submit(_report_side, helper, window)
                charts_id, charts = _charts(db)
                headline, (weekly_id, weekly) = other.result()
        if charts_id == weekly_id == headline.publication_id:
            break
    return DashboardData(report=headline, **weekly, **charts)


def _report_side(db: Database, window: Window | None) -> tuple[Report, tuple[int | None, dict[str, Any]]]:
    return report(db, window), _report_side_charts(db, window)


def _report_side_charts(db: Database, window: Window | None) -> tuple[int | None, dict[str, Any]]:
    """(publication id, rows) of the weekly trend and the visit and duration histograms, in one snapshot."""
    with db.published_snapshot():
        published = latest_publication(db)
        rows: dict[str, Any] = {key: db.query_file(QUERIES[key]) for key in ("visits", "durations")}
        rows["weeks"] = weekly_medians(db, window)
        if window is not None and not window.is_open:
            # the histograms are not windowed, so the medians drawn on them must not be either
            rows["histogram_medians"] = {
                key: db.query_file(f"{key}.sql", Window().settings())[0][key] for key in HISTOGRAM_MEDIANS
            }
    return (published["publication_id"] if published else None), rows


def _charts(db: Database) -> tuple[int | None, dict[str, Any]]:
    """(publication id, rows) of the daily, funnel and referrer charts, in one snapshot (every session: no
    window)."""
    with db.published_snapshot():
        published = latest_publication(db)
        rows: dict[str, Any] = {key: db.query_file(QUERIES[key]) for key in ("daily", "funnel")}
        rows["referrers"] = [_with_interval(row) for row in referrer_rows(db)]
    return (published["publication_id"] if published else None), rows


def _with_interval(row: ReferrerRow) -> dict[str, Any]:
    """A referrer row with the 95 % Wilson interval of its share_with_order (share_with_order_low, _high)."""
    interval = wilson(round(row.share_with_order * row.sessions), row.sessions)
    return {**row.as_json(), "share_with_order_low": interval.low, "share_with_order_high": interval.high}


def render_dashboard(db: Database, window: Window | None = None) -> str:
    """The complete HTML page for the data published now."""
    return render_page(dashboard_data(db, window))


def write_dashboard(db: Database, path: Path, window: Window | None = None) -> WrittenPage:
    """Write the page to path (whole or not at all: a temporary file renamed into place)."""
    data = dashboard_data(db, window)
    page = render_page(data).encode()
    target = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=".xccel-dashboard-", suffix=".html", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(page)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigError(f"cannot write the dashboard to {target}: {exc.strerror or exc}") from None
    return WrittenPage(target, len(page), data.report)


# ---------------------------------------------------------------------------------------------- page


def render_page(data: DashboardData, generated_at: datetime | None = None) -> str:
    """The page for rows already read (pure: no database)."""
    rep = data.report
    generated = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    medians = data.histogram_medians or {key: getattr(rep, key) for key in HISTOGRAM_MEDIANS}
    banner = (
        ""
        if rep.publication_id is not None
        else (
            '<p class="empty" id="nothing-published">Nothing is published yet: run <code>xccel run-all</code> '
            "(or extract, sessionize and load) and reload this page.</p>"
        )
    )
    sections = [
        _header(rep, data.daily, generated),
        banner,
        _window_banner(rep),
        _headlines(rep),
        conversion_cards.conversion_cards(rep.conversion, *_weeks_drawn(data.weeks, data.daily), rep.window),
        '<div class="grid">',
        _visits_figure(data.visits, medians["median_visits_before_order"]),
        _durations_figure(data.durations, medians["median_session_duration_minutes_before_order"]),
        "</div>",
        _referrers_figure(data.referrers),
        _daily_figures(data.daily),
        '<div class="grid">',
        _funnel_figure(data.funnel),
        _definitions(),
        "</div>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>xccel dashboard: time to first order</title>"
        # an empty inline icon: without it browsers fetch /favicon.ico, a request that leaves the page
        '<link rel="icon" href="data:,">'
        f"<style>{CSS}</style></head><body><main>{''.join(sections)}</main></body></html>\n"
    )


# Breakpoints follow the charts' widths: a desktop drawing (DESKTOP wide) fits a figure from a 600 px viewport
# on, two side by side need 1100 px; below 600 px the phone drawings (PHONE wide) fill the width. So no chart
# is shown much below its drawn size, and its smallest text stays readable.
CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f5f9;color:#1f2933;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"DejaVu Sans",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px;overflow-wrap:anywhere}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:16px;margin:0 0 6px}
.meta{color:#5b6675;margin:2px 0}
code{background:#e8ecf3;padding:0 4px;border-radius:3px;overflow-wrap:anywhere;word-break:break-word}
.headlines{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:16px;margin:18px 0}
.headline{background:#fff;border-radius:8px;padding:14px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.headline .value{font-size:44px;font-weight:700;line-height:1.1;color:#2c6fbb}
.headline .unit{font-size:18px;font-weight:600;color:#5b6675;margin-left:6px}
.headline .label{color:#1f2933;font-weight:600}
.counts{color:#5b6675;margin:0 0 12px}
.grid,.pair{display:grid;grid-template-columns:minmax(0,1fr);gap:16px}
.grid{margin:16px 0}
figure{background:#fff;border-radius:8px;margin:0;padding:14px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
figure.wide{margin:16px 0}
figcaption{color:#5b6675;margin-bottom:8px}
svg.chart{display:block;max-width:100%;height:auto}
.note{color:#1f2933;background:#fff4e5;border-left:3px solid #f0c48a;padding:4px 8px;margin:6px 0}
.more{margin:4px 0}
details{margin-top:6px;color:#5b6675}
summary{cursor:pointer}
.table-wrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;margin-top:6px;font-size:12px}
th,td{padding:2px 8px;border-bottom:1px solid #e3e7ee;text-align:right}
th:first-child,td:first-child{text-align:left;overflow-wrap:anywhere}
.defs{background:#fff;border-radius:8px;padding:12px 18px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:0}
.defs dt{font-weight:600;margin-top:6px}
.defs dd{margin:0 0 3px}
.empty{background:#fff4e5;border:1px solid #f0c48a;border-radius:8px;padding:10px 14px}
.v-mid,.v-phone{display:none}
@media (min-width:1100px){.grid,.pair{grid-template-columns:repeat(2,minmax(0,1fr))}}
@media (max-width:1099px){.v-wide{display:none}.v-mid{display:block}}
@media (max-width:899px){.headlines{grid-template-columns:minmax(0,1fr)}}
@media (max-width:599px){
main{padding:12px 10px 28px}
figure,.defs{padding:12px 10px}
.v-desktop,.v-wide,.v-mid{display:none}
.v-phone{display:block}
.v-phone svg.chart{width:100%;max-width:520px}
.headline .value{font-size:36px}
}
"""


def _weeks_drawn(weeks: list[WeekRow], daily: list[dict[str, Any]]) -> tuple[list[WeekRow], str]:
    """The weeks of first sessions that meet the days the day-by-day charts span (the bulk of the data), and a
    note on the others: first sessions spread over decades must not make the page grow with the data."""
    if not daily:
        return weeks, ""
    first, last = daily[0]["day"], daily[-1]["day"]
    shown = [w for w in weeks if first - timedelta(days=6) <= w.week_start <= last]
    if len(shown) == len(weeks):
        return weeks, ""
    left_out = len(weeks) - len(shown)
    customers = sum(w.customers for w in weeks) - sum(w.customers for w in shown)
    return shown, (
        f"Not shown: {left_out:,} weeks of first sessions ({customers:,} customers) outside the days the "
        f"day-by-day charts span ({first} to {last}); sql/weekly_medians.sql (under xccel db --psql) lists every week."
    )


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    return number(value) + (f" {unit}" if unit else "")


def _header(rep: Report, daily: list[dict[str, Any]], generated: str) -> str:
    if rep.published_at is not None:
        freshness = (
            f"Data published {rep.published_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"(publication {rep.publication_id})"
        )
        if daily:
            freshness += f"; sessions from {daily[0]['day']} to {daily[-1]['day']} (UTC days)"
            if daily[0]["sessions_outside"]:
                freshness += f", and {daily[0]['sessions_outside']:,} far outside those dates"
    else:
        freshness = "No data published yet"
    rules = ", ".join(f"{key} = {_rule_value(value)}" for key, value in sorted((rep.rules or {}).items()))
    with suppress(TypeError):  # rules stored by another version of xccel are shown as they are
        rules = f"{SessionRules(**rep.rules).describe()} ({rules})" if rep.rules else rules
    return (
        "<header><h1>xccel: how many visits, and how much time, before the first order</h1>"
        f'<p class="meta" id="freshness">{escape(freshness)}; page generated {escape(generated)}.</p>'
        f'<p class="meta" id="rules">Session rules: {escape(rules or "none yet")}.</p></header>'
    )


def _rule_value(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _headlines(rep: Report) -> str:
    cards = []
    for key, label, unit in HEADLINES:
        value = getattr(rep, key)
        shown = "–" if value is None else number(value)
        cards.append(
            f'<div class="headline" id="headline-{key}" data-key="{key}" data-value="{_raw(value)}">'
            f'<div class="label">Median {escape(label)}</div>'
            f'<div><span class="value">{shown}</span><span class="unit">{"" if value is None else unit}</span></div>'
            f"{_interval_line(rep, key)}"
            f'<div class="meta">{escape(DEFINITIONS[key])}</div></div>'
        )
    counts = (
        f"{rep.customers:,} customers with sessionized events, {rep.customers_with_orders:,} of them with "
        f"an order; {rep.sessions:,} sessions; {rep.events:,} events."
    )
    return (
        f'<section class="headlines" aria-label="Headline figures">{"".join(cards)}</section>'
        f'<p class="counts" id="counts" data-customers="{rep.customers}" data-customers-with-orders='
        f'"{rep.customers_with_orders}" data-sessions="{rep.sessions}" data-events="{rep.events}">'
        f"{escape(counts)}</p>"
    )


def _interval_line(rep: Report, key: str) -> str:
    interval = (rep.median_intervals or {}).get(key)
    if not interval:
        return ""
    if interval["low"] is None:
        text = "95 % interval: too few values" if interval["n"] else ""
    else:
        text = f"95 % interval: {number(interval['low'])} to {number(interval['high'])} (exact, order statistics)"
    bounds = f'data-low="{_raw(interval["low"])}" data-high="{_raw(interval["high"])}"'
    return f'<div class="meta" id="interval-{key}" {bounds}>{escape(text)}</div>'


def _window_banner(rep: Report) -> str:
    since, until = rep.window.get("since"), rep.window.get("until")
    if since is None and until is None:
        return ""
    return (
        f'<p class="empty" id="window" data-since="{escape(since or "")}" data-until="{escape(until or "")}">'
        f"Window: customers whose first session starts from {escape(since or 'the start')} to "
        f"{escape(until or 'the end')} (UTC days, both included). It applies to the headline figures, the "
        "conversion by visit number and the weekly trend; the other charts cover every session.</p>"
    )


def _raw(value: Any) -> str:
    """The exact value for machines (data-value attributes): repr of a number, 'null' for None."""
    return "null" if value is None else escape(repr(value))


def _table(table_id: str, headers: list[str], rows: list[list[tuple[Any, str]]], more: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td data-value="{_raw(raw)}">{escape(shown)}</td>' for raw, shown in row) + "</tr>"
        for row in rows
    )
    return (
        f'<details><summary>Numbers</summary><div class="table-wrap"><table id="{table_id}"><thead><tr>{head}'
        f"</tr></thead><tbody>{body}</tbody></table></div>{more}</details>"
    )


def _figure(
    figure_id: str, heading: str, caption: str, body: str, table: str, wide: bool = False, note: str = ""
) -> str:
    css = ' class="wide"' if wide else ""
    shown_note = f'<p class="note">{escape(note)}</p>' if note else ""
    return (
        f'<figure id="{figure_id}"{css}><h2>{escape(heading)}</h2><figcaption>{escape(caption)}</figcaption>'
        f"{shown_note}{body}{table}</figure>"
    )


def _empty(chart_id: str, title: str, message: str, layouts: Sequence[tuple[str, int]] = LAYOUTS) -> str:
    return variants(chart_id, lambda svg_id, width: charts.empty_chart(svg_id, title, message, width), layouts)


def _visits_figure(visits: list[dict[str, Any]], median: float | None) -> str:
    title = "Customers by sessions before their first order"
    caption = (
        "Customers with an order, by the number of sessions before the session of their first order "
        f"(median {_fmt(median)}, dashed line)."
    )
    if not visits:
        svg = _empty("chart-visits", title, "No customer with an order yet.")
    else:
        top = max(row["visits_before_order"] for row in visits)
        bars = min(top, VISIT_BARS) + 1
        counts = [0] * bars
        for row in visits:
            counts[min(row["visits_before_order"], VISIT_BARS)] += row["customers"]
        categories = [str(i) for i in range(bars)]
        if top >= VISIT_BARS:
            categories[-1] = f"{VISIT_BARS}+"
        marker = None if median is None else (min(median, VISIT_BARS), f"median {number(median)}")
        svg = variants(
            "chart-visits",
            lambda svg_id, width: charts.bar_chart(
                chart_id=svg_id,
                title=title,
                description=f"Histogram over {sum(counts):,} customers; median {_fmt(median)} sessions before the "
                "first order.",
                categories=categories,
                series=[Series("customers", counts, BLUE)],
                x_label="sessions before the first order session",
                y_label="customers",
                marker=marker,
                width=width,
            ),
        )
    table = _table(
        "table-visits",
        ["sessions before first order", "customers"],
        [
            [(r["visits_before_order"], str(r["visits_before_order"])), (r["customers"], f"{r['customers']:,}")]
            for r in visits[:TABLE_ROWS]
        ],
        more_rows(
            "table-visits",
            len(visits) - TABLE_ROWS,
            f"rows ({sum(r['customers'] for r in visits[TABLE_ROWS:]):,} customers, "
            f"{visits[-1]['visits_before_order'] if visits else 0:,} sessions before the first order at most) are",
            "<code>sql/dashboard_visits.sql</code> (under <code>xccel db --psql</code>)",
        ),
    )
    return _figure("figure-visits", title, caption, svg, table)


def _duration_label(row: dict[str, Any]) -> str:
    if row["bin"] == 0:
        return "0"
    if row["upper_minutes"] is None:
        return f"{number(row['lower_minutes'])}+"
    return f"{number(row['lower_minutes'])}–{number(row['upper_minutes'])}"


def _durations_figure(durations: list[dict[str, Any]], median: float | None) -> str:
    title = "Session duration: before the first order vs all sessions"
    caption = (
        "Share of sessions per duration bin, in minutes. The bins are of equal width (5 minutes, lower bound "
        "included), so bar heights compare; the first bar holds one-event sessions (duration 0), the last every "
        "session of 120 minutes or more. "
        f"Median before the first order: {_fmt(median, 'min')}."
    )
    total_before = sum(r["sessions_before_order"] for r in durations)
    total_all = sum(r["sessions"] for r in durations)
    if total_all == 0:
        svg = _empty("chart-durations", title, "No sessions yet.")
    else:
        before = [r["sessions_before_order"] / total_before if total_before else None for r in durations]
        every = [r["sessions"] / total_all for r in durations]
        svg = variants(
            "chart-durations",
            lambda svg_id, width: charts.bar_chart(
                chart_id=svg_id,
                title=title,
                description=f"{total_before:,} sessions before a first order beside all {total_all:,} sessions, "
                "as shares per 5-minute duration bin.",
                categories=[_duration_label(r) for r in durations],
                series=[Series("before the first order", before, ORANGE), Series("all sessions", every, GREY)],
                x_label="session duration (minutes, 5-minute bins)",
                y_label="share of sessions (%)",
                fmt=_percent_axis,
                width=width,
            ),
        )
    table = _table(
        "table-durations",
        ["duration (min)", "sessions before first order", "all sessions"],
        [
            [
                (_duration_label(r), _duration_label(r)),
                (r["sessions_before_order"], f"{r['sessions_before_order']:,}"),
                (r["sessions"], f"{r['sessions']:,}"),
            ]
            for r in durations
        ],
    )
    return _figure("figure-durations", title, caption, svg, table)


def _percent_axis(value: float) -> str:
    return f"{value * 100:.0f}%" if round(value * 100, 6) == round(value * 100) else f"{value * 100:.1f}%"


def _referrers_figure(referrers: list[dict[str, Any]]) -> str:
    title = "Sessions by referrer"
    cut = [r for r in referrers[:TABLE_ROWS] if len(r["referrer"]) > REFERRER_CHARS]
    referrers = [{**r, "referrer": charts.truncate(r["referrer"], REFERRER_CHARS)} for r in referrers]
    shown = referrers[:REFERRER_ROWS]
    caption = EXTRA_DEFINITIONS["referrer"] + (
        " Conversion carries its 95% Wilson score interval (whiskers, and in brackets): where two referrers' "
        "intervals overlap, the data does not say which converts better."
    )
    if cut:
        caption += (
            f" {len(cut):,} referrers longer than {REFERRER_CHARS} characters are cut here (…); "
            "xccel report --by referrer and GET /metrics/referrers give them whole."
        )
    if len(referrers) > len(shown):
        listed = "all" if len(referrers) <= TABLE_ROWS else f"the {TABLE_ROWS} largest"
        caption += f" The chart shows the {len(shown)} largest of {len(referrers)} referrers; the table lists {listed}."
    if not shown:
        svg = _empty("chart-referrers", title, "No sessions yet.", WIDE_LAYOUTS)
    else:
        labels = [r["referrer"] for r in shown]
        panels = [
            Panel("Sessions", [Series("sessions", [r["sessions"] for r in shown], BLUE)], "sessions", number),
            Panel(
                "Duration",
                [
                    Series("median", [r["median_duration_minutes"] for r in shown], BLUE),
                    Series("90th percentile", [r["p90_duration_minutes"] for r in shown], GREY),
                ],
                "minutes",
                number,
            ),
            Panel(
                "Conversion (95% interval)",
                [
                    Series(
                        "sessions with an order",
                        [r["share_with_order"] for r in shown],
                        ORANGE,
                        intervals=[(r["share_with_order_low"], r["share_with_order_high"]) for r in shown],
                    )
                ],
                "sessions with an order (%)",
                _percent_axis,
            ),
        ]
        svg = variants(
            "chart-referrers",
            lambda svg_id, width: charts.hbar_panels(
                chart_id=svg_id,
                title=title,
                description="Per referrer: sessions, median and 90th-percentile session duration, and the share of "
                "sessions with an order with its 95% Wilson interval.",
                labels=labels,
                panels=panels,
                width=width,
                stacked=width < WIDE,
            ),
            WIDE_LAYOUTS,
        )
    table = _table(
        "table-referrers",
        ["referrer", "sessions", "median min", "p90 min", "with an order", "mean events", "95% interval"],
        [
            [
                (r["referrer"], r["referrer"]),
                (r["sessions"], f"{r['sessions']:,}"),
                (r["median_duration_minutes"], _fmt(r["median_duration_minutes"])),
                (r["p90_duration_minutes"], _fmt(r["p90_duration_minutes"])),
                (r["share_with_order"], percent(r["share_with_order"])),
                (r["mean_events_per_session"], f"{r['mean_events_per_session']:.2f}"),
                (
                    [r["share_with_order_low"], r["share_with_order_high"]],
                    f"{percent(r['share_with_order_low'])}–{percent(r['share_with_order_high'])}",
                ),
            ]
            for r in referrers[:TABLE_ROWS]
        ],
        more_rows(
            "table-referrers",
            len(referrers) - TABLE_ROWS,
            "referrers, smaller ones, are",
            "<code>xccel report --by referrer</code> or <code>GET /metrics/referrers</code>",
        ),
    )
    return _figure("figure-referrers", title, caption, svg, table, wide=True)


def outside_note(daily: list[dict[str, Any]]) -> str:
    """What the day-by-day window leaves out (events far outside the data's bulk), or ''."""
    if not daily or not (daily[0]["sessions_outside"] or daily[0]["orders_outside"]):
        return ""
    first, last = daily[0]["outside_first"], daily[0]["outside_last"]
    extremes = [f"as early as {first}" if first else "", f"as late as {last}" if last else ""]
    when = " and ".join(part for part in extremes if part)
    return (
        f"Not drawn: {daily[0]['sessions_outside']:,} sessions and {daily[0]['orders_outside']:,} orders dated far "
        f"outside the bulk of the data ({when} UTC); the days shown run from {daily[0]['day']} to {daily[-1]['day']}."
    )


def _daily_figures(daily: list[dict[str, Any]]) -> str:
    title_counts = "Sessions and orders per day"
    title_share = "Share of sessions with an order, per day"
    note = outside_note(daily)
    if not daily:
        counts_svg = _empty("chart-daily-counts", title_counts, "No sessions yet.")
        share_svg = _empty("chart-daily-share", title_share, "No sessions yet.")
    else:
        same_year = daily[0]["day"].year == daily[-1]["day"].year
        categories = [f"{r['day']:%m-%d}" if same_year else r["day"].isoformat() for r in daily]
        axis = f"UTC day ({daily[0]['day'].year})" if same_year else "UTC day"
        partial = [bool(r["partial"]) for r in daily]
        notes = []
        if any(partial):
            notes.append("Open circles: partial days (the data covers under 23 h).")
        if note:
            notes.append(f"{daily[0]['sessions_outside']:,} sessions far outside these dates are not drawn.")
        counts_svg = variants(
            "chart-daily-counts",
            lambda svg_id, width: charts.line_chart(
                chart_id=svg_id,
                title=title_counts,
                description=f"Sessions started and placed_order events per UTC day, {len(daily)} days.",
                categories=categories,
                series=[
                    Series("sessions", [r["sessions"] for r in daily], BLUE),
                    Series("orders", [r["orders"] for r in daily], ORANGE),
                ],
                x_label=axis,
                y_label="per day",
                partial=partial,
                notes=notes,
                width=width,
            ),
        )
        share_svg = variants(
            "chart-daily-share",
            lambda svg_id, width: charts.line_chart(
                chart_id=svg_id,
                title=title_share,
                description="Share of the sessions started each UTC day that hold a placed_order event.",
                categories=categories,
                series=[Series("sessions with an order", [r["share_with_order"] for r in daily], ORANGE)],
                x_label=axis,
                y_label="share of sessions (%)",
                fmt=_percent_axis,
                partial=partial,
                notes=notes,
                width=width,
            ),
        )
    table = _table(
        "table-daily",
        ["day (UTC)", "sessions", "sessions with an order", "orders", "share with an order", "hours of data"],
        [
            [
                (r["day"].isoformat(), r["day"].isoformat()),
                (r["sessions"], f"{r['sessions']:,}"),
                (r["sessions_with_order"], f"{r['sessions_with_order']:,}"),
                (r["orders"], f"{r['orders']:,}"),
                (r["share_with_order"], "–" if r["share_with_order"] is None else percent(r["share_with_order"])),
                (round(r["hours_covered"], 2), f"{r['hours_covered']:.1f}" + (" (partial)" if r["partial"] else "")),
            ]
            for r in daily
        ],
    )
    return _figure(
        "figure-daily",
        "Day by day",
        EXTRA_DEFINITIONS["daily"],
        f'<div class="pair"><div>{counts_svg}</div><div>{share_svg}</div></div>',
        table,
        wide=True,
        note=note,
    )


def _funnel_figure(funnel: list[dict[str, Any]]) -> str:
    title = "Funnel per session"
    caption = EXTRA_DEFINITIONS["funnel"] + " Light bars: sessions with the step's event at all."
    if not funnel or funnel[0]["sessions_through_step"] == 0:
        svg = _empty("chart-funnel", title, "No sessions yet.")
    else:
        last = funnel[-1]
        svg = variants(
            "chart-funnel",
            lambda svg_id, width: charts.funnel_chart(
                chart_id=svg_id,
                title=title,
                description=f"Of {funnel[0]['sessions_through_step']:,} sessions, "
                f"{last['sessions_through_step']:,} went through every step to an order; "
                f"{last['sessions_with_event']:,} hold an order at all.",
                steps=[FUNNEL_LABELS.get(r["step_name"], r["step_name"]) for r in funnel],
                reached=[r["sessions_through_step"] for r in funnel],
                with_event=[r["sessions_with_event"] for r in funnel],
                width=width,
            ),
        )
    table = _table(
        "table-funnel",
        ["step", "sessions through every step so far", "sessions with the event"],
        [
            [
                (r["step_name"], FUNNEL_LABELS.get(r["step_name"], r["step_name"])),
                (r["sessions_through_step"], f"{r['sessions_through_step']:,}"),
                (r["sessions_with_event"], f"{r['sessions_with_event']:,}"),
            ]
            for r in funnel
        ],
    )
    return _figure("figure-funnel", title, caption, svg, table)


def _definitions() -> str:
    items = "".join(
        f"<dt><code>{escape(key)}</code></dt><dd>{escape(text)}</dd>"
        for key, text in {**DEFINITIONS, **EXTRA_DEFINITIONS}.items()
    )
    return f'<section class="defs" id="definitions"><h2>Definitions</h2><dl>{items}</dl></section>'
