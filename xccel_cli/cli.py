"""The `xccel` command line: each command parses options, calls one library function, renders its result."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from xccel_cli import config, logs
from xccel_cli.errors import DatabaseError, ExitCode, SourceError, XccelError

if TYPE_CHECKING:  # the core is imported lazily: start-up time matters for every command
    from xccel_cli.db import Database
    from xccel_cli.pipeline import ExtractOptions

app = typer.Typer(
    name="xccel",
    help="Sessionize webshop clickstream dumps in PostgreSQL and report how many visits, and how much "
    "time, customers need before their first order.\n\nExample: xccel run-all --source events.json",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish and PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # click never wraps help narrower than 50 columns, so a narrow terminal breaks its lines mid-word
    context_settings={"terminal_width": max(min(shutil.get_terminal_size().columns, 80) - 2, 30)},
)

F = TypeVar("F", bound=Callable[..., Any])

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL. Default: XCCEL_DATABASE_URL, then DATABASE_URL (environment or .env), "
        "else an embedded server with its data in the user's data directory.",
        show_default=False,
    ),
]
Source = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="http(s) URL, file path or '-' for stdin (.gz works). "
        f"Default: XCCEL_SOURCE, else {config.DEFAULT_SOURCE}",
        show_default=False,
    ),
]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait", help="If another run holds the lock: queue behind it, or exit at once with code 7."
    ),
]
TimeoutMinutes = Annotated[
    int | None,
    typer.Option(
        "--timeout-minutes",
        help=f"Inactivity gap that starts a new session, {config.MIN_TIMEOUT_MINUTES}-{config.MAX_TIMEOUT_MINUTES}. "
        f"Default: XCCEL_SESSION_TIMEOUT_MINUTES, else {config.DEFAULT_TIMEOUT_MINUTES}.",
        show_default=False,
    ),
]
Rules = Annotated[
    str | None,
    typer.Option(
        "--rules",
        help="Rule preset: ga4 (30 min gap only, the default) or ga-universal (30 min, midnight, referrer change).",
        show_default=False,
    ),
]
SplitAtMidnight = Annotated[
    bool | None,
    typer.Option(
        "--split-at-midnight/--no-split-at-midnight",
        help="A change of calendar date (in --timezone) starts a new session.",
        show_default=False,
    ),
]
Timezone = Annotated[
    str | None,
    typer.Option("--timezone", help="IANA time zone for --split-at-midnight (default UTC).", show_default=False),
]
SplitOnReferrer = Annotated[
    bool | None,
    typer.Option(
        "--split-on-referrer/--no-split-on-referrer",
        help="An event arriving from a different referrer starts a new session.",
        show_default=False,
    ),
]
MaxSessionHours = Annotated[
    float | None,
    typer.Option(
        "--max-session-hours", help="Cut sessions that reach this many hours (off by default).", show_default=False
    ),
]
FullRefresh = Annotated[
    bool, typer.Option("--full-refresh", help="Re-sessionize every customer, not only those with new events.")
]
KeepAnonymous = Annotated[
    bool,
    typer.Option(
        "--keep-anonymous", help="Also keep events without a customer-id in raw_events (they are never sessionized)."
    ),
]
MaxRejectShare = Annotated[
    float | None,
    typer.Option(
        "--max-reject-share",
        help="Fail, loading nothing, when more "
        "than this share of lines is refused. Default: "
        f"XCCEL_MAX_REJECT_SHARE, else {config.DEFAULT_MAX_REJECT_SHARE}.",
        show_default=False,
    ),
]
MaxLineBytes = Annotated[
    int | None,
    typer.Option(
        "--max-line-bytes",
        help="A longer line is refused (line_too_long, its first bytes kept) and read past. "
        f"Default: XCCEL_MAX_LINE_BYTES, else {config.DEFAULT_MAX_LINE_BYTES >> 20} MiB "
        f"(at most {config.MAX_MAX_LINE_BYTES >> 20} MiB).",
        show_default=False,
    ),
]
Retries = Annotated[
    int | None,
    typer.Option(
        "--retries",
        help="Retries for a failing HTTP source (backoff "
        f"doubling from XCCEL_RETRY_BACKOFF_SECONDS, else {config.DEFAULT_BACKOFF_SECONDS:g} s). Default: "
        f"XCCEL_RETRIES, else {config.DEFAULT_RETRIES}.",
        min=0,
        max=config.MAX_RETRIES,
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
Sources = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        help="http(s) URL, file path, glob or '-' for stdin (.gz works); repeat it for several files, read in path "
        f"order as one dump. Default: XCCEL_SOURCE, else {config.DEFAULT_SOURCE}",
        show_default=False,
    ),
]
Engine = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="postgres (default) or spark (needs xccel[spark] and Java). Default: XCCEL_ENGINE, else postgres.",
        show_default=False,
    ),
]
Warehouse = Annotated[
    str | None,
    typer.Option(
        "--warehouse",
        help="--engine spark: folder or Hadoop URI (s3a://, hdfs://, gs://) for the Parquet outputs. "
        "Default: XCCEL_WAREHOUSE, else 'warehouse' in the data directory.",
        show_default=False,
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="--engine spark: the Spark master URL. Default: XCCEL_SPARK_MASTER, else local[*].",
        show_default=False,
    ),
]
SparkConf = Annotated[
    list[str] | None,
    typer.Option(
        "--spark-conf",
        help="--engine spark: a Spark setting KEY=VALUE (repeatable). Default: XCCEL_SPARK_CONF (space-separated).",
        show_default=False,
    ),
]
Publish = Annotated[
    str | None,
    typer.Option(
        "--publish",
        help="--engine spark: what goes into PostgreSQL: all (sessions and tb_events) or sessions (tb_events stays "
        "in the warehouse; the dashboard gets per-day and funnel figures). Default: XCCEL_PUBLISH, else all.",
        show_default=False,
    ),
]


@dataclass
class CliState:
    """The global options of one invocation: the context object (`ctx.obj`), not module globals, so that one
    process can run several commands one after another, as the in-process tests do."""

    debug: bool = False
    quiet: bool = False
    settings: config.Settings = field(default_factory=config.Settings)  # resolved once, in the callback
    # a bad XCCEL_* setting or log file, raised by the first command that asks for the settings: --help,
    # --version and completion must work whatever the environment holds
    settings_error: XccelError | None = None


# The invocation's CliState for code that has no context at hand (handle_errors, _say); set by the callback
# and reset when the invocation's context closes. (Typer may bundle its own Click, so Click's
# get_current_context cannot be relied on to see Typer's context.)
_current_state: ContextVar[CliState | None] = ContextVar("xccel_cli_state", default=None)


def _state() -> CliState:
    state = _current_state.get()
    return state if state is not None else CliState()


def _settings() -> config.Settings:
    state = _state()
    if state.settings_error is not None:
        raise state.settings_error
    return state.settings


def handle_errors(func: F) -> F:
    """Turn a core error into one line on stderr and its exit code; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own ends of a command (it vendors click)
            raise
        except XccelError as exc:
            _log_failure(exc)
            if _state().debug:  # the traceback instead of the line, and still the documented exit code
                typer.echo(config.mask_password("".join(traceback.format_exception(exc))).rstrip(), err=True)
            else:
                typer.echo(f"Error: {config.mask_password(str(exc))}", err=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            # a run says itself what Ctrl+C did to it (errors.Interrupted); this is any other command
            typer.echo("Error: interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            # `xccel runs | head -1`: the reader has what it wanted. Quietly, with the code a shell gives a
            # process SIGPIPE ended; stdout goes to /dev/null so that the flush at exit does not fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.OUTPUT_CLOSED)) from None
        except Exception as exc:
            _log_failure(exc)
            if _state().debug:
                raise
            message = config.mask_password(str(exc).splitlines()[0] if str(exc) else "")
            typer.echo(
                f"Error: internal error ({type(exc).__name__}: {message}); rerun with --debug for a traceback", err=True
            )
            raise typer.Exit(int(ExitCode.INTERNAL)) from None

    return wrapper  # type: ignore[return-value]


def _print_version(value: bool) -> None:
    if value:
        from xccel_cli import __version__

        typer.echo(f"xccel {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True, expose_value=False
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log progress to stderr (-v: each stage and retry, -vv: debug).",
            show_default=False,
        ),
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print nothing on success (errors still go to stderr); for cron.")
    ] = False,
    log_file: Annotated[
        str | None,
        typer.Option(
            "--log-file",
            metavar="FILE",
            help="Append a timestamped log to this file. Default: XCCEL_LOG_FILE, else none.",
            show_default=False,
        ),
    ] = None,
) -> None:
    # Every XCCEL_* setting, once. A bad one (or a log file that cannot be opened) fails any command when it
    # first asks for its settings, before anything is connected; not here, where it would also fail a
    # subcommand's --help, which Click parses only after this callback.
    try:
        settings = config.resolve(os.environ)
    except XccelError as exc:
        ctx.obj = CliState(debug=debug, quiet=quiet, settings_error=exc)
    else:
        ctx.obj = CliState(debug=debug or settings.debug, quiet=quiet, settings=settings)
    token = _current_state.set(ctx.obj)
    ctx.call_on_close(lambda: _current_state.reset(token))
    ctx.call_on_close(logs.close)
    try:
        logs.configure(verbose, quiet, log_file or ctx.obj.settings.log_file, debug=ctx.obj.debug)
    except XccelError as exc:
        logs.configure(verbose, quiet, None, debug=ctx.obj.debug)
        ctx.obj.settings_error = ctx.obj.settings_error or exc


