"""Going past a median: conversion by visit number (Kaplan–Meier with censoring), 95 % intervals
(Wilson, Greenwood log-log, exact order statistics) and the --since/--until window, checked on hand-computed
cases and against the plain-Python oracle (tests/oracle.py), through the real pipeline into PostgreSQL."""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import oracle
from tests.test_properties import dump_dir, dumps, shared_db  # noqa: F401 (module-scope fixtures reused)
from tests.test_referrers import assert_rows_equal, expected_by_referrer
from tests.xccel_driver import event, line, publish, reset, utc
from xccel_cli.conversion import Window, median_interval, order_statistic_ranks, weekly_medians, wilson
from xccel_cli.db import Database, one_row, sql_names, sql_text
from xccel_cli.errors import ConfigError
from xccel_cli.metrics import report
from xccel_cli.referrers import referrer_report

HOUR = timedelta(hours=1)


def visits(customer: int, first_id: int, day: str, sessions: int, order_in: int | None) -> list[dict[str, Any]]:
    """`sessions` sessions an hour apart (one event each, a second event in the order session)."""
    events = []
    at = utc(f"{day} 10:00:00")
    for number in range(1, sessions + 1):
        events.append(event(first_id + 2 * number, customer, at))
        if number == order_in:
            events.append(event(first_id + 2 * number + 1, customer, at + timedelta(minutes=1), "placed_order"))
        at += 2 * HOUR
    return events


# A: 3 sessions, first order in session 2; B: 1 session, order in it; C: 2 sessions, never orders;
# D: 4 sessions, order in the 4th.
HAND = (
    visits(1, 100, "2022-04-01", 3, 2)
    + visits(2, 200, "2022-04-02", 1, 1)
    + visits(3, 300, "2022-04-03", 2, None)
    + visits(4, 400, "2022-04-04", 4, 4)
)


def test_hand_computed_kaplan_meier_with_censoring(db: Database, tmp_path: Path) -> None:
    publish(db, HAND, directory=tmp_path)
    result = report(db).conversion
    assert result is not None
    rows = [
        (r["session_number"], r["customers_reached"], r["at_risk"], r["first_orders"], r["censored"])
        for r in result["rows"]
    ]
    assert rows == [(1, 4, 4, 1, 0), (2, 3, 3, 1, 1), (3, 2, 1, 0, 0), (4, 1, 1, 1, 0)]
    hazards = [r["hazard"] for r in result["rows"]]
    assert hazards == pytest.approx([1 / 4, 1 / 3, 0.0, 1.0])
    # 1 - (3/4), 1 - (3/4)(2/3), unchanged, 1 - 0
    assert [r["cumulative_share"] for r in result["rows"]] == pytest.approx([0.25, 0.5, 0.5, 1.0])
    assert result["km_median_order_session"] == 2
    # buyers A, B, D ordered in sessions 2, 1, 4: the buyers-only median is session 2
    assert result["buyers_median_order_session"] == 2
    low, high = result["rows"][0]["hazard_interval"]["low"], result["rows"][0]["hazard_interval"]["high"]
    assert (low, high) == pytest.approx(oracle.wilson(1, 4))
    assert result["rows"][3]["cumulative_interval"] == {"low": None, "high": None}  # share 1: undefined


def test_a_window_keeps_customers_whose_first_session_falls_in_it_bounds_included(db: Database, tmp_path: Path) -> None:
    late = visits(5, 500, "2022-04-04", 1, 1)
    late[0]["timestamp"] = late[0]["timestamp"].replace(hour=23, minute=59, second=59)
    late[1]["timestamp"] = late[0]["timestamp"] + timedelta(seconds=30)  # the order, on the next day
    publish(db, HAND + late, directory=tmp_path)
    # customers 2 (04-02), 3 (04-03), 4 (04-04 10:00) and 5 (04-04 23:59:59); 1 started on 04-01
    rep = report(db, Window(date(2022, 4, 2), date(2022, 4, 4)))
    assert rep.customers == 4 and rep.customers_with_orders == 3
    assert rep.window == {"since": "2022-04-02", "until": "2022-04-04", "bounds": rep.window["bounds"]}
    assert rep.sessions == 1 + 2 + 4 + 1
    assert report(db, Window(date(2022, 4, 5), None)).customers == 0
    assert report(db, Window(None, date(2022, 4, 1))).customers == 1
    assert report(db, Window(date(2022, 4, 4), date(2022, 4, 4))).customers == 2
    everyone = report(db, Window(date(2000, 1, 1), date(2100, 1, 1)))
    unwindowed = report(db)
    for key in ("median_visits_before_order", "median_total_minutes_before_order", "customers", "events"):
        assert getattr(everyone, key) == getattr(unwindowed, key)
    assert everyone.conversion is not None and unwindowed.conversion is not None
    assert everyone.conversion["rows"] == unwindowed.conversion["rows"]
    with pytest.raises(ConfigError, match="after"):
        Window(date(2022, 4, 3), date(2022, 4, 2))


