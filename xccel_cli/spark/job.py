"""The xccel pipeline as one PySpark job: dump lines in, raw_events, rejects, tb_events and sessions out as Parquet.

Runs inside `xccel run-all --engine spark` (which then publishes into PostgreSQL) or on its own with
spark-submit (`spark-submit xccel_cli/spark/job.py --help`), writing the warehouse only.

The definitions are the README's, the same as sql/sessionize*.sql:
- every line is judged on the executors by xccel_cli.lines.parse_line, so both engines refuse the same lines
  for the same reasons;
- "first line wins" orders lines by (file in path order, split start, position in the split): a bare
  monotonically_increasing_id is not an order across files, since Spark packs splits largest first;
- timestamps travel as UTC microseconds; durations are (µs / 1e6) / 60 in two steps, as PostgreSQL's
  extract(epoch) / 60 computes them, so doubles are bit-equal;
- medians are exact (percentile), never percentile_approx.
Each run writes a new folder under the warehouse and only then moves the warehouse's pointer to it, so a
failed job leaves the previous complete output in place.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

# Not imported by anything that runs without pyspark: xccel_cli.spark.engine imports this module lazily.
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, BooleanType, LongType, StringType, StructField, StructType

from xccel_cli.config import DEFAULT_MAX_LINE_BYTES

POINTER = "_xccel_current"  # holds the name of the newest complete run folder
OUTPUTS = ("raw_events", "rejects", "tb_events", "sessions")
KEEP_RUN_FOLDERS = 2  # the current output and the one before it

# Settings every xccel Spark session needs, whatever the user adds with --spark-conf.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# Defaults a user may override: a few shuffle partitions suit one machine; a cluster raises it.
DEFAULT_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
}

PARSED_SCHEMA = StructType(
    [
        StructField("file_index", LongType(), False),
        StructField("block_start", LongType(), False),
        StructField("position", LongType(), False),
        StructField("kept", BooleanType(), False),
        StructField("event_id", LongType(), True),
        StructField("event_type", StringType(), True),
        StructField("customer_id", LongType(), True),
        StructField("ts_us", LongType(), True),
        StructField("payload", StringType(), True),
        StructField("referrer", StringType(), True),
        StructField("page", StringType(), True),
        StructField("reason", StringType(), True),
        StructField("detail", StringType(), True),
        StructField("raw_line", StringType(), True),
    ]
)
PARSED_NAMES = [f.name for f in PARSED_SCHEMA.fields]


class JobError(Exception):
    """The job refused its input (too many bad lines, a cut last line, no lines): nothing was written."""

    def __init__(self, message: str, kind: str = "data") -> None:
        super().__init__(message)
        self.kind = kind  # "data" or "source"


@dataclass
class JobResult:
    run_folder: str
    lines_read: int = 0
    loaded: int = 0
    logged_in: int = 0
    anonymous: int = 0
    duplicates: int = 0
    already_loaded: int = 0
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    customers: int = 0
    events: int = 0
    sessions: int = 0
    cut_sessions: int = 0
    medians: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def session_builder(master: str | None, conf: dict[str, str], app_name: str = "xccel") -> SparkSession.Builder:
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in {**DEFAULT_CONF, **conf, **REQUIRED_CONF}.items():
        builder = builder.config(key, value)
    return builder


# --- reading and judging lines ---------------------------------------------------------------------------


def _render_json_text(value: Any) -> str | None:
    """What PostgreSQL's `->>` gives for a JSON value (decoded with floats as Decimal): the string itself, else
    jsonb's text of it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return _jsonb_text(value)


def _jsonb_text(value: Any) -> str:
    """jsonb's text form: numbers as numeric prints them (1e2 is 100, 1.50 keeps its zero, -0 is 0), a space
    after ':' and ',', object keys shortest first, then bytewise (duplicate keys: the last one was decoded)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value, "f")  # plain notation, with the digits after the point the text implied
        return text[1:] if value.is_zero() and text.startswith("-") else text
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
    return "{" + ", ".join(f"{json.dumps(key, ensure_ascii=False)}: {_jsonb_text(value[key])}" for key in keys) + "}"


class EventExtras(msgspec.Struct):
    page: Any = None
    referrer: Any = None


class Extras(msgspec.Struct):
    """The two fields sessions take from a session's first event (payload -> 'event' ->> 'page' / 'referrer')."""

    event: EventExtras


