"""Stage 3: publish what sessionize built, atomically (sql/publish.sql swaps the tables in one transaction)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from xccel_cli.config import DEFAULT_PUBLISH_WAIT_SECONDS
from xccel_cli.db import Database
from xccel_cli.errors import PublishWaitError, StateError
from xccel_cli.publications import (
    latest_publication,
    record_publication,
    take_staged_result,
)
from xccel_cli.runs import newest_run_with_events_after

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
        staged = take_staged_result(db)
        if staged is None:
            raise StateError("nothing to publish: run `xccel sessionize` first")
        current = latest_publication(db)
        if (current["publication_id"] if current else None) != staged.based_on_publication_id:
            raise StateError(
                "the sessionized result is out of date (another load came first): run `xccel sessionize` again"
            )
        newest = newest_run_with_events_after(db, staged.covers_run_id)
        if newest is not None:
            raise StateError(
                f"the sessionized result is out of date (run {newest} extracted events after it): "
                "run `xccel sessionize` again"
            )
        db.run_file("publish.sql")
        publication_id = record_publication(db, run_id, staged)
    return LoadResult(
        publication_id,
        staged.events,
        staged.sessions,
        staged.customers_rebuilt,
        staged.full_refresh,
        time.perf_counter() - started,
    )
