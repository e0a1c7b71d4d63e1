"""Faults injected for real — a misbehaving HTTP server, kill -9, a database that goes away,
two runs at once. After each, the published tables are the last complete result and nothing is lost."""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import (
    Served,
    clean_environment,
    invoke_xccel,
    loaded_database,
    pause_hook_environment,
    started_process,
)
from tests.dumps import dump, random_events
from tests.fault_server import Fault, FaultServer, fault_server, free_port
from tests.xccel_driver import METRIC_KEYS as REPORT_KEYS
from xccel_cli.config import resolve
from xccel_cli.db import Database
from xccel_cli.errors import DataQualityError, SourceError
from xccel_cli.http_source import HttpFetch
from xccel_cli.pipeline import ExtractOptions, run_extract

__all__ = ["fault_server"]  # the fixture

RECORDS = random_events(3000, customers=60, seed=11)
BODY = dump(RECORDS)  # about 400 kB
KEPT = sorted({r["id"] for r in RECORDS if r["event"]["customer-id"] is not None})


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XCCEL_RETRY_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("XCCEL_HTTP_TIMEOUT_SECONDS", "1")


def fast_options(url: str, **kwargs: Any) -> ExtractOptions:
    """Extract options with the short backoff and timeout of `fast_retries` (what the CLI passes down)."""
    settings = resolve(os.environ)
    return ExtractOptions(
        url,
        retry_backoff_seconds=settings.retry_backoff_seconds,
        http_timeout_seconds=settings.http_timeout_seconds,
        **kwargs,
    )


def kept_ids(db: Database) -> list[int]:
    return [r[0] for r in db.conn.execute("SELECT event_id FROM raw_events ORDER BY event_id")]


def nothing_loaded(db: Database) -> bool:
    counts = db.conn.execute("SELECT (SELECT count(*) FROM raw_events), (SELECT count(*) FROM rejects)").fetchone()
    return counts == (0, 0)


# --- faults at the source -------------------------------------------------------------------------------


def test_retry_after_is_honoured_on_503_and_429(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("status", 503, retry_after="1"), Fault("status", 429)])
    result = run_extract(db, fast_options(url))
    assert result.loaded == len(KEPT) and kept_ids(db) == KEPT
    requests = fault_server.requests_for("/e.json")
    assert [r.status for r in requests] == [503, 429, 200]
    assert requests[1].at - requests[0].at >= 0.9  # Retry-After: 1, though the backoff is 0.01 s


@pytest.mark.parametrize("kind", ["reset", "stall", "short"])
def test_a_body_broken_off_is_resumed_with_range(db: Database, fault_server: FaultServer, kind: str) -> None:
    cut = 150_001
    url = fault_server.add("/e.json", BODY, ranges=True, faults=[Fault(kind, after_bytes=cut, seconds=3)])
    result = run_extract(db, fast_options(url))
    assert result.lines_read == len(RECORDS) and result.rejected == 0
    assert kept_ids(db) == KEPT
    requests = fault_server.requests_for("/e.json")
    assert [r.status for r in requests] == [200, 206]
    start = int(requests[1].headers["Range"].removeprefix("bytes=").removesuffix("-"))
    # a clean close delivers every byte sent; a TCP reset may discard what the client had not read yet
    assert start == cut if kind != "reset" else 0 <= start <= cut
    assert requests[1].headers["If-Range"] == '"v1"'


def test_a_gzip_encoded_body_is_resumed_in_its_encoded_bytes(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, ranges=True, gzip_encoding=True, faults=[Fault("reset", after_bytes=9999)])
    run_extract(db, fast_options(url))
    assert kept_ids(db) == KEPT
    assert [r.status for r in fault_server.requests_for("/e.json")] == [200, 206]


def test_without_range_support_the_extract_starts_over(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("reset", after_bytes=200_000)])
    result = run_extract(db, fast_options(url))
    assert result.lines_read == len(RECORDS)  # counted once: the broken attempt was rolled back
    assert kept_ids(db) == KEPT
    requests = fault_server.requests_for("/e.json")
    assert [r.status for r in requests] == [200, 200]
    assert "Range" not in requests[1].headers


def test_a_body_shorter_than_content_length_fails_when_retries_run_out(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("short", after_bytes=100_000)] * 3)
    with pytest.raises(SourceError, match=r"broke off: body shorter than announced; got 100,000 of [\d,]+ bytes"):
        run_extract(db, fast_options(url, retries=2))
    assert len(fault_server.requests_for("/e.json")) == 3
    assert nothing_loaded(db)
    assert db.conn.execute("SELECT status FROM runs").fetchone()[0] == "failed"


