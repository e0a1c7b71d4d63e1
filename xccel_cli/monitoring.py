"""Run figures for Prometheus: the last run and the published result, in the text exposition format.

`serve` exposes them at GET /metrics (beside its own request figures); `run-all --metrics-file PATH`
writes the same figures to a file for node_exporter's textfile collector, replacing it atomically (a
temporary file in the same directory, then a rename), so the collector never reads half a file.
The figures come from the runs and publications tables, so every process reports the same thing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xccel_cli.db import Database
from xccel_cli.errors import ConfigError, StateError, XccelError
from xccel_cli.schema import require_schema

# a run's status in the runs table; "running" while it runs (or until the next run marks a dead one)
OUTCOMES = ("succeeded", "unchanged", "failed", "interrupted", "running")
STAGES = ("init_db", "extract", "sessionize", "load", "report")


@dataclass
class RunFigures:
    """What monitoring reports; None where the database did not say (down, no schema, nothing yet)."""

    database_up: bool
    schema_ready: bool | None = None
    last_run_id: int | None = None
    last_run_command: str | None = None
    last_run_outcome: str | None = None
    last_run_finished_at: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    lines_read: int | None = None
    lines_loaded: int | None = None
    lines_rejected: int | None = None
    ended_at_by_outcome: dict[str, float] = field(default_factory=dict)
    publication_id: int | None = None
    published_at: float | None = None
    publication_age_seconds: float | None = None
    published_sessions: int | None = None
    published_customers: int | None = None


def run_figures(db: Database) -> RunFigures:
    """The figures, read from the database; StateError-free: no schema is a figure (schema_ready 0)."""
    try:
        require_schema(db)
    except StateError:
        return RunFigures(database_up=True, schema_ready=False)
    run = db.query_file("monitoring_runs.sql")[0]
    with db.published_snapshot():
        published = db.query_file("monitoring_published.sql")
    status = run["status"]
    if status == "running" and not db.pipeline_lock_held():
        status = "interrupted"  # nobody holds the lock: the run died (the next run records it so)
    figures = RunFigures(
        database_up=True,
        schema_ready=True,
        last_run_id=run["run_id"],
        last_run_command=run["command"],
        last_run_outcome=status,
        last_run_finished_at=run["finished_at_seconds"],
        stage_seconds={k: float(v) for k, v in (run["stage_seconds"] or {}).items()},
        lines_read=run["lines_read"],
        lines_loaded=run["loaded"],
        lines_rejected=run["rejected"],
        ended_at_by_outcome={k: float(v) for k, v in run["ended_at_by_outcome"].items()},
    )
    if published:
        row = published[0]
        figures.publication_id = row["publication_id"]
        figures.published_at = row["published_at_seconds"]
        figures.publication_age_seconds = row["age_seconds"]
        figures.published_sessions = row["sessions"]
        figures.published_customers = row["customers"]
    return figures


def figures_or_down(db: Database) -> RunFigures:
    """run_figures, or, when the database fails, figures that say so (database_up 0) instead of an error."""
    try:
        return run_figures(db)
    except (XccelError, psycopg.Error):  # after a failed run the connection itself may be what failed
        return RunFigures(database_up=False)


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, doc, value=float(value))


def families(figures: RunFigures) -> Iterator[Metric]:
    """The metric families of the figures; a figure nobody knows is left out rather than made up."""
    yield GaugeMetricFamily("xccel_database_up", "1 when the database answered this read", value=figures.database_up)
    yield from _gauge("xccel_schema_ready", "1 when the xccel schema exists (else run init-db)", figures.schema_ready)
    yield from _gauge("xccel_last_run_id", "run_id of the newest run (any command)", figures.last_run_id)
    if figures.last_run_outcome is not None:
        outcome = GaugeMetricFamily(
            "xccel_last_run_outcome",
            "1 for the newest run's outcome, 0 for the others",
            labels=["outcome", "command"],
        )
        for name in OUTCOMES:
            outcome.add_metric([name, figures.last_run_command or ""], float(name == figures.last_run_outcome))
        yield outcome
    ended = GaugeMetricFamily(
        "xccel_last_run_end_timestamp_seconds",
        "When a run last ended with this outcome (Unix time)",
        labels=["outcome"],
    )
    for name, seconds in sorted(figures.ended_at_by_outcome.items()):
        ended.add_metric([name], seconds)
    yield ended
    stages = GaugeMetricFamily("xccel_last_run_stage_seconds", "Seconds per stage of the newest run", labels=["stage"])
    for name in sorted(figures.stage_seconds, key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s)):
        stages.add_metric([name], figures.stage_seconds[name])
    yield stages
    yield from _gauge("xccel_last_run_lines_read", "Lines the newest run read from the source", figures.lines_read)
    yield from _gauge("xccel_last_run_lines_loaded", "Events the newest run loaded", figures.lines_loaded)
    yield from _gauge("xccel_last_run_lines_rejected", "Lines the newest run refused", figures.lines_rejected)
    yield from _gauge("xccel_publication_id", "The newest publication", figures.publication_id)
    yield from _gauge(
        "xccel_published_timestamp_seconds", "When the result was published (Unix time)", figures.published_at
    )
    yield from _gauge(
        "xccel_publication_age_seconds",
        "Age of the published result when these figures were read",
        figures.publication_age_seconds,
    )
    yield from _gauge("xccel_published_sessions", "Sessions in the published result", figures.published_sessions)
    yield from _gauge("xccel_published_customers", "Customers in the published result", figures.published_customers)


class FiguresCollector(Collector):
    """Exposes the figures last given to it (serve refreshes them on each scrape)."""

    def __init__(self, figures: RunFigures | None = None) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        if self.figures is not None:
            yield from families(self.figures)


def exposition(figures: RunFigures) -> bytes:
    """The figures in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FiguresCollector(figures))
    return generate_latest(registry)


def write_textfile(path: Path, figures: RunFigures) -> None:
    """Replace path with the figures atomically: a reader sees the old file or the new one, never a mix."""
    text = exposition(figures)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write the metrics file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # the collector usually runs as another user
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"cannot write the metrics file {path}: {exc.strerror or exc}") from None


def write_run_metrics(db: Database, path: Path) -> RunFigures:
    """After a run (succeeded or not): the run figures, read back from the database, into path."""
    figures = figures_or_down(db)
    write_textfile(path, figures)
    return figures
