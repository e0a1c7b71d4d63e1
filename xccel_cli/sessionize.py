"""Stage 2: cut each customer's events into sessions (sql/sessionize.sql) into the *_next tables.

Only customers with events newer than the published result are recomputed, unless the rules
changed, a session cap is set, or a full refresh is asked for; the others' rows are carried over.

tb_events_next has one definition (sql/sessionize_events.sql), and so has sessions_next
(sql/sessionize_sessions.sql); both read the session_events view of sql/sessionize.sql. Without a session
cap, tb_events_next is built on the command's connection while sessions_next is built on a helper
connection, each after its own run of sessionize.sql: each sorts the events itself, but on its own core, so
the two builds overlap. With a cap (or without a URL for a helper), both are built on the command's
connection, one after the other, from the view's rows kept once (sql/sessionize_materialize.sql): the
cap's rule flags, cuts and second window pass are then computed once, not once per build. The helper
commits first; the staged_result row that load requires is cleared before the build and written in the
main transaction, so a build that dies half-way leaves nothing to publish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

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
        # Committed before anything is built: sessions_next may be committed (by the helper) before
        # tb_events_next, and load must never find a staged row next to a half-new pair of tables.
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
    # With a cap, both connections would compute its rule flags and cuts: one connection does it once.
    helpers = db.helper() if rules.max_session_hours is None else nullcontext(None)
    with helpers as helper, db.transaction() as conn:
        # tb_events_next here, sessions_next on the helper connection at the same time (each connection
        # sorts the events itself: two cores instead of one; without a helper, both here, one after the
        # other, from rows kept once). carry_landing: whether the flags read landing page and referrer out
        # of the payloads; the kept rows (and a cap's rule_flags, kept by sessionize.sql itself) serve
        # sessions_next too, so they must carry them.
        _prepare(db, {**settings, "carry_landing": helper is None})
        if helper is None:
            db.run_file("sessionize_materialize.sql")
            db.run_file("sessionize_events.sql")
            db.run_file("sessionize_sessions.sql")
        else:
            with _in_background(helper, lambda: _build_sessions(helper, settings)):
                db.run_file("sessionize_events.sql")
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
        if helper is None:
            # the kept rows would otherwise hold their temporary space through load and report
            conn.execute("DROP VIEW pg_temp.session_events")
            conn.execute("DROP TABLE pg_temp.session_events_kept")
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


def _prepare(db: Database, settings: dict[str, Any]) -> None:
    """Open the build: the rules of sql/sessionize.sql, in the caller's transaction."""
    # The *_next tables are rebuilt from raw_events whenever they are lost, and load publishes them
    # with a synchronous commit, which flushes this one's WAL first: no need to wait for the flush here.
    db.conn.execute("SET LOCAL synchronous_commit = off")
    db.conn.execute("SELECT set_config('work_mem', %s, true)", (SORT_MEMORY,))
    # AT TIME ZONE looks a zone name up among the server's abbreviations first: the midnight rule's zone
    # (EST, CET...) must mean what sessionize.sql assumes, whatever abbreviation set the server has.
    db.conn.execute("SET LOCAL timezone_abbreviations = 'Default'")
    db.run_file("sessionize.sql", settings)


def _build_sessions(helper: Database, settings: dict[str, Any]) -> None:
    """sessions_next on the helper connection, committed on its own (see sessionize: staged_result)."""
    with helper.transaction():
        _prepare(helper, {**settings, "carry_landing": True})
        helper.run_file("sessionize_sessions.sql")


@contextmanager
def _in_background(helper: Database, work: Callable[[], None]) -> Iterator[None]:
    """Run work in a thread while the block runs; re-raise its error after the block.

    When the block fails, the helper's statement is cancelled and its transaction rolled back.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="xccel-sessions", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        with suppress(Exception):
            helper.conn.cancel_safe()
        thread.join()
        raise
    thread.join()
    if errors:
        raise errors[0]