def _log_failure(exc: BaseException) -> None:
    """The one-line error also goes to the log file (stderr gets it from handle_errors)."""
    logging.getLogger("xccel_cli.cli").error(
        "failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__, extra={"file_only": True}
    )


def _connect(database_url: str | None, create_schema: bool = False) -> AbstractContextManager[Database]:
    from xccel_cli.db import connect

    settings = _settings()
    url = settings.database_url_for(database_url)
    return connect(url, settings.schema, create_schema=create_schema, embedded_data_dir=settings.data_dir)


@contextmanager
def _connect_or_report_down(database_url: str | None, metrics_path: Path | None) -> Iterator[Database]:
    """run-all's connection; when it cannot be made, the metrics file says so (database_up 0), else the
    figures of the run before would go on looking healthy to the collector."""
    with ExitStack() as stack:
        try:
            db = stack.enter_context(_connect(database_url, create_schema=True))
        except DatabaseError:
            if metrics_path is not None:
                from xccel_cli.monitoring import RunFigures, write_textfile

                write_textfile(metrics_path, RunFigures(database_up=False))
            raise
        yield db


def _rules(
    preset: str | None,
    timeout: int | None,
    midnight: bool | None,
    zone: str | None,
    referrer: bool | None,
    hours: float | None,
) -> config.SessionRules:
    return _settings().session_rules(preset, timeout, midnight, zone, referrer, hours)


