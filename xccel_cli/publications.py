"""The publications table and the staged result: what is published, what waits to be, and whether the
published result is current. Every read and write of these two tables is here (the runs table is
xccel_cli/runs.py's).

"Current" has one definition (staleness): no run after the one a result covers loaded events
(runs.newest_run_with_events_after, from the runs table alone: never a look at raw_events).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from xccel_cli.db import Database, one_row, translate_errors
from xccel_cli.runs import newest_run_with_events_after

_PUBLICATION_COLUMNS = (
    "publication_id, rules, covers_run_id, published_at, run_id, cut_sessions, events, sessions, engine"
)
# The newest publication's key (id, time), for callers on an async connection (the HTTP server's check).
LATEST_PUBLICATION_KEY = "SELECT publication_id, published_at FROM publications ORDER BY publication_id DESC LIMIT 1"


def latest_publication(db: Database) -> dict[str, Any] | None:
    """The newest publication (keys: the column names), None before the first."""
    with translate_errors(), db.conn.cursor() as cur:
        cur.execute(f"SELECT {_PUBLICATION_COLUMNS} FROM publications ORDER BY publication_id DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(_PUBLICATION_COLUMNS.split(", "), row, strict=True))


def publication_is_current(db: Database, rules: dict[str, Any]) -> bool:
    """Whether the newest publication was made under these rules and is not stale."""
    published = latest_publication(db)
    return (
        published is not None
        and published["rules"] == rules
        and newest_run_with_events_after(db, published["covers_run_id"]) is None
    )


@dataclass(frozen=True)
class StagedResult:
    """What sessionize (or the Spark job) built in tb_events_next/sessions_next, waiting for load."""

    run_id: int | None
    rules: dict[str, Any]
    covers_run_id: int  # the newest run whose events it holds
    based_on_publication_id: int | None  # the publication it was built on (an incremental build adds to it)
    full_refresh: bool
    customers_rebuilt: int
    events: int
    sessions: int
    cut_sessions: int
    engine: str = "postgres"


_STAGED_COLUMNS = ", ".join(field.name for field in fields(StagedResult))


def clear_staged_result(db: Database) -> None:
    """Forget a staged result (in the caller's transaction): the *_next tables are about to be rebuilt."""
    db.conn.execute("DELETE FROM staged_result")


def stage_result(db: Database, staged: StagedResult) -> None:
    """Record a built result as ready for load (in the caller's transaction, with the *_next tables)."""
    values = {**asdict(staged), "rules": Jsonb(staged.rules)}
    db.conn.execute(
        sql.SQL("INSERT INTO staged_result ({}) VALUES ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(map(sql.Placeholder, values))
        ),
        values,
    )


def take_staged_result(db: Database) -> StagedResult | None:
    """The staged result, its row locked until the caller's transaction ends (load publishes it)."""
    row = db.conn.execute(f"SELECT {_STAGED_COLUMNS} FROM staged_result FOR UPDATE").fetchone()
    return None if row is None else StagedResult(*row)


def record_publication(db: Database, run_id: int | None, staged: StagedResult) -> int:
    """The publications row of a result just swapped in (in load's transaction); the staged row goes."""
    # the staged row's columns but the publication it was built on (a publication follows from the one before)
    values = {**asdict(staged), "rules": Jsonb(staged.rules), "run_id": run_id}
    del values["based_on_publication_id"]
    publication_id = one_row(
        db.conn.execute(
            sql.SQL("INSERT INTO publications ({}) VALUES ({}) RETURNING publication_id").format(
                sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(map(sql.Placeholder, values))
            ),
            values,
        )
    )[0]
    clear_staged_result(db)
    return int(publication_id)
