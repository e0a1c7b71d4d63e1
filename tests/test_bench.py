"""`make bench` end to end on a tiny dump: it runs the real command over HTTP and reports what it measured."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT
from tests.test_extract_paths import event_line, write_dump

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"

pytestmark = pytest.mark.integration  # real processes: the subject of these tests


def heavy_customer_lines() -> list[str]:
    """One customer with an event every 5 minutes for 10 hours (one long session): cut by a 2-hour cap."""
    return [
        json.dumps(
            {
                "id": 50_000 + i,
                "type": "placed_order" if i == 100 else "page_view",
                "event": {"customer-id": 99, "timestamp": f"2022-04-23T{8 + i // 12:02d}:{(i % 12) * 5:02d}:00"},
            }
        )
        for i in range(120)
    ]


def test_bench_runs_run_all_the_alternatives_the_rules_and_the_floors(pg_admin_url: str, tmp_path: Path) -> None:
    lines = [event_line(i, i % 7 if i % 3 else None, minute=i % 60) for i in range(1, 301)]
    lines += [event_line(5, 5, "duplicate"), event_line(2000, 1, "order")]
    dump = tmp_path / "events.ndjson"
    dump.write_text("".join(line + "\n" for line in lines))
    heavy = tmp_path / "heavy.ndjson"
    heavy.write_text("".join(line + "\n" for line in heavy_customer_lines()))
    out = tmp_path / "bench.json"
    record = tmp_path / "performance.md"
    record.write_text("# Performance record\n\n## an earlier entry\n")
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
            "--heavy-path",
            str(heavy),
            "--rules-rounds",
            "1",
            "--work-dir",
            str(tmp_path / "work"),
            "--record",
            str(record),
            "--json-out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run-all wall (cold process)" in proc.stdout and "floor: COPY into text table" in proc.stdout
    measurements = json.loads(out.read_text())
    (result,) = measurements["dumps"]
    assert result["lines"] == 302
    assert result["loaded"] == 201  # ids 1..300 not divisible by 3, plus 2000; the duplicate id 5 counts once
    assert result["again_loaded"] == 0
    assert (result["reload_loaded"], result["reload_already_loaded"]) == (0, 201)
    assert result["reload_same_report"] is True
    assert all(seconds > 0 for seconds in result["wall"] + result["floor_copy"] + result["floor_decode"])
    assert result["max_rss_mb"][0] > 10  # the xccel process's own peak RSS, not zero or the bench's
    # the alternatives did the same job and found the same figures
    assert result["report"]["events"] == 201 and result["report"]["sessions"] > 0
    assert result["duckdb_figures"] == result["report"] and result["duckdb_same_figures"] is True
    assert result["old_design_figures"] == result["report"] and result["old_design_same_figures"] is True
    assert result["duckdb_wall"][0] > 0 and result["duckdb_rss_mb"][0] > 10
    assert result["old_design_wall"] > 0 and result["old_design_rss_mb"] > 10
    # the rule sets on the dump with the heavy customer: the cap cuts its 10-hour session into five
    rules = measurements["rules"]
    assert rules["events"] == 201 + 120
    sessions = rules["sessions"]
    assert sessions["--max-session-hours 2"] == sessions["default rules (ga4)"] + 4
    assert all(len(walls) == 1 and walls[0] > 0 for walls in rules["sessionize_wall"].values())
    # every target is printed with its verdict; those not measured say so
    verdicts = {name: met for name, _, met in measurements["targets"]}
    assert len(verdicts) == 7
    assert verdicts["run-all no slower than DuckDB"] in (True, False)
    assert any(name.startswith("10x dump") and met is None for name, met in verdicts.items())
    targets = proc.stdout.split("targets (issue 13), from this run:", 1)[1]
    for name, met in verdicts.items():
        assert f"{'pass' if met else ('-' if met is None else 'FAIL'):<4}  {name}" in targets
    # the dated record: this run first, the earlier entry kept
    text = record.read_text()
    assert text.startswith("# Performance record\n\n## 20") and "machine: " in text
    assert text.index("run-all wall (cold process)") < text.index("## an earlier entry")


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
            "--rounds",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a target missed on a busy machine; 2 would be a failure
    assert proc.stdout.strip(), proc.stderr  # an exit with 1 and no summary is a crash, not a missed target
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["data"]["events"] == 1142  # the shipped example dump, loaded because nothing was published
    serve, flask = summary["figures"]
    assert serve["server"].startswith("xccel serve") and flask["server"].startswith("flask")
    ceiling = summary["ceiling"]
    assert ceiling["server"].startswith("bare uvicorn")
    assert summary["share_of_ceiling"] == round(serve["requests_per_second"] / ceiling["requests_per_second"], 2)
    # serve and the ceiling alternated: each reported figure is its lower middle round
    rounds = summary["rounds"]
    assert len(rounds["serve"]) == len(rounds["bare"]) == 2
    assert serve["requests_per_second"] == min(rounds["serve"])
    assert ceiling["requests_per_second"] == min(rounds["bare"])
    for figures in (serve, flask, ceiling, summary["revalidated"]):
        assert figures["requests"] > 0 and figures["errors"] == 0, figures
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert len(summary["dashboard_ms"]) == 5 and all(ms > 0 for ms in summary["dashboard_ms"])
    # the load's tables were vacuumed and analyzed before the rounds (so autovacuum does not run during one)
    with psycopg.connect(database_url) as conn:
        settled = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
        ).fetchall()
    assert {"raw_events", "tb_events", "sessions"} <= {name for (name,) in settled}


def test_line_budget_programs_do_the_work_they_count(tmp_path: Path) -> None:
    """bench/line_budget.py counts three programs under valgrind (by hand: minutes); here each runs natively."""
    lines = gzip.decompress(EXAMPLE.read_bytes()).splitlines(keepends=True)[:300]
    sample = tmp_path / "sample.ndjson"
    sample.write_bytes(b"".join(lines))
    logged_in = sum(1 for line in lines if json.loads(line)["event"].get("customer-id") is not None)
    said = {}
    for mode in ("baseline", "floor", "extract"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "line_budget.py"), "--inner", mode, "--path", str(sample)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        said[mode] = done.stdout.strip()
    assert said == {
        "baseline": f"bytes {sample.stat().st_size}",
        "floor": "decoded 300",
        "extract": f"read 300 kept {logged_in} dropped {300 - logged_in}",
    }
    assert 0 < logged_in < 300


def test_decode_processes_loads_the_same_rows_wherever_the_lines_are_decoded(database_url: str, tmp_path: Path) -> None:
    """bench/decode_processes.py compares placements of the same work; each must load the same kept lines."""
    # 30,000 lines, every third logged in, then 1,000 of them again and a line that is not JSON: several
    # blocks, so both workers get some
    lines = [event_line(i, i if i % 3 == 0 else None, "x" * 40) for i in range(30_000)]
    sample = tmp_path / "sample.ndjson"
    write_dump(sample, lines + lines[:1000] + ["{not json"])
    said = {}
    for processes in (0, 2):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "decode_processes.py"), "--inner", str(processes)]
            + ["--path", str(sample), "--database-url", database_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        said[processes] = done.stdout.strip()
    # the bench counts duplicates without cutting their rows out (its dumps have none)
    assert said == {n: f"loaded {10_000 + 334} duplicates 1000" for n in (0, 2)}
    assert sample.stat().st_size > 2 << 20
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('xccel_decode_processes_scratch')").fetchone() == (None,)