def _extract_options(
    sources: list[str],
    keep_anonymous: bool,
    max_reject_share: float | None,
    max_line_bytes: int | None,
    retries: int | None,
) -> ExtractOptions:
    """The extract's options: each command-line value, else its setting."""
    from xccel_cli.pipeline import ExtractOptions

    settings = _settings()
    return ExtractOptions(
        " ".join(sources),
        keep_anonymous,
        settings.reject_share_for(max_reject_share),
        settings.retries_for(retries),
        max_line_bytes=settings.line_bytes_for(max_line_bytes),
        retry_backoff_seconds=settings.retry_backoff_seconds,
        http_timeout_seconds=settings.http_timeout_seconds,
        sources=sources if len(sources) > 1 else [],
    )


def _say(text: str, err: bool = False) -> None:
    """A status line: what a command did. --quiet silences it (cron wants output only on failure)."""
    if not _state().quiet:
        typer.echo(text, err=err)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command("init-db", short_help="Create or upgrade the schema; safe to run again.")
@handle_errors
def init_db_command(database_url: DatabaseUrl = None) -> None:
    """Create or upgrade the schema (versioned migrations from sql/migrations); safe to run again.

    Example: xccel init-db --database-url postgresql://me@localhost/shop
    """
    from xccel_cli.schema import init_db

    with _connect(database_url, create_schema=True) as db:
        result = init_db(db)
    done = ", ".join(result.applied) if result.applied else "nothing to do"
    _say(f"schema {_settings().schema!r} at version {result.version} ({done})")


