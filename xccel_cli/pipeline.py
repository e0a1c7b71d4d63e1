"""The commands that change data, each recorded in the runs table; run_all chains them on one connection.

Every stage commits on its own (extract: raw_events; sessionize: the *_next tables; load: the swap), so
a run killed at any point leaves the published tables as they were, and the next run catches up:
raw_events a dead run committed are newer than the last publication and get sessionized then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xccel_cli.config import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_PUBLISH_WAIT_SECONDS,
    DEFAULT_RETRIES,
    SessionRules,
    mask_password,
    mask_url,
)
from xccel_cli.db import Database
from xccel_cli.errors import Interrupted, XccelError
from xccel_cli.extract import ExtractResult, ProgressCallback, extract
from xccel_cli.load import LoadResult, load
from xccel_cli.metrics import Report, report
from xccel_cli.publications import publication_is_current
from xccel_cli.runs import add_stage_seconds, finish_run, last_fingerprint, mark_interrupted_runs, start_run
from xccel_cli.schema import InitResult, init_db, require_schema
from xccel_cli.secrets import hidden_digest, same_hidden
from xccel_cli.sessionize import SessionizeResult, sessionize
from xccel_cli.source import SourceInterrupted, source_unchanged

if TYPE_CHECKING:
    from xccel_cli.spark.engine import SparkSettings

log = logging.getLogger(__name__)

# the stages of run-all, in order (stage_seconds keys; jsonb does not keep their order)
STAGES = ("init_db", "extract", "sessionize", "load", "report")


@dataclass
class RunRecord:
    run_id: int
    counts: dict[str, int | None] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    status: str = "succeeded"
    fingerprint: dict[str, Any] | None = None
    publication_id: int | None = None  # set once this run's load has committed: its result is live


@contextmanager
def recorded_run(
    db: Database, command: str, *, wait: bool, source: str | None = None, rules: SessionRules | None = None
) -> Iterator[RunRecord]:
    """Take the pipeline lock, open a runs row, and close it as succeeded or failed (with the reason)."""
    require_schema(db)
    db.lock_pipeline(wait)
    # holding the lock, any run still marked running died without saying so (kill -9, lost connection)
    mark_interrupted_runs(db)
    record = RunRecord(start_run(db, command, mask_url(source) if source else None, rules.as_dict() if rules else None))
    log.info("run %d (%s) started%s", record.run_id, command, f" on {mask_url(source)}" if source else "")
    try:
        yield record
    except BaseException as exc:
        outcome = "failed"
        if isinstance(exc, KeyboardInterrupt):
            outcome, exc = "interrupted", interrupted(record)
        message = mask_password(str(exc) if isinstance(exc, XccelError) else f"{type(exc).__name__}: {exc}")
        log.error("run %d (%s) %s: %s", record.run_id, command, outcome, message, extra={"file_only": True})
        with suppress(Exception):  # the connection itself may be what failed
            finish_run(
                db,
                record.run_id,
                outcome,
                error=message[:2000],
                counts=record.counts,
                stage_seconds=record.stage_seconds,
            )
        if isinstance(exc, Interrupted):
            raise exc from None
        raise
    finish_run(
        db,
        record.run_id,
        record.status,
        counts=record.counts,
        stage_seconds=record.stage_seconds,
        fingerprint=record.fingerprint,
    )
    log.info("run %d (%s) %s", record.run_id, command, record.status)


def interrupted(record: RunRecord) -> Interrupted:
    """What Ctrl+C did to this run, truthfully: before load commits nothing is published; after, the
    run's result is live even though the run did not finish."""
    if record.publication_id is not None:
        return Interrupted(
            f"interrupted after publishing: publication {record.publication_id} of run {record.run_id} is live"
        )
    return Interrupted(f"interrupted; nothing was published by run {record.run_id}")


def _extract_counts(result: ExtractResult) -> dict[str, int | None]:
    return {
        "lines_read": result.lines_read,
        "loaded": result.loaded,
        "anonymous": result.anonymous,
        "duplicates": result.duplicates,
        "already_loaded": result.already_loaded,
        "rejected": result.rejected,
    }


@dataclass
class ExtractOptions:
    source: str
    keep_anonymous: bool = False
    max_reject_share: float = 0.05
    retries: int = DEFAULT_RETRIES
    progress: ProgressCallback | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    retry_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS  # the first wait; each retry doubles it
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS  # the longest silence tolerated from a server
    phase: Callable[[str], None] | None = None  # told the name of each stage of run_all as it starts
    sized: Callable[[int], None] | None = None  # told an HTTP body's Content-Length once it is known
    # several files, read one after the other in this (path) order as one stream; empty: `source` alone
    sources: list[str] = field(default_factory=list)
    # why the sources cannot be read, found before the run (a glob matching nothing): run_all fails with it
    unreadable: XccelError | None = None

    def source_list(self) -> list[str]:
        return self.sources or [self.source]


