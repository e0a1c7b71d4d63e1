"""Terminal output with rich: tables, the progress bar. Only the CLI imports this module.

No figure is ever dropped or cut, whatever the width: a table is printed only when it fits the console whole
(every column at its natural width); otherwise the same figures come as one block per record. Prose wraps at
spaces; a word longer than the line (a URL) is printed whole on its own line, never broken.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from xccel_cli.extract import ExtractResult
from xccel_cli.metrics import DEFINITIONS, HEADLINE, Report
from xccel_cli.pipeline import STAGES, RunAllResult
from xccel_cli.referrers import DEFINITIONS as REFERRER_DEFINITIONS
from xccel_cli.referrers import ReferrerReport
from xccel_cli.runs import RunRow


class _Console(Console):
    """A console whose closed output is the CLI's to report (rich would exit 1, the code of a bug)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


console = _Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def expected_bytes(source: str) -> int | None:
    """How many bytes extract will read from a local file (after gunzip), when that can be known up front:
    the file's size, or for a gzip file the size its trailer records (exact for one member under 4 GiB; a
    trailer smaller than the file itself cannot be right, so then None). HTTP and stdin: None (the bar then
    shows bytes, lines and rate without a total)."""
    if source == "-" or "://" in source:
        return None
    try:
        path = Path(source).expanduser()
        size = path.stat().st_size
        with path.open("rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                return size
            handle.seek(-4, os.SEEK_END)
            recorded = int.from_bytes(handle.read(4), "little")
    except OSError:
        return None  # extract says why it cannot read it
    return recorded if recorded >= size else None


class BytesOnly(ProgressColumn):
    """A column drawn only for the extract task (the stages after it have no bytes to count)."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self.column = column

    def render(self, task: Task) -> RenderableType:
        return self.column.render(task) if task.fields.get("counts_bytes") else Text("")


class TerminalProgress:
    """The extract bar (with total, percentage and time left when the size is known), then the stage now
    running, so that sessionize and load do not look like a hung terminal."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self.progress = progress
        self.total = total
        self.task = progress.add_task("extract", total=total, detail="0 lines", counts_bytes=True)

    def __call__(self, bytes_read: int, lines: int) -> None:
        if self.total is not None and bytes_read > self.total:  # the estimate was wrong: no total, no lie
            self.total = None
            self.progress.update(self.task, total=None)
        self.progress.update(self.task, completed=bytes_read, detail=f"{lines:,} lines")

    def sized(self, total: int) -> None:
        """An HTTP body's Content-Length, once the answer came: the bar gets its total (kept only while the
        bytes read stay within it: a gzip body grows when it is decoded)."""
        if self.total is None:
            self.total = total
            self.progress.update(self.task, total=total)

    def phase(self, stage: str) -> None:
        if stage == "extract":
            return
        self.progress.refresh()  # the finished bar is drawn once, however quick the extract was
        self.progress.update(self.task, visible=False)
        self.task = self.progress.add_task(STAGE_TEXT.get(stage, stage), total=None, detail="", counts_bytes=False)


STAGE_TEXT = {
    "sessionize": "sessionize: cutting events into sessions",
    "load": "load: publishing tb_events and sessions",
}


@contextmanager
def working(stage: str, quiet: bool = False) -> Iterator[None]:
    """A spinner naming the stage while a command without a byte count runs (sessionize, load), on a terminal."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with err_console.status(STAGE_TEXT.get(stage, stage)):
        yield


@contextmanager
def progress_reporter(quiet: bool = False, source: str | None = None) -> Iterator[TerminalProgress | None]:
    """A progress display on stderr when it is a terminal; None otherwise (and with --quiet)."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        BytesOnly(TaskProgressColumn()),
        BytesOnly(DownloadColumn()),
        BytesOnly(TransferSpeedColumn()),
        BytesOnly(TimeRemainingColumn()),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield TerminalProgress(progress, expected_bytes(source) if source else None)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def say(text: str = "", *, indent: int = 0, hang: int = 2, style: str | None = None) -> None:
    """Print text wrapped at spaces to the terminal's width (continued lines indented by hang more); a word
    longer than the line stays whole on a line of its own. In a pipe (no COLUMNS) the line is left whole."""
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        # a pipe or a file: each line whole, for grep and mail (nothing there wraps or cuts it)
        console.print(escape(" " * indent + text), style=style, soft_wrap=True)
        return
    lines = textwrap.wrap(
        text,
        width=max(console.width, 20),
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + hang),
        break_long_words=False,
        break_on_hyphens=False,
    )
    for line in lines or [""]:
        console.print(escape(line), style=style, soft_wrap=True)


