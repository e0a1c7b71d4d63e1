"""Drive the real pipeline from event dicts (NDJSON file -> extract -> sessionize -> load) and read back
what was published, in the shape tests/oracle.py produces. Shared by the session and rule tests."""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests import oracle
from xccel_cli.config import SessionRules
from xccel_cli.db import Database
from xccel_cli.metrics import HEADLINE, Report, report
from xccel_cli.pipeline import ExtractOptions, run_extract, run_load, run_sessionize

METRIC_KEYS = HEADLINE  # the oracle computes each of them
_dumps = itertools.count(1)
TABLES = ("raw_events", "rejects", "tb_events", "sessions", "publications", "staged_result", "runs")


def utc(text: str) -> datetime:
    """'2022-04-22 23:59:00' as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event(
    event_id: int,
    customer_id: int | None,
    at: datetime | str,
    event_type: str = "page_view",
    referrer: str | None = None,
    page: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "customer_id": customer_id,
        "timestamp": utc(at) if isinstance(at, str) else at,
        "referrer": referrer,
        "page": page,
    }


def line(e: dict[str, Any], *, stamp: str | None = None) -> str:
    """The dump line for an event dict (stamp: how to write the timestamp, default ISO with offset)."""
    body: dict[str, Any] = {"customer-id": e["customer_id"], "timestamp": stamp or e["timestamp"].isoformat()}
    for key in ("referrer", "page"):
        if e.get(key) is not None:
            body[key] = e[key]
    return json.dumps({"id": e["event_id"], "type": e["event_type"], "event": body})


def write_dump(lines: Iterable[str], directory: Path) -> Path:
    path = directory / f"dump-{next(_dumps)}.ndjson"
    path.write_text("".join(text + "\n" for text in lines))
    return path


def publish(
    db: Database,
    events_or_lines: Iterable[dict[str, Any] | str],
    rules: SessionRules | None = None,
    *,
    full_refresh: bool = False,
    directory: Path | None = None,
) -> Any:
    """Extract the events (as dump lines), sessionize with the rules and publish; the SessionizeResult."""
    lines = [item if isinstance(item, str) else line(item) for item in events_or_lines]
    with tempfile.TemporaryDirectory(prefix="xccel-dump-") as scratch:
        path = write_dump(lines, directory or Path(scratch))
        run_extract(db, ExtractOptions(source=str(path)))
    result = run_sessionize(db, rules or SessionRules(), full_refresh=full_refresh)
    run_load(db)
    return result


def reset(db: Database) -> None:
    db.conn.execute("TRUNCATE " + ", ".join(TABLES))


@dataclass
class Published:
    tb_events: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    report: Report
    cut_sessions: int


def published(db: Database) -> Published:
    with db.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        tb_events = cur.execute(
            'SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp, new_session, "time",'
            " increment, session_id FROM tb_events ORDER BY event_id"
        ).fetchall()
        sessions = cur.execute(
            "SELECT session_id, customer_id, session_number, started_at, ended_at, duration_minutes, event_count,"
            " has_order, landing_page, referrer, first_order_session_number"
            " FROM sessions ORDER BY customer_id, session_number"
        ).fetchall()
        cut = cur.execute("SELECT cut_sessions FROM publications ORDER BY publication_id DESC LIMIT 1").fetchone()
    return Published(tb_events, sessions, report(db), cut["cut_sessions"] if cut else 0)


def metrics_of(rep: Report) -> dict[str, Any]:
    return {key: getattr(rep, key) for key in METRIC_KEYS}


def assert_close(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal, floats up to rounding (PostgreSQL sums and interpolates in its own order)."""
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want, float) and got is not None:
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (key, got, want)
        else:
            assert got == want, (key, got, want)


def assert_matches_oracle(
    db: Database, events: list[dict[str, Any]], rules: SessionRules | None = None
) -> oracle.Expected:
    """The published tables, the metrics and the cut count equal the oracle's, row for row."""
    expected = oracle.sessionize(events, rules)
    got = published(db)
    assert got.tb_events == expected.tb_events
    assert len(got.sessions) == len(expected.sessions)
    for actual_row, expected_row in zip(got.sessions, expected.sessions, strict=True):
        assert_close(actual_row, expected_row)
    assert_close(metrics_of(got.report), expected.metrics)
    assert got.cut_sessions == expected.cut_sessions
    assert got.report.rules == (rules or SessionRules()).as_dict()
    return expected