def test_a_last_line_cut_in_half_is_detected(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY[:-50])  # Content-Length agrees: the server itself has a cut file
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_extract(db, fast_options(url))
    assert nothing_loaded(db)


def test_connection_refused_is_retried_until_the_server_answers(db: Database) -> None:
    port = free_port()
    server = FaultServer(port)
    url = f"http://127.0.0.1:{port}/e.json"

    class StartOnFirstRetry(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "connection refused" in record.getMessage() and not server.base_url:
                server.add("/e.json", BODY)
                server.start()

    handler = StartOnFirstRetry()
    logger = logging.getLogger("xccel_cli.http_source")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        result = run_extract(db, fast_options(url, retries=3))
    finally:
        logger.removeHandler(handler)
        server.stop()
    assert server.base_url, "the first attempt should have been refused"
    assert result.loaded == len(KEPT)


def test_connection_refused_for_good_is_one_line_exit_4(database_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/e.json"
    result = invoke_xccel(
        ["run-all", "--source", url, "--retries", "2", "--database-url", database_url],
        env={"XCCEL_RETRY_BACKOFF_SECONDS": "0.01"},
    )
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == f"Error: cannot fetch {url}: connection refused (after 3 attempts)"
    assert result.stderr.count("retry ") == 2  # the retries are logged as warnings


@pytest.mark.parametrize("status, reason", [(404, "Not Found"), (403, "Forbidden")])
def test_client_errors_are_not_retried(database_url: str, fault_server: FaultServer, status: int, reason: str) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("status", status)])
    result = invoke_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert result.exit_code == 4
    assert result.stderr == f"Error: cannot fetch {url}: HTTP {status} {reason}\n"
    assert len(fault_server.requests_for("/e.json")) == 1


