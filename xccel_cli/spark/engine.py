"""The driver side of `xccel run-all --engine spark`: run the Spark job, then publish its result into PostgreSQL.

The job (xccel_cli/spark/job.py) writes raw_events, rejects, tb_events and sessions under the warehouse.
The driver then streams tb_events and sessions into tb_events_next/sessions_next with COPY (this works
with the embedded server too, which listens on a Unix socket that JDBC cannot reach), stages them as
sessionize would, and publishes them with load's rename swap: report, serve and the dashboard read
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

from xccel_cli.config import DEFAULT_PUBLISH_WAIT_SECONDS, ENGINES, SessionRules, Settings
from xccel_cli.db import Database, translate_errors
from xccel_cli.errors import ConfigError, DataQualityError, EngineError, SourceError
from xccel_cli.publications import StagedResult, clear_staged_result, latest_publication, stage_result
from xccel_cli.runs import newest_run_id

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SparkSettings:
    """Where and how the Spark job runs (--warehouse, --spark-master, --spark-conf)."""

    warehouse: str
    master: str = DEFAULT_MASTER
    conf: dict[str, str] = field(default_factory=dict)


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


def publish_result(
    db: Database, spark: Any, settings: SparkSettings, job: Any, rules: SessionRules, run_id: int
) -> int:
    """Stream the job's tb_events and sessions into the *_next tables and stage them for load; returns customers."""
    from xccel_cli.spark.job import _join

    folder = _join(warehouse_uri(settings.warehouse), job.run_folder)
    tb_events = spark.read.parquet(_join(folder, "tb_events")).selectExpr(
        "event_id",
        "event_type",
        "customer_id",
        "unix_micros(timestamp) AS ts",
        "unix_micros(prev_timestamp) AS prev_ts",
        "new_session",
        "time",
        "increment",
        "session_id",
    )
    sessions = spark.read.parquet(_join(folder, "sessions")).selectExpr(
        "session_id",
        "customer_id",
        "session_number",
        "unix_micros(started_at) AS started",
        "unix_micros(ended_at) AS ended",
        "duration_minutes",
        "event_count",
        "has_order",
        "landing_page",
        "referrer",
        "first_order_session_number",
    )
    with translate_errors(), db.transaction() as conn:
        # a crash before load's commit leaves only rebuildable *_next tables (as sessionize does)
        conn.execute("SET LOCAL synchronous_commit = off")
        published = latest_publication(db)
        clear_staged_result(db)
        conn.execute("DROP TABLE IF EXISTS tb_events_next")
        conn.execute("CREATE TABLE tb_events_next (LIKE tb_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        conn.execute("DROP TABLE IF EXISTS sessions_next")
        conn.execute("CREATE TABLE sessions_next (LIKE sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        with conn.cursor() as cur:
            with cur.copy(
                'COPY tb_events_next (event_id, event_type, customer_id, "timestamp", prev_timestamp, new_session,'
                ' "time", increment, session_id) FROM STDIN'
            ) as copy:
                for row in tb_events.toLocalIterator(prefetchPartitions=True):
                    copy.write_row(
                        (row[0], row[1], row[2], _micros(row[3]), _micros(row[4]), row[5], row[6], row[7], row[8])
                    )
            with cur.copy(
                "COPY sessions_next (session_id, customer_id, session_number, started_at, ended_at,"
                " duration_minutes, event_count, has_order, landing_page, referrer, first_order_session_number)"
                " FROM STDIN"
            ) as copy:
                for row in sessions.toLocalIterator(prefetchPartitions=True):
                    copy.write_row(
                        (
                            row[0],
                            row[1],
                            row[2],
                            _micros(row[3]),
                            _micros(row[4]),
                            row[5],
                            row[6],
                            row[7],
                            row[8],
                            row[9],
                            row[10],
                        )
                    )
        conn.execute("ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id)")
        conn.execute("ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id)")
        covers = newest_run_id(db)
        stage_result(
            db,
            StagedResult(
                run_id,
                rules.as_dict(),
                covers,
                published["publication_id"] if published else None,
                True,
                job.customers,
                job.events,
                job.sessions,
                job.cut_sessions,
                engine="spark",
            ),
        )
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
    return RunAllResult(
        record.run_id, init, extracted, sessionized, loaded, metrics, stages, time.perf_counter() - started
    )


def engine_settings(
    engine: str | None,
    warehouse: str | None,
    master: str | None,
    conf: Sequence[str] | None,
    *,
    configured: Settings | None = None,
) -> SparkSettings | None:
    """--engine & co., else the settings XCCEL_ENGINE, XCCEL_WAREHOUSE, XCCEL_SPARK_MASTER, XCCEL_SPARK_CONF
    (checked by config.resolve); None: postgres."""
    configured = configured or Settings()
    chosen = (engine or configured.engine).strip().lower()
    if chosen not in ENGINES:
        raise ConfigError(f"--engine must be postgres or spark, got {chosen!r}")
    if chosen == "postgres":
        given = [name for name, value in (("--warehouse", warehouse), ("--spark-master", master)) if value]
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
    return SparkSettings(
        warehouse=warehouse, master=master or configured.spark_master or DEFAULT_MASTER, conf=parse_conf(pairs)
    )
