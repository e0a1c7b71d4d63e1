"""The terminal never drops or cuts a figure: `report`, `report --by referrer`, `runs` and `status`
rendered at 40, 60, 80 and 120 columns and in a pipe; every figure of their JSON appears whole in the text,
every referrer URL on one line, no line wider than the terminal unless it is one unbreakable word."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import loaded_database, run_xccel
from tests.test_dashboard import write_dump
from tests.xccel_driver import METRIC_KEYS

# the tables drawn by the real command, at each width and in a pipe
pytestmark = pytest.mark.integration

LONG_REFERRER = (
    "https://mail.example.com/newsletter/2022/spring-campaign/landing?utm_source=newsletter&utm_medium=email"
)
REFERRERS = ["https://www.google.com", "https://bing.com", LONG_REFERRER]
WIDTHS: list[int | None] = [40, 60, 80, 120, None]  # None: a pipe, with no COLUMNS set


def xccel_text(args: list[str], width: int | None) -> str:
    """The command's stdout as a user sees it at that width (COLUMNS), or through a pipe (no COLUMNS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k not in ("COLUMNS", "LINES")}
    if width is not None:
        env["COLUMNS"] = str(width)
    with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:  # gone when the command is
        env["XCCEL_DATA_DIR"] = data_dir
        proc = subprocess.run(
            [sys.executable, "-m", "xccel_cli", *args], capture_output=True, text=True, env=env, timeout=120
        )
    assert proc.returncode in (0, 9), proc.stderr
    return proc.stdout


def shown(value: Any, decimals: int = 2) -> str:
    """A figure as the terminal writes it: 1,234 for integers, two decimals for other numbers."""
    if isinstance(value, bool) or value is None:
        raise AssertionError(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{decimals}f}"


def assert_whole(figure: str, text: str) -> None:
    """The figure appears as a whole token: not inside a longer number, not split across lines."""
    pattern = rf"(?<![\d.,]){re.escape(figure)}(?!\d|[.,]\d)"
    assert re.search(pattern, text), f"{figure!r} missing or cut in:\n{text}"


def assert_fits(text: str, width: int | None) -> None:
    """Nothing cut; at a terminal width no line wider than it but an unbreakable word. In a pipe tables are
    laid out for 80 columns and prose lines stay whole (for grep)."""
    assert "…" not in text and "..." not in text
    if width is None:
        assert all(len(line) <= 80 for line in text.splitlines() if "│" in line or "┃" in line)
        return
    for line in text.splitlines():
        if len(line) > width:
            assert len(line.split()) == 1, f"a line of {len(line)} columns at width {width}: {line!r}"


@pytest.fixture(scope="module")
def published(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One database with a dump through the real pipeline, shared by the rendering checks (they only read)."""
    dump = write_dump(tmp_path_factory.mktemp("terminal") / "events.ndjson", seed=5, referrers=REFERRERS)
    with loaded_database(pg_admin_url, f"xccel_terminal_{os.getpid()}", dump) as url:
        yield url


def json_of(args: list[str], url: str) -> Any:
    result = run_xccel([*args, "--json", "--database-url", url])
    assert result.exit_code in (0, 9), result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("width", WIDTHS)
def test_report_keeps_every_figure(published: str, width: int | None) -> None:
    figures = json_of(["report"], published)
    text = xccel_text(["report", "--database-url", published], width)
    assert_fits(text, width)
    for key in METRIC_KEYS:
        assert any(key in line.split() for line in text.splitlines()), key  # the name is never broken
        assert_whole(shown(figures[key]), text)


@pytest.mark.parametrize("width", WIDTHS)
def test_report_by_referrer_keeps_every_figure_and_every_url_whole(published: str, width: int | None) -> None:
    rows = json_of(["report", "--by", "referrer"], published)
    assert {row["referrer"] for row in rows} >= set(REFERRERS)
    text = xccel_text(["report", "--by", "referrer", "--database-url", published], width)
    assert_fits(text, width)
    lines = text.splitlines()
    for row in rows:
        assert any(row["referrer"] in line for line in lines), row["referrer"]  # on one line, never broken
        for key in ("sessions", "customers", "median_duration_minutes", "p90_duration_minutes"):
            assert_whole(shown(row[key]), text)
        assert_whole(f"{row['share_with_order']:.1%}", text)
        assert_whole(shown(row["mean_events_per_session"]), text)
    if width is not None and width <= 60:
        assert "┃" not in text  # too narrow for the table: one block per referrer instead


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_and_status_keep_every_figure(published: str, width: int | None) -> None:
    runs = json_of(["runs"], published)
    text = xccel_text(["runs", "--database-url", published], width)
    assert_fits(text, width)
    for run in runs:
        assert_whole(f"run {run['run_id']}", text)
        for key in ("lines_read", "loaded", "already_loaded", "anonymous", "duplicates", "rejected"):
            assert_whole(shown(run[key]), text)
        for seconds in run["stage_seconds"].values():
            assert_whole(f"{seconds:.2f}", text)
        assert any(run["source"] in line for line in text.splitlines())  # the source path on one line

    status = json_of(["status"], published)
    text = xccel_text(["status", "--database-url", published], width)
    assert_fits(text, width)
    assert_whole(shown(status["events"]), text)
    assert_whole(shown(status["sessions"]), text)
    assert_whole(f"run {status['published_by_run_id']}", text)


def test_a_long_line_of_prose_wraps_at_spaces(published: str, tmp_path: Path) -> None:
    text = xccel_text(["report", "--database-url", published], 40)
    definition_words = [
        "Median,",
        "over",
        "customers",
        "with",
        "an",
        "order,",
        "of",
        "the",
        "sessions",
        "before",
        "the",
        "session",
    ]
    flowing = " ".join(text.split())
    assert " ".join(definition_words) in flowing  # wrapped, but every word whole and in order
