"""Test-only: pause a real `xccel` process at a known place, so that a test can kill it, or start a second run,
right there. Production code knows nothing of this.

Python imports `sitecustomize` at start-up from the path; tests/conftest.py (pause_hook_environment) puts this
folder on PYTHONPATH only for a process started with XCCEL_TEST_PAUSE_AT=<point>. The points are the stages of
a run: before extract, sessionize and load, and "finish" (after load); and "publish_<table>": in the middle
of a COPY into that table (tb_events_next, sessions_next), after its first chunk. At its point the process says
"xccel: paused at <point>" on stderr and waits until the file XCCEL_TEST_RESUME_FILE exists (or for an hour).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
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


def paused_copy(copy_method: Callable[..., Any], point: str) -> Callable[..., Any]:
    """Cursor.copy, but a COPY into the point's table pauses right after its first chunk is sent."""
    table = point.removeprefix("publish_")

    @functools.wraps(copy_method)
    @contextlib.contextmanager
    def wrapper(cursor: Any, statement: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        text = statement.as_string(cursor) if hasattr(statement, "as_string") else str(statement)
        with copy_method(cursor, statement, *args, **kwargs) as copy:
            if f'"{table}"' in text or f" {table} " in text:
                write = copy.write

                def write_then_pause(buffer: Any) -> None:
                    write(buffer)
                    copy.write = write
                    pause(point)

                copy.write = write_then_pause
            yield copy

    return wrapper


def install() -> None:
    from xccel_cli import pipeline

    for name, point in STAGES.items():
        setattr(pipeline, name, paused(getattr(pipeline, name), point))
    point = os.environ.get("XCCEL_TEST_PAUSE_AT", "")
    if point.startswith("publish_"):
        import psycopg

        psycopg.Cursor.copy = paused_copy(psycopg.Cursor.copy, point)  # type: ignore[method-assign]


if os.environ.get("XCCEL_TEST_PAUSE_AT"):
    install()