def parse_batches(
    batches: Iterator[Any], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, anonymous_stored: bool = False
) -> Iterator[Any]:
    """mapInArrow: (file_index, block_start, position, line bytes) -> PARSED_SCHEMA rows, via parse_line; a line
    longer than max_line_bytes is refused as extract refuses it (line_too_long, its first bytes kept)."""
    import pyarrow as pa

    from xccel_cli.lines import LONG_LINE_KEPT_BYTES, ParsedLine, RefusedLine, parse_line, too_long

    kept_bytes = min(LONG_LINE_KEPT_BYTES, max_line_bytes)

    # floats as Decimal: their text decides what PostgreSQL's numeric prints
    decode_extras = msgspec.json.Decoder(Extras, float_hook=Decimal).decode
    arrow_schema = pa.schema(
        [
            pa.field("file_index", pa.int64(), False),
            pa.field("block_start", pa.int64(), False),
            pa.field("position", pa.int64(), False),
            pa.field("kept", pa.bool_(), False),
            pa.field("event_id", pa.int64()),
            pa.field("event_type", pa.string()),
            pa.field("customer_id", pa.int64()),
            pa.field("ts_us", pa.int64()),
            pa.field("payload", pa.string()),
            pa.field("referrer", pa.string()),
            pa.field("page", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("detail", pa.string()),
            pa.field("raw_line", pa.string()),
        ]
    )
    for batch in batches:
        columns: dict[str, list[Any]] = {name: [] for name in PARSED_NAMES}
        file_index = batch.column("file_index").to_pylist()
        block_start = batch.column("block_start").to_pylist()
        position = batch.column("position").to_pylist()
        values = batch.column("value").to_pylist()
        for i, line in enumerate(values):
            if line.endswith(b"\r"):
                line = line[:-1]
            parsed: ParsedLine | RefusedLine
            if len(line) > max_line_bytes:
                line = line[:kept_bytes]
                parsed = too_long(max_line_bytes, line)
            else:
                parsed = parse_line(line, anonymous_stored=anonymous_stored)
            columns["file_index"].append(file_index[i])
            columns["block_start"].append(block_start[i])
            columns["position"].append(position[i])
            if isinstance(parsed, ParsedLine):
                stamp = parsed.timestamp
                # exact integer microseconds since the epoch (no float on the way)
                delta = stamp - EPOCH
                ts_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
                page = referrer = None
                if parsed.customer_id is not None:
                    extras = decode_extras(parsed.payload).event
                    # nullif(payload -> 'event' ->> 'page', ''), as sql/sessionize.sql reads them
                    page = _render_json_text(extras.page) or None
                    referrer = _render_json_text(extras.referrer) or None
                columns["kept"].append(True)
                columns["event_id"].append(parsed.event_id)
                columns["event_type"].append(parsed.event_type)
                columns["customer_id"].append(parsed.customer_id)
                columns["ts_us"].append(ts_us)
                columns["payload"].append(parsed.payload.decode("utf-8"))
                columns["referrer"].append(referrer)
                columns["page"].append(page)
                columns["reason"].append(None)
                columns["detail"].append(None)
                columns["raw_line"].append(None)
            else:
                columns["kept"].append(False)
                for name in ("event_id", "event_type", "customer_id", "ts_us", "payload", "referrer", "page"):
                    columns[name].append(None)
                columns["reason"].append(parsed.reason)
                columns["detail"].append(parsed.detail)
                columns["raw_line"].append(line.decode("utf-8", "backslashreplace").replace("\x00", "\\x00"))
        yield pa.RecordBatch.from_pydict(columns, schema=arrow_schema)


def _epoch() -> Any:
    from datetime import UTC, datetime

    return datetime(1970, 1, 1, tzinfo=UTC)


EPOCH = _epoch()


def read_lines(spark: SparkSession, sources: Sequence[str]) -> DataFrame:
    """Every line of every source as (file_index, block_start, position, value bytes), "\\n" the only line end.

    position increases along the lines of one split (file_index, block_start), which Spark reads in one task.
    """
    frames = []
    for index, path in enumerate(sources):
        # each path is one file, read as named: its glob characters escaped (the reader globs what it is
        # given), and no name hidden (the reader skips names starting with '_' or '.' by default)
        read = spark.read.option("lineSep", "\n").option("ignoredPathSegmentRegex", "").text(_glob_escaped(path))
        if not read.inputFiles():
            raise JobError(
                f"Spark does not read {path}: it takes the name for a hidden or unfinished file"
                " (rename it, or use --engine postgres)",
                kind="source",
            )
        frame = read.select(
            F.lit(index).cast("long").alias("file_index"),
            F.col("_metadata.file_block_start").alias("block_start"),
            F.monotonically_increasing_id().alias("position"),
            F.col("value").cast(BinaryType()).alias("value"),
        )
        frames.append(frame)
    lines = frames[0]
    for frame in frames[1:]:
        lines = lines.unionByName(frame)
    return lines


def _glob_escaped(path: str) -> str:
    """The path as a Hadoop glob that matches only itself."""
    return "".join("\\" + c if c in "\\*?[]{}" else c for c in path)


# --- the job ------------------------------------------------------------------------------------------------


def run_job(
    spark: SparkSession,
    sources: Sequence[str],
    warehouse: str,
    rules: dict[str, Any],
    *,
    run_id: int = 0,
    keep_anonymous: bool = False,
    max_reject_share: float = 0.05,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> JobResult:
    """Read the sources, judge and dedupe their lines, sessionize, write a new run folder and point to it."""
    if not sources:
        raise JobError("no source files given", kind="source")
    judge = functools.partial(parse_batches, max_line_bytes=max_line_bytes, anonymous_stored=keep_anonymous)
    parsed = read_lines(spark, sources).mapInArrow(judge, PARSED_SCHEMA)
    parsed = parsed.persist()
    try:
        return _run(spark, parsed, sources, warehouse, rules, run_id, keep_anonymous, max_reject_share)
    finally:
        parsed.unpersist()


def _run(
    spark: SparkSession,
    parsed: DataFrame,
    sources: Sequence[str],
    warehouse: str,
    rules: dict[str, Any],
    run_id: int,
    keep_anonymous: bool,
    max_reject_share: float,
) -> JobResult:
    # Line numbers run on across the files, as if they were one stream read in path order. A split is
    # read by one task, so within it `position` counts lines; each split's first line number is the sum
    # of the line counts of the splits before it (a small table, computed on the driver).
    # One pass gives, per split and reason (None: kept), the line count, the first and last positions and
    # the last line's detail: the line numbers, the reject counts and the verdict on the stream's last line.
    groups = (
        parsed.groupBy("file_index", "block_start", "reason")
        .agg(
            F.count(F.lit(1)).alias("lines"),
            F.min("position").alias("first_position"),
            F.max("position").alias("last_position"),
            F.max_by("detail", "position").alias("last_detail"),
        )
        .collect()
    )
    splits: dict[tuple[int, int], list[int]] = {}  # (file, start) -> [lines, first position]
    reason_counts: dict[str, int] = {}
    # (file, start, position, reason, detail)
    last_line: tuple[int, int, int, str | None, str | None] | None = None
    for row in groups:
        split = splits.setdefault((row.file_index, row.block_start), [0, row.first_position])
        split[0] += row.lines
        split[1] = min(split[1], row.first_position)
        if row.reason is not None:
            reason_counts[row.reason] = reason_counts.get(row.reason, 0) + row.lines
        key = (row.file_index, row.block_start, row.last_position, row.reason, row.last_detail)
        if last_line is None or key[:3] > last_line[:3]:
            last_line = key
    offsets = []
    total = 0
    for (file_index, block_start), (lines, first_position) in sorted(splits.items()):
        offsets.append((file_index, block_start, first_position, total))
        total += lines
    lines_read = total
    if lines_read == 0 or last_line is None:
        raise JobError(f"the source {' '.join(sources)} is empty: nothing to load")
    offsets_frame = spark.createDataFrame(
        offsets, "file_index long, block_start long, first_position long, lines_before long"
    )
    numbered = parsed.join(F.broadcast(offsets_frame), ["file_index", "block_start"]).withColumn(
        "line_number", F.col("lines_before") + (F.col("position") - F.col("first_position")) + 1
    )

    refused = numbered.where(~F.col("kept")).select(
        F.lit(run_id).cast("long").alias("run_id"), "line_number", "reason", "detail", "raw_line"
    )
    rejected = sum(reason_counts.values())
    _check_cut_last_line(spark, sources, last_line[3], last_line[4], lines_read)
    share = rejected / lines_read
    if share > max_reject_share:
        from xccel_cli.lines import refused_source_question

        samples = refused.orderBy("line_number").limit(3).collect()
        first = "; ".join(f"line {r.line_number}: {r.reason}" for r in samples)
        raise JobError(
            f"refused {rejected:,} of {lines_read:,} lines ({share:.1%}, limit {max_reject_share:.1%}); "
            f"nothing was loaded. First: {first}. {refused_source_question(_first_byte(samples))}"
        )

    # First line wins: per event id, the line first in (file, split, position) order.
    kept = numbered.where(F.col("kept"))
    order = F.struct("file_index", "block_start", "position")
    winners = (
        kept.groupBy("event_id")
        .agg(
            F.min_by(F.struct("event_type", "customer_id", "ts_us", "payload", "referrer", "page"), order).alias("w"),
            F.count(F.lit(1)).alias("copies"),
        )
        .select("event_id", "w.*", "copies")
    )
    winner_counts = winners.agg(
        F.coalesce(F.sum(F.col("copies") - 1), F.lit(0)).alias("duplicates"),
        F.count(F.when(F.col("customer_id").isNotNull(), 1)).alias("logged_in"),
        F.count(F.when(F.col("customer_id").isNull(), 1)).alias("anonymous"),
    ).collect()[0]
    result = JobResult(
        run_folder="",
        lines_read=lines_read,
        rejected=rejected,
        reject_reasons=dict(sorted(reason_counts.items(), key=lambda kv: -kv[1])),
        duplicates=int(winner_counts.duplicates),
        logged_in=int(winner_counts.logged_in),
        anonymous=int(winner_counts.anonymous),
    )

    # Events kept by an earlier run (the warehouse's current raw_events) stay as they were.
    new_events = winners if keep_anonymous else winners.where(F.col("customer_id").isNotNull())
    new_events = new_events.drop("copies").withColumn("run_id", F.lit(run_id).cast("long"))
    previous_folder = current_run_folder(spark, warehouse)
    if previous_folder is not None:
        previous = spark.read.parquet(_join(warehouse, previous_folder, "raw_events")).select(*RAW_COLUMNS)
        fresh = new_events.join(previous.select("event_id"), "event_id", "left_anti")
        raw_events = previous.unionByName(fresh.select(*RAW_COLUMNS))
    else:
        fresh = new_events
        raw_events = new_events.select(*RAW_COLUMNS)

    folder = f"run-{run_id}-{uuid.uuid4().hex[:12]}"
    target = _join(warehouse, folder)
    raw_events.write.parquet(_join(target, "raw_events"))
    raw_events = spark.read.parquet(_join(target, "raw_events"))
    kept_count = result.logged_in + (result.anonymous if keep_anonymous else 0)
    # without earlier output every kept event is new; otherwise count this run's rows in what was written
    result.loaded = (
        raw_events.where(F.col("run_id") == F.lit(run_id)).count() if previous_folder is not None else kept_count
    )
    result.already_loaded = kept_count - result.loaded
    refused.write.parquet(_join(target, "rejects"))

    tb_events, sessions, cut, flags = sessionize(raw_events.where(F.col("customer_id").isNotNull()), rules)
    try:
        tb_events.write.parquet(_join(target, "tb_events"))
        sessions.write.parquet(_join(target, "sessions"))
    finally:
        flags.unpersist()
    sessions = spark.read.parquet(_join(target, "sessions"))
    counts = sessions.agg(
        F.count(F.lit(1)).alias("sessions"),
        F.coalesce(F.sum("event_count"), F.lit(0)).alias("events"),
        F.countDistinct("customer_id").alias("customers"),
    ).collect()[0]
    result.sessions, result.events, result.customers = int(counts.sessions), int(counts.events), int(counts.customers)
    result.cut_sessions = cut
    result.medians = medians(sessions)
    result.run_folder = folder
    _write_text(spark, _join(target, "_xccel_result.json"), json.dumps(result.as_dict()))
    set_current_run_folder(spark, warehouse, folder)
    return result


RAW_COLUMNS = ("event_id", "event_type", "customer_id", "ts_us", "payload", "referrer", "page", "run_id")


def _first_byte(samples: Sequence[Any]) -> bytes:
    """The source's first byte that is not white space, as extract names it in the same error: read from the first
    refused lines when they begin at line 1 and the lines before the one that holds it are blank."""
    for expected, sample in enumerate(samples, 1):
        if sample.line_number != expected:
            break
        text = (sample.raw_line or "").lstrip(" \t\r\n")
        if text:
            return text[:1].encode()
    return b""


def _check_cut_last_line(
    spark: SparkSession, sources: Sequence[str], reason: str | None, detail: str | None, line_number: int
) -> None:
    """The stream's last line, refused as one that stops early (lines.is_cut, as extract decides) and with no
    newline after it: a cut download. A complete line refused for what it holds stays a reject."""
    from xccel_cli.lines import RefusedLine, is_cut

    if reason is None or not is_cut(RefusedLine(reason, detail or "")) or _ends_with_newline(spark, sources[-1]):
        return
    raise JobError(
        f"the source {sources[-1]} ends in a cut line (line {line_number:,}): "
        "the download was probably truncated; nothing was loaded"
    )


def _ends_with_newline(spark: SparkSession, path: str) -> bool:
    """Whether the file's (decompressed) bytes end with a newline; only asked when its last line was refused."""
    if path.endswith(".gz"):
        import gzip

        local = _local_path(path)
        if local is None:
            return False  # a remote gzip file would have to be read whole here: treat it as cut
        last = b""
        with gzip.open(local, "rb") as handle:
            while block := handle.read(1 << 20):
                last = block[-1:]
        return last == b"\n"
    jvm: Any = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    length = fs.getFileStatus(hadoop_path).getLen()
    if length == 0:
        return True
    stream = fs.open(hadoop_path)
    try:
        stream.seek(length - 1)
        return bool(stream.read() == 10)
    finally:
        stream.close()


def _local_path(path: str) -> str | None:
    """The local filesystem path of a plain path or file: URI; None for any other filesystem."""
    if path.startswith("file:"):
        return "/" + path[len("file:") :].lstrip("/")
    return None if "://" in path else path


def expand_sources(spark: SparkSession, patterns: Sequence[str]) -> list[str]:
    """Globs expanded by the Hadoop filesystem of each pattern; the paths sorted, each once.

    A pattern naming an existing file is that file: run-all hands over local globs already expanded, and a
    file's name may hold glob characters (dump[1].json, a*b.json)."""
    found: set[str] = set()
    for pattern in patterns:
        fs, hadoop_path = _hadoop_fs(spark, pattern)
        if fs.exists(hadoop_path) and fs.getFileStatus(hadoop_path).isFile():
            found.add(fs.makeQualified(hadoop_path).toString())
            continue
        statuses = fs.globStatus(hadoop_path)
        matches = [s.getPath().toString() for s in (statuses or []) if s.isFile()]
        if not matches:
            raise JobError(f"source not found: {pattern}", kind="source")
        found.update(matches)
    return sorted(found)


# --- sessions -------------------------------------------------------------------------------------------------


# IANA names that Java's zone database leaves out, for the zones they name (the tz database's own links).
JAVA_ZONE_NAMES = {"ROC": "Asia/Taipei", "Factory": "UTC"}


def sessionize(events: DataFrame, rules: dict[str, Any]) -> tuple[DataFrame, DataFrame, int, DataFrame]:
    """tb_events and sessions from logged-in events (ts_us, referrer, page), by the rules of sql/sessionize.sql.

    Also returns the persisted per-event flags both are built from (one sort for both): unpersist it after use.
    """
    spark = events.sparkSession
    timeout_us = int(rules["timeout_minutes"]) * 60 * 1_000_000
    per_customer = "PARTITION BY customer_id ORDER BY ts_us, event_id"
    events.createOrReplaceTempView("xccel_events")
    flags = spark.sql(
        f"""
        SELECT *,
               (prev_us IS NULL
                OR ts_us - prev_us >= {timeout_us}
                OR ({"true" if rules["split_at_midnight"] else "false"}
                    AND to_date(from_utc_timestamp(timestamp_micros(ts_us), :tz))
                        <> to_date(from_utc_timestamp(timestamp_micros(prev_us), :tz)))) AS gap_start
        FROM (SELECT event_id, event_type, customer_id, ts_us, referrer, page,
                     lag(ts_us) OVER ({per_customer}) AS prev_us
              FROM xccel_events)
        """,
        args={"tz": JAVA_ZONE_NAMES.get(rules["timezone"], rules["timezone"])},
    )
    if rules["split_on_referrer"]:
        # The referrer in force before an event is the last referrer seen earlier in the same gap session.
        flags = flags.withColumn(
            "gap_session", F.expr(f"count_if(gap_start) OVER ({per_customer} ROWS UNBOUNDED PRECEDING)")
        )
        flags = flags.withColumn(
            "referrer_before",
            F.expr(
                "last(referrer, true) OVER (PARTITION BY customer_id, gap_session ORDER BY ts_us, event_id"
                " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
            ),
        )
        flags = flags.withColumn(
            "starts",
            F.expr("gap_start OR (referrer IS NOT NULL AND (referrer_before IS NULL OR referrer <> referrer_before))"),
        ).drop("gap_session", "referrer_before")
    else:
        flags = flags.withColumn("starts", F.col("gap_start"))
    flags = flags.drop("gap_start").withColumn(
        "increment", F.expr(f"count_if(starts) OVER ({per_customer} ROWS UNBOUNDED PRECEDING)")
    )
    cut_sessions = 0
    if rules.get("max_session_hours") is not None:
        flags, cut_sessions = _apply_cap(flags, rules["max_session_hours"])

    flags = flags.persist()
    tb_events = flags.select(
        "event_id",
        "event_type",
        "customer_id",
        F.expr("timestamp_micros(ts_us)").alias("timestamp"),
        F.expr("timestamp_micros(prev_us)").alias("prev_timestamp"),
        F.col("starts").cast("int").alias("new_session"),
        # seconds as PostgreSQL's extract(epoch FROM interval) gives them: exact microseconds / 1e6
        _seconds("ts_us - prev_us").alias("time"),
        F.col("increment").cast("int").alias("increment"),
        F.concat_ws("_", F.col("customer_id").cast("string"), F.col("increment").cast("string")).alias("session_id"),
    )
    sessions = (
        flags.groupBy("customer_id", "increment")
        .agg(
            F.min("ts_us").alias("first_us"),
            F.max("ts_us").alias("last_us"),
            F.count(F.lit(1)).cast("int").alias("event_count"),
            F.bool_or(F.col("event_type") == "placed_order").alias("has_order"),
            F.min(F.when(F.col("starts"), F.col("page"))).alias("landing_page"),
            F.min(F.when(F.col("starts"), F.col("referrer"))).alias("referrer"),
        )
        .select(
            F.concat_ws("_", F.col("customer_id").cast("string"), F.col("increment").cast("string")).alias(
                "session_id"
            ),
            "customer_id",
            F.col("increment").cast("int").alias("session_number"),
            F.expr("timestamp_micros(first_us)").alias("started_at"),
            F.expr("timestamp_micros(last_us)").alias("ended_at"),
            # two steps, as extract(epoch FROM max - min)::double precision / 60: bit-equal doubles
            (_seconds("last_us - first_us") / F.lit(60.0)).alias("duration_minutes"),
            "event_count",
            "has_order",
            "landing_page",
            "referrer",
            # the customer's lowest session number with an order, on each of their sessions (sessionize_sessions.sql)
            F.expr("min(CASE WHEN has_order THEN increment END) OVER (PARTITION BY customer_id)")
            .cast("int")
            .alias("first_order_session_number"),
        )
    )
    return tb_events, sessions, cut_sessions, flags


def _seconds(micros: str) -> Any:
    """A non-negative count of microseconds (an SQL expression) in seconds, rounded once, as PostgreSQL casts its
    exact numeric epoch to double precision. Below 2**53 the count is an exact double and the division rounds
    once; above (gaps of centuries) a double of the count is rounded already, so the decimal text is parsed."""
    return F.expr(
        f"CASE WHEN ({micros}) < {2**53} THEN CAST(({micros}) AS DOUBLE) / CAST(1000000 AS DOUBLE)"
        f" WHEN ({micros}) IS NOT NULL THEN CAST(concat(CAST(({micros}) DIV 1000000 AS STRING), '.',"
        f" lpad(CAST(({micros}) % 1000000 AS STRING), 6, '0')) AS DOUBLE) END"
    )


def _apply_cap(flags: DataFrame, hours: float) -> tuple[DataFrame, int]:
    """Inside each session at least `hours` long, the first event `hours` after the session's start starts the
    next one, and so on from that event (sql/sessionize.sql's recursive session_cuts)."""
    # at least one microsecond (sql/sessionize.sql): with zero, every event, the first included, would be a cut
    cap_us = max(1, round(float(hours) * 3600 * 1_000_000))
    spans = flags.groupBy("customer_id", "increment").agg(
        (F.max("ts_us") - F.min("ts_us")).alias("span"),
        F.sort_array(F.collect_list(F.struct("ts_us", "event_id"))).alias("events"),
    )
    long_sessions = spans.where(F.col("span") >= cap_us)
    cuts = long_sessions.select(
        F.explode(
            F.expr(
                f"""aggregate(events,
                       named_struct('start', events[0].ts_us, 'cuts', CAST(array() AS array<bigint>)),
                       (acc, e) -> CASE WHEN e.ts_us >= acc.start + {cap_us}
                                        THEN named_struct('start', e.ts_us, 'cuts', concat(acc.cuts, array(e.event_id)))
                                        ELSE acc END,
                       acc -> acc.cuts)"""
            )
        ).alias("event_id")
    ).withColumn("is_cut", F.lit(True))
    cuts = cuts.persist()
    cut_count = cuts.count()
    per_customer = "PARTITION BY customer_id ORDER BY ts_us, event_id"
    flags = (
        flags.join(F.broadcast(cuts) if cut_count < 1_000_000 else cuts, "event_id", "left")
        .withColumn("starts", F.col("starts") | F.coalesce(F.col("is_cut"), F.lit(False)))
        .drop("is_cut", "increment")
        .withColumn("increment", F.expr(f"count_if(starts) OVER ({per_customer} ROWS UNBOUNDED PRECEDING)"))
    )
    return flags, cut_count


def medians(sessions: DataFrame) -> dict[str, float | None]:
    """The three medians of sql/median_*.sql, exact (percentile = percentile_cont(0.5))."""
    sessions.createOrReplaceTempView("xccel_sessions")
    spark = sessions.sparkSession
    row = spark.sql(
        """
        SELECT (SELECT percentile(first_order_session_number - 1, 0.5) FROM xccel_sessions
                WHERE session_number = 1 AND first_order_session_number IS NOT NULL) AS visits,
               (SELECT percentile(duration_minutes, 0.5) FROM xccel_sessions
                WHERE session_number < first_order_session_number) AS duration,
               (SELECT percentile(total_minutes, 0.5)
                FROM (SELECT aggregate(  -- summed in session order, as buyer_minutes_before_order() sums
                                 transform(array_sort(collect_list(CASE WHEN session_number < first_order_session_number
                                                                        THEN struct(session_number, duration_minutes)
                                                                   END)),
                                           x -> x.duration_minutes),
                                 0D, (total, minutes) -> total + minutes) AS total_minutes
                      FROM xccel_sessions WHERE first_order_session_number IS NOT NULL
                      GROUP BY customer_id)) AS total
        """
    ).collect()[0]
    return {
        "median_visits_before_order": row.visits,
        "median_session_duration_minutes_before_order": row.duration,
        "median_total_minutes_before_order": row.total,
    }


# --- the warehouse ------------------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def _hadoop_fs(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm: Any = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hadoop_path


def _write_text(spark: SparkSession, path: str, text: str) -> None:
    fs, hadoop_path = _hadoop_fs(spark, path)
    stream = fs.create(hadoop_path, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def _read_text(spark: SparkSession, path: str) -> str | None:
    fs, hadoop_path = _hadoop_fs(spark, path)
    if not fs.exists(hadoop_path):
        return None
    jvm: Any = spark.sparkContext._jvm
    stream = fs.open(hadoop_path)
    try:
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode()


def current_run_folder(spark: SparkSession, warehouse: str) -> str | None:
    """The newest complete run folder under the warehouse, or None before the first run."""
    text = _read_text(spark, _join(warehouse, POINTER))
    return text.strip() if text and text.strip() else None


def set_current_run_folder(spark: SparkSession, warehouse: str, folder: str) -> None:
    """Point the warehouse at a complete run folder, then drop folders older than the previous one.

    Written to a temporary name and renamed over the pointer where the filesystem renames atomically
    (local, HDFS); on object stores (s3a, gs) a single small object written at once is replaced atomically.
    """
    pointer = _join(warehouse, POINTER)
    local = _local_path(pointer)
    if local is not None:
        temporary = f"{local}.{uuid.uuid4().hex}"
        with open(temporary, "w") as handle:
            handle.write(folder + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, local)
    else:
        _write_text(spark, pointer, folder + "\n")
    _drop_old_run_folders(spark, warehouse, folder)


def _drop_old_run_folders(spark: SparkSession, warehouse: str, current: str) -> None:
    fs, hadoop_path = _hadoop_fs(spark, warehouse)
    statuses = fs.listStatus(hadoop_path)
    folders = sorted(
        (s.getModificationTime(), s.getPath().getName(), s.getPath())
        for s in statuses
        if s.isDirectory() and s.getPath().getName().startswith("run-")
    )
    keep = {current} | {name for _, name, _ in folders[-KEEP_RUN_FOLDERS:]}
    for _, name, path in folders:
        if name not in keep:
            fs.delete(path, True)


def read_output(spark: SparkSession, warehouse: str, name: str) -> DataFrame:
    """One output table of the current run folder."""
    folder = current_run_folder(spark, warehouse)
    if folder is None:
        raise JobError(f"the warehouse {warehouse} holds no complete run", kind="source")
    return spark.read.parquet(_join(warehouse, folder, name))


# --- spark-submit entry point ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="job.py", description="The xccel pipeline on Spark: dump files in, Parquet tables under the warehouse."
    )
    parser.add_argument("--source", action="append", required=True, help="a dump file (any Hadoop URI); repeatable")
    parser.add_argument("--warehouse", required=True, help="output folder (any Hadoop URI)")
    parser.add_argument("--timeout-minutes", type=int, default=30)
    parser.add_argument("--split-at-midnight", action="store_true")
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--split-on-referrer", action="store_true")
    parser.add_argument("--max-session-hours", type=float, default=None)
    parser.add_argument("--keep-anonymous", action="store_true")
    parser.add_argument("--max-reject-share", type=float, default=0.05)
    parser.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES)
    parser.add_argument("--run-id", type=int, default=0, help="stored with the rows this run adds")
    args = parser.parse_args(argv)
    rules = {
        "timeout_minutes": args.timeout_minutes,
        "split_at_midnight": args.split_at_midnight,
        "timezone": args.timezone,
        "split_on_referrer": args.split_on_referrer,
        "max_session_hours": args.max_session_hours,
    }
    spark = session_builder(None, {}).getOrCreate()
    try:
        result = run_job(
            spark,
            expand_sources(spark, args.source),
            args.warehouse,
            rules,
            keep_anonymous=args.keep_anonymous,
            max_reject_share=args.max_reject_share,
            max_line_bytes=args.max_line_bytes,
            run_id=args.run_id,
        )
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 6 if exc.kind == "data" else 4
    finally:
        spark.stop()
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