def test_the_window_is_tested_once_per_query_not_once_per_row(db: Database, tmp_path: Path) -> None:
    """Every query of the report window (the SQL files and the schema's functions) asks whether the window is
    open in a subquery, which PostgreSQL runs once before the scan: a bare call in a WHERE re-reads both
    settings for every row."""
    publish(db, HAND, directory=tmp_path)
    texts = {name: sql_text(name) for name in sql_names(".") if name.endswith(".sql")}
    for name, definition in db.conn.execute(
        "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p"
        " WHERE p.pronamespace = current_schema()::regnamespace"
        " AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'sql')"
        " AND p.proname <> 'report_window_is_open'"
    ):
        texts[f"function {name}"] = definition
    code = {name: re.sub(r"--[^\n]*", "", text) for name, text in texts.items()}  # comments left out
    callers = {name for name, text in code.items() if "report_window_is_open()" in text}
    assert callers == {
        "conversion_by_visit.sql",
        "median_samples.sql",
        "median_session_duration_minutes_before_order.sql",
        "median_visits_before_order.sql",
        "referrers.sql",
        "report_counts.sql",
        "function buyer_minutes_before_order",
    }
    for name in callers:
        text = code[name]
        assert text.count("report_window_is_open()") == text.count("(SELECT report_window_is_open())"), name
    plan = one_row(db.conn.execute(b"EXPLAIN (FORMAT JSON) " + sql_text("report_counts.sql").encode()))[0]
    nodes, stack = [], [plan[0]["Plan"]]
    while stack:
        nodes.append(node := stack.pop())
        stack.extend(node.get("Plans", []))
    # the scan of sessions itself (not the customers subquery, which runs only for a closed window)
    scans = [n for n in nodes if n.get("Relation Name") == "sessions" and n["Parent Relationship"] != "SubPlan"]
    assert len(scans) == 1 and "current_setting" not in scans[0]["Filter"]
    assert any(n.get("Subplan Name", "").startswith("InitPlan") for n in nodes)


def test_the_weekly_trend_computes_each_customers_week_once(db: Database, tmp_path: Path) -> None:
    """weekly_medians.sql converts a customer's first session start to its week in the customer_weeks CTE (one row
    per customer), not in the join with every session."""
    publish(db, HAND, directory=tmp_path)
    plan = one_row(db.conn.execute(b"EXPLAIN (FORMAT JSON, VERBOSE) " + sql_text("weekly_medians.sql").encode()))[0]
    nodes, stack = [], [(plan[0]["Plan"], "")]
    while stack:
        node, within = stack.pop()
        within = node.get("Subplan Name", within)
        nodes.append((node, within))
        stack.extend((child, within) for child in node.get("Plans", []))
    weeks = [within for node, within in nodes if any("date_trunc" in column for column in node.get("Output", []))]
    assert weeks and set(weeks) == {"CTE customer_weeks"}


def test_nothing_published_gives_empty_figures(db: Database) -> None:
    rep = report(db, Window(date(2022, 1, 1), None))
    assert rep.customers == 0 and rep.median_visits_before_order is None
    assert rep.conversion is not None and rep.conversion["rows"] == []
    assert rep.conversion["km_median_order_session"] is None
    assert rep.median_intervals == {
        key: {"low": None, "high": None, "n": 0, "coverage": None}
        for key in (
            "median_visits_before_order",
            "median_session_duration_minutes_before_order",
            "median_total_minutes_before_order",
        )
    }


# ---------------------------------------------------------------------------------------- the interval maths


def test_wilson_known_values() -> None:
    # textbook values (Newcombe 1998, method 3)
    assert wilson(0, 10).low == 0.0 and wilson(0, 10).high == pytest.approx(0.2775, abs=1e-4)
    assert (wilson(5, 10).low, wilson(5, 10).high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert (wilson(81, 263).low, wilson(81, 263).high) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(0, 0).low is None


@settings(max_examples=300, deadline=None)
@given(trials=st.integers(1, 5000), data=st.data())
def test_wilson_equals_the_oracle_and_holds_the_share(trials: int, data: st.DataObject) -> None:
    successes = data.draw(st.integers(0, trials))
    got = wilson(successes, trials)
    assert got.low is not None and got.high is not None
    assert (got.low, got.high) == pytest.approx(oracle.wilson(successes, trials), abs=1e-12)
    assert 0 <= got.low <= successes / trials <= got.high <= 1


def test_order_statistic_ranks_known_values() -> None:
    assert order_statistic_ranks(5) is None  # 2 / 32 > 5 %: no 95 % interval from five values
    assert order_statistic_ranks(6) == (1, 6, pytest.approx(1 - 2 / 64))
    # n = 10: P(B <= 1) = 11/1024 <= 2.5 % < P(B <= 2) = 56/1024, so [x(2), x(9)] with 97.85 %
    assert order_statistic_ranks(10) == (2, 9, pytest.approx(1 - 22 / 1024))
    lower, upper, coverage = order_statistic_ranks(100) or (0, 0, 0.0)
    assert (lower, upper) == (40, 61) and coverage == pytest.approx(0.9648, abs=1e-4)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.25, 7.0, 30.0, 120.0]), max_size=400))
