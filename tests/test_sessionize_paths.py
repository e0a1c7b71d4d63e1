"""Sessionize builds tb_events_next and sessions_next on two connections at once (sessionize_events.sql and
sessionize_sessions.sql, each after its own sessionize.sql), or with a session cap (or on a connection with no URL
to open a helper from) the same two files one after the other on one connection, from the rows of session_events
kept once (sessionize_materialize.sql). Both ways give the oracle's result, with every rule and incrementally, and
under psql too; a build that fails leaves nothing staged for load."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from tests.test_first_order_session import SQL_FOLDER, psql_values
from tests.test_rules import CAP, REFERRER
from tests.xccel_driver import assert_matches_oracle, event, publish
from xccel_cli.config import SessionRules
from xccel_cli.db import Database, one_row
from xccel_cli.errors import DatabaseError, StateError
from xccel_cli.pipeline import run_load, run_sessionize

RULES = [
    SessionRules(),
    SessionRules(split_on_referrer=True),
    SessionRules(max_session_hours=2),
    SessionRules(split_at_midnight=True, split_on_referrer=True, max_session_hours=1, timeout_minutes=20),
]
EVENTS = [*REFERRER, *CAP]


def without_helper(db: Database) -> Database:
    """The same connection, without the URL a helper connection is opened from."""
    return Database(conn=db.conn, schema=db.schema, display_url=db.display_url)


@pytest.mark.parametrize("rules", RULES, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.as_dict().items()))
@pytest.mark.parametrize("helper", [True, False], ids=["two connections", "one connection"])
def test_both_ways_give_the_oracle_result(db: Database, rules: SessionRules, helper: bool) -> None:
    target = db if helper else without_helper(db)
    assert (target.url is not None) is helper
    publish(target, EVENTS, rules)
    assert_matches_oracle(target, EVENTS, rules)


def test_incremental_runs_one_connection(db: Database) -> None:
    single = without_helper(db)
    first = [
        event(1, 1, "2022-04-22 10:00:00", referrer="https://a.example", page="/"),
        event(2, 2, "2022-04-22 10:00:00"),
    ]
    later = [event(3, 1, "2022-04-22 10:10:00"), event(4, 3, "2022-04-22 11:00:00", page="/x")]
    publish(single, first)
    result = publish(single, later)
    assert not result.full_refresh
    assert result.customers_rebuilt == 2
    assert_matches_oracle(single, first + later)


def test_each_next_table_has_one_definition() -> None:
    """A change to a table's columns is made in one SQL file: one file of sql/ creates and fills each *_next table
    (the Spark engine writes its own rows into tables made LIKE the published ones)."""
    builders = {
        table: sorted(
            path.name
            for path in SQL_FOLDER.glob("*.sql")
            if re.search(rf"\b(CREATE TABLE|INSERT INTO)\s+{table}\b", path.read_text(encoding="utf-8"))
        )
        for table in ("tb_events_next", "sessions_next")
    }
    assert builders == {"tb_events_next": ["sessionize_events.sql"], "sessions_next": ["sessionize_sessions.sql"]}


def plan_nodes(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, relation name) of every node of an EXPLAIN (FORMAT JSON) plan."""
    found = [(node["Node Type"], node.get("Relation Name"))]
    for child in node.get("Plans", []):
        found += plan_nodes(child)
    return found


