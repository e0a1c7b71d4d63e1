"""The commands that change data, each recorded in the runs table; run_all chains them on one connection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from xccel_cli.config import SessionRules
from xccel_cli.db import Database
from xccel_cli.errors import XccelError
from xccel_cli.extract import ExtractResult, ProgressCallback, extract
from xccel_cli.load import LoadResult, load
from xccel_cli.metrics import Report, report
from xccel_cli.runs import finish_run, start_run
from xccel_cli.schema import InitResult, init_db, require_schema
from xccel_cli.sessionize import SessionizeResult, sessionize


@dataclass
class RunRecord:
    run_id: int
    counts: dict[str, int | None] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    status: str = "succeeded"


@contextmanager
def recorded_run(
    db: Database, command: str, *, wait: bool, source: str | None = None, rules: SessionRules | None = None
) -> Iterator[RunRecord]:
    """Take the pipeline lock, open a runs row, and close it as succeeded or failed (with the reason)."""
    require_schema(db)
    db.lock_pipeline(wait)
    record = RunRecord(start_run(db, command, source, rules.as_dict() if rules else None))
    try:
        yield record
    except BaseException as exc:
        message = str(exc) if isinstance(exc, XccelError) else f"{type(exc).__name__}: {exc}"
        with suppress(Exception):  # the connection itself may be what failed
            finish_run(db, record.run_id, "failed", error=message[:2000], counts=record.counts,
                       stage_seconds=record.stage_seconds)
        raise
    finish_run(db, record.run_id, record.status, counts=record.counts, stage_seconds=record.stage_seconds)


def _extract_counts(result: ExtractResult) -> dict[str, int | None]:
    return {
        "lines_read": result.lines_read, "loaded": result.loaded, "anonymous": result.anonymous,
        "duplicates": result.duplicates, "already_loaded": result.already_loaded, "rejected": result.rejected,
    }


@dataclass
class ExtractOptions:
    source: str
    keep_anonymous: bool = False
    max_reject_share: float = 0.05
    retries: int = 3
    progress: ProgressCallback | None = None


def run_extract(db: Database, options: ExtractOptions, *, wait: bool = False) -> ExtractResult:
    with recorded_run(db, "extract", wait=wait, source=options.source) as record:
        result = _extract_stage(db, options, record)
    return result


def _extract_stage(db: Database, options: ExtractOptions, record: RunRecord) -> ExtractResult:
    result = extract(
        db, options.source, record.run_id, keep_anonymous=options.keep_anonymous,
        max_reject_share=options.max_reject_share, progress=options.progress, retries=options.retries,
    )
    record.counts.update(_extract_counts(result))
    record.stage_seconds["extract"] = result.seconds
    return result


def run_sessionize(
    db: Database, rules: SessionRules, *, full_refresh: bool = False, wait: bool = False
) -> SessionizeResult:
    with recorded_run(db, "sessionize", wait=wait, rules=rules) as record:
        result = sessionize(db, rules, record.run_id, full_refresh)
        record.counts["customers_touched"] = result.customers_rebuilt
        record.stage_seconds["sessionize"] = result.seconds
    return result


def run_load(db: Database, *, wait: bool = False) -> LoadResult:
    with recorded_run(db, "load", wait=wait) as record:
        result = load(db, record.run_id)
        record.stage_seconds["load"] = result.seconds
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


def run_all(
    db: Database, options: ExtractOptions, rules: SessionRules, *, full_refresh: bool = False, wait: bool = False
) -> RunAllResult:
    """init-db, extract, sessionize, load and report, as one recorded run on one connection."""
    started = time.perf_counter()
    stages: dict[str, float] = {}
    t = time.perf_counter()
    init = init_db(db)
    stages["init_db"] = time.perf_counter() - t
    with recorded_run(db, "run-all", wait=wait, source=options.source, rules=rules) as record:
        extracted = _extract_stage(db, options, record)
        stages["extract"] = extracted.seconds
        sessionized = sessionize(db, rules, record.run_id, full_refresh)
        record.counts["customers_touched"] = sessionized.customers_rebuilt
        stages["sessionize"] = record.stage_seconds["sessionize"] = sessionized.seconds
        loaded = load(db, record.run_id)
        stages["load"] = record.stage_seconds["load"] = loaded.seconds
    t = time.perf_counter()
    metrics = report(db)
    stages["report"] = time.perf_counter() - t
    return RunAllResult(record.run_id, init, extracted, sessionized, loaded, metrics, stages,
                        time.perf_counter() - started)