def test_median_interval_equals_the_oracle(values: list[float]) -> None:
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    got = median_interval(sorted(counts.items()))
    low, high, coverage = oracle.median_interval(values)
    assert (got.low, got.high) == (low, high)
    assert got.n == len(values)
    if coverage is None:
        assert got.coverage is None
    else:
        assert got.coverage == pytest.approx(coverage, rel=1e-9) and got.coverage >= 0.95
        median = oracle.median(values)
        assert median is not None and low is not None and high is not None and low <= median <= high


# ------------------------------------------------------------------------ the real pipeline against the oracle

DAYS = st.one_of(st.none(), st.dates(date(2022, 4, 21), date(2022, 5, 12)))
COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _close(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def assert_conversion_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert len(got["rows"]) == len(want["rows"])
    for g, w in zip(got["rows"], want["rows"], strict=True):
        for key in ("session_number", "customers_reached", "at_risk", "first_orders", "censored"):
            assert g[key] == w[key], (key, g, w)
        assert _close(g["hazard"], w["hazard"])
        assert _close(g["cumulative_share"], w["cumulative_share"])
        assert _close(g["hazard_interval"]["low"], w["hazard_interval"][0]), (g, w)
        assert _close(g["hazard_interval"]["high"], w["hazard_interval"][1]), (g, w)
        assert _close(g["cumulative_interval"]["low"], w["cumulative_interval"][0]), (g, w)
        assert _close(g["cumulative_interval"]["high"], w["cumulative_interval"][1]), (g, w)
    assert got["km_median_order_session"] == want["km_median_order_session"]
    low, high = want["km_median_interval"]
    assert got["km_median_interval"] == {
        "low": None if low is None else float(low),
        "high": None if high is None else float(high),
    }


@settings(COMMON, max_examples=40)
@given(dump=dumps(max_events=60), since=DAYS, until=DAYS, longer=st.booleans())
def test_every_figure_equals_the_oracle_in_any_window(
    shared_db: Database,  # noqa: F811 (the module-scope fixture of test_properties)
    dump_dir: Path,  # noqa: F811
    dump: tuple[list[str], list[dict[str, Any]]],
    since: date | None,
    until: date | None,
    longer: bool,
) -> None:
    lines, events = dump
    if since is not None and until is not None and since > until:
        since, until = until, since
    if longer:  # spread customers over days and weeks, so windows and weeks cut between them
        for e in events:
            if isinstance(e["customer_id"], int):
                e["timestamp"] += timedelta(days=3 * e["customer_id"])
        lines = [line(e) for e in events]
    reset(shared_db)
    publish(shared_db, lines, directory=dump_dir)
    expected = oracle.sessionize(events)
    window = Window(since, until)
    rep = report(shared_db, window)
    kept = oracle.in_window(expected.sessions, since, until)

    want = oracle.windowed_metrics(expected.sessions, expected.tb_events, since, until)
    for key, value in want.items():
        assert _close(getattr(rep, key), value) if isinstance(value, float) else getattr(rep, key) == value, key

    assert rep.conversion is not None
    want_conversion = oracle.conversion_by_visit(kept)
    assert_conversion_matches(rep.conversion, want_conversion)
    buyers = want["median_visits_before_order"]
    assert rep.conversion["buyers_median_order_session"] == (None if buyers is None else buyers + 1)

    assert rep.median_intervals is not None
    for key, (low, high, coverage) in oracle.median_intervals(kept).items():
        got = rep.median_intervals[key]
        assert _close(got["low"], low) and _close(got["high"], high) and _close(got["coverage"], coverage), key

    by_referrer = referrer_report(shared_db, window).as_json()
    assert_rows_equal(by_referrer, expected_by_referrer(kept))

    with shared_db.published_snapshot():
        weeks = weekly_medians(shared_db, window)
    want_weeks = oracle.weekly_medians(kept)
    assert [w.week_start for w in weeks] == [w["week_start"] for w in want_weeks]
    for got_week, want_week in zip(weeks, want_weeks, strict=True):
        for key, value in want_week.items():
            assert (
                _close(getattr(got_week, key), value) if isinstance(value, float) else (getattr(got_week, key) == value)
            ), key
