"""Property tests: for random event sets and random rule settings, everything xccel publishes (tb_events,
sessions, every metric, the cut count) equals the plain-Python oracle. Events go through the whole real
path: an NDJSON dump in a temporary directory, extract, sessionize, load, report."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import oracle
from tests.conftest import scratch_database
from tests.xccel_driver import assert_matches_oracle, line, publish, reset
from xccel_cli.config import SessionRules
from xccel_cli.db import Database, connect
from xccel_cli.pipeline import run_load, run_sessionize

START = datetime(2022, 4, 22, 21, 0, tzinfo=UTC)  # near midnight in UTC and in the zones below
# Steps between a customer's consecutive events, in seconds: ties, both sides of the 30-minute and
# 1-minute timeouts, and long gaps; plus the odd microsecond.
STEPS = st.sampled_from([0, 0, 1, 59, 60, 61, 300, 900, 1199, 1799, 1800, 1801, 2700, 3600, 7200, 30000])
OFFSETS = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=30))]
)
REFERRERS = st.sampled_from([None, None, "", "https://google.com", "https://google.com", "https://facebook.com"])
PAGES = st.sampled_from([None, "", "/", "/cart"])
TYPES = st.sampled_from(["page_view", "page_view", "search", "placed_order"])
CUSTOMERS = st.sampled_from([None, 1, 2, 3, 4, 5])  # None: anonymous

RULES = st.builds(
    SessionRules,
    timeout_minutes=st.sampled_from([1, 30, 45]),
    split_at_midnight=st.booleans(),
    timezone=st.sampled_from(["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata"]),
    split_on_referrer=st.booleans(),
    max_session_hours=st.sampled_from([None, None, 0.25, 0.5, 1.0, 2.5]),
)


@st.composite
def dumps(draw: st.DrawFn, max_events: int = 40) -> tuple[list[str], list[dict[str, Any]]]:
    """(dump lines, the events they stand for in line order): random customers, clustered times, random
    ids and line order, offsets, referrers, pages, orders, and duplicate lines (first one wins)."""
    size = draw(st.integers(1, max_events))
    ids = draw(st.permutations(range(1, size + 1)))
    clocks: dict[Any, datetime] = {}
    events: list[dict[str, Any]] = []
    for event_id in ids:
        customer = draw(CUSTOMERS)
        clocks[customer] = clocks.get(customer, START) + timedelta(
            seconds=draw(STEPS), microseconds=draw(st.sampled_from([0] * 8 + [1, 500000]))
        )
        events.append(
            {
                "event_id": event_id,
                "event_type": draw(TYPES),
                "customer_id": customer,
                "timestamp": clocks[customer],
                "referrer": draw(REFERRERS),
                "page": draw(PAGES),
            }
        )
    events = draw(st.permutations(events))
    lines = []
    for e in events:
        offset = draw(OFFSETS)
        stamp = (
            e["timestamp"].replace(tzinfo=None).isoformat()
            if offset is None
            else e["timestamp"].astimezone(offset).isoformat()
        )
        lines.append(line(e, stamp=stamp))
    for _ in range(draw(st.integers(0, 3))):  # duplicated event ids, same or other content
        original = draw(st.sampled_from(events))
        other = {**original, "timestamp": original["timestamp"] + timedelta(minutes=draw(st.integers(-90, 90)))}
        copy = draw(st.sampled_from([original, other]))
        position = draw(st.integers(events.index(original) + 1, len(lines)))
        lines.insert(position, line(copy))
        events.insert(position, copy)
    return lines, events


@pytest.fixture(scope="module")
def shared_db(pg_admin_url: str, migrated_template: str) -> Iterator[Database]:
    """One database for all examples of this module (tables are emptied between examples)."""
    with (
        scratch_database(pg_admin_url, "xccel_props", template=migrated_template) as url,
        connect(url, "public") as database,
    ):
        yield database


@pytest.fixture(scope="module")
def dump_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="xccel-props-") as folder:
        yield Path(folder)


COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(COMMON, max_examples=60)
@given(dump=dumps(), rules=RULES)
def test_published_result_equals_the_oracle(
    shared_db: Database, dump_dir: Path, dump: tuple[list[str], list[dict[str, Any]]], rules: SessionRules
) -> None:
    lines, events = dump
    reset(shared_db)
    publish(shared_db, lines, rules, directory=dump_dir)
    assert_matches_oracle(shared_db, events, rules)


@settings(COMMON, max_examples=30)
@given(first=dumps(max_events=25), second=dumps(max_events=15), rules=RULES, shift=st.integers(0, 2))
def test_incremental_equals_full_refresh_and_the_oracle(
    shared_db: Database,
    dump_dir: Path,
    first: tuple[list[str], list[dict[str, Any]]],
    second: tuple[list[str], list[dict[str, Any]]],
    rules: SessionRules,
    shift: int,
) -> None:
    """A second batch of late and new events (ids that may repeat the first batch's: already loaded)
    lands between, before and after the first batch's events: sessions merge and split."""
    lines_1, events_1 = first
    late = [
        {**e, "event_id": e["event_id"] + 1000, "timestamp": e["timestamp"] - timedelta(minutes=40 * shift)}
        for e in second[1]
    ]
    late.append(events_1[0])  # a line the first batch already loaded
    lines_2 = [line(e) for e in late]
    reset(shared_db)
    publish(shared_db, lines_1, rules, directory=dump_dir)
    incremental = publish(shared_db, lines_2, rules, directory=dump_dir)
    if rules.max_session_hours is None:
        assert not incremental.full_refresh
        touched = {
            e["customer_id"]
            for e in oracle.dedupe(events_1 + late)
            if isinstance(e["customer_id"], int) and e["event_id"] not in {x["event_id"] for x in events_1}
        }
        assert incremental.customers_rebuilt == len(touched)
    expected = assert_matches_oracle(shared_db, events_1 + late, rules)

    full = run_sessionize(shared_db, rules, full_refresh=True)
    assert full.full_refresh and full.events == len(expected.tb_events) and full.sessions == len(expected.sessions)
    run_load(shared_db)
    assert_matches_oracle(shared_db, events_1 + late, rules)
