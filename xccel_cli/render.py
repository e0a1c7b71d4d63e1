"""Terminal output with rich: tables, the progress bar. Only the CLI imports this module."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn
from rich.table import Table

from xccel_cli.extract import ExtractResult
from xccel_cli.metrics import DEFINITIONS, Report
from xccel_cli.pipeline import STAGES, RunAllResult
from xccel_cli.referrers import DEFINITIONS as REFERRER_DEFINITIONS
from xccel_cli.referrers import ReferrerReport
from xccel_cli.runs import RunRow

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def progress_reporter(quiet: bool = False) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback drawing bytes, lines and rate on a terminal; None when stderr is not one."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("extract"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("extract", total=None, lines=0)

        def update(bytes_read: int, lines: int) -> None:
            progress.update(task, completed=bytes_read, lines=lines)

        yield update


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_report(report: Report) -> None:
    table = Table(title="xccel report", show_lines=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "median_visits_before_order",
        "median_session_duration_minutes_before_order",
        "median_total_minutes_before_order",
        "customers",
        "customers_with_orders",
        "sessions",
        "events",
    ):
        table.add_row(
            f"{key}\n[dim]{DEFINITIONS[key]}[/dim]", _fmt(getattr(report, key)) + _median_interval(report, key)
        )
    if report.conversion is not None:
        by_visit = report.conversion
        table.add_row(
            "km_median_order_session\n[dim]Kaplan–Meier: the session number by which half of all customers have "
            "bought (see report --by visit)[/dim]",
            _km_median(by_visit),
        )
    if report.published_at is None:
        table.caption = "nothing published yet: run `xccel run-all`"
    else:
        rules = report.rules or {}
        from xccel_cli.config import SessionRules

        described = SessionRules(**rules).describe() if rules else "unknown rules"
        table.caption = f"published {report.published_at:%Y-%m-%d %H:%M:%S %Z}; sessions: {described}"
        if rules.get("max_session_hours") is not None:
            table.caption += f"; {report.cut_sessions:,} sessions cut by the cap"
    window = _window_text(report.window)
    if window:
        table.caption = f"{table.caption}\n{window}"
    console.print(table)


def _median_interval(report: Report, key: str) -> str:
    interval = (report.median_intervals or {}).get(key)
    if not interval or interval["low"] is None:
        return "" if not interval or interval["n"] == 0 else "\n[dim]95 %: n/a (n < 6)[/dim]"
    return f"\n[dim]95 %: {_fmt(interval['low'])}–{_fmt(interval['high'])}[/dim]"


def _km_median(by_visit: dict[str, Any]) -> str:
    median = by_visit["km_median_order_session"]
    interval = by_visit["km_median_interval"]
    low = "n/a" if interval["low"] is None else f"{interval['low']:.0f}"
    high = "not reached" if interval["high"] is None else f"{interval['high']:.0f}"
    shown = "not reached" if median is None else f"{median:,}"
    return f"{shown}\n[dim]95 %: {low}–{high}[/dim]" if median is not None or interval["low"] is not None else shown


def _km_median_text(by_visit: dict[str, Any]) -> str:
    return _km_median(by_visit).replace("\n[dim]", " (").replace("[/dim]", ")")


def _window_text(window: dict[str, Any] | None) -> str:
    if not window or (window["since"] is None and window["until"] is None):
        return ""
    return (
        f"customers whose first session starts from {window['since'] or 'the start'} to "
        f"{window['until'] or 'the end'} (UTC days, both included)"
    )


def _rate(value: float, interval: dict[str, Any]) -> str:
    if interval["low"] is None:
        return f"{value:.1%}"
    return f"{value:.1%} ({interval['low']:.1%}–{interval['high']:.1%})"


def render_conversion(report: Report) -> None:
    """Conversion by visit number: one row per session number k, rates with their 95 % intervals."""
    from xccel_cli.conversion import DEFINITIONS as CONVERSION_DEFINITIONS

    by_visit = report.conversion or {"rows": [], "km_median_order_session": None}
    table = Table(title="xccel report by visit number", caption_justify="left")
    table.add_column("k", justify="right", no_wrap=True)
    for header in ("reached", "at risk", "first\norders", "cen-\nsored"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("hazard (95 %)", justify="right")
    table.add_column("bought by k, KM (95 %)", justify="right")
    for row in by_visit["rows"]:
        table.add_row(
            _fmt(row["session_number"]),
            _fmt(row["customers_reached"]),
            _fmt(row["at_risk"]),
            _fmt(row["first_orders"]),
            _fmt(row["censored"]),
            _rate(row["hazard"], row["hazard_interval"]),
            _rate(row["cumulative_share"], row["cumulative_interval"]),
        )
    buyers = by_visit.get("buyers_median_order_session")
    notes = [
        f"Kaplan–Meier median: half of all customers have bought by session {_km_median_text(by_visit)}",
        f"buyers only: median first-order session {_fmt(buyers)} (ignores customers who have not bought)",
    ]
    notes += [
        f"{key}: {CONVERSION_DEFINITIONS[key]}"
        for key in ("at_risk", "first_orders", "censored", "hazard", "cumulative_share", "intervals")
    ]
    window = _window_text(report.window)
    if window:
        notes.append(window)
    if report.published_at is None:
        notes.append("nothing published yet: run `xccel run-all`")
    else:
        notes.append(f"published {report.published_at:%Y-%m-%d %H:%M:%S %Z}")
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        table.caption = "\n".join(notes)
        console.print(table)
        return
    # too narrow for the table: one block per session number, so that no figure is cut or wrapped
    say = partial(console.print, soft_wrap=True)
    say("xccel report by visit number")
    for row in by_visit["rows"]:
        say(f"[bold]session {row['session_number']:,}[/bold]")
        say(f"  reached {row['customers_reached']:,}, at risk {row['at_risk']:,}")
        say(f"  first orders {row['first_orders']:,}, censored {row['censored']:,}")
        say(f"  hazard {_rate(row['hazard'], row['hazard_interval'])}")
        say(f"  bought by k {_rate(row['cumulative_share'], row['cumulative_interval'])}")
    console.print("\n".join(notes))


def render_extract(result: ExtractResult) -> None:
    console.print(
        f"read {result.lines_read:,} lines from {result.source}: {result.loaded:,} new events loaded, "
        f"{result.already_loaded:,} already loaded, {result.anonymous:,} anonymous, "
        f"{result.duplicates:,} duplicates, {result.rejected:,} rejected ({result.seconds:.2f} s)"
    )
    if result.reject_reasons:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in result.reject_reasons.items())
        console.print(f"rejected lines by reason: {reasons} (see the rejects table)")


def render_run_all(result: RunAllResult) -> None:
    summary = result.summary()
    table = Table(title=f"xccel run {result.run_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for key in (
        "source",
        "lines_read",
        "loaded",
        "already_loaded",
        "anonymous",
        "duplicates",
        "rejected",
        "customers",
        "customers_rebuilt",
        "sessions",
        "events",
    ):
        table.add_row(key, _fmt(summary[key]))
    for stage, seconds in summary["stage_seconds"].items():
        table.add_row(f"time: {stage}", f"{seconds:.3f} s")
    table.add_row("time: total", f"{summary['total_seconds']:.3f} s")
    console.print(table)
    render_report(result.report)


def render_referrers(result: ReferrerReport) -> None:
    table = Table(title="xccel report by referrer", caption_justify="left")
    columns = (
        "referrer",
        "sessions",
        "customers",
        "median_duration_minutes",
        "p90_duration_minutes",
        "share_with_order",
        "mean_events_per_session",
    )
    headers = ("referrer", "sessions", "custo-\nmers", "median\nmin", "p90\nmin", "with\norder", "mean\nevents")
    for column, header in zip(columns, headers, strict=True):
        if column == "referrer":
            table.add_column(header, overflow="fold", min_width=22)
        else:
            table.add_column(header, justify="right", no_wrap=True)
    for row in result.rows:
        table.add_row(
            row.referrer,
            _fmt(row.sessions),
            _fmt(row.customers),
            _fmt(row.median_duration_minutes),
            _fmt(row.p90_duration_minutes),
            f"{row.share_with_order:.1%}",
            _fmt(row.mean_events_per_session),
        )
    notes = [
        f"{header.replace('-' + chr(10), '').replace(chr(10), ' ')}: {REFERRER_DEFINITIONS[column]}"
        for column, header in zip(columns, headers, strict=True)
    ]
    if result.published_at is None:
        notes.append("nothing published yet: run `xccel run-all`")
    else:
        notes.append(f"published {result.published_at:%Y-%m-%d %H:%M:%S %Z}")
    table.caption = "\n".join(notes)
    console.print(table)


STATUS_STYLE = {"succeeded": "green", "unchanged": "green", "running": "yellow", "failed": "red", "interrupted": "red"}


def render_runs(rows: list[RunRow]) -> None:
    """One block per run, like `git log`: nothing is cut off on a narrow terminal or in a pipe."""
    say = partial(console.print, soft_wrap=True)  # a long source or error stays one line
    say("xccel runs (newest first)")
    for row in rows:
        seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
        style = STATUS_STYLE.get(row.status, "default")
        say(
            f"[bold]run {row.run_id}[/bold]  {row.command}  [{style}]{row.status}[/{style}]  "
            f"started {row.started_at:%Y-%m-%d %H:%M:%S} UTC" + ("" if seconds is None else f"  {seconds:.1f} s")
        )
        counts = [
            f"{name} {value:,}"
            for name, value in (
                ("lines", row.lines_read),
                ("loaded", row.loaded),
                ("duplicates", row.duplicates),
                ("rejected", row.rejected),
                ("customers touched", row.customers_touched),
            )
            if value is not None
        ]
        ranked = sorted(
            (row.stage_seconds or {}).items(),
            key=lambda item: STAGES.index(item[0]) if item[0] in STAGES else len(STAGES),
        )
        stages = [f"{stage} {value:.2f} s" for stage, value in ranked]
        for label, text in (
            ("source", escape(row.source or "")),
            ("counts", " · ".join(counts)),
            ("stages", " · ".join(stages)),
            ("error", f"[red]{escape(row.error or '')}[/red]" if row.error else ""),
        ):
            if text:
                say(f"    {label:<7} {text}")
