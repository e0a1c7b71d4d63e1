"""The bookkeeping tables: one definition of "the published result is current", and an unchanged run that
decides so from the runs and publications tables alone, never reading raw_events."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.conftest import invoke_xccel
from tests.dumps import dump, random_events
from xccel_cli.config import SessionRules
from xccel_cli.db import Database, one_row
from xccel_cli.pipeline import ExtractOptions, run_all, run_extract
from xccel_cli.publications import latest_publication, publication_is_current
from xccel_cli.runs import newest_run_with_events_after


def raw_events_reads(url: str) -> int:
    """How often raw_events was scanned (sequentially or by an index), once every other session has ended
    (a session's statistics reach the shared counters when it ends)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        while one_row(conn.execute(others))[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = one_row(
            conn.execute(
                "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables"
                " WHERE relname = 'raw_events'"
            )
        )
    return int(row[0])


def test_an_unchanged_run_does_not_read_raw_events(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(dump(random_events(300, seed=8)))
    command = ["run-all", "--source", str(path), "--database-url", database_url]
    assert invoke_xccel(command).exit_code == 0
    before = raw_events_reads(database_url)
    same = invoke_xccel(command)
    assert same.stdout.startswith("source unchanged since run 1"), same.stdout + same.stderr
    assert raw_events_reads(database_url) == before
    # the counter does move when raw_events is read: the check above can fail
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT max(run_id) FROM raw_events").fetchone()
    assert raw_events_reads(database_url) > before


def test_one_staleness_definition_for_run_all_and_load(db: Database, tmp_path: Path) -> None:
    rules = SessionRules()
    assert latest_publication(db) is None and not publication_is_current(db, rules.as_dict())
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_bytes(dump(random_events(100, seed=1)))
    second.write_bytes(dump(random_events(100, seed=2)))
    result = run_all(db, ExtractOptions(str(first)), rules)
    published = latest_publication(db)
    assert published is not None and published["publication_id"] == result.load.publication_id
    assert published["covers_run_id"] == result.run_id and published["events"] == result.load.events
    assert publication_is_current(db, rules.as_dict())
    assert not publication_is_current(db, SessionRules(timeout_minutes=20).as_dict())  # other rules
    again = run_extract(db, ExtractOptions(str(first)))  # nothing new: still current
    assert again.loaded == 0 and publication_is_current(db, rules.as_dict())
    newer = run_extract(db, ExtractOptions(str(second)))  # new events after the publication: stale
    assert newer.loaded > 0
    assert newest_run_with_events_after(db, published["covers_run_id"]) == published["covers_run_id"] + 2
    assert not publication_is_current(db, rules.as_dict())