@app.command("extract", short_help="Stream the dump into raw_events; refused lines go to rejects.")
@handle_errors
def extract_command(
    source: Source = None,
    keep_anonymous: KeepAnonymous = False,
    max_reject_share: MaxRejectShare = None,
    max_line_bytes: MaxLineBytes = None,
    retries: Retries = None,
    wait: Wait = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Stream the dump into raw_events with COPY; refused lines go to rejects with their reason.

    Example: xccel extract --source https://example.com/events.json.gz
    """
    from xccel_cli.pipeline import run_extract
    from xccel_cli.render import progress_reporter, render_extract

    options = _extract_options(
        [_settings().source_for(source)], keep_anonymous, max_reject_share, max_line_bytes, retries
    )
    with _connect(database_url) as db, progress_reporter(_state().quiet, options.source) as progress:
        options.progress = progress
        options.sized = progress.sized if progress is not None else None
        result = run_extract(db, options, wait=wait)
    if not _state().quiet:
        render_extract(result)


@app.command("sessionize", short_help="Cut each customer's events into sessions, ready to load.")
@handle_errors
def sessionize_command(
    timeout_minutes: TimeoutMinutes = None,
    rules: Rules = None,
    split_at_midnight: SplitAtMidnight = None,
    timezone: Timezone = None,
    split_on_referrer: SplitOnReferrer = None,
    max_session_hours: MaxSessionHours = None,
    full_refresh: FullRefresh = False,
    wait: Wait = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Cut each customer's events into sessions, ready for `xccel load` to publish.

    Example: xccel sessionize --timeout-minutes 30 --rules ga-universal
    """
    from xccel_cli.pipeline import run_sessionize
    from xccel_cli.render import working

    chosen = _rules(rules, timeout_minutes, split_at_midnight, timezone, split_on_referrer, max_session_hours)
    with _connect(database_url) as db, working("sessionize", _state().quiet):
        result = run_sessionize(db, chosen, full_refresh=full_refresh, wait=wait)
    _say(
        f"sessionized {result.events:,} events into {result.sessions:,} sessions "
        f"({result.customers_rebuilt:,} customers rebuilt: {result.reason}; {result.seconds:.2f} s)"
    )


@app.command("load", short_help="Publish the sessions into tb_events and sessions atomically.")
@handle_errors
def load_command(wait: Wait = False, database_url: DatabaseUrl = None) -> None:
    """Publish the sessionized events and sessions atomically into tb_events and sessions.

    Example: xccel load
    """
    from xccel_cli.pipeline import run_load
    from xccel_cli.render import working

    with _connect(database_url) as db, working("load", _state().quiet):
        result = run_load(db, wait=wait, publish_wait_seconds=_settings().publish_wait_seconds)
    _say(
        f"published {result.events:,} events and {result.sessions:,} sessions "
        f"(publication {result.publication_id}; {result.seconds:.2f} s)"
    )


class ReportBy(StrEnum):
    referrer = "referrer"
    visit = "visit"


Since = Annotated[
    datetime | None,
    typer.Option(
        "--since",
        formats=["%Y-%m-%d"],
        metavar="DATE",
        show_default=False,
        help="Only customers whose first session starts on or after this UTC day (YYYY-MM-DD, inclusive).",
    ),
]
Until = Annotated[
    datetime | None,
    typer.Option(
        "--until",
        formats=["%Y-%m-%d"],
        metavar="DATE",
        show_default=False,
        help="Only customers whose first session starts on or before this UTC day (YYYY-MM-DD, inclusive).",
    ),
]


@app.command("report", short_help="Print the metrics (--json, --by referrer, --html FILE).")
@handle_errors
def report_command(
    as_json: AsJson = False,
    by: Annotated[
        ReportBy | None,
        typer.Option(
            "--by",
            help="Break sessions down instead: 'referrer' gives, per "
            "session referrer, sessions, customers, median and p90 duration, "
            "share with an order and mean events (--json: a list); 'visit' gives conversion by visit number "
            "(hazard and Kaplan-Meier share bought, with 95% intervals).",
            show_default=False,
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            show_default=False,
            help="Also write the dashboard, one self-contained HTML page, to this file.",
        ),
    ] = None,
    since: Since = None,
    until: Until = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the metrics, each with its definition (or --json: one object; --html FILE: also the dashboard;
    --by referrer: the referrer table; --by visit: conversion by visit number).

    Example: xccel report --json --html dashboard.html ; xccel report --by visit --since 2022-04-01
    """
    from xccel_cli.conversion import Window

    window = Window(since.date() if since else None, until.date() if until else None)
    from xccel_cli.metrics import Report, report
    from xccel_cli.referrers import ReferrerReport, referrer_report

    with _connect(database_url) as db:
        shown: Report | ReferrerReport
        if html is None:
            shown = referrer_report(db, window) if by is ReportBy.referrer else report(db, window)
        else:  # the whole dashboard, whatever --by prints
            from xccel_cli.dashboard import write_dashboard
            from xccel_cli.schema import require_schema

            require_schema(db)  # the dashboard's queries would fail first, with a raw SQL error
            written = write_dashboard(db, html, window)
            _say(f"dashboard written to {written.path} ({written.size_bytes / 1024:,.0f} KiB)", err=True)
            shown = referrer_report(db, window) if by is ReportBy.referrer else written.report
    if isinstance(shown, ReferrerReport):
        if as_json:
            _print_json(shown.as_json())
        else:
            from xccel_cli.render import render_referrers

            render_referrers(shown)
    elif by is ReportBy.visit:
        if as_json:
            _print_json(shown.conversion)
        else:
            from xccel_cli.render import render_conversion

            render_conversion(shown)
    elif as_json:
        _print_json(shown.as_json())
    else:
        from xccel_cli.render import render_report

        render_report(shown)


@app.command("run-all", short_help="init-db, extract, sessionize, load and report in one go.")
@handle_errors
def run_all_command(
    source: Sources = None,
    timeout_minutes: TimeoutMinutes = None,
    rules: Rules = None,
    split_at_midnight: SplitAtMidnight = None,
    timezone: Timezone = None,
    split_on_referrer: SplitOnReferrer = None,
    max_session_hours: MaxSessionHours = None,
    full_refresh: FullRefresh = False,
    keep_anonymous: KeepAnonymous = False,
    max_reject_share: MaxRejectShare = None,
    max_line_bytes: MaxLineBytes = None,
    retries: Retries = None,
    wait: Wait = False,
    as_json: AsJson = False,
    metrics_file: Annotated[
        str | None,
        typer.Option(
            "--metrics-file",
            metavar="PATH",
            help="After the run (also a failed one), write its figures in the Prometheus text format to PATH, "
            "replaced atomically (for node_exporter's textfile collector). Default: XCCEL_METRICS_FILE, else none.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    engine: Engine = None,
    warehouse: Warehouse = None,
    spark_master: SparkMaster = None,
    spark_conf: SparkConf = None,
    publish: Publish = None,
) -> None:
    """init-db, extract, sessionize, load and report in one go, with a summary at the end.

    Example: xccel run-all --source examples/events.ndjson.gz
    """
    from contextlib import nullcontext

    from xccel_cli.pipeline import UnchangedResult, run_all
    from xccel_cli.source import expand_sources
    from xccel_cli.spark.engine import engine_settings

    settings = _settings()
    chosen = _rules(rules, timeout_minutes, split_at_midnight, timezone, split_on_referrer, max_session_hours)
    spark = engine_settings(engine, warehouse, spark_master, spark_conf, publish, configured=settings)
    patterns = [settings.source_for(s) for s in source] if source else [settings.source]
    try:
        sources, unreadable = expand_sources(patterns), None
    except SourceError as exc:  # fails inside the run, so that status, runs and the metrics file record it
        sources, unreadable = patterns, exc
    options = _extract_options(sources, keep_anonymous, max_reject_share, max_line_bytes, retries)
    options.unreadable = unreadable
    if as_json:  # no progress bar and no tables: rich is not even imported
        reporter: Any = nullcontext(None)
    else:
        from xccel_cli.render import progress_reporter

        reporter = progress_reporter(_state().quiet, options.source)
    metrics_path = settings.metrics_file_for(metrics_file)
    with _connect_or_report_down(database_url, metrics_path) as db, reporter as progress:
        options.progress = progress
        options.sized = progress.sized if progress is not None else None
        options.phase = progress.phase if progress is not None else None
        try:
            result = run_all(
                db,
                options,
                chosen,
                full_refresh=full_refresh,
                wait=wait,
                spark=spark,
                publish_wait_seconds=settings.publish_wait_seconds,
            )
        finally:
            if metrics_path is not None:
                from xccel_cli.monitoring import write_run_metrics

                write_run_metrics(db, metrics_path)
    if as_json:  # one shape whatever happened: the run (with its status) and the report
        _print_json({"run": result.summary(), "report": result.report.as_json()})
    elif isinstance(result, UnchangedResult):
        if not _state().quiet:
            typer.echo(
                f"source unchanged since run {result.since_run_id}: nothing to do (run {result.run_id}; "
                "--full-refresh rebuilds anyway)"
            )
    elif not _state().quiet:
        from xccel_cli.render import render_run_all

        render_run_all(result)


@app.command("db", short_help="Say where the data lives; --psql opens psql on it.")
@handle_errors
def db_command(
    psql: Annotated[
        bool, typer.Option("--psql", help="Open psql on the database (the embedded server stays up until psql exits).")
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Say where the data lives and how to connect to it with psql.

    Example: xccel db --psql
    """
    from xccel_cli.config import mask_url
    from xccel_cli.db import data_dir

    url = _settings().database_url_for(database_url)
    with _connect(database_url) as db:
        real_url = url or (db.embedded.url if db.embedded else "")
        if db.embedded is not None:
            typer.echo(f"embedded PostgreSQL, data in {db.embedded.pgdata}")
            typer.echo("(it runs only while an xccel command runs: use `xccel db --psql` to query it)")
        else:
            typer.echo(f"configured PostgreSQL (XCCEL_DATA_DIR would be {data_dir(_settings().data_dir)})")
        typer.echo(f"url: {mask_url(real_url)}")
        typer.echo(f"schema: {db.schema}")
        if psql:
            from xccel_cli.db import run_psql

            # a script piped in (`xccel db --psql < fix.sql`) must fail its caller when psql says it failed
            if (code := run_psql(db, real_url)) != 0:
                raise DatabaseError(f"psql ended with exit status {code} (its own messages are above)")


@app.command("serve", short_help="Serve the metrics and the dashboard over HTTP.")
@handle_errors
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log one line per request.")] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="Let pages from this origin (e.g. https://intranet.example) read the answers with GET/HEAD; "
            "repeatable. Default: XCCEL_CORS_ORIGINS (comma separated), else none (CORS off).",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="HOST",
            help="Answer only requests whose Host header names this host (e.g. metrics.example.com, "
            "*.example.com); repeatable. Others get 400. Default: XCCEL_ALLOWED_HOSTS, else any host.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Serve the metrics as JSON over HTTP (uvicorn, one worker, a small read-only connection pool).

    GET /metrics/orders (also / for JSON clients), /metrics/referrers, /dashboard (HTML), /health,
    /metrics (Prometheus), /openapi.json. Stop with Ctrl+C.

    Example: xccel serve --port 8000
    """
    from xccel_cli.web.runtime import serve

    url = _settings().database_url_for(database_url)
    origins = _settings().cors_origins_for(cors_origin)
    hosts = _settings().allowed_hosts_for(allowed_host)
    with _connect(database_url) as db:
        real_url = url or (db.embedded.url if db.embedded else "")
        serve(db, real_url, host, port, access_log=access_log, cors_origins=origins, allowed_hosts=hosts)


@app.command("runs", short_help="List recent runs: outcome, counts, time per stage.")
@handle_errors
def runs_command(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs, newest first.", min=1)] = 20,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List recent runs: when, what, outcome, counts, time per stage.

    Example: xccel runs --limit 5 --json
    """
    from xccel_cli.runs import recent_runs
    from xccel_cli.schema import require_schema

    with _connect(database_url) as db:
        require_schema(db)
        rows = recent_runs(db, min(limit, 2**63 - 1))  # more than a bigint LIMIT holds is all of them
    if as_json:
        _print_json([row.as_json() for row in rows])
        return
    from xccel_cli.render import render_runs

    render_runs(rows)


@app.command("status", short_help="How fresh the data is; exit 9 if the last run failed.")
@handle_errors
def status_command(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """How fresh the data is: the last publication, the last run and its outcome.

    Exits with code 9 when the last run failed or was interrupted (handy for monitoring).
    Example: xccel status --json
    """
    from xccel_cli.runs import status
    from xccel_cli.schema import require_schema

    with _connect(database_url) as db:
        require_schema(db)
        result = status(db)
    if as_json:
        _print_json(result.as_json())
    elif not _state().quiet:
        from xccel_cli.render import say  # wraps at spaces, never inside a word or a figure

        if result.published_at is None:
            say("published: nothing yet (run `xccel run-all`)")
        else:
            say(
                f"published: {result.published_at:%Y-%m-%d %H:%M:%S} UTC ({_age(result.age_seconds)} ago) "
                f"by run {result.published_by_run_id}: {result.events:,} events, {result.sessions:,} sessions"
            )
        last = result.last_run
        if last is None:
            say("last run: none")
        else:
            say(
                f"last run: {last.run_id} ({last.command}) started {last.started_at:%Y-%m-%d %H:%M:%S} UTC: "
                f"{last.status}{': ' + last.error if last.error else ''}"
            )
            if result.last_success and result.last_success.run_id != last.run_id:
                say(
                    f"last successful run: {result.last_success.run_id} "
                    f"({result.last_success.started_at:%Y-%m-%d %H:%M:%S} UTC)"
                )
    if result.last_run_failed:
        raise typer.Exit(int(ExitCode.LAST_RUN_FAILED))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _load_dotenv(path: str) -> None:
    """.env into the environment, below what the environment already holds. A line python-dotenv cannot parse
    is an error: it would skip it with a warning, and a dropped XCCEL_DATABASE_URL means another database."""
    from dotenv import load_dotenv
    from dotenv.parser import parse_stream

    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:  # the line is not quoted: it may hold a password
                raise ValueError(f"line {binding.original.line} is not NAME=value")
    load_dotenv(dotenv_path=path, override=False)


def main() -> None:
    try:
        _load_dotenv(os.path.join(os.getcwd(), ".env"))
    except Exception as exc:  # a broken .env must not become a traceback
        typer.echo(f"Error: cannot read .env: {exc}", err=True)
        sys.exit(int(ExitCode.CONFIG))
    app()