@dataclass
class Watching(Database):
    """A real connection that notes each SQL file run on it and, before a build file, what session_events reads."""

    runs: list[tuple[str, list[tuple[str, str | None]] | None]] = field(default_factory=list)

    def run_file(self, name: str, settings: Any = None) -> None:
        plan = None
        if name in ("sessionize_events.sql", "sessionize_sessions.sql"):
            (explained,) = one_row(self.conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM pg_temp.session_events"))
            plan = plan_nodes(explained[0]["Plan"])
        self.runs.append((name, plan))
        super().run_file(name, settings)


@pytest.mark.parametrize(
    "rules",
    [SessionRules(split_on_referrer=True, max_session_hours=2), SessionRules()],
    ids=["a cap (one connection even with a URL)", "no cap and no URL for a helper"],
)
def test_on_one_connection_both_builds_read_the_rows_kept_once(db: Database, rules: SessionRules) -> None:
    """On the one-connection way, session_events is the kept table when each build file reads it (the rules' sort
    and window passes, and a cap's extra one, are not run again for the second table), the files run in the order
    sessionize.sql's header gives, and the kept rows are gone once the build is counted."""
    url = db.url if rules.max_session_hours is not None else None
    target = Watching(conn=db.conn, schema=db.schema, display_url=db.display_url, url=url)
    publish(target, EVENTS, rules)
    assert_matches_oracle(target, EVENTS, rules)
    kept = [("Seq Scan", "session_events_kept")]
    builds = [(name, plan) for name, plan in target.runs if name.startswith("sessionize")]
    assert builds == [
        ("sessionize.sql", None),
        ("sessionize_materialize.sql", None),
        ("sessionize_events.sql", kept),
        ("sessionize_sessions.sql", kept),
    ]
    assert one_row(db.conn.execute("SELECT to_regclass('pg_temp.session_events_kept')"))[0] is None


@pytest.mark.integration
def test_the_one_connection_way_runs_under_psql(db: Database, database_url: str) -> None:
    """The files in the order sessionize.sql's header gives, twice in one psql session (each statement its own
    transaction), build what xccel published, landing page and referrer included."""
    rules = SessionRules(split_on_referrer=True, max_session_hours=2)
    publish(db, EVENTS, rules)
    expected = assert_matches_oracle(db, EVENTS, rules)
    assert any(row["landing_page"] for row in expected.sessions) and any(row["referrer"] for row in expected.sessions)
    files = ["sessionize.sql", "sessionize_materialize.sql", "sessionize_events.sql", "sessionize_sessions.sql"]
    # the files' own SELECTs (of set_config) print nothing: \o sends their output away
    build = "\\o /dev/null\n" + "".join(f"\\i {SQL_FOLDER / name}\n" for name in files) + "\\o\n"
    differences = "".join(
        f"SELECT count(*) FROM ((TABLE {table}_next EXCEPT ALL TABLE {table})"
        f" UNION ALL (TABLE {table} EXCEPT ALL TABLE {table}_next)) AS differences;\n"
        f"SELECT count(*) FROM {table}_next;\n"
        for table in ("tb_events", "sessions")
    )
    setup = "SET xccel.split_on_referrer = true;\nSET xccel.max_session_hours = '2';\n"
    printed = psql_values(database_url, setup + build + differences + build + differences)
    once = [0, len(expected.tb_events), 0, len(expected.sessions)]
    assert printed == once * 2


@contextmanager
def failing_sessions_build(db: Database) -> Iterator[None]:
    """sessions_next cannot be created while this holds a lock on sessions (lock_timeout makes it fail)."""
    assert db.url is not None
    with psycopg.connect(db.url) as blocker:
        blocker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        yield


def test_a_failed_build_leaves_nothing_to_publish(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [event(1, 1, "2022-04-22 10:00:00"), event(2, 1, "2022-04-22 12:00:00")]
    publish(db, events)
    before = db.conn.execute("SELECT count(*) FROM publications").fetchone()[0]
    run_sessionize(db, SessionRules(), full_refresh=True)  # staged, not yet published
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=200ms")  # for the helper connection only
    with failing_sessions_build(db), pytest.raises(DatabaseError, match="lock timeout"):
        run_sessionize(db, SessionRules(), full_refresh=True)
    with pytest.raises(StateError, match="nothing to publish"):
        run_load(db)
    assert db.conn.execute("SELECT count(*) FROM publications").fetchone()[0] == before
    run_sessionize(db, SessionRules())
    run_load(db)
    assert_matches_oracle(db, events)


def executed(node: dict[str, Any]) -> list[str]:
    """Node types of an EXPLAIN (ANALYZE, FORMAT JSON) plan that ran and produced rows."""
    found = [node["Node Type"]] if node.get("Actual Loops", 0) and node.get("Actual Rows", 0) else []
    for child in node.get("Plans", []):
        found += executed(child)
    return found


@pytest.mark.parametrize(
    ("rules", "window_passes"),
    [
        (SessionRules(), 2),
        (SessionRules(split_at_midnight=True), 2),
        (SessionRules(split_on_referrer=True), 3),
        (SessionRules(split_at_midnight=True, split_on_referrer=True), 3),
    ],
    ids=["default", "midnight", "referrer", "midnight and referrer"],
)
def test_the_rules_sort_the_events_once(db: Database, rules: SessionRules, window_passes: int) -> None:
    """One sort, and two window passes (three with the referrer rule: no pass keeps a customer's events)."""
    publish(db, EVENTS, rules)
    settings = {**rules.as_dict(), "full_refresh": True, "since_run_id": 0}
    with db.transaction() as conn:
        db.run_file("sessionize.sql", settings)
        (plan,) = conn.execute(
            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) SELECT count(*), sum(increment) FROM pg_temp.session_events"
        ).fetchone()[0]
        (count,) = conn.execute("SELECT count(*) FROM pg_temp.session_events").fetchone()
    assert count == len({e["event_id"] for e in EVENTS if e["customer_id"] is not None})
    nodes = executed(plan["Plan"])
    assert nodes.count("Sort") == 1, nodes
    assert nodes.count("WindowAgg") == window_passes, nodes
