"""The driver side of `xccel run-all --engine spark`: run the Spark job, then publish its result into PostgreSQL.

The job (xccel_cli/spark/job.py) writes raw_events, rejects, tb_events and sessions under the warehouse.
The driver then has the executors encode those Parquet outputs as CSV chunks and COPYs the chunks into
tb_events_next/sessions_next (bulk, partition by partition; it works with the embedded server too, which
listens on a Unix socket that JDBC cannot reach, and executors never need to reach the database), stages
them as sessionize would, and publishes them with load's rename swap: report, serve and the dashboard read
them unchanged, and the publications row says engine = 'spark'.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

from xccel_cli.config import DEFAULT_PUBLISH_WAIT_SECONDS, ENGINES, PUBLISH_CHOICES, SessionRules, Settings
from xccel_cli.db import Database, translate_errors
from xccel_cli.errors import ConfigError, DataQualityError, EngineError, SourceError
from xccel_cli.publications import StagedResult, clear_staged_result, latest_publication, stage_result
from xccel_cli.runs import add_stage_seconds, newest_run_id

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SparkSettings:
    """Where and how the Spark job runs (--warehouse, --spark-master, --spark-conf)."""

    warehouse: str
    master: str = DEFAULT_MASTER
    conf: dict[str, str] = field(default_factory=dict)
    publish: str = "all"  # "sessions": tb_events stays in the warehouse (PUBLISH_CHOICES)


@dataclass
class SparkRunResult:
    """What the job counted and what the publication staged."""

    run_folder: str
    counts: dict[str, Any]
    medians: dict[str, float | None]
    cut_sessions: int
    job_seconds: float
    publish_seconds: float


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE pairs (--spark-conf, XCCEL_SPARK_CONF separated by whitespace) as a dict."""
    conf: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf takes KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value
    return conf


def warehouse_uri(warehouse: str) -> str:
    """A plain local path made absolute (Spark resolves relative paths against its own working directory)."""
    if "://" in warehouse or warehouse.startswith("file:"):
        return warehouse
    return str(Path(warehouse).expanduser().resolve())


def _require_pyspark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ConfigError("--engine spark needs pyspark: pip install 'xccel[spark]' (and Java 17 or newer)") from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise ConfigError("--engine spark needs Java 17 or newer (e.g. apt-get install default-jre-headless)")


def _package_zip() -> str:
    """xccel_cli as a zip for the executors of a cluster (they import xccel_cli.lines to judge lines)."""
    package = Path(__file__).resolve().parent.parent
    folder = tempfile.mkdtemp(prefix="xccel-spark-")
    return shutil.make_archive(os.path.join(folder, "xccel_cli"), "zip", package.parent, package.name)


