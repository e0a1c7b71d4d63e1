"""Stage 3: publish what sessionize built, atomically (sql/publish.sql swaps the tables in one transaction)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from psycopg.types.json import Jsonb

from xccel_cli.db import Database
from xccel_cli.errors import StateError
from xccel_cli.sessionize import latest_publication

LOCK_TIMEOUT = "30s"  # how long publishing may wait for readers that hold the tables


@dataclass
class LoadResult:
    publication_id: int
    events: int
    sessions: int
    customers_rebuilt: int
    full_refresh: bool
    seconds: float


def load(db: Database, run_id: int | None) -> LoadResult:
    started = time.perf_counter()
    with db.transaction() as conn:
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        staged = conn.execute(
            "SELECT rules, covers_run_id, based_on_publication_id, full_refresh, customers_rebuilt, events,"
            " sessions, cut_sessions, engine FROM staged_result FOR UPDATE"
        ).fetchone()
        if staged is None:
            raise StateError("nothing to publish: run `xccel sessionize` first")
        rules, covers, based_on, full, rebuilt, events, sessions, cut, engine = staged
        current = latest_publication(db)
        if (current["publication_id"] if current else None) != based_on:
            raise StateError(
                "the sessionized result is out of date (another load came first): run `xccel sessionize` again"
            )
        # extract records runs.loaded in its own transaction: no scan of raw_events needed
        newest = conn.execute("SELECT max(run_id) FROM runs WHERE run_id > %s AND loaded > 0", (covers,)).fetchone()[0]
        if newest is not None:
            raise StateError(
                f"the sessionized result is out of date (run {newest} extracted events after it): "
                "run `xccel sessionize` again"
            )
        db.run_file("publish.sql")
        publication_id = conn.execute(
            "INSERT INTO publications (run_id, rules, covers_run_id, full_refresh, customers_rebuilt, events,"
            " sessions, cut_sessions, engine) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING publication_id",
            (run_id, Jsonb(rules), covers, full, rebuilt, events, sessions, cut, engine),
        ).fetchone()[0]
        conn.execute("DELETE FROM staged_result")
    return LoadResult(publication_id, events, sessions, rebuilt, full, time.perf_counter() - started)
