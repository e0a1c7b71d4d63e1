"""`make bench` end to end on a tiny dump: it runs the real command over HTTP and reports what it measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_extract_paths import event_line

pytestmark = pytest.mark.integration  # real processes: the subject of these tests


def test_bench_runs_run_all_reload_report_and_floors(pg_admin_url: str, tmp_path: Path) -> None:
    lines = [event_line(i, i % 7 if i % 3 else None, minute=i % 60) for i in range(1, 301)]
    lines += [event_line(5, 5, "duplicate"), event_line(2000, 1, "order")]
    dump = tmp_path / "events.ndjson"
    dump.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench.py"),
            "--path",
            str(dump),
            "--repeat",
            "1",
            "--database-url",
            pg_admin_url,
            "--skip-embedded",
            "--json-out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run-all wall (cold process)" in proc.stdout and "floor: COPY into text table" in proc.stdout
    (result,) = json.loads(out.read_text())
    assert result["lines"] == 302
    assert result["loaded"] == 201  # ids 1..300 not divisible by 3, plus 2000; the duplicate id 5 counts once
    assert result["again_loaded"] == 0
    assert (result["reload_loaded"], result["reload_already_loaded"]) == (0, 201)
    assert result["reload_same_report"] is True
    assert all(seconds > 0 for seconds in result["wall"] + result["floor_copy"] + result["floor_decode"])
    assert result["max_rss_mb"][0] > 10  # the xccel process's own peak RSS, not zero or the bench's


def test_serve_load_check_measures_serve_flask_and_the_dashboard(pg_admin_url: str, database_url: str) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install -y wrk); the serve load check needs it")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "serve_load.py"),
            "--database-url",
            database_url,
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a target missed on a busy machine; 2 would be a failure
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["data"]["events"] == 1142  # the shipped example dump, loaded because nothing was published
    serve, flask = summary["figures"]
    assert serve["server"].startswith("xccel serve") and flask["server"].startswith("flask")
    for figures in (serve, flask):
        assert figures["requests"] > 0 and figures["errors"] == 0, figures
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert len(summary["dashboard_ms"]) == 5 and all(ms > 0 for ms in summary["dashboard_ms"])