@contextmanager
def spark_session(settings: SparkSettings, session: Any = None) -> Iterator[Any]:
    """A SparkSession for one run, stopped at the end (the executors use this Python: it has xccel and msgspec).

    A given session (tests, a notebook) is used as it is and left running.
    """
    if session is not None:
        yield session
        return
    _require_pyspark()
    from xccel_cli.spark.job import session_builder

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1" if settings.master.startswith("local") else "")
    if not os.environ["SPARK_LOCAL_IP"]:
        del os.environ["SPARK_LOCAL_IP"]
    try:
        spark = session_builder(settings.master, settings.conf).getOrCreate()
    except Exception as exc:
        raise EngineError(f"cannot start Spark ({settings.master}): {_first_line(exc)}") from None
    zipped = None
    try:
        spark.sparkContext.setLogLevel("ERROR")
        if not settings.master.startswith("local"):
            zipped = _package_zip()
            spark.sparkContext.addPyFile(zipped)
        yield spark
    finally:
        spark.stop()
        if zipped:
            shutil.rmtree(os.path.dirname(zipped), ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


def spark_sources(sources: Sequence[str]) -> list[str]:
    """The files the job reads: HTTP and stdin are not (Spark reads files on a filesystem it knows)."""
    result = []
    for source in sources:
        lowered = source.lower()
        if source == "-" or lowered.startswith(("http://", "https://")):
            raise ConfigError(
                f"the Spark engine reads files (a path or a Hadoop URI such as s3a://), not {source!r}: "
                "download the dump first, or use --engine postgres"
            )
        result.append(source if "://" in source or source.startswith("file:") else str(Path(source).resolve()))
    return result


def run_spark_job(
    spark: Any,
    sources: Sequence[str],
    settings: SparkSettings,
    rules: SessionRules,
    run_id: int,
    *,
    keep_anonymous: bool,
    max_reject_share: float,
    max_line_bytes: int,
) -> Any:
    """The job, its failures turned into XccelErrors (one line, no Java stack trace)."""
    from pyspark.errors import PySparkException

    from xccel_cli.spark.job import JobError, expand_sources, run_job

    try:
        files = expand_sources(spark, sources)
        log.info("spark job over %d file(s) into %s", len(files), settings.warehouse)
        return run_job(
            spark,
            files,
            warehouse_uri(settings.warehouse),
            rules.as_dict(),
            run_id=run_id,
            keep_anonymous=keep_anonymous,
            max_reject_share=max_reject_share,
            max_line_bytes=max_line_bytes,
        )
    except JobError as exc:
        raise (DataQualityError if exc.kind == "data" else SourceError)(str(exc)) from None
    except PySparkException as exc:
        raise EngineError(f"the Spark job failed: {_first_line(exc)}") from None
    except Exception as exc:
        if type(exc).__name__ == "Py4JJavaError":
            raise EngineError(f"the Spark job failed: {_first_line(exc)}") from None
        raise


def _micros(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


# Rows of one Parquet read partition: the driver holds at most two partitions' CSV at a time.
PUBLISH_PARTITION_BYTES = "16m"


def _table_columns(conn: Any, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum",
        (table,),
    ).fetchall()
    return [row[0] for row in rows]


def _copy_parquet(conn: Any, spark: Any, path: str, table: str) -> int:
    """COPY one Parquet output into a table of the same columns; returns the CSV chunks sent.

    The executors encode Arrow batches as CSV (xccel_cli.spark.arrow_csv); the driver only passes the
    chunks on, partition by partition, so it never holds the table. Columns are matched by name, in the
    table's order, so a column added to both sides needs no change here.
    """
    from pyspark.sql import functions as F

    from xccel_cli.spark.arrow_csv import CHUNK_SCHEMA, csv_chunks

    frame = spark.read.parquet(path)
    present = set(frame.columns)
    columns = [name for name in _table_columns(conn, table) if name in present]
    chunks = frame.select(*[F.col(f"`{name}`") for name in columns]).mapInArrow(csv_chunks, CHUNK_SCHEMA)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, FREEZE)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    sent = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in chunks.toLocalIterator(prefetchPartitions=True):
            copy.write(row[0])
            sent += 1
    return sent


def _event_summaries(spark: Any, path: str) -> tuple[list[tuple[Any, ...]], list[tuple[int, int]]]:
    """What the dashboard reads from tb_events, for a publication without it: per UTC day the events, the
    placed orders and the first and last event; per set of funnel steps held by a session, the sessions."""
    from pyspark.sql import functions as F

    events = spark.read.parquet(path)
    days = (
        events.groupBy(F.to_date("timestamp").alias("day"))  # the session time zone is UTC
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.count(F.when(F.col("event_type") == "placed_order", 1)).alias("orders"),
            F.expr("unix_micros(min(timestamp))").alias("first_us"),
            F.expr("unix_micros(max(timestamp))").alias("last_us"),
        )
        .select(F.expr("unix_date(day)").alias("day"), "events", "orders", "first_us", "last_us")
        .collect()
    )
    # the bits of sql/dashboard_funnel.sql: page_view 1, visit_* 2, add_product_to_cart 4, placed_order 8
    step = (
        F.when(F.col("event_type") == "page_view", 1)
        .when(F.col("event_type").startswith("visit_"), 2)
        .when(F.col("event_type") == "add_product_to_cart", 4)
        .when(F.col("event_type") == "placed_order", 8)
        .otherwise(0)
    )
    steps = (
        events.groupBy("customer_id", "increment")
        .agg(F.bit_or(step).alias("steps"))
        .groupBy("steps")
        .agg(F.count(F.lit(1)).alias("sessions"))
        .collect()
    )
    epoch_day = EPOCH.date()
    day_rows = [
        (epoch_day + timedelta(days=r.day), r.events, r.orders, _micros(r.first_us), _micros(r.last_us)) for r in days
    ]
    return day_rows, [(int(r.steps), int(r.sessions)) for r in steps]