def run_extract(db: Database, options: ExtractOptions, *, wait: bool = False) -> ExtractResult:
    with recorded_run(db, "extract", wait=wait, source=options.source) as record:
        result = _extract_stage(db, options, record)
    return result


def _extract_stage(db: Database, options: ExtractOptions, record: RunRecord) -> ExtractResult:
    """Extract, starting over (its transaction rolled back) when a body broke off and cannot be resumed."""
    retries = options.retries
    restarts = 0
    while True:
        try:
            result = extract(
                db,
                options.sources if len(options.sources) > 1 else options.source,
                record.run_id,
                keep_anonymous=options.keep_anonymous,
                max_reject_share=options.max_reject_share,
                progress=options.progress,
                retries=retries - restarts,
                max_line_bytes=options.max_line_bytes,
                on_size=options.sized,
                http_timeout_seconds=options.http_timeout_seconds,
                retry_backoff_seconds=options.retry_backoff_seconds,
            )
            break
        except SourceInterrupted as exc:
            if restarts >= retries:
                raise
            restarts += 1
            delay = options.retry_backoff_seconds * 2 ** (restarts - 1)
            log.warning("%s; starting the extract over (%d of %d) in %.1f s", exc, restarts, retries, delay)
            time.sleep(delay)
    record.counts.update(_extract_counts(result))
    record.stage_seconds["extract"] = result.seconds
    log.info(
        "extracted %d lines in %.2f s: %d loaded, %d already loaded, %d anonymous, %d duplicates, %d rejected",
        result.lines_read,
        result.seconds,
        result.loaded,
        result.already_loaded,
        result.anonymous,
        result.duplicates,
        result.rejected,
    )
    if result.source_info is not None and result.source_info.kind not in ("stdin", "files"):
        # what "unchanged" compares: the source, whether its anonymous events were kept, and the line limit
        # (a larger one keeps lines this run refused as too long)
        record.fingerprint = {
            **result.source_info.fingerprint(),
            "keep_anonymous": options.keep_anonymous,
            "max_line_bytes": options.max_line_bytes,
        }
        # runs.source keeps the URL masked: URLs that differ only in what the mask hides must not share
        # their previous run's fingerprint
        if (digest := hidden_digest(options.source)) is not None:
            record.fingerprint["source_digest"] = digest
    return result


def _sessionize_stage(db: Database, rules: SessionRules, record: RunRecord, full_refresh: bool) -> SessionizeResult:
    result = sessionize(db, rules, record.run_id, full_refresh)
    record.counts["customers_touched"] = result.customers_rebuilt
    record.stage_seconds["sessionize"] = result.seconds
    log.info(
        "sessionized %d events into %d sessions (%d customers rebuilt: %s)",
        result.events,
        result.sessions,
        result.customers_rebuilt,
        result.reason,
    )
    return result


def _load_stage(db: Database, record: RunRecord, publish_wait_seconds: float) -> LoadResult:
    result = load(db, record.run_id, wait_seconds=publish_wait_seconds)
    record.publication_id = result.publication_id
    record.stage_seconds["load"] = result.seconds
    log.info(
        "published %d events and %d sessions (publication %d)", result.events, result.sessions, result.publication_id
    )
    return result


def run_sessionize(
    db: Database, rules: SessionRules, *, full_refresh: bool = False, wait: bool = False
) -> SessionizeResult:
    with recorded_run(db, "sessionize", wait=wait, rules=rules) as record:
        result = _sessionize_stage(db, rules, record, full_refresh)
    return result


def run_load(
    db: Database, *, wait: bool = False, publish_wait_seconds: float = DEFAULT_PUBLISH_WAIT_SECONDS
) -> LoadResult:
    with recorded_run(db, "load", wait=wait) as record:
        result = _load_stage(db, record, publish_wait_seconds)
    return result


@dataclass
class RunAllResult:
    run_id: int
    init: InitResult
    extract: ExtractResult
    sessionize: SessionizeResult
    load: LoadResult
    report: Report
    stage_seconds: dict[str, float]
    total_seconds: float

    def summary(self) -> dict[str, Any]:
        e = self.extract
        return {
            "run_id": self.run_id,
            "status": "succeeded",
            "unchanged_since_run_id": None,
            "source": e.source,
            "lines_read": e.lines_read,
            "loaded": e.loaded,
            "anonymous": e.anonymous,
            "duplicates": e.duplicates,
            "already_loaded": e.already_loaded,
            "rejected": e.rejected,
            "reject_reasons": e.reject_reasons,
            "customers": self.report.customers,
            "customers_rebuilt": self.sessionize.customers_rebuilt,
            "sessions": self.report.sessions,
            "events": self.report.events,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "total_seconds": round(self.total_seconds, 3),
        }


