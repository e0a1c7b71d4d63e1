"""Terminal output with rich: tables, the progress bar. Only the CLI imports this module."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from rich.console import Console
from rich.markup import escape
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
        table.add_row(f"{key}\n[dim]{DEFINITIONS[key]}[/dim]", _fmt(getattr(report, key)))
    if report.published_at is None:
        table.caption = "nothing published yet: run `xccel run-all`"
    else:
        rules = report.rules or {}
        from xccel_cli.config import SessionRules

        described = SessionRules(**rules).describe() if rules else "unknown rules"
        table.caption = f"published {report.published_at:%Y-%m-%d %H:%M:%S %Z}; sessions: {described}"
        if rules.get("max_session_hours") is not None:
            table.caption += f"; {report.cut_sessions:,} sessions cut by the cap"
    console.print(table)


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
                ("already loaded", row.already_loaded),
                ("anonymous", row.anonymous),
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
