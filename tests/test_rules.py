"""The session rules, each on a hand-computed case, recorded with the result, validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import invoke_xccel
from tests.xccel_driver import assert_matches_oracle, event, line, metrics_of, publish, published, write_dump
from xccel_cli.config import PRESETS, SessionRules
from xccel_cli.db import Database
from xccel_cli.metrics import report
from xccel_cli.pipeline import run_load, run_sessionize

# 21:50Z -> 22:10Z crosses midnight in Amsterdam (UTC+2 in April), not in UTC;
# 23:50Z -> 00:10Z crosses midnight in UTC, not in Amsterdam. Both gaps are 20 minutes.
MIDNIGHT = [
    event(1, 1, "2022-04-22 21:50:00"),
    event(2, 1, "2022-04-22 22:10:00"),
    event(3, 2, "2022-04-22 23:50:00"),
    event(4, 2, "2022-04-23 00:10:00"),
]


def session_ids(db: Database) -> list[str]:
    return [row["session_id"] for row in published(db).tb_events]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (SessionRules(), ["1_1", "1_1", "2_1", "2_1"]),
        (SessionRules(split_at_midnight=True), ["1_1", "1_1", "2_1", "2_2"]),
        (SessionRules(split_at_midnight=True, timezone="Europe/Amsterdam"), ["1_1", "1_2", "2_1", "2_1"]),
        # IANA zones whose names PostgreSQL's AT TIME ZONE also knows as fixed abbreviations (no summer time):
        # in April CET is UTC+2 like Amsterdam, EET UTC+3 and WET UTC+1 (not +1, +2 and 0)
        (SessionRules(split_at_midnight=True, timezone="CET"), ["1_1", "1_2", "2_1", "2_1"]),
        (SessionRules(split_at_midnight=True, timezone="EET"), ["1_1", "1_1", "2_1", "2_1"]),
        (SessionRules(split_at_midnight=True, timezone="WET"), ["1_1", "1_1", "2_1", "2_1"]),
    ],
)
def test_midnight_in_the_chosen_zone(db: Database, rules: SessionRules, expected: list[str]) -> None:
    publish(db, MIDNIGHT, rules)
    assert session_ids(db) == expected
    assert_matches_oracle(db, MIDNIGHT, rules)


REFERRER = [
    # customer 3: the session's referrer is google; repeating it or arriving without one does not split,
    # facebook does, and then google again does (the session's referrer is now facebook)
    event(10, 3, "2022-04-22 10:00:00", referrer="https://google.com", page="/"),
    event(11, 3, "2022-04-22 10:05:00"),
    event(12, 3, "2022-04-22 10:10:00", referrer="https://google.com"),
    event(13, 3, "2022-04-22 10:15:00", referrer="https://facebook.com", page="/sale"),
    event(14, 3, "2022-04-22 10:20:00", referrer="https://google.com", page="/p/1"),
    # customer 4: a session that began without a referrer; an arrival from outside splits it; an empty
    # referrer is no referrer
    event(20, 4, "2022-04-22 11:00:00"),
    event(21, 4, "2022-04-22 11:05:00", referrer="https://google.com"),
    event(22, 4, "2022-04-22 11:10:00", referrer=""),
    # customer 8: google, then an hour's gap: the new session began without a referrer, so google splits
    event(30, 8, "2022-04-22 09:00:00", referrer="https://google.com"),
    event(31, 8, "2022-04-22 10:00:00"),
    event(32, 8, "2022-04-22 10:05:00", referrer="https://google.com"),
]


def test_referrer_rule(db: Database) -> None:
    rules = SessionRules(split_on_referrer=True)
    publish(db, REFERRER, rules)
    assert session_ids(db) == ["3_1", "3_1", "3_1", "3_2", "3_3", "4_1", "4_2", "4_2", "8_1", "8_2", "8_3"]
    got = published(db)
    assert [(s["session_id"], s["referrer"], s["landing_page"]) for s in got.sessions] == [
        ("3_1", "https://google.com", "/"),
        ("3_2", "https://facebook.com", "/sale"),
        ("3_3", "https://google.com", "/p/1"),
        ("4_1", None, None),
        ("4_2", "https://google.com", None),
        ("8_1", "https://google.com", None),
        ("8_2", None, None),
        ("8_3", "https://google.com", None),
    ]
    assert_matches_oracle(db, REFERRER, rules)


def test_referrer_rule_off_keeps_one_session(db: Database) -> None:
    publish(db, REFERRER)
    assert session_ids(db) == ["3_1"] * 5 + ["4_1"] * 3 + ["8_1", "8_2", "8_2"]
    assert_matches_oracle(db, REFERRER)


def every(minutes: int, start_hour: int, count: int) -> list[str]:
    return [f"2022-04-22 {start_hour + (i * minutes) // 60:02d}:{(i * minutes) % 60:02d}:00" for i in range(count)]


# customer 5: a 3-hour session (25-minute steps, then 20), cut at 12:00 by a 2-hour cap (exactly 2 h
# after its start counts), then a later session that moves up to number 3.
# customer 6: a 5-hour session in 20-minute steps, cut at 12:00 and at 14:00; orders at 14:20.
CAP = [
    event(100 + i, 5, t)
    for i, t in enumerate(
        [
            "2022-04-22 10:00:00",
            "2022-04-22 10:25:00",
            "2022-04-22 10:50:00",
            "2022-04-22 11:15:00",
            "2022-04-22 11:40:00",
            "2022-04-22 12:00:00",
            "2022-04-22 12:25:00",
            "2022-04-22 12:50:00",
            "2022-04-22 13:00:00",
            "2022-04-22 18:00:00",
        ]
    )
] + [
    event(200 + i, 6, t, "placed_order" if t.endswith("14:20:00") else "page_view")
    for i, t in enumerate(every(20, 10, 16))
]


def test_three_hour_session_with_two_hour_cap(db: Database) -> None:
    rules = SessionRules(max_session_hours=2)
    result = publish(db, CAP, rules)
    assert result.cut_sessions == 3
    got = published(db)
    assert [
        (s["session_id"], s["started_at"].strftime("%H:%M"), s["ended_at"].strftime("%H:%M"), s["event_count"])
        for s in got.sessions
    ] == [
        ("5_1", "10:00", "11:40", 5),
        ("5_2", "12:00", "13:00", 4),
        ("5_3", "18:00", "18:00", 1),
        ("6_1", "10:00", "11:40", 6),
        ("6_2", "12:00", "13:40", 6),
        ("6_3", "14:00", "15:00", 4),
    ]
    assert got.cut_sessions == got.report.cut_sessions == 3
    assert got.report.median_visits_before_order == 2.0  # customer 6 orders in its third session
    assert_matches_oracle(db, CAP, rules)


def test_without_a_cap_nothing_is_cut(db: Database) -> None:
    publish(db, CAP)
    assert [s["session_id"] for s in published(db).sessions] == ["5_1", "5_2", "6_1"]
    assert published(db).report.cut_sessions == 0
    assert_matches_oracle(db, CAP)


def test_ga_universal_preset(db: Database) -> None:
    rules = PRESETS["ga-universal"]
    assert (rules.timeout_minutes, rules.split_at_midnight, rules.split_on_referrer) == (30, True, True)
    publish(db, MIDNIGHT + REFERRER, rules)
    assert_matches_oracle(db, MIDNIGHT + REFERRER, rules)


def test_changing_the_rules_resessionizes_everyone_and_report_never_mixes(db: Database) -> None:
    events = MIDNIGHT + REFERRER + CAP
    publish(db, events)
    before = published(db)
    universal = PRESETS["ga-universal"]

    staged = run_sessionize(db, universal)
    assert staged.full_refresh and staged.reason == "session rules changed"
    assert staged.customers_rebuilt == 7
    # staged, not published: the report still shows the old result with its own rules
    still = report(db)
    assert still.rules == SessionRules().as_dict()
    assert metrics_of(still) == metrics_of(before.report)
    assert published(db).sessions == before.sessions

    run_load(db)
    after = assert_matches_oracle(db, events, universal)
    assert after.metrics["sessions"] != before.report.sessions  # the new rules really cut differently

    # same rules, nothing new: an incremental run that rebuilds nobody and changes nothing
    again = run_sessionize(db, universal)
    assert not again.full_refresh and again.customers_rebuilt == 0
    run_load(db)
    assert_matches_oracle(db, events, universal)


def test_a_cap_always_recounts_every_customer(db: Database) -> None:
    rules = SessionRules(max_session_hours=2)
    publish(db, CAP, rules)
    late = [event(300, 7, "2022-04-22 09:00:00")]
    result = publish(db, late, rules)
    assert result.full_refresh and "cap" in result.reason
    assert result.cut_sessions == 3
    assert_matches_oracle(db, CAP + late, rules)


def test_rules_and_cut_sessions_in_the_real_report(database_url: str, tmp_path: Path) -> None:
    dump = write_dump([line(e) for e in CAP], tmp_path)
    result = invoke_xccel(
        [
            "run-all",
            "--source",
            str(dump),
            "--rules",
            "ga-universal",
            "--max-session-hours",
            "2",
            "--timezone",
            "Europe/Amsterdam",
            "--json",
            "--database-url",
            database_url,
        ]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["report"]
    assert data["rules"] == {
        "timeout_minutes": 30,
        "split_at_midnight": True,
        "timezone": "Europe/Amsterdam",
        "split_on_referrer": True,
        "max_session_hours": 2.0,
    }
    expected = oracle.sessionize(CAP, SessionRules(**data["rules"]))
    assert data["cut_sessions"] == expected.cut_sessions == 3

    table = invoke_xccel(["report", "--database-url", database_url])
    assert table.exit_code == 0, table.stderr
    footer = " ".join(table.stdout.split())
    assert "at midnight (Europe/Amsterdam)" in footer and "capped at 2 h" in footer
    assert "3 sessions cut by the cap" in footer


UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"  # config errors must come before any connection


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["sessionize", "--timeout-minutes", "0"], {}, "the session timeout must be between 1 and 240 minutes, got 0"),
        (
            ["run-all", "--timeout-minutes", "241", "--source", "x.json"],
            {},
            "the session timeout must be between 1 and 240 minutes, got 241",
        ),
        (
            ["sessionize"],
            {"XCCEL_SESSION_TIMEOUT_MINUTES": "half an hour"},
            "XCCEL_SESSION_TIMEOUT_MINUTES must be a whole number of minutes from 1 to 240, got 'half an hour'",
        ),
        (
            ["sessionize", "--split-at-midnight", "--timezone", "Mars/Olympus_Mons"],
            {},
            "unknown time zone 'Mars/Olympus_Mons': use an IANA name such as Europe/Amsterdam",
        ),
        (["sessionize", "--rules", "ga5"], {}, "unknown rule set 'ga5'; choose one of: ga4, ga-universal"),
        (
            ["sessionize", "--max-session-hours", "0"],
            {},
            "the maximum session length must be more than 0 and at most 744 hours, got 0",
        ),
        (
            ["run-all", "--source", "x.json"],
            {"XCCEL_MAX_SESSION_HOURS": "nan"},
            "XCCEL_MAX_SESSION_HOURS must be a number of hours more than 0 and at most 744, got 'nan'",
        ),
        (
            ["sessionize"],
            {"XCCEL_SPLIT_ON_REFERRER": "maybe"},
            "XCCEL_SPLIT_ON_REFERRER must be true or false, got 'maybe'",
        ),
    ],
)
def test_invalid_rule_settings_are_one_line_errors(args: list[str], env: dict[str, str], message: str) -> None:
    result = invoke_xccel([*args, "--database-url", UNREACHABLE], env=env)
    assert result.exit_code == 3, result.stderr
    assert result.stderr == f"Error: {message}\n"
    assert result.stdout == ""
