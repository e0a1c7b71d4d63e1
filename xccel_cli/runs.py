"""The runs table: every command that changes data records what it did, and how it ended."""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql

from xccel_cli.db import Database, translate_errors

COUNT_COLUMNS = (
    "lines_read", "loaded", "anonymous", "duplicates", "already_loaded", "rejected", "customers_touched",
)


def start_run(db: Database, command: str, source: str | None = None, rules: dict[str, Any] | None = None) -> int:
    with translate_errors():
        row = db.conn.execute(
            "INSERT INTO runs (command, source, rules) VALUES (%s, %s, %s) RETURNING run_id",
            (command, source, json.dumps(rules) if rules is not None else None),
        ).fetchone()
    assert row is not None
    return int(row[0])


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
