"""The README's definitions on hand-computed cases: exact tb_events rows, sessions rows and metrics,
worked out by hand below, and the same as the plain-Python oracle."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests import oracle
from tests.conftest import invoke_xccel
from tests.xccel_driver import assert_matches_oracle, event, line, metrics_of, publish, published, utc, write_dump
from xccel_cli.db import Database

# customer 1: a 29:59 gap (same session), an exact 30:00 gap (new session), then an order and a page
# view at the same second (ordered by event id: 13 before 14)
C1 = [
    event(10, 1, "2022-04-22 10:00:00", referrer="https://google.com", page="/"),
    event(11, 1, "2022-04-22 10:29:59", page="/cart"),
    event(12, 1, "2022-04-22 10:59:59"),
    event(14, 1, "2022-04-22 11:05:00", "placed_order"),
    event(13, 1, "2022-04-22 11:05:00", page="/checkout"),
]
C2 = [event(20, 2, "2022-04-22 09:00:00")]  # never orders
C3 = [
    event(30, 3, "2022-04-22 12:00:00", "placed_order"),  # orders in the first session ...
    event(31, 3, "2022-04-22 15:00:00", "placed_order"),
]  # ... and again later
C4 = [
    event(40, 4, "2022-04-22 23:50:00"),  # one session across midnight (UTC), order after it
    event(41, 4, "2022-04-23 00:10:00"),
    event(42, 4, "2022-04-23 00:15:00", "placed_order"),
]
ANONYMOUS = event(50, None, "2022-04-22 10:00:01")


def dump_lines() -> list[str]:
    lines = [line(e) for e in C1 + C2 + C3 + C4 + [ANONYMOUS]]
    lines.append(line(C1[0]))  # an exact duplicate line
    lines.append(line(event(11, 1, "2022-04-22 18:00:00", "placed_order")))  # same id, other content: dropped
    return lines


def at(text: str) -> datetime:
    return utc(text)


EXPECTED_TB_EVENTS = [
    # event_id, type, customer, timestamp, prev_timestamp, new_session, time, increment, session_id
    (10, "page_view", 1, at("2022-04-22 10:00:00"), None, 1, None, 1, "1_1"),
    (11, "page_view", 1, at("2022-04-22 10:29:59"), at("2022-04-22 10:00:00"), 0, 1799.0, 1, "1_1"),
    (12, "page_view", 1, at("2022-04-22 10:59:59"), at("2022-04-22 10:29:59"), 1, 1800.0, 2, "1_2"),
    (13, "page_view", 1, at("2022-04-22 11:05:00"), at("2022-04-22 10:59:59"), 0, 301.0, 2, "1_2"),
    (14, "placed_order", 1, at("2022-04-22 11:05:00"), at("2022-04-22 11:05:00"), 0, 0.0, 2, "1_2"),
    (20, "page_view", 2, at("2022-04-22 09:00:00"), None, 1, None, 1, "2_1"),
    (30, "placed_order", 3, at("2022-04-22 12:00:00"), None, 1, None, 1, "3_1"),
    (31, "placed_order", 3, at("2022-04-22 15:00:00"), at("2022-04-22 12:00:00"), 1, 10800.0, 2, "3_2"),
    (40, "page_view", 4, at("2022-04-22 23:50:00"), None, 1, None, 1, "4_1"),
    (41, "page_view", 4, at("2022-04-23 00:10:00"), at("2022-04-22 23:50:00"), 0, 1200.0, 1, "4_1"),
    (42, "placed_order", 4, at("2022-04-23 00:15:00"), at("2022-04-23 00:10:00"), 0, 300.0, 1, "4_1"),
]
TB_COLUMNS = (
    "event_id",
    "event_type",
    "customer_id",
    "timestamp",
    "prev_timestamp",
    "new_session",
    "time",
    "increment",
    "session_id",
)

EXPECTED_SESSIONS = [
    # session_id, customer, number, started, ended, minutes, events, has_order, landing_page, referrer,
    # first_order_session_number (the customer's: 1 -> 2, 3 -> 1 although session 3_2 has an order too, 4 -> 1;
    # customer 2 never orders)
    (
        "1_1",
        1,
        1,
        at("2022-04-22 10:00:00"),
        at("2022-04-22 10:29:59"),
        1799 / 60,
        2,
        False,
        "/",
        "https://google.com",
        2,
    ),
    ("1_2", 1, 2, at("2022-04-22 10:59:59"), at("2022-04-22 11:05:00"), 301 / 60, 3, True, None, None, 2),
    ("2_1", 2, 1, at("2022-04-22 09:00:00"), at("2022-04-22 09:00:00"), 0.0, 1, False, None, None, None),
    ("3_1", 3, 1, at("2022-04-22 12:00:00"), at("2022-04-22 12:00:00"), 0.0, 1, True, None, None, 1),
    ("3_2", 3, 2, at("2022-04-22 15:00:00"), at("2022-04-22 15:00:00"), 0.0, 1, True, None, None, 1),
    ("4_1", 4, 1, at("2022-04-22 23:50:00"), at("2022-04-23 00:15:00"), 25.0, 3, True, None, None, 1),
]
SESSION_COLUMNS = (
    "session_id",
    "customer_id",
    "session_number",
    "started_at",
    "ended_at",
    "duration_minutes",
    "event_count",
    "has_order",
    "landing_page",
    "referrer",
    "first_order_session_number",
)

EXPECTED_METRICS = {
    # first order sessions: customer 1 -> 2, customer 3 -> 1, customer 4 -> 1; customer 2 never orders
    "median_visits_before_order": 0.0,  # median of [1, 0, 0]
    "median_session_duration_minutes_before_order": 1799 / 60,  # only session 1_1 comes before an order
    "median_total_minutes_before_order": 0.0,  # median of [29.98, 0, 0]
    "customers": 4,
    "customers_with_orders": 3,
    "sessions": 6,
    "events": 11,  # the anonymous event and the two duplicate lines are not sessionized
}


def test_hand_computed_cases(db: Database) -> None:
    publish(db, dump_lines())
    got = published(db)
    assert got.tb_events == [dict(zip(TB_COLUMNS, row, strict=True)) for row in EXPECTED_TB_EVENTS]
    assert got.sessions == [dict(zip(SESSION_COLUMNS, row, strict=True)) for row in EXPECTED_SESSIONS]
    assert metrics_of(got.report) == EXPECTED_METRICS
    # and the oracle, fed the same lines in the same order, agrees with the hand computation
    events = oracle.dedupe(C1 + C2 + C3 + C4 + [ANONYMOUS] + [C1[0], event(11, 1, "2022-04-22 18:00:00")])
    expected = assert_matches_oracle(db, events)
    assert expected.metrics == EXPECTED_METRICS


def test_oracle_by_hand() -> None:
    """The oracle itself on the same cases, so a wrong oracle cannot hide behind a wrong SQL."""
    expected = oracle.sessionize(C1 + C2 + C3 + C4 + [ANONYMOUS])
    assert [tuple(row[c] for c in TB_COLUMNS) for row in expected.tb_events] == EXPECTED_TB_EVENTS
    assert [tuple(row[c] for c in SESSION_COLUMNS) for row in expected.sessions] == EXPECTED_SESSIONS
    assert expected.metrics == EXPECTED_METRICS
    assert oracle.median([]) is None and oracle.median([3, 1]) == 2.0 and oracle.median([5, 1, 2]) == 2.0


def test_offsets_are_converted_to_utc(db: Database) -> None:
    """+02:00 and naive (UTC) stamps of the same instants: gaps are measured in real time."""
    plus_two = timezone(timedelta(hours=2))
    lines = [
        line(event(1, 7, "2022-04-22 10:00:00"), stamp="2022-04-22T12:00:00+02:00"),
        line(event(2, 7, "2022-04-22 10:20:00"), stamp="2022-04-22T10:20:00"),  # no offset: UTC
        line(event(3, 7, "2022-04-22 10:49:59"), stamp="2022-04-22T12:49:59+02:00"),
    ]
    publish(db, lines)
    events = [
        event(1, 7, datetime(2022, 4, 22, 12, tzinfo=plus_two)),
        event(2, 7, "2022-04-22 10:20:00"),
        event(3, 7, datetime(2022, 4, 22, 12, 49, 59, tzinfo=plus_two)),
    ]
    expected = assert_matches_oracle(db, events)
    assert [row["new_session"] for row in expected.tb_events] == [1, 0, 0]


def test_gap_option_changes_the_cut(db: Database) -> None:
    """--timeout-minutes 20 turns customer 4's 20-minute gap across midnight into a new session."""
    from xccel_cli.config import SessionRules

    publish(db, [line(e) for e in C4], SessionRules(timeout_minutes=20))
    expected = assert_matches_oracle(db, C4, SessionRules(timeout_minutes=20))
    assert [row["session_id"] for row in expected.tb_events] == ["4_1", "4_2", "4_2"]


