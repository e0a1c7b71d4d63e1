"""Issue 4: faults injected for real — a misbehaving HTTP server, kill -9, a database that goes away,
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
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_xccel
from tests.dumps import dump, random_events
from tests.fault_server import Fault, FaultServer, fault_server, free_port
from xccel_cli.db import Database
from xccel_cli.errors import DataQualityError, SourceError
from xccel_cli.pipeline import ExtractOptions, run_extract

__all__ = ["fault_server"]  # the fixture

RECORDS = random_events(3000, customers=60, seed=11)
BODY = dump(RECORDS)  # about 400 kB
KEPT = sorted({r["id"] for r in RECORDS if r["event"]["customer-id"] is not None})


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XCCEL_RETRY_BACKOFF_SECONDS", "0.01")
    monkeypatch.setenv("XCCEL_HTTP_TIMEOUT_SECONDS", "1")


def kept_ids(db: Database) -> list[int]:
    return [r[0] for r in db.conn.execute("SELECT event_id FROM raw_events ORDER BY event_id")]


def nothing_loaded(db: Database) -> bool:
    counts = db.conn.execute("SELECT (SELECT count(*) FROM raw_events), (SELECT count(*) FROM rejects)").fetchone()
    return counts == (0, 0)


# --- faults at the source -------------------------------------------------------------------------------


def test_retry_after_is_honoured_on_503_and_429(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("status", 503, retry_after="1"), Fault("status", 429)])
    result = run_extract(db, ExtractOptions(url))
    assert result.loaded == len(KEPT) and kept_ids(db) == KEPT
    requests = fault_server.requests_for("/e.json")
    assert [r.status for r in requests] == [503, 429, 200]
    assert requests[1].at - requests[0].at >= 0.9  # Retry-After: 1, though the backoff is 0.01 s


@pytest.mark.parametrize("kind", ["reset", "stall", "short"])
def test_a_body_broken_off_is_resumed_with_range(db: Database, fault_server: FaultServer, kind: str) -> None:
    cut = 150_001
    url = fault_server.add("/e.json", BODY, ranges=True, faults=[Fault(kind, after_bytes=cut, seconds=3)])
    result = run_extract(db, ExtractOptions(url))
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
    run_extract(db, ExtractOptions(url))
    assert kept_ids(db) == KEPT
    assert [r.status for r in fault_server.requests_for("/e.json")] == [200, 206]


def test_without_range_support_the_extract_starts_over(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("reset", after_bytes=200_000)])
    result = run_extract(db, ExtractOptions(url))
    assert result.lines_read == len(RECORDS)  # counted once: the broken attempt was rolled back
    assert kept_ids(db) == KEPT
    requests = fault_server.requests_for("/e.json")
    assert [r.status for r in requests] == [200, 200]
    assert "Range" not in requests[1].headers


def test_a_body_shorter_than_content_length_fails_when_retries_run_out(db: Database,
                                                                        fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("short", after_bytes=100_000)] * 3)
    with pytest.raises(SourceError, match=r"broke off: body shorter than announced; got 100,000 of [\d,]+ bytes"):
        run_extract(db, ExtractOptions(url, retries=2))
    assert len(fault_server.requests_for("/e.json")) == 3
    assert nothing_loaded(db)
    assert db.conn.execute("SELECT status FROM runs").fetchone()[0] == "failed"


def test_a_last_line_cut_in_half_is_detected(db: Database, fault_server: FaultServer) -> None:
    url = fault_server.add("/e.json", BODY[:-50])  # Content-Length agrees: the server itself has a cut file
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_extract(db, ExtractOptions(url))
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
    logger = logging.getLogger("xccel_cli.source")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        result = run_extract(db, ExtractOptions(url, retries=3))
    finally:
        logger.removeHandler(handler)
        server.stop()
    assert server.base_url, "the first attempt should have been refused"
    assert result.loaded == len(KEPT)


def test_connection_refused_for_good_is_one_line_exit_4(database_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/e.json"
    result = run_xccel(["run-all", "--source", url, "--retries", "2", "--database-url", database_url],
                       env={"XCCEL_RETRY_BACKOFF_SECONDS": "0.01"})
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == f"Error: cannot fetch {url}: connection refused (after 3 attempts)"
    assert result.stderr.count("retry ") == 2  # the retries are logged as warnings


@pytest.mark.parametrize("status, reason", [(404, "Not Found"), (403, "Forbidden")])
def test_client_errors_are_not_retried(database_url: str, fault_server: FaultServer, status: int,
                                       reason: str) -> None:
    url = fault_server.add("/e.json", BODY, faults=[Fault("status", status)])
    result = run_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert result.exit_code == 4
    assert result.stderr == f"Error: cannot fetch {url}: HTTP {status} {reason}\n"
    assert len(fault_server.requests_for("/e.json")) == 1


def test_a_non_http_url_and_a_missing_file_exit_4(database_url: str, tmp_path: Path) -> None:
    ftp = run_xccel(["run-all", "--source", "ftp://example.com/e.json", "--database-url", database_url])
    assert (ftp.exit_code, ftp.stderr) == (
        4, "Error: unsupported source ftp://example.com/e.json: use an http(s) URL, a file path or '-'\n")
    missing = tmp_path / "nope.json"
    gone = run_xccel(["run-all", "--source", str(missing), "--database-url", database_url])
    assert (gone.exit_code, gone.stderr) == (4, f"Error: source not found: {missing}\n")


def test_a_corrupt_gzip_body_is_a_clear_error_and_nothing_is_published(database_url: str,
                                                                         fault_server: FaultServer) -> None:
    packed = bytearray(gzip.compress(BODY))
    packed[len(packed) // 2: len(packed) // 2 + 64] = bytes(64)
    url = fault_server.add("/e.json.gz", bytes(packed))
    result = run_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert result.exit_code == 6
    assert result.stderr.startswith(f"Error: {url} is not a valid gzip stream (")
    assert len(result.stderr.splitlines()) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM publications").fetchone()[0] == 0
