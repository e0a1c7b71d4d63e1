"""Incremental runs: batches loaded by successive runs equal one full run; an unchanged source
is recognised without reading it; outlier timestamps do not upset later runs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from tests.conftest import invoke_xccel
from tests.dumps import START, dump, event, random_events
from tests.fault_server import FaultServer, fault_server
from xccel_cli.config import SessionRules
from xccel_cli.db import Database, connect
from xccel_cli.pipeline import ExtractOptions, RunAllResult, run_all
from xccel_cli.schema import init_db

__all__ = ["fault_server"]  # the fixture

RULES = SessionRules()


@pytest.fixture
def two_schemas(database_url: str) -> Iterator[tuple[Database, Database]]:
    """One database, two xccel schemas: 'full' gets everything at once, 'batched' gets batches."""
    with (
        connect(database_url, "full", create_schema=True) as full,
        connect(database_url, "batched", create_schema=True) as batched,
    ):
        yield full, batched


def reset(db: Database) -> None:
    db.conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(db.schema)))
    db.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(db.schema)))
    init_db(db)


def published(db: Database) -> tuple[list[tuple], list[tuple]]:
    events = db.conn.execute("SELECT * FROM tb_events ORDER BY event_id").fetchall()
    sessions = db.conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
    return events, sessions


def metrics(result: RunAllResult) -> dict:
    data = result.report.as_json()
    return {k: v for k, v in data.items() if k not in ("published_at", "publication_id")}


def load_batches(db: Database, folder: Path, batches: list[bytes], full_refresh: bool = False) -> list[RunAllResult]:
    results = []
    for number, body in enumerate(batches):
        path = folder / f"{db.schema}-{number}.json"
        path.write_bytes(body)
        result = run_all(db, ExtractOptions(str(path)), RULES, full_refresh=full_refresh)
        assert isinstance(result, RunAllResult)
        results.append(result)
    return results


minute_offsets = st.sampled_from([0, 1, 29, 30, 31, 59, 60, 61, 120, 24 * 60, 24 * 60 + 29, 365 * 24 * 60])
events_strategy = st.lists(
    st.tuples(
        st.integers(0, 9),
        st.integers(0, 6),
        minute_offsets,
        st.integers(0, 3),
        st.sampled_from(["page_view", "page_view", "placed_order"]),
    ),
    min_size=4,
    max_size=60,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=events_strategy, cuts=st.lists(st.integers(1, 59), min_size=1, max_size=4))
def test_batches_give_the_same_result_as_one_full_run(
    two_schemas: tuple[Database, Database], tmp_path: Path, raw: list, cuts: list[int]
) -> None:
    full, batched = two_schemas
    reset(full)
    reset(batched)
    # one line in ten repeats an earlier id with other content (the first line read wins) but the same
    # customer-id: anonymous lines are not kept, so a later run cannot know an anonymous line came first
    # (see the README's limits). Customer 0 is anonymous; times are steps of a few minutes from START,
    # so ties and exact 30:00 gaps are common.
    records: list[dict] = []
    for index, (repeat, customer, minutes, steps, kind) in enumerate(raw):
        record = event(index + 1, customer or None, START + timedelta(minutes=minutes * steps), kind)
        if repeat == 0 and records:
            earlier = records[index // 2]
            record["id"], record["event"]["customer-id"] = earlier["id"], earlier["event"]["customer-id"]
        records.append(record)
    if all(r["event"]["customer-id"] is None for r in records):
        records[0]["event"]["customer-id"] = 1
    points = sorted({c for c in cuts if c < len(records)})
    pieces = [records[a:b] for a, b in zip([0, *points], [*points, len(records)], strict=True)]

    expected = load_batches(full, tmp_path, [dump(records)])[-1]
    got = load_batches(batched, tmp_path, [dump(p) for p in pieces])
    assert published(batched) == published(full)
    assert metrics(got[-1]) == metrics(expected)
    # each later run rebuilt only the customers its batch touched
    for piece, result in zip(pieces[1:], got[1:], strict=True):
        customers = {r["event"]["customer-id"] for r in piece if r["event"]["customer-id"] is not None}
        assert result.sessionize.customers_rebuilt <= len(customers)


def test_full_refresh_rebuilds_everyone_with_the_same_result(
    two_schemas: tuple[Database, Database], tmp_path: Path
) -> None:
    full, batched = two_schemas
    records = random_events(400, customers=25, seed=2)
    load_batches(full, tmp_path, [dump(records)])
    load_batches(batched, tmp_path, [dump(records[:300])])
    refreshed = load_batches(batched, tmp_path, [dump(records[300:])], full_refresh=True)[0]
    assert refreshed.sessionize.full_refresh
    customers = {r["event"]["customer-id"] for r in records if r["event"]["customer-id"] is not None}
    assert refreshed.sessionize.customers_rebuilt == len(customers)
    assert published(batched) == published(full)


def test_outlier_timestamps_do_not_upset_later_runs(two_schemas: tuple[Database, Database], tmp_path: Path) -> None:
    full, batched = two_schemas
    day = [event(1, 1, START), event(2, 1, START + timedelta(minutes=10), "placed_order"), event(3, 2, START)]
    future = [event(4, 1, START + timedelta(days=366))]  # a clock a year ahead
    later = [event(5, 2, START + timedelta(minutes=20), "placed_order"), event(6, 3, START + timedelta(hours=1))]
    past = [event(7, 1, START - timedelta(days=365)), event(8, 3, START + timedelta(hours=1, minutes=5))]
    batches = [day + future, later, past]

    load_batches(full, tmp_path, [dump(day + future + later + past)])
    results = load_batches(batched, tmp_path, [dump(b) for b in batches])
    assert published(batched) == published(full)
    # the later runs rebuilt exactly the customers they brought events for, the outliers notwithstanding
    assert [r.sessionize.customers_rebuilt for r in results[1:]] == [2, 2]
    assert [r.extract.loaded for r in results] == [4, 2, 2]
    sessions = batched.conn.execute("SELECT session_id, event_count FROM sessions ORDER BY session_id").fetchall()
    assert sessions == [("1_1", 1), ("1_2", 2), ("1_3", 1), ("2_1", 2), ("3_1", 2)]


def runs_of(url: str) -> list[dict]:
    result = invoke_xccel(["runs", "--json", "--database-url", url])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_an_unchanged_file_is_recognised_without_reading_it(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(dump(random_events(500, seed=4)))
    first = invoke_xccel(["run-all", "--source", str(path), "--database-url", database_url])
    assert first.exit_code == 0, first.stderr

    same = invoke_xccel(["run-all", "--source", str(path), "--database-url", database_url])
    assert same.exit_code == 0, same.stderr
    assert same.stdout == "source unchanged since run 1: nothing to do (run 2; --full-refresh rebuilds anyway)\n"
    runs = runs_of(database_url)
    assert [r["status"] for r in runs] == ["unchanged", "succeeded"]
    assert runs[0]["lines_read"] is None  # nothing was read

    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # touched, same bytes: the checksum says unchanged
    touched = invoke_xccel(["run-all", "--source", str(path), "--json", "--database-url", database_url])
    run = json.loads(touched.stdout)["run"]
    assert (run["run_id"], run["status"], run["source"]) == (3, "unchanged", str(path))
    assert run["unchanged_since_run_id"] == 1  # the run that loaded the data, not the no-op run 2
    assert run["lines_read"] is None and run["stage_seconds"] == {}

    other_rules = invoke_xccel(
        ["run-all", "--source", str(path), "--timeout-minutes", "20", "--json", "--database-url", database_url]
    )
    assert json.loads(other_rules.stdout)["run"]["lines_read"] == 500  # new rules: everything is redone

    with path.open("ab") as handle:
        handle.write(dump([event(10_000, 1, START)]))
    grown = invoke_xccel(
        ["run-all", "--source", str(path), "--timeout-minutes", "20", "--json", "--database-url", database_url]
    )
    run = json.loads(grown.stdout)["run"]
    assert (run["loaded"], run["already_loaded"], run["customers_rebuilt"]) == (1, run["already_loaded"], 1)

    forced = invoke_xccel(
        [
            "run-all",
            "--source",
            str(path),
            "--timeout-minutes",
            "20",
            "--full-refresh",
            "--json",
            "--database-url",
            database_url,
        ]
    )
    assert json.loads(forced.stdout)["run"]["lines_read"] == 501


def test_an_unchanged_http_source_is_recognised_with_a_conditional_get(
    database_url: str, fault_server: FaultServer
) -> None:
    body = dump(random_events(500, seed=4))
    url = fault_server.add("/events.json", body)
    assert invoke_xccel(["run-all", "--source", url, "--database-url", database_url]).exit_code == 0
    same = invoke_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert same.exit_code == 0, same.stderr
    assert same.stdout.startswith("source unchanged since run 1: nothing to do")
    conditional = fault_server.requests_for("/events.json")[-1]
    assert conditional.headers["If-None-Match"] == '"v1"' and conditional.status == 304
    assert len(fault_server.requests_for("/events.json")) == 2

    fault_server.add("/events.json", body + dump([event(10_000, 1, START)]), headers={"ETag": '"v2"'})
    changed = invoke_xccel(["run-all", "--source", url, "--json", "--database-url", database_url])
    assert json.loads(changed.stdout)["run"]["loaded"] == 1
    assert [r.status for r in fault_server.requests_for("/events.json")] == [200, 304, 200, 200]
    with psycopg.connect(database_url) as conn:
        fingerprint = conn.execute("SELECT source_fingerprint FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
    assert fingerprint["etag"] == '"v2"'
