"""--engine spark: one contract, two engines.

The conformance cases run the PostgreSQL path and the Spark path over the same dump and rules into the
same database, and compare every row of tb_events and sessions (both ways), every run counter, every
median and every reject. They need Java and pyspark (`pip install -e '.[spark]'`); without them they skip
with a message, and CI installs both.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import (
    ROOT,
    invoke_xccel,
    pause_hook_environment,
    run_xccel,
    scratch_database,
    started_process,
)
from tests.dumps import START, event, line, random_events
from tests.test_extract import BAD_LINES
from xccel_cli.config import SessionRules
from xccel_cli.db import Database, connect
from xccel_cli.errors import DataQualityError, SourceError
from xccel_cli.metrics import report
from xccel_cli.pipeline import ExtractOptions, RunAllResult, run_all
from xccel_cli.schema import init_db

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed: pip install -e '.[spark]'")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Java is not installed (Debian: apt-get install default-jre-headless)", allow_module_level=True)

from xccel_cli.spark import job as spark_job  # noqa: E402
from xccel_cli.spark.cluster import standalone_cluster  # noqa: E402
from xccel_cli.spark.engine import SparkSettings, run_all_spark  # noqa: E402

# Spark jobs and the real xccel command (one test starts a standalone cluster)
pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"
MEDIANS = (
    "median_visits_before_order",
    "median_session_duration_minutes_before_order",
    "median_total_minutes_before_order",
)
COUNTERS = ("lines_read", "loaded", "anonymous", "duplicates", "already_loaded", "rejected")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] session for the whole suite: two shuffle partitions, no UI, and small file splits so
    that every test file is read as several splits (the "first line wins" order must hold across them)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = spark_job.session_builder(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.files.maxPartitionBytes": "16384",
            "spark.sql.files.openCostInBytes": "0",
            "spark.driver.memory": "1g",
        },
        app_name="xccel-tests",
    ).getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@contextmanager
def fresh_database_url(pg_admin_url: str) -> Iterator[str]:
    """A new database with the xccel schema, dropped at the end (for hypothesis examples, which cannot use
    function fixtures, and for tests that need two)."""
    with scratch_database(pg_admin_url, "xccel_spark") as url:
        with connect(url, "public", create_schema=True) as database:
            init_db(database)
        yield url


@contextmanager
def fresh_db(pg_admin_url: str) -> Iterator[Database]:
    with fresh_database_url(pg_admin_url) as url, connect(url, "public") as database:
        yield database


@dataclass
class Outcome:
    run_id: int
    tb_events: list[tuple[Any, ...]]
    sessions: list[tuple[Any, ...]]
    counters: dict[str, int]
    report: dict[str, Any]
    rejects: list[tuple[Any, ...]]
    engine: str


def _snapshot(db: Database, result: RunAllResult, rejects: list[tuple[Any, ...]]) -> Outcome:
    conn = db.conn
    tb_events = conn.execute("SELECT * FROM tb_events ORDER BY event_id").fetchall()
    sessions = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
    row = conn.execute(f"SELECT {', '.join(COUNTERS)} FROM runs WHERE run_id = %s", (result.run_id,)).fetchone()
    engine = conn.execute("SELECT engine FROM publications ORDER BY publication_id DESC LIMIT 1").fetchone()[0]
    figures = report(db).as_json()
    kept = {k: figures[k] for k in (*MEDIANS, "customers", "customers_with_orders", "sessions", "events")}
    kept["cut_sessions"] = figures.get("cut_sessions")
    return Outcome(result.run_id, tb_events, sessions, dict(zip(COUNTERS, row, strict=True)), kept, rejects, engine)


def run_postgres(db: Database, sources: list[str], rules: SessionRules, **options: Any) -> Outcome:
    extract = ExtractOptions(" ".join(sources), sources=sources if len(sources) > 1 else [], **options)
    result = run_all(db, extract, rules, full_refresh=True)
    assert isinstance(result, RunAllResult)
    rejects = db.conn.execute(
        "SELECT line_number, reason, detail, raw_line FROM rejects WHERE run_id = %s ORDER BY line_number",
        (result.run_id,),
    ).fetchall()
    return _snapshot(db, result, rejects)


def run_spark(
    db: Database,
    session: Any,
    sources: list[str],
    rules: SessionRules,
    warehouse: Path,
    publish: str = "all",
    **options: Any,
) -> Outcome:
    extract = ExtractOptions(" ".join(sources), sources=sources if len(sources) > 1 else [], **options)
    settings = SparkSettings(str(warehouse), publish=publish)
    result = run_all_spark(db, extract, rules, settings, wait=False, session=session)
    rejects = [
        (r.line_number, r.reason, r.detail, r.raw_line)
        for r in spark_job.read_output(session, str(warehouse), "rejects").orderBy("line_number").collect()
    ]
    return _snapshot(db, result, rejects)


def assert_same(
    db: Database, session: Any, sources: list[str], rules: SessionRules, warehouse: Path, **options: Any
) -> tuple[Outcome, Outcome]:
    """Both engines over the same input into the same database; everything published must be equal."""
    expected = run_postgres(db, sources, rules, **options)
    actual = run_spark(db, session, sources, rules, warehouse, **options)
    assert expected.engine == "postgres" and actual.engine == "spark"
    assert actual.counters == expected.counters
    assert actual.rejects == expected.rejects
    assert len(actual.tb_events) == len(expected.tb_events)
    assert set(actual.tb_events) - set(expected.tb_events) == set()
    assert set(expected.tb_events) - set(actual.tb_events) == set()
    assert actual.tb_events == expected.tb_events  # also every double, bit for bit
    assert actual.sessions == expected.sessions
    assert actual.report == expected.report
    # the medians the Spark job computes itself (exact percentile) equal PostgreSQL's percentile_cont
    sessions = spark_job.read_output(session, str(warehouse), "sessions")
    assert spark_job.medians(sessions) == {k: expected.report[k] for k in MEDIANS}
    return expected, actual


# --- conformance cases ---------------------------------------------------------------------------------------


def test_the_shipped_example_gives_the_same_result_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    warehouse = tmp_path / "warehouse"
    expected, actual = assert_same(db, spark, [str(EXAMPLE)], SessionRules(), warehouse)
    assert expected.counters["rejected"] > 0 and expected.counters["duplicates"] > 0
    # each run's row has every stage it ran, the ones before and after its outcome too (init_db, report)
    stages = {
        run_id: set(db.conn.execute("SELECT stage_seconds FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0])
        for run_id in (expected.run_id, actual.run_id)
    }
    assert stages == {
        expected.run_id: {"init_db", "extract", "sessionize", "load", "report"},
        actual.run_id: {"init_db", "spark_job", "publish", "load", "report"},
    }
    assert expected.report["median_visits_before_order"] is not None
    # the outputs: four Parquet tables in the run folder the pointer names, UTC microsecond timestamps
    folder = warehouse / (warehouse / spark_job.POINTER).read_text().strip()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(spark_job.OUTPUTS)
    assert str(pq.read_table(folder / "sessions").schema.field("started_at").type) == "timestamp[us, tz=UTC]"
    assert str(pq.read_table(folder / "tb_events").schema.field("timestamp").type) == "timestamp[us, tz=UTC]"


def _dirty_files(tmp_path: Path) -> list[str]:
    """Two files: every reject reason, lines Spark's own casts would judge differently, conflicting
    duplicates across the files (the later path's copy must lose), CRLF lines, no final newline."""
    bad = [b for b, _ in BAD_LINES] + [
        b'{"id": 20, "type": 5, "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}}',  # bad_type
        b'{"id": 21, "type": "page_view", "event": 5}',  # bad_structure
        b'{"id": 22, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "page": "\\ud800"}}',
        b'{"id": 23, "type": "page_view", "event": {"timestamp": "2022-04-22", "customer-id": 1}}',  # date only
        b'{"id": 24, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}} x',
        b'{"id": 25, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00.1234567Z", "customer-id": 7}}',
        b"   ",
    ]
    records = random_events(1500, customers=40, seed=3, first_id=1000)
    first = [line(r).rstrip(b"\n") for r in records[:900]]
    for i, b in enumerate(bad):
        first.insert(3 + i * 40, b)
    # ids 1000..1099 again in the second file, with other customers and times: the first file's copies win
    conflicting = [
        event(1000 + i, 41 + i % 3, START + timedelta(hours=5, seconds=i), "placed_order") for i in range(100)
    ]
    second = [line(r).rstrip(b"\n") + b"\r" for r in conflicting]
    second += [line(r).rstrip(b"\n") for r in records[900:]]
    b_path = tmp_path / "b-part.ndjson"
    b_path.write_bytes(b"\n".join(second))  # no newline at the end: the last line is whole, so it is kept
    a_path = tmp_path / "a-part.ndjson"
    a_path.write_bytes(b"\n".join(first) + b"\n")
    return [str(a_path), str(b_path)]


def test_dirty_files_duplicates_across_files_ga_universal_and_cap(db: Database, spark: Any, tmp_path: Path) -> None:
    sources = _dirty_files(tmp_path)
    rules = SessionRules(
        split_at_midnight=True, split_on_referrer=True, timezone="America/New_York", max_session_hours=1
    )
    expected, actual = assert_same(db, spark, sources, rules, tmp_path / "warehouse", max_reject_share=1.0)
    reasons = {reason for _, reason, _, _ in actual.rejects}
    assert {
        "invalid_json",
        "invalid_utf8",
        "missing_field",
        "bad_timestamp",
        "bad_id",
        "bad_customer_id",
        "bad_type",
        "bad_structure",
        "nul_character",
        "empty_line",
    } <= reasons  # a lone \ud800 is refused by msgspec itself: invalid_json on both engines
    assert expected.counters["duplicates"] >= 100
    # first line wins across files: no published event belongs to the second file's customers 41-43
    assert not [row for row in actual.tb_events if 1000 <= row[0] < 1100 and row[2] in (41, 42, 43)]
    assert expected.report["cut_sessions"] and expected.report["cut_sessions"] > 0


def test_a_heavy_customer_and_midnight_at_plus_13_45(db: Database, spark: Any, tmp_path: Path) -> None:
    # one customer with most of the events (one window task in Spark: the skew the README describes)
    records = [
        event(
            i, 7, START + timedelta(minutes=7 * i, microseconds=i * 37), "placed_order" if i % 97 == 0 else "page_view"
        )
        for i in range(1, 6001)
    ]
    records += random_events(800, customers=30, seed=11, first_id=10_000)
    path = tmp_path / "heavy.ndjson.gz"
    path.write_bytes(gzip.compress(b"".join(line(r) for r in records)))
    # midnight at +13:45 (the other zones: America/New_York above, UTC and Asia/Kolkata in the differential)
    rules = SessionRules(split_at_midnight=True, timezone="Pacific/Chatham", timeout_minutes=31)
    assert_same(db, spark, [str(path)], rules, tmp_path / "warehouse")


def test_a_cap_below_a_microsecond_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    """A cap that rounds to zero microseconds made every event of every session a cut in Spark (the first
    included) and PostgreSQL's recursion endless: both take one microsecond, the timestamps' step."""
    micro = timedelta(microseconds=1)
    records = [event(1, 7, START), event(2, 7, START), event(3, 7, START + micro)]
    records += [event(4, 7, START + micro, "placed_order"), event(5, 7, START + timedelta(minutes=1))]
    path = tmp_path / "tiny-cap.ndjson"
    path.write_bytes(b"".join(line(r) for r in records))
    expected, _ = assert_same(db, spark, [str(path)], SessionRules(max_session_hours=1e-10), tmp_path / "warehouse")
    assert expected.report["cut_sessions"] == 2 and expected.report["sessions"] == 3


def test_a_last_line_without_a_newline_is_a_cut_only_when_it_stops_early_on_both_engines(
    db: Database, spark: Any, tmp_path: Path
) -> None:
    """A complete line refused for what it holds (a missing field) stays a reject at the stream's end too; the
    Spark job took every undecodable last line for a cut download. A line stopping inside a number is one."""
    records = [event(i, 7, START + timedelta(minutes=i)) for i in range(1, 6)]
    whole = tmp_path / "whole.ndjson"
    whole.write_bytes(b"".join(line(r) for r in records) + b'{"id": 999, "type": "page_view"}')
    expected, _ = assert_same(db, spark, [str(whole)], SessionRules(), tmp_path / "warehouse", max_reject_share=0.5)
    assert [reject[1] for reject in expected.rejects] == ["missing_field"]
    cut = tmp_path / "cut.ndjson"
    cut.write_bytes(b"".join(line(r) for r in records) + b'{"id": 999, "type": "page_view", "event": {"n": -')
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_postgres(db, [str(cut)], SessionRules(), max_reject_share=0.5)
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_spark(db, spark, [str(cut)], SessionRules(), tmp_path / "warehouse", max_reject_share=0.5)


def test_a_refused_source_is_named_alike_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    """Over the refused limit both engines end with the same sentence: a JSON array (with the command that converts
    it), a web page, or the plain question."""
    records = [event(i, 7, START + timedelta(minutes=i)) for i in range(1, 6)]
    array = json.dumps([json.loads(line(r)) for r in records], indent=2).encode() + b"\n"
    cases = {
        "array": (b"\n" + array, "it looks like one JSON array, not one event per line (NDJSON); convert it first"),
        "page": (b"<!DOCTYPE html>\n<html>\n</html>\n", "it looks like an HTML or XML page"),
        "text": (b"hello\nworld\n", "Is the source really an event dump?"),
    }
    for name, (body, sentence) in cases.items():
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(body)
        with pytest.raises(DataQualityError) as on_postgres:
            run_postgres(db, [str(path)], SessionRules())
        with pytest.raises(DataQualityError) as on_spark:
            run_spark(db, spark, [str(path)], SessionRules(), tmp_path / "warehouse")
        assert sentence in str(on_postgres.value), name
        assert str(on_spark.value) == str(on_postgres.value), name


def test_a_line_over_the_maximum_length_is_refused_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    """--max-line-bytes: a longer line is line_too_long with its first bytes kept, on Spark too (it loaded it)."""
    records = [event(i, 7, START + timedelta(minutes=i)) for i in range(1, 6)]
    long_order = event(6, 8, START, "placed_order", page="x" * 2000)
    path = tmp_path / "long.ndjson"
    path.write_bytes(b"".join(line(r) for r in [*records, long_order]))
    expected, _ = assert_same(
        db, spark, [str(path)], SessionRules(), tmp_path / "warehouse", max_line_bytes=1024, max_reject_share=0.5
    )
    [(line_number, reason, detail, raw_line)] = expected.rejects
    assert (line_number, reason, len(raw_line)) == (6, "line_too_long", 1024)
    assert detail == "the line is longer than 1,024 bytes (XCCEL_MAX_LINE_BYTES); its first 1,024 bytes are kept"
    assert expected.report["customers_with_orders"] == 0


def test_a_number_postgresql_refuses_refuses_only_stored_lines_on_both_engines(
    db: Database, spark: Any, tmp_path: Path
) -> None:
    """An anonymous line that is not stored claims its id whatever its numbers; Spark refused it as bad_number,
    so a later order with that id loaded there and not in PostgreSQL."""
    records = [event(i, 7, START + timedelta(minutes=i)) for i in range(1, 6)]
    anonymous = b'{"id": 50, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "n": 1e-20000}}\n'
    order = line(event(50, 8, START, "placed_order"))
    path = tmp_path / "numbers.ndjson"
    path.write_bytes(b"".join(line(r) for r in records) + anonymous + order)
    expected, _ = assert_same(db, spark, [str(path)], SessionRules(), tmp_path / "warehouse", max_reject_share=0.5)
    assert (expected.counters["anonymous"], expected.counters["duplicates"], expected.counters["rejected"]) == (1, 1, 0)
    assert expected.report["customers_with_orders"] == 0


def test_referrers_and_pages_that_are_not_strings_read_as_postgresql_reads_them(
    db: Database, spark: Any, tmp_path: Path
) -> None:
    """payload -> 'event' ->> 'referrer' gives jsonb's text: numbers as numeric prints them (1e2 is 100, 1.50
    keeps its zero), objects with their keys by length then bytes, the last of duplicate keys. The Spark job
    printed Python's floats and key order instead, so sessions split on the referrer differed."""
    stamp = "2026-03-01T08:0{}:00"
    lines = [
        b'{"id": 1, "type": "page_view", "event": {"customer-id": 7, "timestamp": "%s", "referrer": 1.50,'
        b' "page": {"b": 1, "a": [1.0E1, -0.0], "aa": "\\u0001\\n", "b": 2}}}' % stamp.format(0).encode(),
        b'{"id": 2, "type": "page_view", "event": {"customer-id": 7, "timestamp": "%s", "referrer": 1.5}}'
        % stamp.format(1).encode(),
        b'{"id": 3, "type": "placed_order", "event": {"customer-id": 7, "timestamp": "%s", "referrer": 1e2}}'
        % stamp.format(2).encode(),
        b'{"id": 4, "type": "page_view", "event": {"customer-id": 7, "timestamp": "%s", "referrer": 100}}'
        % stamp.format(3).encode(),
    ]
    path = tmp_path / "typed-referrers.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert_same(db, spark, [str(path)], SessionRules(split_on_referrer=True), tmp_path / "warehouse")
    rows = db.conn.execute("SELECT referrer, landing_page FROM sessions ORDER BY session_number").fetchall()
    assert rows == [("1.50", '{"a": [10, 0.0], "b": 2, "aa": "\\u0001\\n"}'), ("1.5", None), ("100", None)]


def test_gaps_of_centuries_give_postgresqls_seconds_bit_for_bit(db: Database, spark: Any, tmp_path: Path) -> None:
    """time is the exact count of microseconds / 1e6 rounded once (PostgreSQL's numeric epoch, cast). Past 2**53
    microseconds (about 285 years: an outlier clock in year 1 or 9999) a double of the count is already
    rounded, and the job's division rounded a second time: a last bit off for about one gap in four."""
    stamps = ["0001-01-01T00:00:00Z", "2022-04-22T10:00:00.142542Z", "9999-12-31T23:59:59Z"]
    records = [
        {"id": i, "type": "page_view", "event": {"customer-id": 7, "timestamp": t}} for i, t in enumerate(stamps, 1)
    ]
    path = tmp_path / "centuries.ndjson"
    path.write_bytes(b"".join(line(r) for r in records))
    assert_same(db, spark, [str(path)], SessionRules(), tmp_path / "warehouse")
    times = [row[0] for row in db.conn.execute('SELECT "time" FROM tb_events ORDER BY event_id').fetchall()]
    at = [datetime.fromisoformat(t) for t in stamps]
    assert times == [None, (at[1] - at[0]).total_seconds(), (at[2] - at[1]).total_seconds()]


def test_midnight_in_cet_keeps_summer_time_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    """CET is an IANA zone with summer time (as Java reads it); PostgreSQL's AT TIME ZONE took it for the fixed
    abbreviation. 21:50Z and 22:10Z on a summer day are either side of midnight in CET, not in UTC+1."""
    stamps = ["2026-06-29T21:50:00Z", "2026-06-29T22:10:00Z", "2026-01-10T22:50:00Z", "2026-01-10T23:10:00Z"]
    records = [event(i + 1, 1 + i // 2, START) for i in range(len(stamps))]
    for record, stamp in zip(records, stamps, strict=True):
        record["event"]["timestamp"] = stamp
    path = tmp_path / "cet.ndjson"
    path.write_bytes(b"".join(line(r) for r in records))
    rules = SessionRules(split_at_midnight=True, timezone="CET")
    expected, _ = assert_same(db, spark, [str(path)], rules, tmp_path / "warehouse")
    assert expected.report["sessions"] == 4


def test_midnight_in_est_on_a_server_with_another_abbreviation_set_on_both_engines(
    db: Database, spark: Any, database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL's AT TIME ZONE reads a name among the server's timezone_abbreviations first: under
    'Australia', EST is UTC+10 (midnight at 14:00Z), where Spark and the oracle read the IANA zone EST."""
    from psycopg import sql

    stamps = ["2022-04-22T04:50:00Z", "2022-04-22T05:10:00Z", "2022-04-22T13:50:00Z", "2022-04-22T14:10:00Z"]
    records = [event(i + 1, 1 + i // 2, START) for i in range(len(stamps))]
    for record, stamp in zip(records, stamps, strict=True):
        record["event"]["timestamp"] = stamp
    path = tmp_path / "est.ndjson"
    path.write_bytes(b"".join(line(r) for r in records))
    name = sql.Identifier(db.conn.info.dbname)
    db.conn.execute(sql.SQL("ALTER DATABASE {} SET timezone_abbreviations = 'Australia'").format(name))
    with connect(database_url, "public") as fresh:  # new sessions take the database's setting
        rules = SessionRules(split_at_midnight=True, timezone="EST")
        expected, _ = assert_same(fresh, spark, [str(path)], rules, tmp_path / "warehouse")
    assert [row[8] for row in expected.tb_events] == ["1_1", "1_2", "2_1", "2_1"]


def test_files_named_with_glob_characters_or_a_leading_underscore_are_read_as_named(
    db: Database, spark: Any, tmp_path: Path
) -> None:
    """run-all expands local globs itself; the job globbed each file it was handed again (a file named
    dump[1].ndjson was "not found", a*b.ndjson also read axxb.ndjson), and Spark's reader skipped names
    starting with '_' or '.' as hidden files: their lines were neither loaded nor rejected."""
    from xccel_cli.source import expand_sources

    names = ["dump[1].ndjson", "a*b.ndjson", "axxb.ndjson", "_part.ndjson", "q?{x,y}.ndjson", "back\\slash.ndjson"]
    records = random_events(60, customers=6, seed=17)
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"".join(line(r) for r in records[i * 10 : (i + 1) * 10]))
    (tmp_path / "empty.ndjson").write_bytes(b"")
    sources = expand_sources([str(tmp_path / "*.ndjson")])
    assert len(sources) == len(names) + 1
    expected, _ = assert_same(db, spark, sources, SessionRules(), tmp_path / "warehouse")
    assert expected.counters["lines_read"] == 60
    # one file given alone, by its name
    expected, _ = assert_same(db, spark, [str(tmp_path / "_part.ndjson")], SessionRules(), tmp_path / "warehouse")
    assert expected.counters["lines_read"] == 10
    # one file under two names is one source: the job merges them by path, run-all's expansion now too (extract
    # read the file twice, every line of the second reading a duplicate)
    (tmp_path / "sub").mkdir()
    twice = [str(tmp_path / "_part.ndjson"), str(tmp_path / "sub" / ".." / "_part.ndjson")]
    on_postgres = run_postgres(db, expand_sources(twice), SessionRules())
    on_spark = run_spark(db, spark, twice, SessionRules(), tmp_path / "warehouse")
    assert on_spark.counters == on_postgres.counters and on_postgres.counters["lines_read"] == 10
    # a name Spark's reader always skips (a Hadoop copy in progress) is refused, not read as empty
    unfinished = tmp_path / "dump.ndjson._COPYING_"
    shutil.copy(tmp_path / "_part.ndjson", unfinished)
    with pytest.raises(SourceError, match="Spark does not read .*_COPYING_"):
        run_spark(db, spark, [str(unfinished)], SessionRules(), tmp_path / "warehouse")


def test_midnight_in_zones_java_does_not_name_on_both_engines(db: Database, spark: Any, tmp_path: Path) -> None:
    """ROC (Asia/Taipei) and Factory (UTC) are IANA names xccel accepts and PostgreSQL reads, but Java's zone
    database leaves them out: the Spark job failed (INVALID_TIMEZONE) where PostgreSQL published."""
    stamps = ["2022-04-22T15:50:00Z", "2022-04-22T16:10:00Z", "2022-04-22T23:50:00Z", "2022-04-23T00:10:00Z"]
    records = [event(i + 1, 1 + i // 2, START) for i in range(len(stamps))]
    for record, stamp in zip(records, stamps, strict=True):
        record["event"]["timestamp"] = stamp
    path = tmp_path / "zones.ndjson"
    path.write_bytes(b"".join(line(r) for r in records))
    for zone, split in (("ROC", ["1_1", "1_2", "2_1", "2_1"]), ("Factory", ["1_1", "1_1", "2_1", "2_2"])):
        rules = SessionRules(split_at_midnight=True, timezone=zone)
        expected, _ = assert_same(db, spark, [str(path)], rules, tmp_path / "warehouse")
        assert [row[8] for row in expected.tb_events] == split


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10_000),
    count=st.integers(1, 400),
    timeout=st.sampled_from([1, 30, 45]),
    midnight=st.booleans(),
    referrer=st.booleans(),
    cap=st.sampled_from([None, 0.5, 2]),
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "Europe/Amsterdam"]),
)
def test_differential_generated_dumps_and_rules(
    pg_admin_url: str,
    spark: Any,
    seed: int,
    count: int,
    timeout: int,
    midnight: bool,
    referrer: bool,
    cap: float | None,
    zone: str,
) -> None:
    import random

    rng = random.Random(seed)
    records = random_events(count, customers=rng.randrange(1, 15), seed=seed)
    for r in records:
        if rng.random() < 0.3:
            r["event"]["referrer"] = rng.choice(["https://a", "https://b", ""])
        if rng.random() < 0.1:
            r["event"]["timestamp"] = (
                START + timedelta(seconds=rng.randrange(0, 86400 * 2), microseconds=rng.randrange(10**6))
            ).isoformat() + "+02:00"
    if records and rng.random() < 0.5:
        records.append(dict(records[0], type="placed_order"))  # a duplicate id: the first line wins
    rules = SessionRules(
        timeout_minutes=timeout,
        split_at_midnight=midnight,
        split_on_referrer=referrer,
        timezone=zone,
        max_session_hours=cap,
    )
    folder = Path(tempfile.mkdtemp(prefix="xccel-spark-hyp-"))
    try:
        path = folder / "dump.ndjson"
        path.write_bytes(b"".join(line(r) for r in records))
        with fresh_db(pg_admin_url) as db:
            assert_same(db, spark, [str(path)], rules, folder / "warehouse")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the warehouse, the gotchas --------------------------------------------------------------------------------


def test_a_second_run_adds_only_new_events_and_a_failed_one_leaves_the_output(
    pg_admin_url: str, spark: Any, tmp_path: Path
) -> None:
    warehouse = tmp_path / "warehouse"
    records = random_events(300, customers=10, seed=5)
    first = tmp_path / "first.ndjson"
    first.write_bytes(b"".join(line(r) for r in records[:200]))
    second = tmp_path / "second.ndjson"
    second.write_bytes(b"".join(line(r) for r in records[150:]))
    with fresh_db(pg_admin_url) as db_spark, fresh_db(pg_admin_url) as db_pg:
        run_spark(db_spark, spark, [str(first)], SessionRules(), warehouse)
        later = run_spark(db_spark, spark, [str(second)], SessionRules(), warehouse)
        run_postgres(db_pg, [str(first)], SessionRules())
        expected = run_postgres(db_pg, [str(second)], SessionRules())
        assert later.counters == expected.counters and later.counters["already_loaded"] > 0
        assert later.tb_events == expected.tb_events and later.sessions == expected.sessions

        pointer = (warehouse / spark_job.POINTER).read_text()
        folders = sorted(p.name for p in warehouse.iterdir())
        garbage = tmp_path / "garbage.ndjson"
        garbage.write_bytes(b"not json\n" * 10)
        with pytest.raises(DataQualityError, match="refused 10 of 10 lines"):
            run_spark(db_spark, spark, [str(garbage)], SessionRules(), warehouse)
        assert (warehouse / spark_job.POINTER).read_text() == pointer
        assert sorted(p.name for p in warehouse.iterdir()) == folders
        # a last line cut short with no newline after it: the download was truncated, nothing is written
        cut = tmp_path / "cut.ndjson.gz"
        cut.write_bytes(gzip.compress(b"".join(line(r) for r in records[:50]) + line(records[50])[:30]))
        with pytest.raises(DataQualityError, match="ends in a cut line"):
            run_spark(db_spark, spark, [str(cut)], SessionRules(), warehouse)
        assert (warehouse / spark_job.POINTER).read_text() == pointer
        assert sorted(p.name for p in warehouse.iterdir()) == folders
        assert run_spark_tables_equal(spark, warehouse, later)


def run_spark_tables_equal(session: Any, warehouse: Path, outcome: Outcome) -> bool:
    rows = spark_job.read_output(session, str(warehouse), "sessions").count()
    return rows == len(outcome.sessions)


def test_the_jvm_keeps_its_temporary_files_in_the_suites_folder(spark: Any) -> None:
    """Java ignores TMPDIR: the suite points the driver's java.io.tmpdir and Spark's scratch directories at its own
    temporary folder (tests/conftest.py), which it removes at the end, so no JVM leaves files in /tmp."""
    jvm = spark.sparkContext._jvm
    assert jvm.System.getProperty("java.io.tmpdir") == tempfile.gettempdir()
    assert jvm.System.getenv("SPARK_LOCAL_DIRS") == tempfile.gettempdir()


def test_medians_are_exact_percentiles_not_approximations(spark: Any) -> None:
    rows = [
        (f"{c}_{n}", c, n, minutes, order, first_order)
        for c, first_order, sessions in (
            (1, 2, [(1, 1.0, False), (2, 2.0, True)]),
            (2, 3, [(1, 10.0, False), (2, 4.0, False), (3, 0.0, True)]),
        )
        for n, minutes, order in sessions
    ]
    frame = spark.createDataFrame(
        rows,
        "session_id string, customer_id long, session_number int, duration_minutes double, has_order boolean,"
        " first_order_session_number int",
    )
    figures = spark_job.medians(frame)
    # visits before the first order: [1, 2] -> 1.5; durations before: [1, 10, 4] -> 4; totals: [1, 14] -> 7.5
    assert figures == {
        "median_visits_before_order": 1.5,
        "median_session_duration_minutes_before_order": 4.0,
        "median_total_minutes_before_order": 7.5,
    }


def test_the_session_time_zone_and_parquet_type_cannot_be_overridden() -> None:
    builder = spark_job.session_builder(
        "local[1]", {"spark.sql.session.timeZone": "Europe/Paris", "spark.sql.shuffle.partitions": "8"}
    )
    options = builder._options  # what getOrCreate would apply
    assert options["spark.sql.session.timeZone"] == "UTC"
    assert options["spark.sql.parquet.outputTimestampType"] == "TIMESTAMP_MICROS"
    assert options["spark.sql.shuffle.partitions"] == "8"


# --- what goes into PostgreSQL ---------------------------------------------------------------------------------


def _answers(database_url: str) -> dict[str, Any]:
    """What a reader gets: `xccel report --json`, a real `xccel serve`'s JSON and dashboard, the charts' rows;
    without what names the publication itself."""
    from tests.test_serve import Server
    from xccel_cli.dashboard import dashboard_data

    reported = invoke_xccel(["report", "--json", "--database-url", database_url])
    assert reported.exit_code == 0, reported.stderr
    figures = json.loads(reported.stdout)
    server = Server(database_url)
    try:
        served = server.get_json("/metrics/orders")
        referrers = server.get_json("/metrics/referrers")
        page = server.request("/dashboard")
    finally:
        assert server.stop() == 0, server.log()
        server.log_path.unlink(missing_ok=True)
    assert page.status == 200 and "<svg" in page.text
    with connect(database_url, "public") as db:
        charts = dashboard_data(db)
    for answer in (figures, served):
        for key in ("published_at", "publication_id"):
            answer.pop(key, None)
    return {
        "report": figures,
        "served": served,
        "referrers": referrers,
        "charts": {name: getattr(charts, name) for name in ("visits", "durations", "referrers", "daily", "funnel")},
        "weeks": charts.weeks,
    }


def test_publishing_sessions_only_answers_as_the_full_publication(
    pg_admin_url: str, spark: Any, tmp_path: Path
) -> None:
    """--publish sessions: tb_events stays in the warehouse; report, serve and the dashboard answer the same."""
    with fresh_database_url(pg_admin_url) as full_url, fresh_database_url(pg_admin_url) as lean_url:
        with connect(full_url, "public") as full:
            run_postgres(full, [str(EXAMPLE)], SessionRules())
        with connect(lean_url, "public") as lean:
            outcome = run_spark(lean, spark, [str(EXAMPLE)], SessionRules(), tmp_path / "wh", publish="sessions")
            assert outcome.engine == "spark" and outcome.tb_events == [] and outcome.sessions
            kept = lean.conn.execute(
                "SELECT sum(events), sum(orders) FROM published_event_days WHERE run_id = %s", (outcome.run_id,)
            ).fetchone()
            published = lean.conn.execute(
                "SELECT events FROM publications ORDER BY publication_id DESC LIMIT 1"
            ).fetchone()
            assert kept[0] == published[0] == outcome.report["events"] > 0 and kept[1] > 0
        expected = _answers(full_url)
        actual = _answers(lean_url)
    assert actual["charts"]["funnel"][0]["sessions_with_event"] > 0
    assert actual["charts"]["daily"] and actual == expected


def test_a_publication_killed_midway_leaves_the_previous_one(database_url: str, tmp_path: Path) -> None:
    """The previous publication (here the PostgreSQL path's) is what readers see while a Spark run copies its
    result, and after the run is killed in the middle of the copy."""
    with connect(database_url, "public", create_schema=True) as db:
        init_db(db)
        before = run_postgres(db, [str(EXAMPLE)], SessionRules())
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    env.update(
        {
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "XCCEL_DATA_DIR": str(tmp_path / "data"),
            # paused after the first chunk of sessions (tb_events_next is full by then), never resumed
            "XCCEL_TEST_PAUSE_AT": "publish_sessions_next",
            "XCCEL_TEST_RESUME_FILE": str(tmp_path / "never"),
        }
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = started_process(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xccel_cli",
                    "run-all",
                    "--engine",
                    "spark",
                    "--spark-master",
                    "local[1]",
                    "--spark-conf",
                    "spark.sql.shuffle.partitions=2",
                    "--spark-conf",
                    "spark.sql.files.maxPartitionBytes=65536",  # several read partitions: several chunks
                    "--warehouse",
                    str(tmp_path / "warehouse"),
                    "--source",
                    str(EXAMPLE),
                    "--database-url",
                    database_url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=pause_hook_environment(env),
                cwd=tempfile.gettempdir(),
                start_new_session=True,  # the JVM it starts goes with it
            )
        )
    try:
        deadline = time.monotonic() + 1800
        while "paused at publish_sessions_next" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the run never reached the publication"
            time.sleep(1)
        with connect(database_url, "public") as db:
            assert _snapshot_after(db, before) == before
            copying = db.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'COPY%sessions_next%'"
            ).fetchone()
            assert copying[0] == 1  # the copy is under way in the run's open transaction
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    with connect(database_url, "public") as db:
        assert _snapshot_after(db, before) == before
        assert db.conn.execute("SELECT count(*) FROM staged_result").fetchone()[0] == 0
        assert db.conn.execute("SELECT count(*) FROM publications").fetchone()[0] == 1
        status = db.conn.execute("SELECT status FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()[0]
        assert status != "succeeded"
    answer = invoke_xccel(["report", "--json", "--database-url", database_url])
    assert answer.exit_code == 0, answer.stderr
    figures = json.loads(answer.stdout)
    assert {k: figures[k] for k in before.report if k != "cut_sessions"} == {
        k: v for k, v in before.report.items() if k != "cut_sessions"
    }


def _snapshot_after(db: Database, before: Outcome) -> Outcome:
    """The published tables and figures now, in the shape of the outcome they must still equal."""
    tb_events = db.conn.execute("SELECT * FROM tb_events ORDER BY event_id").fetchall()
    sessions = db.conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
    engine = db.conn.execute("SELECT engine FROM publications ORDER BY publication_id DESC LIMIT 1").fetchone()[0]
    figures = report(db).as_json()
    kept = {k: figures[k] for k in (*MEDIANS, "customers", "customers_with_orders", "sessions", "events")}
    kept["cut_sessions"] = figures.get("cut_sessions")
    return Outcome(before.run_id, tb_events, sessions, before.counters, kept, before.rejects, engine)


# --- the command, and a real standalone cluster ----------------------------------------------------------------


def test_run_all_on_a_standalone_cluster_with_the_embedded_database(tmp_path: Path, database_url: str) -> None:
    """A master and two 1-core workers started here with spark-class; `xccel run-all --engine spark` submits
    to them (no database configured: the embedded server) and reports what the PostgreSQL engine reports."""
    with standalone_cluster(tmp_path, workers=2, worker_memory="1g", start_timeout_seconds=240) as cluster:
        result = run_xccel(
            [
                "run-all",
                "--engine",
                "spark",
                "--spark-master",
                cluster.master_url,
                "--spark-conf",
                "spark.executor.memory=512m",
                "--spark-conf",
                "spark.sql.shuffle.partitions=2",
                "--warehouse",
                str(tmp_path / "warehouse"),
                "--source",
                str(EXAMPLE),
                "--json",
            ],
            env={"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable},
            timeout=1800,
        )
        executor_logs = "".join(p.read_text()[-1500:] for p in cluster.work_dir.rglob("stderr"))
        assert result.exit_code == 0, result.stderr[-3000:] + executor_logs
        published = json.loads(result.stdout)
        with connect(database_url, "public", create_schema=True) as db:
            init_db(db)
            expected = run_postgres(db, [str(EXAMPLE)], SessionRules())
        for key in (*MEDIANS, "customers", "sessions", "events"):
            assert published["report"][key] == expected.report[key], key
        for key in COUNTERS:
            assert published["run"][key] == expected.counters[key], key
