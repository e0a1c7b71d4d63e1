"""Sessions by referrer (sql/referrers.sql, `report --by referrer`) against a plain-Python computation."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, invoke_xccel
from xccel_cli.db import Database
from xccel_cli.referrers import DIRECT, referrer_report

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"
FIELDS = [
    "referrer",
    "sessions",
    "customers",
    "median_duration_minutes",
    "p90_duration_minutes",
    "share_with_order",
    "mean_events_per_session",
]


# --- the oracle: obviously-correct Python over sessions rows --------------------------------------


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    return ordered[lower] + (position - lower) * (ordered[upper] - ordered[lower])


def expected_by_referrer(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for session in sessions:
        groups[session["referrer"] if session["referrer"] is not None else DIRECT].append(session)
    rows = []
    for referrer, members in groups.items():
        durations = [s["duration_minutes"] for s in members]
        rows.append(
            {
                "referrer": referrer,
                "sessions": len(members),
                "customers": len({s["customer_id"] for s in members}),
                "median_duration_minutes": percentile_cont(durations, 0.5),
                "p90_duration_minutes": percentile_cont(durations, 0.9),
                "share_with_order": sum(1 for s in members if s["has_order"]) / len(members),
                "mean_events_per_session": sum(s["event_count"] for s in members) / len(members),
            }
        )
    return sorted(rows, key=lambda row: (-row["sessions"], row["referrer"]))


def assert_rows_equal(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [row["referrer"] for row in actual] == [row["referrer"] for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert list(got) == FIELDS
        for field in FIELDS:
            if isinstance(want[field], float):
                assert got[field] == pytest.approx(want[field], rel=1e-9, abs=1e-9), (got["referrer"], field)
            else:
                assert got[field] == want[field], (got["referrer"], field)


# --- putting sessions rows straight into the published table --------------------------------------

START = datetime(2022, 4, 20, tzinfo=UTC)


def insert_sessions(db: Database, sessions: list[dict[str, Any]]) -> None:
    with db.conn.cursor() as cur:
        cur.execute("TRUNCATE sessions")
        numbers: dict[int, int] = defaultdict(int)
        for s in sessions:
            numbers[s["customer_id"]] += 1
            number = numbers[s["customer_id"]]
            started = START + timedelta(days=number)
            cur.execute(
                "INSERT INTO sessions (session_id, customer_id, session_number, started_at, ended_at,"
                " duration_minutes, event_count, has_order, landing_page, referrer)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    f"{s['customer_id']}_{number}",
                    s["customer_id"],
                    number,
                    started,
                    started + timedelta(minutes=s["duration_minutes"]),
                    s["duration_minutes"],
                    s["event_count"],
                    s["has_order"],
                    None,
                    s["referrer"],
                ),
            )


def session(customer: int, referrer: str | None, minutes: float, events: int, order: bool) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "referrer": referrer,
        "duration_minutes": minutes,
        "event_count": events,
        "has_order": order,
    }


def test_hand_computed_case(db: Database) -> None:
    insert_sessions(
        db,
        [
            session(1, "https://google.com", 0, 1, False),
            session(1, "https://google.com", 10, 3, True),
            session(2, "https://google.com", 20, 5, False),
            session(2, None, 4, 2, False),
            session(3, None, 8, 4, True),
            session(3, "https://bing.com", 30, 6, True),
        ],
    )
    result = referrer_report(db)
    assert result.publication_id is None  # rows inserted by hand: nothing was published
    assert result.as_json() == [
        # 3 sessions of 2 customers; durations 0, 10, 20: median 10, p90 at rank 1.8 = 10 + 0.8 * 10
        {
            "referrer": "https://google.com",
            "sessions": 3,
            "customers": 2,
            "median_duration_minutes": 10.0,
            "p90_duration_minutes": 18.0,
            "share_with_order": 1 / 3,
            "mean_events_per_session": 3.0,
        },
        # no referrer: durations 4, 8: median 6, p90 at rank 0.9 = 4 + 0.9 * 4
        {
            "referrer": "(direct)",
            "sessions": 2,
            "customers": 2,
            "median_duration_minutes": 6.0,
            "p90_duration_minutes": pytest.approx(7.6),
            "share_with_order": 0.5,
            "mean_events_per_session": 3.0,
        },
        {
            "referrer": "https://bing.com",
            "sessions": 1,
            "customers": 1,
            "median_duration_minutes": 30.0,
            "p90_duration_minutes": 30.0,
            "share_with_order": 1.0,
            "mean_events_per_session": 6.0,
        },
    ]


def test_ties_on_sessions_are_ordered_by_referrer_and_no_sessions_is_no_rows(db: Database) -> None:
    assert referrer_report(db).rows == []
    insert_sessions(db, [session(1, "https://z.example", 1, 1, False), session(2, "https://a.example", 2, 2, False)])
    assert [row.referrer for row in referrer_report(db).rows] == ["https://a.example", "https://z.example"]


sessions_strategy = st.lists(
    st.builds(
        session,
        customer=st.integers(1, 6),
        referrer=st.sampled_from([None, "https://google.com", "https://bing.com", "https://t.co", "(direct)x"]),
        minutes=st.one_of(st.just(0.0), st.floats(0, 600, allow_nan=False).map(lambda m: round(m, 3))),
        events=st.integers(1, 40),
        order=st.booleans(),
    ),
    min_size=0,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=sessions_strategy)
def test_random_sessions_match_plain_python(db: Database, sessions: list[dict[str, Any]]) -> None:
    insert_sessions(db, sessions)
    assert_rows_equal(referrer_report(db).as_json(), expected_by_referrer(sessions))


# --- end to end, through the real command -------------------------------------------------------


def sessions_rows(database_url: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT customer_id, referrer, duration_minutes, event_count, has_order FROM sessions"
        ).fetchall()


def test_report_by_referrer_on_the_example_dump(database_url: str) -> None:
    loaded = invoke_xccel(["run-all", "--source", str(EXAMPLE), "--json", "--database-url", database_url])
    assert loaded.exit_code == 0, loaded.stderr

    as_json = invoke_xccel(["report", "--by", "referrer", "--json", "--database-url", database_url])
    assert as_json.exit_code == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    sessions = sessions_rows(database_url)
    assert len(sessions) == json.loads(loaded.stdout)["report"]["sessions"]
    assert_rows_equal(rows, expected_by_referrer(sessions))
    assert sum(row["sessions"] for row in rows) == len(sessions)
    assert DIRECT in [row["referrer"] for row in rows] and len(rows) > 2

    table = invoke_xccel(["report", "--by", "referrer", "--database-url", database_url], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.stderr
    assert "xccel report by referrer" in table.stdout
    for row in rows:
        assert row["referrer"] in table.stdout
        assert f"{row['sessions']:,}" in table.stdout


def test_report_by_an_unknown_breakdown_is_a_usage_error(database_url: str) -> None:
    result = invoke_xccel(["report", "--by", "landing-page", "--database-url", database_url])
    assert result.exit_code == 2
    assert "landing-page" in result.stderr and "Traceback" not in result.stderr


def test_report_by_referrer_without_a_schema_says_what_to_do(database_url: str) -> None:
    result = invoke_xccel(["report", "--by", "referrer", "--database-url", database_url])
    assert result.exit_code == 8, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: the database has no xccel schema in 'public' yet: run `xccel init-db` first"
    ]
