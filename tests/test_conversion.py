"""Issue 14, "go past a median": conversion by visit number (Kaplan–Meier with censoring), 95 % intervals
(Wilson, Greenwood log-log, exact order statistics) and the --since/--until window, checked on hand-computed
cases and against the plain-Python oracle (tests/oracle.py), through the real pipeline into PostgreSQL."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import oracle
from tests.test_properties import dumps, shared_db, dump_dir  # noqa: F401 (module-scope fixtures reused)
from tests.xccel_driver import event, publish, published, reset
from xccel_cli.conversion import Window, median_interval, order_statistic_ranks, wilson
from xccel_cli.db import Database
from xccel_cli.errors import ConfigError
from xccel_cli.metrics import report

HOUR = timedelta(hours=1)


def visits(customer: int, first_id: int, day: str, sessions: int, order_in: int | None) -> list[dict[str, Any]]:
    """`sessions` sessions an hour apart (one event each, a second event in the order session)."""
    start = f"{day} 10:00:00"
    events = []
    at = oracle_time = event(0, customer, start)["timestamp"]
    for number in range(1, sessions + 1):
        events.append(event(first_id + 2 * number, customer, at))
        if number == order_in:
            events.append(event(first_id + 2 * number + 1, customer, at + timedelta(minutes=1), "placed_order"))
        at += 2 * HOUR
    del oracle_time
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