def fits(table: Table) -> bool:
    """Whether the table, with every column at its natural width, fits the console."""
    return Measurement.get(console, console.options.update(width=1_000_000), table).minimum <= console.width


def records(title: str, blocks: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """The vertical layout: a heading per record, then one `label  value` line per figure."""
    say(title, style="bold")
    for heading, fields in blocks:
        say()
        say(heading, style="bold")
        width = max((len(label) for label, _ in fields), default=0)
        for label, value in fields:
            say(f"{label:<{width}}  {value}", indent=2)


def _table(title: str, headers: list[str], rows: list[list[str]], *, show_lines: bool = False) -> Table:
    """Every column unwrapped: the table is shown whole or not at all (see fits)."""
    table = Table(title=title, show_lines=show_lines)
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def render_report(report: Report) -> None:
    table = Table(title="xccel report", show_lines=True)
    table.add_column("metric")  # the key never breaks (one word); its definition wraps at spaces
    table.add_column("value", justify="right", no_wrap=True)
    rows = [(key, DEFINITIONS[key], _fmt(getattr(report, key)), _median_interval_text(report, key)) for key in HEADLINE]
    if report.conversion is not None:
        rows.append(
            (
                "km_median_order_session",
                "Kaplan–Meier: the session number by which half of all customers have bought (see report --by visit)",
                *_km_median_parts(report.conversion),
            )
        )
    for key, definition, value, interval in rows:
        shown = value + (f"\n[dim]{interval}[/dim]" if interval else "")
        table.add_row(f"{key}\n[dim]{escape(definition)}[/dim]", shown)
    if fits(table):
        console.print(table)
    else:
        say("xccel report", style="bold")
        for key, definition, value, interval in rows:
            say()
            say(f"{key}  {value}" + (f"  ({interval})" if interval else ""), style="bold")
            say(definition, indent=2, hang=0, style="dim")
        say()
    if report.published_at is None:
        say("nothing published yet: run `xccel run-all`")
    else:
        rules = report.rules or {}
        from xccel_cli.config import SessionRules

        described = SessionRules(**rules).describe() if rules else "unknown rules"
        caption = f"published {report.published_at:%Y-%m-%d %H:%M:%S %Z}; sessions: {described}"
        if rules.get("max_session_hours") is not None:
            caption += f"; {report.cut_sessions:,} sessions cut by the cap"
        say(caption)
    window = _window_text(report.window)
    if window:
        say(window)


def _median_interval_text(report: Report, key: str) -> str:
    """'95 %: low–high' for a median (plain text), '' where there is no interval to give."""
    interval = (report.median_intervals or {}).get(key)
    if not interval or interval["low"] is None:
        return "" if not interval or interval["n"] == 0 else "95 %: n/a (n < 6)"
    return f"95 %: {_fmt(interval['low'])}–{_fmt(interval['high'])}"


def _km_median_parts(by_visit: dict[str, Any]) -> tuple[str, str]:
    """The Kaplan–Meier median and its interval, as plain texts."""
    text = _km_median(by_visit)
    value, _, interval = text.partition("\n[dim]")
    return value, interval.replace("[/dim]", "")


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
    console.print("xccel report by visit number", soft_wrap=True)
    for row in by_visit["rows"]:
        console.print(f"[bold]session {row['session_number']:,}[/bold]", soft_wrap=True)
        console.print(f"  reached {row['customers_reached']:,}, at risk {row['at_risk']:,}", soft_wrap=True)
        console.print(f"  first orders {row['first_orders']:,}, censored {row['censored']:,}", soft_wrap=True)
        console.print(f"  hazard {_rate(row['hazard'], row['hazard_interval'])}", soft_wrap=True)
        console.print(f"  bought by k {_rate(row['cumulative_share'], row['cumulative_interval'])}", soft_wrap=True)
    console.print("\n".join(notes), soft_wrap=True)


def render_extract(result: ExtractResult) -> None:
    say(
        f"read {result.lines_read:,} lines from {result.source}: {result.loaded:,} new events loaded, "
        f"{result.already_loaded:,} already loaded, {result.anonymous:,} anonymous, "
        f"{result.duplicates:,} duplicates, {result.rejected:,} rejected ({result.seconds:.2f} s)"
    )
    if result.reject_reasons:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in result.reject_reasons.items())
        say(f"rejected lines by reason: {reasons} (see the rejects table)")


