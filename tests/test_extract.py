"""Extract: every way a dump arrives, every kind of bad line kept with its reason, the guards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import Served, invoke_xccel
from tests.dumps import START, dump, event, line, random_events
from xccel_cli.db import Database
from xccel_cli.errors import DataQualityError
from xccel_cli.pipeline import ExtractOptions, run_extract

GOOD = random_events(300, seed=7)
GOOD_DUMP = dump(GOOD)


def raw_rows(db: Database) -> list[tuple]:
    return db.conn.execute(
        "SELECT event_id, event_type, customer_id, timestamp, payload FROM raw_events ORDER BY event_id"
    ).fetchall()


def expected_kept(records: list[dict]) -> list[tuple[int, int]]:
    """(event_id, customer_id) of the logged-in events, first line of an id winning."""
    seen: dict[int, int] = {}
    for r in records:
        if r["id"] not in seen and r["event"]["customer-id"] is not None:
            seen.setdefault(r["id"], r["event"]["customer-id"])
    return sorted(seen.items())


@pytest.mark.parametrize("how", ["plain", "gzip-encoding", "gz-file-body"])
def test_extract_over_http(db: Database, http_server: Served, how: str) -> None:
    if how == "plain":
        url = http_server.add("/events.json", GOOD_DUMP)
    elif how == "gzip-encoding":
        url = http_server.add("/events.json", GOOD_DUMP, gzip_encoding=True)
    else:
        url = http_server.add("/events.json.gz", gzip.compress(GOOD_DUMP))
    result = run_extract(db, ExtractOptions(url))
    assert result.lines_read == len(GOOD)
    assert result.rejected == 0
    assert result.logged_in + result.anonymous == len(GOOD)
    assert [(r[0], r[2]) for r in raw_rows(db)] == expected_kept(GOOD)
    # the payload is the line as sent, whole
    first = next(r for r in GOOD if r["event"]["customer-id"] is not None)
    payload = db.conn.execute("SELECT payload FROM raw_events WHERE event_id = %s", (first["id"],)).fetchone()[0]
    assert payload == first
    if how == "gzip-encoding":
        assert http_server.requests[0]["headers"].get("Accept-Encoding") == "gzip"


def test_extract_from_file_and_gz_file(db: Database, tmp_path: Path) -> None:
    plain = tmp_path / "a.json"
    plain.write_bytes(GOOD_DUMP)
    packed = tmp_path / "b.data"  # gzip recognised by its magic bytes, not the name
    packed.write_bytes(gzip.compress(GOOD_DUMP))
    first = run_extract(db, ExtractOptions(str(plain)))
    assert first.loaded == len(expected_kept(GOOD))
    second = run_extract(db, ExtractOptions(str(packed)))
    assert second.loaded == 0 and second.already_loaded == first.loaded
    assert [(r[0], r[2]) for r in raw_rows(db)] == expected_kept(GOOD)


def test_extract_from_stdin_through_the_command(db: Database, database_url: str) -> None:
    result = invoke_xccel(["extract", "--source", "-", "--database-url", database_url], input=gzip.compress(GOOD_DUMP))
    assert result.exit_code == 0, result.stderr
    assert f"read {len(GOOD):,} lines from stdin" in result.stdout
    assert [(r[0], r[2]) for r in raw_rows(db)] == expected_kept(GOOD)


BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"id": 1, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1', "invalid_json"),
    (b"<html><body>Service unavailable</body></html>", "invalid_json"),
    (
        b'{"id": 2, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "page": "caf\xe9"}}',
        "invalid_utf8",
    ),
    (b'{"type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}}', "missing_field"),
    (b'{"id": 3, "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}}', "missing_field"),
    (b'{"id": 4, "type": "page_view"}', "missing_field"),
    (b'{"id": 5, "type": "page_view", "event": {"customer-id": 1}}', "missing_field"),
    (b'{"id": 6, "type": "page_view", "event": {"timestamp": "yesterday", "customer-id": 1}}', "bad_timestamp"),
    (b'{"id": "7", "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}}', "bad_id"),
    (b'{"id": 8.5, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1}}', "bad_id"),
    (
        b'{"id": 9, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": "x1"}}',
        "bad_customer_id",
    ),
    (
        b'{"id": 10, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": 1.5}}',
        "bad_customer_id",
    ),
    (
        b'{"id": 11, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "page": "a\\u0000b"}}',
        "nul_character",
    ),
    (b"", "empty_line"),
    (b'{"id": 99999999999999999999, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00"}}', "bad_id"),
    (
        b'{"id": 12, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "customer-id": '
        b"-99999999999999999999}}",
        "bad_customer_id",
    ),
]


def test_every_kind_of_bad_line_is_kept_with_its_reason(db: Database, tmp_path: Path) -> None:
    good = [event(1000 + i, i % 3 + 1, START) for i in range(20)]
    lines: list[bytes] = []
    expected: dict[int, tuple[str, bytes]] = {}
    for i, record in enumerate(good):
        lines.append(line(record).rstrip(b"\n"))
        if i < len(BAD_LINES):
            bad, reason = BAD_LINES[i]
            lines.append(bad)
            expected[len(lines)] = (reason, bad)
    path = tmp_path / "dirty.json"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = run_extract(db, ExtractOptions(str(path), max_reject_share=1.0))
    assert result.lines_read == len(lines)
    assert result.loaded == len(good)
    assert result.rejected == len(BAD_LINES)
    rows = db.conn.execute("SELECT line_number, reason, raw_line, detail FROM rejects ORDER BY line_number").fetchall()
    assert {n: reason for n, reason, _, _ in rows} == {n: reason for n, (reason, _) in expected.items()}
    for number, _reason, raw, detail in rows:
        assert detail
        sent = expected[number][1]
        assert raw == sent.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
    assert sorted(result.reject_reasons) == sorted({reason for _, reason in BAD_LINES})
    assert db.conn.execute("SELECT rejected, lines_read FROM runs").fetchone() == (len(BAD_LINES), len(lines))


def test_a_truncated_last_line_fails_the_extract(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_bytes(GOOD_DUMP[: len(GOOD_DUMP) - 40])
    with pytest.raises(DataQualityError, match="ends in a cut line"):
        run_extract(db, ExtractOptions(str(path)))
    assert raw_rows(db) == []
    assert db.conn.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    assert db.conn.execute("SELECT status FROM runs").fetchone()[0] == "failed"


def test_duplicates_are_counted_and_the_first_line_wins(db: Database, tmp_path: Path) -> None:
    first = event(1, 5, START, "page_view")
    again = event(1, 5, START, "placed_order")  # same id, other content: the first read wins
    records = [first, event(2, 5, START), again, event(2, 5, START), event(3, None, START)]
    path = tmp_path / "dups.json"
    path.write_bytes(dump(records))
    result = run_extract(db, ExtractOptions(str(path)))
    assert (result.lines_read, result.loaded, result.duplicates, result.anonymous) == (5, 2, 2, 1)
    assert db.conn.execute("SELECT event_type FROM raw_events WHERE event_id = 1").fetchone()[0] == "page_view"
    counts = db.conn.execute("SELECT lines_read, loaded, duplicates, anonymous FROM runs").fetchone()
    assert counts == (5, 2, 2, 1)


def test_an_html_page_served_with_200_fails_and_publishes_nothing(
    database_url: str, http_server: Served, tmp_path: Path
) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(GOOD_DUMP)
    first = invoke_xccel(["run-all", "--source", str(good), "--json", "--database-url", database_url])
    assert first.exit_code == 0, first.stderr
    before = json.loads(first.stdout)["report"]

    page = b"<!DOCTYPE html>\n<html>\n<head><title>Maintenance</title></head>\n<body>back soon</body>\n</html>\n"
    url = http_server.add("/events.json", page, headers={"Content-Type": "text/html"})
    result = invoke_xccel(["run-all", "--source", url, "--database-url", database_url])
    assert result.exit_code == 6
    assert result.stdout == ""
    assert result.stderr.startswith("Error: refused 5 of 5 lines (100.0%, limit 5.0%); nothing was loaded.")
    assert result.stderr.rstrip().endswith("it looks like an HTML or XML page (an error or login page?), not a dump")
    assert len(result.stderr.strip().splitlines()) == 1

    after = invoke_xccel(["report", "--json", "--database-url", database_url])
    assert json.loads(after.stdout) == before
    status = invoke_xccel(["runs", "--json", "--database-url", database_url])
    runs = json.loads(status.stdout)
    assert [r["status"] for r in runs] == ["failed", "succeeded"]
    assert "refused 5 of 5 lines" in runs[0]["error"]


def test_the_reject_share_limit_is_configurable(db: Database, tmp_path: Path) -> None:
    lines = [line(r) for r in random_events(18, seed=3)] + [b"not json\n", b"{}\n"]
    path = tmp_path / "ten-percent.json"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataQualityError, match=r"refused 2 of 20 lines \(10.0%, limit 5.0%\)"):
        run_extract(db, ExtractOptions(str(path)))
    assert raw_rows(db) == []
    result = run_extract(db, ExtractOptions(str(path), max_reject_share=0.1))
    assert result.rejected == 2 and result.loaded == len(expected_kept(random_events(18, seed=3)))
