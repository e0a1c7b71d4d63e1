"""Test-only: pause a real `xccel` process at a known place, so that a test can kill it, or start a second run,
right there. Production code knows nothing of this.

Python imports `sitecustomize` at start-up from the path; tests/conftest.py (pause_hook_environment) puts this
folder on PYTHONPATH only for a process started with XCCEL_TEST_PAUSE_AT=<point>. The points are the stages of
a run: before extract, sessionize and load, and "finish" (after load); and, in a Spark run's publication,
"publish_<table>" before the COPY into that table (tb_events_next, sessions_next). At its point the process says
"xccel: paused at <point>" on stderr and waits until the file XCCEL_TEST_RESUME_FILE exists (or for an hour).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# the pipeline's stage function -> the point before it
STAGES = {"_extract_stage": "extract", "_sessionize_stage": "sessionize", "_load_stage": "load"}
AFTER_LOAD = "finish"


def pause(point: str) -> None:
    if os.environ.get("XCCEL_TEST_PAUSE_AT") != point:
        return
    print(f"xccel: paused at {point}", file=sys.stderr, flush=True)
    resume = os.environ.get("XCCEL_TEST_RESUME_FILE")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and not (resume and os.path.exists(resume)):
        time.sleep(0.05)


def paused(stage: Callable[..., Any], point: str) -> Callable[..., Any]:
    @functools.wraps(stage)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        pause(point)
        result = stage(*args, **kwargs)
        if point == "load":
            pause(AFTER_LOAD)
        return result

    return wrapper


def paused_copy(copy: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(copy)
    def wrapper(conn: Any, spark: Any, path: str, table: str) -> Any:
        pause(f"publish_{table}")
        return copy(conn, spark, path, table)

    return wrapper


def install() -> None:
    from xccel_cli import pipeline
    from xccel_cli.spark import engine

    for name, point in STAGES.items():
        setattr(pipeline, name, paused(getattr(pipeline, name), point))
    engine._copy_parquet = paused_copy(engine._copy_parquet)


if os.environ.get("XCCEL_TEST_PAUSE_AT"):
    install()