RUN_KEYS = (
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
)


def render_run_all(result: RunAllResult) -> None:
    summary = result.summary()
    rows = [[key, _fmt(summary[key])] for key in RUN_KEYS]
    rows += [[f"time: {stage}", f"{seconds:.3f} s"] for stage, seconds in summary["stage_seconds"].items()]
    rows.append(["time: total", f"{summary['total_seconds']:.3f} s"])
    title = f"xccel run {result.run_id}"
    table = _table(title, ["what", "value"], rows)
    table.show_header = False
    if fits(table):
        console.print(table)
    else:
        records(title, [("", [(key, value) for key, value in rows])])
    render_report(result.report)


REFERRER_COLUMNS = (
    ("referrer", "referrer"),
    ("sessions", "sessions"),
    ("customers", "customers"),
    ("median_duration_minutes", "median min"),
    ("p90_duration_minutes", "p90 min"),
    ("share_with_order", "with order"),
    ("mean_events_per_session", "mean events"),
)


def render_referrers(result: ReferrerReport) -> None:
    rows = [
        [
            row.referrer,
            _fmt(row.sessions),
            _fmt(row.customers),
            _fmt(row.median_duration_minutes),
            _fmt(row.p90_duration_minutes),
            f"{row.share_with_order:.1%}",
            _fmt(row.mean_events_per_session),
        ]
        for row in result.rows
    ]
    headers = [header for _, header in REFERRER_COLUMNS]
    title = "xccel report by referrer"
    table = _table(title, headers, rows)
    if fits(table):
        console.print(table)
    else:
        records(title, [(row[0], list(zip(headers[1:], row[1:], strict=True))) for row in rows])
    say()
    for column, header in REFERRER_COLUMNS:
        say(f"{header}: {REFERRER_DEFINITIONS[column]}")
    if result.published_at is None:
        say("nothing published yet: run `xccel run-all`")
    else:
        say(f"published {result.published_at:%Y-%m-%d %H:%M:%S %Z}")


STATUS_STYLE = {"succeeded": "green", "unchanged": "green", "running": "yellow", "failed": "red", "interrupted": "red"}


def render_runs(rows: list[RunRow]) -> None:
    """One block per run, like `git log`: nothing is cut off on a narrow terminal or in a pipe."""
    say("xccel runs (newest first)")
    for row in rows:
        seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
        say(
            f"run {row.run_id}  {row.command}  {row.status}  started {row.started_at:%Y-%m-%d %H:%M:%S} UTC"
            + ("" if seconds is None else f"  {seconds:.1f} s"),
            style=f"bold {STATUS_STYLE.get(row.status, 'default')}",
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
            ("source", row.source or ""),
            ("counts", " · ".join(counts)),
            ("stages", " · ".join(stages)),
            ("error", row.error or ""),
        ):
            if text:
                say(f"{label:<7} {text}", indent=4, style="red" if label == "error" else None)