def publish_result(
    db: Database,
    spark: Any,
    settings: SparkSettings,
    job: Any,
    rules: SessionRules,
    run_id: int,
) -> int:
    """Bulk-copy the job's sessions (and tb_events, unless settings.publish is "sessions") into the *_next
    tables and stage them for load; returns the customers.

    All of it happens in one transaction: a failure or a kill midway leaves the published tables, and any
    staged result, as they were. With publish "sessions", tb_events_next stays empty and the dashboard's
    event figures are kept per day and per funnel step for this run instead (published_event_days,
    published_session_steps), which the readers take for the publication of this run.
    """
    from xccel_cli.spark.job import _join

    folder = _join(warehouse_uri(settings.warehouse), job.run_folder)
    events_path, sessions_path = _join(folder, "tb_events"), _join(folder, "sessions")
    summaries = _event_summaries(spark, events_path) if settings.publish == "sessions" else None
    previous_bytes = spark.conf.get("spark.sql.files.maxPartitionBytes", None)
    spark.conf.set("spark.sql.files.maxPartitionBytes", PUBLISH_PARTITION_BYTES)
    try:
        with translate_errors(), db.transaction() as conn:
            # a crash before load's commit leaves only rebuildable *_next tables (as sessionize does)
            conn.execute("SET LOCAL synchronous_commit = off")
            published = latest_publication(db)
            clear_staged_result(db)
            conn.execute("DROP TABLE IF EXISTS tb_events_next")
            conn.execute("CREATE TABLE tb_events_next (LIKE tb_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            conn.execute("DROP TABLE IF EXISTS sessions_next")
            conn.execute("CREATE TABLE sessions_next (LIKE sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
            if summaries is None:
                _copy_parquet(conn, spark, events_path, "tb_events_next")
            _copy_parquet(conn, spark, sessions_path, "sessions_next")
            conn.execute("ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id)")
            conn.execute("ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id)")
            # only the published run's summaries are still read; this run's become read when load publishes it
            current = published["run_id"] if published else None
            for table in ("published_event_days", "published_session_steps"):
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE run_id IS DISTINCT FROM %s").format(sql.Identifier(table)),
                    (current,),
                )
            if summaries is not None:
                days, steps = summaries
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO published_event_days (run_id, day, events, orders, first_event, last_event)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(run_id, *row) for row in days],
                    )
                    cur.executemany(
                        "INSERT INTO published_session_steps (run_id, steps, sessions) VALUES (%s, %s, %s)",
                        [(run_id, *row) for row in steps],
                    )
            stage_result(
                db,
                StagedResult(
                    run_id,
                    rules.as_dict(),
                    newest_run_id(db),
                    published["publication_id"] if published else None,
                    True,
                    job.customers,
                    job.events,
                    job.sessions,
                    job.cut_sessions,
                    engine="spark",
                ),
            )
    finally:
        if previous_bytes is None:
            spark.conf.unset("spark.sql.files.maxPartitionBytes")
        else:
            spark.conf.set("spark.sql.files.maxPartitionBytes", previous_bytes)
    return int(job.customers)


def timed(started: float) -> float:
    return time.perf_counter() - started