@dataclass
class UnchangedResult:
    """run-all found the source as the run that loaded it left it, and the result up to date."""

    run_id: int
    source: str
    since_run_id: int  # the run that loaded what is published now
    report: Report
    seconds: float

    def summary(self) -> dict[str, Any]:
        """The same keys as RunAllResult.summary(): nothing was read, so the counts are null."""
        return {
            "run_id": self.run_id,
            "status": "unchanged",
            "unchanged_since_run_id": self.since_run_id,
            "source": self.source,
            **{key: None for key in UNREAD_COUNTS},
            "reject_reasons": {},
            "customers": self.report.customers,
            "customers_rebuilt": 0,
            "sessions": self.report.sessions,
            "events": self.report.events,
            "stage_seconds": {},
            "total_seconds": round(self.seconds, 3),
        }


UNREAD_COUNTS = ("lines_read", "loaded", "anonymous", "duplicates", "already_loaded", "rejected")


def _announce(options: ExtractOptions, stage: str) -> None:
    if options.phase is not None:
        options.phase(stage)


def run_all(
    db: Database,
    options: ExtractOptions,
    rules: SessionRules,
    *,
    full_refresh: bool = False,
    wait: bool = False,
    spark: SparkSettings | None = None,
    publish_wait_seconds: float = DEFAULT_PUBLISH_WAIT_SECONDS,
) -> RunAllResult | UnchangedResult:
    """init-db, extract, sessionize, load and report, as one recorded run on one connection.

    Returns an UnchangedResult, having done nothing, when the source matches the fingerprint of the
    last successful run and the published result already covers it under the same rules.
    With `spark`, the Spark job does extract and sessionize (xccel_cli/spark/engine.py).
    """
    if options.unreadable is not None:
        # a recorded run like any other that fails: status, runs and the metrics file see it
        init_db(db)
        with recorded_run(db, "run-all", wait=wait, source=options.source, rules=rules):
            raise options.unreadable
    if spark is not None:
        from xccel_cli.spark.engine import run_all_spark

        return run_all_spark(db, options, rules, spark, wait=wait, publish_wait_seconds=publish_wait_seconds)
    started = time.perf_counter()
    stages: dict[str, float] = {}
    t = time.perf_counter()
    init = init_db(db)
    stages["init_db"] = time.perf_counter() - t
    with recorded_run(db, "run-all", wait=wait, source=options.source, rules=rules) as record:
        record.stage_seconds["init_db"] = stages["init_db"]
        if not full_refresh and len(options.sources) <= 1:
            previous = last_fingerprint(db, mask_url(options.source))
            if (
                previous is not None
                # anonymous events kept now but not then must still be read, and so must lines now short enough
                and (previous[1].get("keep_anonymous", False) or not options.keep_anonymous)
                and previous[1].get("max_line_bytes", DEFAULT_MAX_LINE_BYTES) >= options.max_line_bytes
                and same_hidden(options.source, previous[1].get("source_digest"))
                and publication_is_current(db, rules.as_dict())
                and source_unchanged(options.source, previous[1])
            ):
                record.status = "unchanged"
                record.fingerprint = previous[1]
                log.info("source %s unchanged since run %d", mask_url(options.source), previous[0])
                since_run_id = previous[0]
        if record.status != "unchanged":
            _announce(options, "extract")
            extracted = _extract_stage(db, options, record)
            stages["extract"] = extracted.seconds
            _announce(options, "sessionize")
            sessionized = _sessionize_stage(db, rules, record, full_refresh)
            stages["sessionize"] = sessionized.seconds
            _announce(options, "load")
            loaded = _load_stage(db, record, publish_wait_seconds)
            stages["load"] = loaded.seconds
    t = time.perf_counter()
    try:
        metrics = report(db)
    except KeyboardInterrupt:
        raise interrupted(record) from None
    stages["report"] = time.perf_counter() - t
    add_stage_seconds(db, record.run_id, {"report": stages["report"]})
    if record.status == "unchanged":
        return UnchangedResult(
            record.run_id, mask_url(options.source), since_run_id, metrics, time.perf_counter() - started
        )
    return RunAllResult(
        record.run_id, init, extracted, sessionized, loaded, metrics, stages, time.perf_counter() - started
    )
