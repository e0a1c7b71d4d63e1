"""Stage 3: publish what sessionize built, atomically (sql/publish.sql swaps the tables in one transaction)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from xccel_cli.config import DEFAULT_PUBLISH_WAIT_SECONDS
from xccel_cli.db import Database, one_row
from xccel_cli.errors import PublishWaitError, StateError
from xccel_cli.sessionize import latest_publication

log = logging.getLogger(__name__)

# One try at the swap's locks waits this long for readers, and readers that arrive meanwhile queue
# behind it for at most as long; between tries they get in.
LOCK_TRY_MS = 200
LOCK_PAUSE_SECONDS = 0.3


@dataclass
class LoadResult:
    publication_id: int
    events: int
    sessions: int
    customers_rebuilt: int
    full_refresh: bool
    seconds: float


def load(db: Database, run_id: int | None, *, wait_seconds: float = DEFAULT_PUBLISH_WAIT_SECONDS) -> LoadResult:
    """Publish, retrying the swap's short lock while readers hold the tables, up to wait_seconds
    (the setting XCCEL_PUBLISH_WAIT_SECONDS). A reader never waits long for load, and load never fails
    just because one reader took a while."""
    started = time.perf_counter()
    wait = wait_seconds
    deadline = time.monotonic() + wait
    tries = 0
    while True:
        tries += 1
        try:
            return _publish(db, run_id, started)
        except PublishWaitError:
            if time.monotonic() >= deadline:
                raise PublishWaitError(
                    f"could not publish: readers kept tb_events/sessions busy for more than {wait:g} s "
                    f"({tries} tries; XCCEL_PUBLISH_WAIT_SECONDS); the sessionized result is kept, "
                    "run `xccel load` again"
                ) from None
            if tries == 1:
                log.info("readers hold the published tables; retrying the swap for up to %g s", wait)
            time.sleep(LOCK_PAUSE_SECONDS)


def _publish(db: Database, run_id: int | None, started: float) -> LoadResult:
    with db.transaction() as conn:
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TRY_MS}ms'")
        try:
            # the swap's locks first, in publish.sql's order: the rest of the transaction cannot block
            with conn.transaction():
                conn.execute("LOCK TABLE tb_events, sessions IN ACCESS EXCLUSIVE MODE")
        except psycopg.errors.LockNotAvailable:
            raise PublishWaitError("readers hold the published tables") from None
        conn.execute("SET LOCAL lock_timeout = '30s'")  # nothing else should block; if it does, say so
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
        newest = one_row(conn.execute("SELECT max(run_id) FROM runs WHERE run_id > %s AND loaded > 0", (covers,)))[0]
        if newest is not None:
            raise StateError(
                f"the sessionized result is out of date (run {newest} extracted events after it): "
                "run `xccel sessionize` again"
            )
        db.run_file("publish.sql")
        publication_id = one_row(
            conn.execute(
                "INSERT INTO publications (run_id, rules, covers_run_id, full_refresh, customers_rebuilt, events,"
                " sessions, cut_sessions, engine) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING publication_id",
                (run_id, Jsonb(rules), covers, full, rebuilt, events, sessions, cut, engine),
            )
        )[0]
        conn.execute("DELETE FROM staged_result")
    return LoadResult(publication_id, events, sessions, rebuilt, full, time.perf_counter() - started)