def run_all_spark(
    db: Database,
    options: Any,
    rules: SessionRules,
    settings: SparkSettings,
    *,
    wait: bool,
    session: Any = None,
    publish_wait_seconds: float = DEFAULT_PUBLISH_WAIT_SECONDS,
) -> Any:
    """init-db, the Spark job, publication and report, recorded as one run with run-all's counters."""
    from xccel_cli.extract import ExtractResult
    from xccel_cli.load import load
    from xccel_cli.metrics import report
    from xccel_cli.pipeline import RunAllResult, _extract_counts, recorded_run
    from xccel_cli.schema import init_db
    from xccel_cli.sessionize import SessionizeResult

    started = time.perf_counter()
    stages: dict[str, float] = {}
    t = time.perf_counter()
    init = init_db(db)
    stages["init_db"] = time.perf_counter() - t
    sources = spark_sources(options.source_list())
    if session is None:
        _require_pyspark()
    with recorded_run(db, "run-all", wait=wait, source=" ".join(sources), rules=rules) as record:
        record.stage_seconds["init_db"] = stages["init_db"]
        t = time.perf_counter()
        with spark_session(settings, session) as spark:
            job = run_spark_job(
                spark,
                sources,
                settings,
                rules,
                record.run_id,
                keep_anonymous=options.keep_anonymous,
                max_reject_share=options.max_reject_share,
                max_line_bytes=options.max_line_bytes,
            )
            stages["spark_job"] = time.perf_counter() - t
            extracted = ExtractResult(
                source=" ".join(sources),
                lines_read=job.lines_read,
                loaded=job.loaded,
                logged_in=job.logged_in,
                anonymous=job.anonymous,
                duplicates=job.duplicates,
                already_loaded=job.already_loaded,
                rejected=job.rejected,
                seconds=stages["spark_job"],
                reject_reasons=job.reject_reasons,
            )
            record.counts.update(_extract_counts(extracted))
            record.counts["customers_touched"] = job.customers
            record.stage_seconds["spark_job"] = stages["spark_job"]
            log.info(
                "spark: %d lines read, %d loaded, %d anonymous, %d duplicates, %d rejected; %d sessions",
                job.lines_read,
                job.loaded,
                job.anonymous,
                job.duplicates,
                job.rejected,
                job.sessions,
            )
            t = time.perf_counter()
            customers = publish_result(db, spark, settings, job, rules, record.run_id)
            stages["publish"] = time.perf_counter() - t
            record.stage_seconds["publish"] = stages["publish"]
        sessionized = SessionizeResult(
            True, "spark engine: every customer", customers, job.events, job.sessions, job.cut_sessions, 0.0
        )
        loaded = load(db, record.run_id, wait_seconds=publish_wait_seconds)
        stages["load"] = loaded.seconds
        record.stage_seconds["load"] = loaded.seconds
    t = time.perf_counter()
    metrics = report(db)
    stages["report"] = time.perf_counter() - t
    add_stage_seconds(db, record.run_id, {"report": stages["report"]})
    return RunAllResult(
        record.run_id, init, extracted, sessionized, loaded, metrics, stages, time.perf_counter() - started
    )


def engine_settings(
    engine: str | None,
    warehouse: str | None,
    master: str | None,
    conf: Sequence[str] | None,
    publish: str | None = None,
    *,
    configured: Settings | None = None,
) -> SparkSettings | None:
    """--engine & co., else the settings XCCEL_ENGINE, XCCEL_WAREHOUSE, XCCEL_SPARK_MASTER, XCCEL_SPARK_CONF,
    XCCEL_PUBLISH (checked by config.resolve); None: postgres."""
    configured = configured or Settings()
    chosen = (engine or configured.engine).strip().lower()
    if chosen not in ENGINES:
        raise ConfigError(f"--engine must be postgres or spark, got {chosen!r}")
    if chosen == "postgres":
        given = [
            name
            for name, value in (("--warehouse", warehouse), ("--spark-master", master), ("--publish", publish))
            if value
        ]
        if conf:
            given.append("--spark-conf")
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --engine spark")
        return None
    if warehouse is None:
        warehouse = configured.warehouse
    if warehouse is None:
        from xccel_cli.db import data_dir

        warehouse = str(Path(data_dir(configured.data_dir)) / "warehouse")
    pairs = list(conf) if conf else list(configured.spark_conf)
    published = (publish or configured.publish).strip().lower()
    if published not in PUBLISH_CHOICES:
        raise ConfigError(f"--publish must be {' or '.join(PUBLISH_CHOICES)}, got {published!r}")
    return SparkSettings(
        warehouse=warehouse,
        master=master or configured.spark_master or DEFAULT_MASTER,
        conf=parse_conf(pairs),
        publish=published,
    )
