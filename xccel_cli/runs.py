"""The runs table: every command that changes data records what it did, and how it ended."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from xccel_cli.db import Database, one_row, translate_errors

COUNT_COLUMNS = (
    "lines_read",
    "loaded",
    "anonymous",
    "duplicates",
    "already_loaded",
    "rejected",
    "customers_touched",
)


def start_run(db: Database, command: str, source: str | None = None, rules: dict[str, Any] | None = None) -> int:
    with translate_errors():
        row = db.conn.execute(
            "INSERT INTO runs (command, source, rules) VALUES (%s, %s, %s) RETURNING run_id",
            (command, source, json.dumps(rules) if rules is not None else None),
        ).fetchone()
    assert row is not None
    return int(row[0])


def newest_run_id(db: Database) -> int:
    """The newest run's id (0 before the first). Runs take their id after the pipeline lock, so while a run
    holds it no row of raw_events can come with a higher one: a result built now covers raw_events up to it
    (cheaper than max(run_id) over raw_events, a full scan)."""
    with translate_errors():
        return int(one_row(db.conn.execute("SELECT coalesce(max(run_id), 0) FROM runs"))[0])


def newest_run_with_events_after(db: Database, run_id: int) -> int | None:
    """The newest run after `run_id` that loaded events (extract records runs.loaded in the transaction that
    loads them): a result covering up to `run_id` is stale if there is one."""
    with translate_errors():
        return one_row(db.conn.execute("SELECT max(run_id) FROM runs WHERE run_id > %s AND loaded > 0", (run_id,)))[0]


def finish_run(
    db: Database,
    run_id: int,
    status: str,
    *,
    error: str | None = None,
    counts: dict[str, int | None] | None = None,
    stage_seconds: dict[str, float] | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> None:
    counts = {k: v for k, v in (counts or {}).items() if k in COUNT_COLUMNS}
    assignments = [sql.SQL(", {} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in counts]
    query = sql.SQL(
        "UPDATE runs SET finished_at = clock_timestamp(), status = %(status)s, error = %(error)s,"
        " stage_seconds = stage_seconds || %(stages)s::jsonb,"
        " source_fingerprint = coalesce(%(fingerprint)s::jsonb, source_fingerprint){assignments}"
        " WHERE run_id = %(run_id)s"
    ).format(assignments=sql.Composed(assignments))
    params: dict[str, Any] = {
        "status": status,
        "error": error,
        "stages": json.dumps({k: round(v, 4) for k, v in (stage_seconds or {}).items()}),
        "fingerprint": json.dumps(fingerprint) if fingerprint is not None else None,
        "run_id": run_id,
        **counts,
    }
    with translate_errors():
        db.conn.execute(query, params)


def add_stage_seconds(db: Database, run_id: int, stage_seconds: dict[str, float]) -> None:
    """Stage times measured after the run's row was closed (run-all's report comes after its outcome)."""
    stages = json.dumps({k: round(v, 4) for k, v in stage_seconds.items()})
    with translate_errors():
        db.conn.execute(
            "UPDATE runs SET stage_seconds = stage_seconds || %s::jsonb WHERE run_id = %s", (stages, run_id)
        )


INTERRUPTED = "the run ended without recording an outcome (killed, or the connection was lost)"


def mark_interrupted_runs(db: Database) -> int:
    """Close runs left 'running' by a process that died; call only while holding the pipeline lock."""
    with translate_errors():
        cur = db.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = clock_timestamp(),"
            " error = coalesce(error, %s) WHERE status = 'running'",
            (INTERRUPTED,),
        )
    return cur.rowcount


def last_fingerprint(db: Database, source: str) -> tuple[int, dict[str, Any]] | None:
    """(run_id, fingerprint) of the last successful run that read this source: the run that loaded what is
    there now (an 'unchanged' run only repeats its fingerprint, so naming it would hide where the data came from)."""
    with translate_errors():
        row = db.conn.execute(
            "SELECT run_id, source_fingerprint FROM runs WHERE source = %s AND status = 'succeeded'"
            " AND source_fingerprint IS NOT NULL ORDER BY run_id DESC LIMIT 1",
            (source,),
        ).fetchone()
    return (int(row[0]), row[1]) if row else None


@dataclass
class RunRow:
    run_id: int
    command: str
    source: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    error: str | None
    lines_read: int | None
    loaded: int | None
    already_loaded: int | None
    anonymous: int | None
    duplicates: int | None
    rejected: int | None
    customers_touched: int | None
    stage_seconds: dict[str, float]

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


_RUN_COLUMNS = (
    "run_id, command, source, started_at, finished_at, status, error, lines_read, loaded, already_loaded,"
    " anonymous, duplicates, rejected, customers_touched, stage_seconds"
)


KILLED_HOLDER = (
    "the run's process is gone (killed); its database session still holds the pipeline lock until the server "
    "notices, and the next run records the run as interrupted"
)


def _as_seen(rows: list[RunRow], db: Database) -> list[RunRow]:
    """A run marked running while nobody holds the pipeline lock, or while only the session of a dead
    process does, has died: show it as interrupted now (the next run records that; readers must not call
    a killed run 'running' until then)."""
    if not any(row.status == "running" for row in rows):
        return rows
    holder = db.pipeline_holder()
    if holder is None or holder.client_alive is False:
        reason = INTERRUPTED if holder is None else KILLED_HOLDER
        for row in rows:
            if row.status == "running":
                row.status, row.error = "interrupted", row.error or reason
    return rows


def recent_runs(db: Database, limit: int = 20) -> list[RunRow]:
    """The newest runs first."""
    with translate_errors():
        rows = db.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT %s", (limit,)).fetchall()
    return _as_seen([RunRow(*row) for row in rows], db)


@dataclass
class Status:
    """How fresh the published data is, and how the last run went."""

    published_at: datetime | None
    publication_id: int | None
    published_by_run_id: int | None
    events: int | None
    sessions: int | None
    last_run: RunRow | None
    last_success: RunRow | None
    now: datetime

    @property
    def last_run_failed(self) -> bool:
        return self.last_run is not None and self.last_run.status in ("failed", "interrupted")

    @property
    def age_seconds(self) -> float | None:
        return (self.now - self.published_at).total_seconds() if self.published_at else None

    def as_json(self) -> dict[str, Any]:
        return {
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "publication_id": self.publication_id,
            "published_by_run_id": self.published_by_run_id,
            "age_seconds": round(self.age_seconds, 1) if self.age_seconds is not None else None,
            "events": self.events,
            "sessions": self.sessions,
            "last_run": self.last_run.as_json() if self.last_run else None,
            "last_success": self.last_success.as_json() if self.last_success else None,
            "last_run_failed": self.last_run_failed,
        }


def status(db: Database) -> Status:
    """Never waits for a run: reads only runs and publications, which a run never locks for long."""
    from xccel_cli.publications import latest_publication  # publications reads the runs table through this module

    published = latest_publication(db)
    with translate_errors():
        last = db.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        success = db.conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE status IN ('succeeded', 'unchanged') ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        now = one_row(db.conn.execute("SELECT clock_timestamp()"))[0]
    published_at, publication_id, run_id, events, sessions = (
        (published["published_at"], published["publication_id"], published["run_id"], published["events"])
        + (published["sessions"],)
        if published
        else (None, None, None, None, None)
    )
    last_run = _as_seen([RunRow(*last)], db)[0] if last else None
    return Status(
        published_at, publication_id, run_id, events, sessions, last_run, RunRow(*success) if success else None, now
    )