@pytest.mark.parametrize("as_json", [True, False])
def test_the_real_command_reports_the_hand_computed_metrics(database_url: str, tmp_path, as_json: bool) -> None:
    dump = write_dump(dump_lines(), tmp_path)
    args = ["run-all", "--source", str(dump), "--database-url", database_url] + (["--json"] if as_json else [])
    result = invoke_xccel(args)
    assert result.exit_code == 0, result.stderr
    if as_json:
        report = json.loads(result.stdout)["report"]
        assert {k: report[k] for k in EXPECTED_METRICS} == EXPECTED_METRICS
        assert report["cut_sessions"] == 0
        assert report["rules"]["timeout_minutes"] == 30
    else:
        assert "new session after 30 min of inactivity" in " ".join(result.stdout.split())


# Midnight in EST is 05:00Z; in the Australia abbreviation set, EST is Australian Eastern Standard Time
# (midnight at 14:00Z). Customer 1 crosses EST's midnight, customer 2 Australian EST's.
ABBREVIATED_ZONE = [
    event(1, 1, "2022-04-22 04:50:00"),
    event(2, 1, "2022-04-22 05:10:00"),
    event(3, 2, "2022-04-22 13:50:00"),
    event(4, 2, "2022-04-22 14:10:00"),
]


@pytest.mark.parametrize("helper", [True, False], ids=["two connections", "one connection"])
def test_midnight_in_a_zone_named_like_an_abbreviation_whatever_the_servers_abbreviation_set(
    db: Database, database_url: str, helper: bool
) -> None:
    """--timezone names an IANA zone. AT TIME ZONE looks a name up in the server's timezone_abbreviations
    first, so a server set to 'Australia' read EST as UTC+10: sessions depended on a server setting."""
    from psycopg import sql

    from xccel_cli.config import SessionRules
    from xccel_cli.db import connect

    name = db.conn.info.dbname
    db.conn.execute(sql.SQL("ALTER DATABASE {} SET timezone_abbreviations = 'Australia'").format(sql.Identifier(name)))
    rules = SessionRules(split_at_midnight=True, timezone="EST")
    with connect(database_url, "public") as fresh:  # a new session takes the database's setting
        assert fresh.conn.execute("SHOW timezone_abbreviations").fetchone() == ("Australia",)
        target = fresh if helper else Database(conn=fresh.conn, schema=fresh.schema, display_url=fresh.display_url)
        publish(target, ABBREVIATED_ZONE, rules)
        expected = assert_matches_oracle(target, ABBREVIATED_ZONE, rules)
    assert [row["session_id"] for row in expected.tb_events] == ["1_1", "1_2", "2_1", "2_1"]