def test_a_non_http_url_and_a_missing_file_exit_4(database_url: str, tmp_path: Path) -> None:
    ftp = invoke_xccel(["run-all", "--source", "ftp://example.com/e.json", "--database-url", database_url])
    assert (ftp.exit_code, ftp.stderr) == (
        4,
        "Error: unsupported source ftp://example.com/e.json: use an http(s) URL, a file path or '-'\n",
    )
    missing = tmp_path / "nope.json"
    gone = invoke_xccel(["run-all", "--source", str(missing), "--database-url", database_url])
    assert (gone.exit_code, gone.stderr) == (4, f"Error: source not found: {missing}\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://a..b/e.json", "cannot fetch http://a..b/e.json: not a valid URL"),
        ("http://exa mple.com/e.json", "cannot fetch http://exa mple.com/e.json: not a valid URL"),
        ("http://u:pw-secret@a..b/e.json", "cannot fetch http://u:***@a..b/e.json: not a valid URL"),
        ("https:///e.json", "invalid source URL https:///e.json: it has no host"),
        ("https://[::1/e.json", "invalid source URL https://[::1/e.json: its host cannot be parsed"),
    ],
)
def test_a_url_that_cannot_be_fetched_is_not_retried(
    db: Database, url: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the library too (not only the CLI's check): a SourceError at once, never a ValueError."""
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as caught:
        run_extract(db, fast_options(url, retries=3))
    assert str(caught.value) == message
    assert [r.getMessage() for r in caplog.records if "retry" in r.getMessage()] == []


def test_the_http_timeouts(http_server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the README documents: XCCEL_HTTP_TIMEOUT_SECONDS (default 60) is the read timeout of each
    request, its connect timeout the same capped at 10 s."""
    url = http_server.add("/e.json", b"")
    monkeypatch.delenv("XCCEL_HTTP_TIMEOUT_SECONDS")
    for setting, expected in [(None, (10.0, 60.0)), ("2.5", (2.5, 2.5)), ("45", (10.0, 45.0))]:
        if setting is not None:
            monkeypatch.setenv("XCCEL_HTTP_TIMEOUT_SECONDS", setting)
        timeout = resolve(os.environ).http_timeout_seconds
        with HttpFetch(url, retries=0, timeout_seconds=timeout, backoff_seconds=0) as fetch:
            assert fetch.timeout == expected


def test_a_corrupt_gzip_body_is_a_clear_error_and_nothing_is_published(
    database_url: str, fault_server: FaultServer
) -> None:
    packed = bytearray(gzip.compress(BODY))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    url = fault_server.add("/e.json.gz", bytes(packed))
    result = invoke_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert result.exit_code == 6
    assert result.stderr.startswith(f"Error: {url} is not a valid gzip stream (")
    assert len(result.stderr.splitlines()) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM publications").fetchone()[0] == 0


# --- faults in the run: kill -9, a lost database, two runs at once -------------------------------------

RUN_RECORDS = random_events(12_000, customers=300, seed=5)  # about 1.5 MB: more than one chunk
RUN_BODY = dump(RUN_RECORDS)

METRIC_KEYS = (*REPORT_KEYS, "rules")


def xccel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a started process. Its data directory is not created: a test that lets the process
    start the embedded server passes its own XCCEL_DATA_DIR (else the leftover check reports the folder)."""
    env = clean_environment()
    env["XCCEL_DATA_DIR"] = str(Path(tempfile.gettempdir()) / f"xccel-data-unused-{uuid.uuid4().hex}")
    env.update(extra or {})
    return pause_hook_environment(env)


def start_xccel(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return started_process(
        subprocess.Popen(
            [sys.executable, "-m", "xccel_cli", *args],
            env=xccel_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tempfile.gettempdir(),
        )
    )


def wait_for_line(proc: subprocess.Popen[bytes], text: str) -> None:
    assert proc.stderr is not None
    for raw in proc.stderr:
        if text in raw.decode():
            return
    raise AssertionError(f"the process ended (code {proc.wait()}) before saying {text!r}")


def wait_until(check, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def backend_waiting_on(url: str, lock_type: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel' AND wait_event_type = 'Lock'"
                " AND wait_event = %s",
                (lock_type,),
            ).fetchone()[0]
            > 0
        )


def published(url: str) -> tuple[list[tuple], list[tuple], int]:
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("SELECT * FROM tb_events ORDER BY event_id").fetchall()
        sessions = conn.execute("SELECT * FROM sessions ORDER BY session_id").fetchall()
        publications = conn.execute("SELECT count(*) FROM publications").fetchone()[0]
    return events, sessions, publications


def report_of(url: str) -> dict:
    result = invoke_xccel(["report", "--json", "--database-url", url])
    assert result.exit_code == 0, result.stderr
    return {k: v for k, v in json.loads(result.stdout).items() if k in METRIC_KEYS}


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The dump of yesterday, and today's, which has grown (and gained late events for old customers)."""
    folder = tmp_path_factory.mktemp("batches")
    first, second = folder / "day1.json", folder / "day2.json"
    first.write_bytes(dump(RUN_RECORDS[:8000]))
    second.write_bytes(RUN_BODY)
    return first, second


@pytest.fixture(scope="module")
def reference(pg_admin_url: str, batches: tuple[Path, Path]) -> Iterator[tuple[dict, list, list]]:
    """An uninterrupted run on today's dump, in a database of its own: what recovery must reproduce."""
    with loaded_database(pg_admin_url, "xccel_reference", batches[1]) as url:
        events, sessions, _ = published(url)
        yield report_of(url), events, sessions


def first_day(url: str, batches: tuple[Path, Path]) -> tuple[list, list, int]:
    result = invoke_xccel(["run-all", "--source", str(batches[0]), "--database-url", url])
    assert result.exit_code == 0, result.stderr
    return published(url)


def assert_recovers(
    url: str, batches: tuple[Path, Path], before: tuple[list, list, int], reference: tuple[dict, list, list]
) -> None:
    """After a killed run: the previous result is intact, and the next run-all catches up exactly."""
    assert published(url) == before
    again = invoke_xccel(["run-all", "--source", str(batches[1]), "--wait", "--database-url", url])
    assert again.exit_code == 0, again.stderr
    expected_report, expected_events, expected_sessions = reference
    assert report_of(url) == expected_report
    events, sessions, publications = published(url)
    assert (events, sessions) == (expected_events, expected_sessions)
    assert publications == before[2] + 1
    runs = json.loads(invoke_xccel(["runs", "--json", "--database-url", url]).stdout)
    assert [r["status"] for r in runs] == ["succeeded", "interrupted", "succeeded"]


@pytest.mark.integration
def test_kill_during_extract(
    database_url: str, fault_server: FaultServer, batches: tuple[Path, Path], reference: tuple[dict, list, list]
) -> None:
    before = first_day(database_url, batches)
    hold = Fault("hold", after_bytes=len(RUN_BODY) - 100_000)
    url = fault_server.add("/day2.json", RUN_BODY, faults=[hold])
    proc = start_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert hold.reached.wait(60), "the run never reached the end of the download"

    def copying() -> bool:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel' AND query LIKE 'COPY %'"
                ).fetchone()[0]
                > 0
            )

    wait_until(copying, "the run to be copying rows")
    proc.kill()
    proc.wait()
    hold.release.set()
    assert published(database_url) == before
    assert_recovers(database_url, batches, before, reference)


@pytest.mark.integration
@pytest.mark.parametrize("where", ["sessionize", "load"])
def test_kill_in_the_middle_of_a_stage(
    database_url: str, batches: tuple[Path, Path], reference: tuple[dict, list, list], where: str
) -> None:
    """A reader's lock holds the run inside the stage's transaction (sessionize: building the *_next
    tables; load: taking the swap's locks, which it retries while readers hold them), where it is killed."""
    before = first_day(database_url, batches)
    with psycopg.connect(database_url) as blocker:
        if where == "sessionize":
            blocker.execute("LOCK TABLE tb_events IN ACCESS EXCLUSIVE MODE")
        else:
            blocker.execute("LOCK TABLE sessions IN ACCESS SHARE MODE")
        proc = start_xccel(["run-all", "--source", str(batches[1]), "--database-url", database_url])
        wait_until(lambda: backend_waiting_on(database_url, "relation"), f"the run to block inside {where}")
        with psycopg.connect(database_url, autocommit=True) as conn:
            query = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'xccel' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
        assert ("tb_events_next" if where == "sessionize" else "LOCK TABLE tb_events, sessions") in query
        proc.kill()
        proc.wait()
        blocker.rollback()
    assert_recovers(database_url, batches, before, reference)


@pytest.mark.integration
def test_kill_between_sessionize_and_load(
    database_url: str, batches: tuple[Path, Path], reference: tuple[dict, list, list]
) -> None:
    before = first_day(database_url, batches)
    proc = start_xccel(
        ["run-all", "--source", str(batches[1]), "--database-url", database_url], env={"XCCEL_TEST_PAUSE_AT": "load"}
    )
    wait_for_line(proc, "paused at load")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_recovers(database_url, batches, before, reference)


@pytest.mark.integration
def test_the_database_going_away_mid_run(
    database_url: str, batches: tuple[Path, Path], reference: tuple[dict, list, list]
) -> None:
    before = first_day(database_url, batches)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE sessions IN ACCESS SHARE MODE")
        proc = start_xccel(["run-all", "--source", str(batches[1]), "--database-url", database_url])
        wait_until(lambda: backend_waiting_on(database_url, "relation"), "the run to block inside load")
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'xccel'")
        out, err = proc.communicate(timeout=60)
        blocker.rollback()
    assert proc.returncode == 5
    assert err.decode().startswith("Error: lost the database connection: ")
    assert len(err.decode().splitlines()) == 1
    assert_recovers(database_url, batches, before, reference)


@pytest.mark.integration
def test_two_runs_at_once(database_url: str, batches: tuple[Path, Path], tmp_path: Path) -> None:
    before = first_day(database_url, batches)
    resume = tmp_path / "resume"
    first = start_xccel(
        ["run-all", "--source", str(batches[1]), "--database-url", database_url],
        env={"XCCEL_TEST_PAUSE_AT": "sessionize", "XCCEL_TEST_RESUME_FILE": str(resume)},
    )
    wait_for_line(first, "paused at sessionize")

    busy = invoke_xccel(["run-all", "--source", str(batches[1]), "--no-wait", "--database-url", database_url])
    assert busy.exit_code == 7
    assert busy.stderr == (
        "Error: another xccel run is in progress on this database; try again later or pass --wait to queue behind it\n"
    )

    # readers are not blocked by the run, and still see the previous result
    assert report_of(database_url)["events"] == len(before[0])
    status = json.loads(invoke_xccel(["status", "--json", "--database-url", database_url]).stdout)
    assert status["last_run"]["status"] == "running"

    waiting = start_xccel(["run-all", "--source", str(batches[1]), "--wait", "--json", "--database-url", database_url])
    wait_until(lambda: backend_waiting_on(database_url, "advisory"), "the second run to queue")
    assert waiting.poll() is None
    resume.touch()
    assert first.wait(60) == 0
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    runs = json.loads(invoke_xccel(["runs", "--json", "--database-url", database_url]).stdout)
    assert [r["status"] for r in runs[:2]] == ["unchanged", "succeeded"]
    assert runs[0]["started_at"] >= runs[1]["finished_at"]  # it queued behind the first
    assert json.loads(out)["run"]["status"] == "unchanged"
