"""The session cap on a heavy customer (one customer with thousands of events in long sessions).

The cap's work grows with the number of cuts, not with events times cuts: its cuts count as starts in the
same window pass as the rules' starts, and finding them is one index probe per cut. Checked against the
oracle, and by the shape of the executed plan (no node runs once per event), never by a clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.xccel_driver import assert_matches_oracle, event, publish, utc
from xccel_cli.config import SessionRules
from xccel_cli.db import Database

HEAVY_EVENTS = 4000


def heavy_customer_events() -> list[dict[str, Any]]:
    """Customer 1: an event every 23 s for ~25 hours, with two 40-minute pauses (three rule sessions, each
    longer than the cap) and orders along the way; customers 2-4: a few ordinary short sessions."""
    events: list[dict[str, Any]] = []
    at = utc("2022-04-22 08:00:00")
    for index in range(HEAVY_EVENTS):
        if index in (1500, 2900):
            at += timedelta(minutes=40)
        kind = "placed_order" if index % 997 == 500 else "page_view"
        referrer = "https://search.example" if index % 400 == 0 else None
        events.append(event(10_000 + index, 1, at, kind, referrer=referrer, page=f"/p/{index % 13}"))
        at += timedelta(seconds=23)
    for customer in (2, 3, 4):
        for index in range(30):
            minute = index * 7 + customer
            events.append(
                event(
                    100 * customer + index,
                    customer,
                    utc("2022-04-22 09:00:00") + timedelta(minutes=minute),
                    "placed_order" if index == 20 else "page_view",
                )
            )
    return events


@pytest.mark.parametrize(
    "rules",
    [
        SessionRules(max_session_hours=1),
        SessionRules(max_session_hours=0.5, split_on_referrer=True, split_at_midnight=True),
    ],
    ids=["cap 1h", "cap 30min with referrer and midnight rules"],
)
def test_a_heavy_customer_under_a_cap_matches_the_oracle(db: Database, rules: SessionRules) -> None:
    events = heavy_customer_events()
    expected = assert_matches_oracle_after_publish(db, events, rules)
    assert expected.cut_sessions >= 20  # the heavy customer's sessions are cut many times


def assert_matches_oracle_after_publish(db: Database, events: list[dict[str, Any]], rules: SessionRules) -> Any:
    result = publish(db, events, rules)
    expected = assert_matches_oracle(db, events, rules)
    assert result.cut_sessions == expected.cut_sessions
    return expected


def plan_loops(node: dict[str, Any]) -> list[tuple[str, int]]:
    """(node type, actual loops) of every node of an EXPLAIN (ANALYZE, FORMAT JSON) plan."""
    found = [(node["Node Type"], int(node.get("Actual Loops", 0)))]
    for child in node.get("Plans", []):
        found += plan_loops(child)
    return found


def test_the_cap_runs_no_step_per_event(db: Database) -> None:
    """The quadratic cap counted earlier cuts with a subquery run once per event; now nothing runs per event."""
    events = heavy_customer_events()
    publish(db, events, SessionRules(max_session_hours=1))
    settings = {
        "timeout_minutes": 30,
        "split_at_midnight": False,
        "timezone": "UTC",
        "split_on_referrer": False,
        "max_session_hours": 1,
        "full_refresh": True,
        "since_run_id": 0,
    }
    with db.transaction() as conn:
        db.run_file("sessionize.sql", settings)
        cuts = conn.execute("SELECT count(*) FROM pg_temp.session_cuts").fetchone()[0]
        assert cuts >= 20
        (plan,) = conn.execute(
            "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) SELECT count(*), sum(increment) FROM pg_temp.session_events"
        ).fetchone()[0]
        loops = plan_loops(plan["Plan"])
    assert max(count for _, count in loops) <= cuts, loops


def test_a_cap_shorter_than_a_microsecond_cuts_at_every_later_microsecond(db: Database) -> None:
    """Timestamps are whole microseconds: a cap below one (accepted: any hours above 0) rounded to zero, and
    the cuts' recursive query found the piece's own first event again, for ever. An event at the same
    microsecond as its piece's start is 0 after it, not `cap` or more, so it stays; a later one is cut."""
    at = utc("2022-04-22 10:00:00")
    micro = timedelta(microseconds=1)
    events = [
        event(1, 7, at),
        event(2, 7, at),  # a tie with the start: not after it
        event(3, 7, at + micro),  # cut
        event(4, 7, at + micro, "placed_order"),  # a tie with the new piece's start
        event(5, 7, at + timedelta(minutes=1)),  # cut
    ]
    rules = SessionRules(max_session_hours=1e-10)  # 0.36 microseconds
    db.conn.execute("SET statement_timeout = '20s'")  # the endless recursion fails the test instead of hanging it
    expected = assert_matches_oracle_after_publish(db, events, rules)
    assert [(s["session_id"], s["event_count"]) for s in expected.sessions] == [("7_1", 2), ("7_2", 2), ("7_3", 1)]
    assert expected.cut_sessions == 2
