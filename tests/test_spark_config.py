"""Several source files as one dump (both engines' contract), and the --engine settings; no Spark needed here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import run_xccel
from tests.dumps import START, event, line
from xccel_cli.config import resolve
from xccel_cli.db import Database
from xccel_cli.errors import ConfigError, DataQualityError, SourceError
from xccel_cli.pipeline import ExtractOptions, run_extract
from xccel_cli.source import expand_sources
from xccel_cli.spark.engine import engine_settings, parse_conf

# real xccel processes: the installed command, make, a pty
pytestmark = pytest.mark.integration


def test_globs_expand_to_files_sorted_by_path(tmp_path: Path) -> None:
    for name in ("b.ndjson", "a.ndjson.gz", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.ndjson").mkdir()  # a folder never matches
    assert expand_sources([str(tmp_path / "*.ndjson*")]) == [str(tmp_path / "a.ndjson.gz"), str(tmp_path / "b.ndjson")]
    # several patterns: one sorted list, each file once
    assert expand_sources([str(tmp_path / "b.ndjson"), str(tmp_path / "*")]) == [
        str(tmp_path / n) for n in ("a.ndjson.gz", "b.ndjson", "c.txt")
    ]
    assert expand_sources(["https://example.org/x?a=*"]) == ["https://example.org/x?a=*"]
    with pytest.raises(SourceError, match="no file matches"):
        expand_sources([str(tmp_path / "*.json")])
    with pytest.raises(SourceError, match="stdin"):
        expand_sources(["-", str(tmp_path / "c.txt")])


def _rows(db: Database) -> list[tuple[int, int]]:
    return db.conn.execute("SELECT event_id, customer_id FROM raw_events ORDER BY event_id").fetchall()


def test_several_files_are_one_stream_in_path_order(db: Database, tmp_path: Path) -> None:
    # b sorts after a, so its copy of event 1 loses although it is given first; a has no final newline
    a = tmp_path / "a.ndjson"
    a.write_bytes(
        line(event(1, 10, START)) + line(event(2, 10, START)) + b"{broken" + b"\n" + line(event(3, 10, START))[:-1]
    )
    b = tmp_path / "b.ndjson.gz"
    b.write_bytes(gzip.compress(line(event(1, 99, START)) + b"\n" + line(event(4, 11, START))))
    sources = expand_sources([str(b), str(a)])
    result = run_extract(db, ExtractOptions(" ".join(sources), sources=sources, max_reject_share=1.0))
    assert (result.lines_read, result.loaded, result.duplicates, result.rejected) == (7, 4, 1, 2)
    assert _rows(db) == [(1, 10), (2, 10), (3, 10), (4, 11)]
    # line numbers run on across the files: a has lines 1-4, b lines 5-7
    rejects = db.conn.execute("SELECT line_number, reason FROM rejects ORDER BY line_number").fetchall()
    assert rejects == [(3, "invalid_json"), (6, "empty_line")]


def test_only_the_last_files_last_line_can_be_a_cut_line(db: Database, tmp_path: Path) -> None:
    a = tmp_path / "a.ndjson"
    a.write_bytes(line(event(1, 10, START)) + b'{"id": 2, "type"')  # cut, but another file follows: a reject
    b = tmp_path / "b.ndjson"
    b.write_bytes(line(event(3, 10, START)) + b'{"id": 4, "type"')  # the end of the stream: the run fails
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_extract(db, ExtractOptions("x", sources=[str(a), str(b)], max_reject_share=1.0))
    good = tmp_path / "c.ndjson"
    good.write_bytes(line(event(5, 10, START)))
    result = run_extract(db, ExtractOptions("x", sources=[str(a), str(good)], max_reject_share=1.0))
    assert (result.rejected, result.loaded) == (1, 2)


def test_run_all_takes_several_sources_and_globs(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "part-1.ndjson").write_bytes(line(event(1, 5, START)) + line(event(2, 5, START, "placed_order")))
    (tmp_path / "part-2.ndjson").write_bytes(line(event(2, 6, START)) + line(event(3, 6, START)))
    (tmp_path / "other.ndjson").write_bytes(line(event(9, 7, START)))
    result = run_xccel(
        [
            "run-all",
            "--source",
            str(tmp_path / "part-*.ndjson"),
            "--source",
            str(tmp_path / "other.ndjson"),
            "--json",
            "--database-url",
            database_url,
        ]
    )
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)["run"]
    assert (run["lines_read"], run["loaded"], run["duplicates"]) == (5, 4, 1)
    assert run["source"].split() == [str(tmp_path / n) for n in ("other.ndjson", "part-1.ndjson", "part-2.ndjson")]


def test_engine_settings_from_options_and_environment(tmp_path: Path) -> None:
    settings = resolve({"XCCEL_DATA_DIR": str(tmp_path)})
    assert engine_settings(None, None, None, None, configured=settings) is None
    chosen = engine_settings("spark", None, None, ["spark.executor.memory=2g", "a.b=x=y"], configured=settings)
    assert chosen is not None
    assert (chosen.warehouse, chosen.master) == (str(tmp_path / "warehouse"), "local[*]")
    assert chosen.conf == {"spark.executor.memory": "2g", "a.b": "x=y"}
    assert chosen.publish == "all"  # both tables, as the PostgreSQL path publishes them
    lean = engine_settings("spark", None, None, None, "Sessions", configured=settings)
    assert lean is not None and lean.publish == "sessions"
    settings = resolve(
        {
            "XCCEL_ENGINE": "Spark",
            "XCCEL_WAREHOUSE": "s3a://bucket/xccel",
            "XCCEL_SPARK_MASTER": "yarn",
            "XCCEL_SPARK_CONF": "spark.sql.shuffle.partitions=64 spark.executor.cores=4",
            "XCCEL_PUBLISH": "sessions",
        }
    )
    chosen = engine_settings(None, None, None, None, configured=settings)
    assert chosen is not None
    assert (chosen.warehouse, chosen.master) == ("s3a://bucket/xccel", "yarn")
    assert chosen.conf == {"spark.sql.shuffle.partitions": "64", "spark.executor.cores": "4"}
    assert chosen.publish == "sessions"
    with pytest.raises(ConfigError, match="XCCEL_ENGINE must be postgres or spark, got 'duck'"):
        resolve({"XCCEL_ENGINE": "duck"})
    with pytest.raises(ConfigError, match="XCCEL_PUBLISH must be all or sessions"):
        resolve({"XCCEL_PUBLISH": "events"})
    with pytest.raises(ConfigError, match="--publish must be all or sessions"):
        engine_settings("spark", None, None, None, "none", configured=settings)
    with pytest.raises(ConfigError, match="postgres or spark"):
        engine_settings("duckdb", None, None, None)
    with pytest.raises(ConfigError, match="only apply with --engine spark"):
        engine_settings("postgres", "/tmp/w", None, None)
    with pytest.raises(ConfigError, match="--publish only apply with --engine spark"):
        engine_settings("postgres", None, None, None, "sessions")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_conf(["novalue"])


def test_the_spark_engine_refuses_http_and_stdin_before_starting(database_url: str) -> None:
    result = run_xccel(
        ["run-all", "--engine", "spark", "--source", "https://example.org/events.json", "--database-url", database_url]
    )
    assert result.exit_code == 3, result.stderr
    assert "the Spark engine reads files" in result.stderr and "Traceback" not in result.stderr
    result = run_xccel(["run-all", "--engine", "nope", "--database-url", database_url])
    assert result.exit_code == 3 and "postgres or spark" in result.stderr


def test_the_publications_csv_chunks_copy_every_value_exactly(db: Database) -> None:
    """What the executors send the driver for COPY (xccel_cli.spark.arrow_csv): an empty string is not a null,
    quotes, commas and newlines survive, doubles are bit-equal, timestamps keep their microseconds to the
    ends of the range PostgreSQL and Python share."""
    pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the spark extra")
    from datetime import UTC, datetime

    from xccel_cli.spark.arrow_csv import csv_chunks

    texts = ["", None, 'say "hi", then\nleave', "ünïcødé ✓", "\\N", "NULL", " padded "]
    doubles = [0.1 + 0.2, -0.0, 1e-300, 5e-324, 1.7976931348623157e308, 1 / 3, None]
    stamps = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, 0, 1, tzinfo=UTC),
        None,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 12, 30, 15, 123456, tzinfo=UTC),
        datetime(1582, 10, 10, tzinfo=UTC),
    ]
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(len(texts)), pa.int64()),
            "text": pa.array(texts, pa.string()),
            "number": pa.array(doubles, pa.float64()),
            "stamp": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            "flag": pa.array([True, False, None, True, False, True, False], pa.bool_()),
            "small": pa.array([2**31 - 1, -(2**31), None, 0, 1, -1, 7], pa.int32()),
        }
    )
    chunks = [out.column("chunk")[0].as_py() for out in csv_chunks(iter([batch, batch.slice(0, 0)]))]
    assert len(chunks) == 1  # an empty batch sends nothing
    conn = db.conn
    conn.execute(
        "CREATE TEMPORARY TABLE copied (id bigint, text text, number double precision, stamp timestamptz,"
        " flag boolean, small integer)"
    )
    with conn.cursor() as cur, cur.copy("COPY copied FROM STDIN (FORMAT csv)") as copy:
        for chunk in chunks:
            copy.write(chunk)
    rows = conn.execute("SELECT text, number, stamp, flag, small FROM copied ORDER BY id").fetchall()
    assert [r[0] for r in rows] == texts
    assert [r[1] for r in rows] == doubles and str(rows[1][1]) == "-0.0"
    assert [r[2] for r in rows] == stamps
    assert [r[3] for r in rows] == batch.column("flag").to_pylist()
    assert [r[4] for r in rows] == batch.column("small").to_pylist()


def test_a_postgres_run_after_a_spark_publication_rebuilds_every_customer(db: Database, tmp_path: Path) -> None:
    """A Spark result was built from the warehouse's events and may leave tb_events out: the PostgreSQL path
    cannot carry its customers over, so it rebuilds them all from raw_events."""
    from xccel_cli.config import SessionRules
    from xccel_cli.load import load
    from xccel_cli.sessionize import sessionize

    dump = tmp_path / "a.ndjson"
    dump.write_bytes(line(event(1, 10, START)) + line(event(2, 11, START)))
    run_extract(db, ExtractOptions(str(dump)))
    assert sessionize(db, SessionRules(), None).full_refresh  # the first result
    load(db, None)
    assert not sessionize(db, SessionRules(), None).full_refresh  # nothing new: customers carried over
    db.conn.execute("UPDATE publications SET engine = 'spark'")
    rebuilt = sessionize(db, SessionRules(), None)
    assert rebuilt.full_refresh and rebuilt.reason == "the published result was built by spark"
