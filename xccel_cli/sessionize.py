"""Stage 2: cut each customer's events into sessions (sql/sessionize.sql) into the *_next tables.

Only customers with events newer than the published result are recomputed, unless the rules
changed, a session cap is set, or a full refresh is asked for; the others' rows are carried over.

Both tables are built by one statement (sql/sessionize_tables.sql) over one sort of the events. The
staged_result row that load requires is cleared in a transaction of its own before the build and written
in the build's transaction, so a build that fails leaves nothing to publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from xccel_cli.config import SessionRules
from xccel_cli.db import Database, one_row
from xccel_cli.publications import StagedResult, clear_staged_result, stage_result
from xccel_cli.publications import latest_publication as latest_publication  # re-exported: its old home
from xccel_cli.runs import newest_run_id

# Enough for the sort of every logged-in event of a full dump to stay in memory.
SORT_MEMORY = "128MB"


@dataclass
class SessionizeResult:
    full_refresh: bool
    reason: str  # why full or incremental
    customers_rebuilt: int
    events: int
    sessions: int
    cut_sessions: int
    seconds: float


def sessionize(db: Database, rules: SessionRules, run_id: int | None, full_refresh: bool = False) -> SessionizeResult:
    started = time.perf_counter()
    with db.transaction() as conn:
        published = latest_publication(db)
        if full_refresh:
            reason = "full refresh requested"
        elif published is None:
            full_refresh, reason = True, "first result"
        elif published["engine"] != "postgres":
            # a Spark result was built from the warehouse's events, not raw_events, and may leave tb_events out
            full_refresh, reason = True, f"the published result was built by {published['engine']}"
        elif published["rules"] != rules.as_dict():
            full_refresh, reason = True, "session rules changed"
        elif rules.max_session_hours is not None:
            # The published tables do not say which sessions the cap cut, so the count of cut
            # sessions of the customers carried over is unknown: recount over every customer.
            full_refresh, reason = True, "a session cap is set (cut sessions are counted over all customers)"
        else:
            reason = "customers with new events only"
        since = published["covers_run_id"] if published else 0
        # every raw_events row carries the id of the run that loaded it: the result covers them up to this one
        covers = newest_run_id(db)
        # Committed before anything is built: a failed build rolls back to no staged row at all, rather
        # than to the row of an earlier build the caller has since replaced.
        clear_staged_result(db)
    settings = {
        "timeout_minutes": rules.timeout_minutes,
        "split_at_midnight": rules.split_at_midnight,
        "timezone": rules.timezone,
        "split_on_referrer": rules.split_on_referrer,
        "max_session_hours": rules.max_session_hours,
        "full_refresh": full_refresh,
        "since_run_id": since,
    }
    with db.transaction() as conn:
        # The *_next tables are rebuilt from raw_events whenever they are lost, and load publishes them
        # with a synchronous commit, which flushes this one's WAL first: no need to wait for the flush here.
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute("SELECT set_config('work_mem', %s, true)", (SORT_MEMORY,))
        db.run_file("sessionize.sql", settings)
        db.run_file("sessionize_tables.sql")
        # the customers sessionize.sql rebuilt: all of them, or those in its rebuild_customers table
        rebuilt = one_row(
            conn.execute(
                "SELECT count(DISTINCT customer_id) FROM sessions_next"
                if full_refresh
                else "SELECT count(*) FROM pg_temp.rebuild_customers"
            )
        )[0]
        events = one_row(conn.execute("SELECT count(*) FROM tb_events_next"))[0]
        sessions = one_row(conn.execute("SELECT count(*) FROM sessions_next"))[0]
        cut = one_row(conn.execute("SELECT count(*) FROM pg_temp.session_cuts"))[0]
        stage_result(
            db,
            StagedResult(
                run_id,
                rules.as_dict(),
                covers,
                published["publication_id"] if published else None,
                full_refresh,
                rebuilt,
                events,
                sessions,
                cut,
            ),
        )
    return SessionizeResult(full_refresh, reason, rebuilt, events, sessions, cut, time.perf_counter() - started)
