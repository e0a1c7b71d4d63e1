"""Hostile input: memory and time never depend on what a dump contains, and one bad line is a
reject, never a failed run.

The big inputs are generated on the fly and streamed from a real HTTP server on 127.0.0.1 (or read from
/dev/zero) into the real `xccel` process, whose peak RSS and CPU time are taken with wait4.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SERVER_POLL_SECONDS, run_xccel
from tests.dumps import START, dump, event, line
from xccel_cli.db import Database
from xccel_cli.errors import DataQualityError
from xccel_cli.extract import (
    COPY_BINARY_HEADER,
    COPY_BINARY_TRAILER,
    COPY_COLUMNS,
    JSONB_VERSION,
    PG_EPOCH,
    ExtractResult,
    LineReader,
    Rejects,
    SeenIds,
    _stream,
    copy_escape,
)
from xccel_cli.lines import ParsedLine, RefusedLine, bad_number, is_cut, parse_line
from xccel_cli.pipeline import ExtractOptions, run_extract

# real xccel processes (the command, serve): started, measured, their output read
pytestmark = pytest.mark.integration

RSS_LIMIT_MB = 150
MIB = 1 << 20

Body = Callable[[], Iterator[bytes]]


@dataclass
class StreamServer:
    """Serves generated bodies (never held whole) at paths; without a length, the body ends with the connection."""

    base_url: str
    bodies: dict[str, tuple[Body, dict[str, str]]]

    def add(self, path: str, body: Body, headers: dict[str, str] | None = None) -> str:
        self.bodies[path] = (body, headers or {})
        return self.base_url + path


@pytest.fixture
def stream_server() -> Iterator[StreamServer]:
    bodies: dict[str, tuple[Body, dict[str, str]]] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no Content-Length needed: the body ends when the connection closes

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            entry = bodies.get(self.path)
            if entry is None:
                self.send_error(404)
                return
            body, headers = entry
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                for piece in body():
                    self.wfile.write(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what a guard that stops early does

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(SERVER_POLL_SECONDS,), daemon=True)
    thread.start()
    try:
        yield StreamServer(f"http://127.0.0.1:{server.server_address[1]}", bodies)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ready_url(db: Database, database_url: str) -> str:
    """A database with the xccel schema, for commands that do not create it."""
    return database_url


@dataclass
class Measured:
    exit_code: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    cpu_seconds: float


LAUNCHER = (
    "import json, resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[3:], cwd=sys.argv[2])\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(json.dumps([code, usage.ru_maxrss, usage.ru_utime + usage.ru_stime]))\n"
)


def run_measured(
    args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None, timeout: float = 300
) -> Measured:
    """Run the real command; its peak RSS and CPU time as a small launcher process measured them."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    full_env["XCCEL_DATA_DIR"] = str(tmp_path / "data")
    full_env.update(env or {})
    out, err, usage_file = tmp_path / "stdout", tmp_path / "stderr", tmp_path / "usage.json"
    # A small launcher runs the command and reports its child's peak RSS and CPU time: measured straight from
    # this (large) test process, the kernel would fold this process's own peak into the child's at exec.
    argv = [sys.executable, "-c", LAUNCHER, str(usage_file), tempfile.gettempdir(), sys.executable, "-m", "xccel_cli"]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    pid = os.posix_spawn(
        sys.executable,
        [*argv, *args],
        full_env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(out), flags, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, str(err), flags, 0o600),
        ],
        setsid=True,
    )
    timer = threading.Timer(timeout, lambda: os.killpg(pid, signal.SIGKILL))
    timer.start()
    try:
        os.waitpid(pid, 0)
    finally:
        timer.cancel()
    returncode, peak_kb, cpu_seconds = json.loads(usage_file.read_text())
    return Measured(returncode, out.read_text(), err.read_text(), peak_kb / 1024, cpu_seconds)


def repeated(piece: bytes, total: int) -> Body:
    """A body of `total` bytes made of `piece` (1 MiB at a time)."""

    def body() -> Iterator[bytes]:
        block = piece * max(1, MIB // len(piece))
        left = total
        while left > 0:
            yield block[:left]
            left -= len(block)

    return body


def endless(piece: bytes) -> Body:
    def body() -> Iterator[bytes]:
        block = piece * max(1, MIB // len(piece))
        while True:
            yield block

    return body


def gzip_of(piece: bytes, total: int) -> bytes:
    """A gzip stream of `total` bytes of `piece`: a bomb (a few hundred KB expanding a thousandfold)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = piece * (MIB // len(piece))
    parts = [packer.compress(block) for _ in range(total // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


def assert_one_line_failure(result: Measured, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr[-2000:])
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def assert_flat_memory(result: Measured) -> None:
    assert result.peak_rss_mb <= RSS_LIMIT_MB, f"peak RSS {result.peak_rss_mb:.0f} MB"


# ---------------------------------------------------------------------------------------------------------
# Memory and time must not depend on what the dump contains


def test_a_gzip_bomb_of_newlines_stops_early_in_flat_memory(
    ready_url: str, stream_server: StreamServer, tmp_path: Path
) -> None:
    bomb = gzip_of(b"\n", 512 * MIB)
    assert len(bomb) < 4 * MIB
    url = stream_server.add("/bomb.json.gz", lambda: iter([bomb]))
    result = run_measured(["extract", "--source", url, "--database-url", ready_url], tmp_path)
    assert_one_line_failure(result, 6, "of the first", "stopped reading", "line 1: empty_line")
    assert_flat_memory(result)


def test_a_gzip_bomb_of_nul_bytes_is_one_over_long_line_read_past(
    ready_url: str, stream_server: StreamServer, tmp_path: Path
) -> None:
    bomb = gzip_of(b"\x00", 512 * MIB)
    url = stream_server.add("/bomb.gz", lambda: iter([bomb]), {"Content-Length": str(len(bomb))})
    result = run_measured(["extract", "--source", url, "--database-url", ready_url], tmp_path)
    assert_one_line_failure(result, 6, "refused 1 of the first 1 lines", "line 1: line_too_long")
    assert_flat_memory(result)


def test_dev_zero_ends_as_a_refused_line(ready_url: str, tmp_path: Path) -> None:
    result = run_measured(["extract", "--source", "/dev/zero", "--database-url", ready_url], tmp_path)
    assert_one_line_failure(result, 6, "line_too_long", "stopped reading")
    assert_flat_memory(result)


def test_an_endless_stream_of_bad_lines_stops_at_the_reject_share(
    database_url: str, stream_server: StreamServer, tmp_path: Path
) -> None:
    url = stream_server.add("/garbage", endless(b"<html>not an event</html>\n"))
    result = run_measured(["run-all", "--source", url, "--database-url", database_url], tmp_path)
    assert_one_line_failure(result, 6, "of the first", "line 1: invalid_json")
    assert_flat_memory(result)
    runs = run_xccel(["runs", "--json", "--database-url", database_url])
    assert '"failed"' in runs.stdout


def test_one_endless_line_takes_flat_memory_and_time_linear_in_its_length(
    ready_url: str, stream_server: StreamServer, tmp_path: Path
) -> None:
    """Lines below the early guard's reach, read to their end: CPU of 2x the bytes stays below 4x of 1x."""
    args = ["extract", "--database-url", ready_url]
    good = line(event(1, 5, START))
    small = stream_server.add("/small", lambda: iter([good]))
    one = stream_server.add("/one", repeated(b"a", 96 * MIB))
    two = stream_server.add("/two", repeated(b"a", 192 * MIB))
    base = run_measured([*args, "--source", small], tmp_path)
    assert base.exit_code == 0, base.stderr
    once = run_measured([*args, "--source", one], tmp_path)
    twice = run_measured([*args, "--source", two], tmp_path)
    for result in (once, twice):
        assert_one_line_failure(result, 6, "refused 1 of 1 lines", "line 1: line_too_long")
        assert_flat_memory(result)
    extra_once = max(once.cpu_seconds - base.cpu_seconds, 0.05)
    extra_twice = twice.cpu_seconds - base.cpu_seconds
    assert extra_twice < 4 * extra_once + 1.0, (base.cpu_seconds, once.cpu_seconds, twice.cpu_seconds)


def test_many_distinct_event_types_do_not_grow_memory() -> None:
    """The cache of COPY cells per event type is bounded: 6,000 distinct 4 KB types would hold 48 MB."""
    records = [event(i, 1 + i % 50, START, kind=f"{i:06d}" + "t" * 4000) for i in range(1, 6_001)]
    body = dump(records)
    chunks = [body[i : i + MIB] for i in range(0, len(body), MIB)]
    written = 0

    def write(data: bytes) -> None:
        nonlocal written
        written += len(data)

    result = ExtractResult(source="types")
    rejects = Rejects(1)
    tracemalloc.start()
    try:
        _stream(iter(chunks), write, LineReader(result, rejects, 16 * MIB, 0.05), 1, False, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        rejects.close()
    assert (result.lines_read, result.logged_in, rejects.count) == (6_000, 6_000, 0)
    assert written > len(body)
    assert peak < 30 * MIB, f"peak {peak / MIB:.0f} MiB"


# ---------------------------------------------------------------------------------------------------------
# One bad line is a reject, never a failed run


def with_timestamp(event_id: int, timestamp: str, extra: str = "") -> bytes:
    return b'{"id": %d, "type": "page_view", "event": {"customer-id": 7, "timestamp": "%s"%s}}' % (
        event_id,
        timestamp.encode(),
        extra.encode(),
    )


def nested(depth: int) -> str:
    return ', "x": ' + "[" * depth + "]" * depth


PLAIN = "2026-03-01T08:00:00"
REFUSED: list[tuple[bytes, str]] = [
    (with_timestamp(101, "2026-03-01T08:00:00+16:00"), "bad_timestamp"),
    (with_timestamp(102, "2026-03-01T08:00:00-23:59"), "bad_timestamp"),
    (with_timestamp(103, "0001-01-01T00:00:00+14:00"), "bad_timestamp"),  # year 0 in UTC
    (with_timestamp(104, "9999-12-31T23:59:59-01:00"), "bad_timestamp"),  # year 10000 in UTC
    (with_timestamp(105, "9999-12-31T23:59:60Z"), "bad_timestamp"),
    (with_timestamp(106, "2016-12-31T23:59:60.5Z"), "bad_timestamp"),  # PostgreSQL refuses it too
    (with_timestamp(107, PLAIN, nested(1000)), "too_deep"),
    (with_timestamp(108, PLAIN, nested(255)), "too_deep"),  # 257 deep
    (with_timestamp(109, PLAIN, ', "x": 1e-20000'), "bad_number"),
    (with_timestamp(110, PLAIN, ', "x": 1' + "0" * 131072), "bad_number"),
    (with_timestamp(111, PLAIN, ', "\\u0000": 1'), "nul_character"),
]
ACCEPTED: list[tuple[bytes, str]] = [  # the line, and the timestamp as PostgreSQL reads it
    (with_timestamp(201, "2016-12-31T23:59:60Z"), "2016-12-31T23:59:60Z"),  # a leap second
    (with_timestamp(202, "2016-12-31T12:34:60+01:00"), "2016-12-31T12:34:60+01:00"),
    (with_timestamp(203, "2026-03-01T08:00:00+15:59"), "2026-03-01T08:00:00+15:59"),
    (with_timestamp(204, "0001-01-01T00:00:00-14:00"), "0001-01-01T00:00:00-14:00"),
    (with_timestamp(205, "9999-12-31T23:59:59Z"), "9999-12-31T23:59:59Z"),
    (with_timestamp(206, PLAIN, nested(254)), PLAIN),  # 256 deep with the line's two objects
    (with_timestamp(207, PLAIN, ', "x": [1e-16383, 1e131071, 0e-16383]'), PLAIN),
]


def hostile_dump() -> tuple[bytes, dict[int, str], int]:
    """(dump, reason per refused line number, lines): good lines around each hostile one, a BOM first."""
    lines: list[bytes] = []
    reasons: dict[int, str] = {}
    goods = iter(range(1, 1000))
    for hostile, reason in REFUSED:
        lines.append(line(event(next(goods), 3, START)).rstrip(b"\n"))
        lines.append(hostile)
        reasons[len(lines)] = reason
    for accepted, _ in ACCEPTED:
        lines.append(accepted)
    # a complete but invalid last line without a newline: a plain reject, not a cut download
    lines.append(b'{"id": 999, "type": "page_view"}')
    reasons[len(lines)] = "missing_field"
    return b"\xef\xbb\xbf" + b"\n".join(lines), reasons, len(lines)


@pytest.mark.parametrize("path", ["bulk", "merge"])
def test_every_line_postgresql_would_refuse_is_a_reject_with_its_reason(
    db: Database, tmp_path: Path, path: str
) -> None:
    if path == "merge":  # raw_events not empty: rows go through the stage
        seed = tmp_path / "seed.json"
        seed.write_bytes(line(event(5000, 1, START)))
        run_extract(db, ExtractOptions(str(seed)))
    body, reasons, count = hostile_dump()
    source = tmp_path / "hostile.json"
    source.write_bytes(body)
    result = run_extract(db, ExtractOptions(str(source), max_reject_share=1.0))
    assert result.lines_read == count
    rows = db.conn.execute("SELECT line_number, reason FROM rejects WHERE run_id = %s", (result_run(db),)).fetchall()
    assert dict(rows) == reasons
    assert result.loaded == len(REFUSED) + len(ACCEPTED)
    for accepted, timestamp in ACCEPTED:
        event_id = int(accepted.split(b",")[0].split(b":")[1])
        stored, expected = db.conn.execute(
            "SELECT r.timestamp, %s::timestamptz FROM raw_events r WHERE event_id = %s", (timestamp, event_id)
        ).fetchone()
        assert stored == expected, (accepted, stored, expected)
    # the BOM did not cost the first line
    assert 1 not in reasons and db.conn.execute("SELECT count(*) FROM raw_events WHERE event_id = 1").fetchone()[0]


def result_run(db: Database) -> int:
    return db.conn.execute("SELECT max(run_id) FROM runs").fetchone()[0]


def test_hostile_lines_never_fail_a_run(ready_url: str, tmp_path: Path) -> None:
    body, reasons, count = hostile_dump()
    good = dump([event(i, 1 + i % 4, START) for i in range(2000, 2400)])
    source = tmp_path / "hostile.json"
    source.write_bytes(body[:3] + good + body[3:])  # the BOM first, then everything
    result = run_xccel(["run-all", "--source", str(source), "--json", "--database-url", ready_url])
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)["run"]
    assert (run["lines_read"], run["rejected"]) == (400 + count, len(reasons))


def test_a_number_postgresql_refuses_on_stdin_is_a_clear_error(ready_url: str) -> None:
    body = dump([event(i, 1, START) for i in range(1, 50)]) + with_timestamp(60, PLAIN, ', "x": 1e-20000') + b"\n"
    result = run_xccel(["extract", "--source", "-", "--database-url", ready_url], input=body)
    assert result.exit_code == 6, result.stderr
    assert "stdin cannot be read twice" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------
# Messages that tell the truth

GOOD_LINES = dump([event(i, 1 + i % 3, START) for i in range(1, 41)])
# the same events exported as one JSON document (an array, indented) instead of one event per line
ARRAY_DUMP = json.dumps([json.loads(text) for text in GOOD_LINES.splitlines()], indent=2).encode() + b"\n"


@pytest.mark.parametrize(
    ("name", "body", "code", "fragment"),
    [
        ("utf-16 with BOM", GOOD_LINES.decode().encode("utf-16"), 6, "is UTF-16 text, not UTF-8"),
        ("utf-16-le", GOOD_LINES.decode().encode("utf-16-le"), 6, "is UTF-16 text, not UTF-8"),
        ("utf-16-be", GOOD_LINES.decode().encode("utf-16-be"), 6, "is UTF-16 text, not UTF-8"),
        ("cr-only", GOOD_LINES.replace(b"\n", b"\r"), 6, "ends its lines with CR alone"),
        ("cut last line", GOOD_LINES[:-30], 6, "the download was probably truncated"),
        ("cut in a character", GOOD_LINES + b'{"id": 99, "type": "x", "event": {"page": "caf\xc3', 6, "truncated"),
        ("json array, indented", ARRAY_DUMP, 6, "it looks like one JSON array, not one event per line"),
        ("json array, one line", b"\xef\xbb\xbf" + ARRAY_DUMP.replace(b"\n", b""), 6, "looks like one JSON array"),
        ("array lines", b"[1]\n[2]\n[3]\n", 6, "looks like one JSON array"),
        ("web page", b"\n  <!DOCTYPE html>\n<html>\n</html>\n", 6, "it looks like an HTML or XML page"),
        ("not json", b"hello\nworld\n", 6, "Is the source really an event dump?"),
    ],
)
def test_each_broken_file_gets_its_own_message(
    ready_url: str, tmp_path: Path, name: str, body: bytes, code: int, fragment: str
) -> None:
    source = tmp_path / "dump.json"
    source.write_bytes(body)
    result = run_xccel(["extract", "--source", str(source), "--database-url", ready_url])
    assert result.exit_code == code, result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    if "truncated" not in fragment:
        assert "truncated" not in result.stderr


def test_a_large_json_array_is_named_when_the_early_guard_stops_it(db: Database, tmp_path: Path) -> None:
    events = [json.loads(text) for text in dump([event(i, 1 + i % 3, START) for i in range(1, 12_001)]).splitlines()]
    source = tmp_path / "dump.json"
    source.write_text(json.dumps(events, indent=2))
    with pytest.raises(DataQualityError) as raised:
        run_extract(db, ExtractOptions(str(source)))
    message = str(raised.value)
    # stopped by the guard that watches the share while reading, before the end of the file
    assert "in the first" in message and "stopped reading" in message
    assert message.endswith(
        "it looks like one JSON array, not one event per line (NDJSON); convert it first (jq -c '.[]')"
    )


def test_a_cr_only_file_longer_than_a_line_may_be_is_named_too(ready_url: str, tmp_path: Path) -> None:
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES.replace(b"\n", b"\r") * 3)
    result = run_xccel(["extract", "--source", str(source), "--max-line-bytes", "1024", "--database-url", ready_url])
    assert result.exit_code == 6, result.stderr
    assert "ends its lines with CR alone" in result.stderr


def test_an_invalid_last_line_without_newline_is_a_plain_reject(db: Database, tmp_path: Path) -> None:
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES + b"not json at all")
    result = run_extract(db, ExtractOptions(str(source)))
    assert (result.lines_read, result.rejected, result.loaded) == (41, 1, 40)
    assert db.conn.execute("SELECT line_number, reason FROM rejects").fetchall() == [(41, "invalid_json")]


def test_stdin_closed_is_one_clear_line(ready_url: str) -> None:
    command = f"exec {sys.executable} -m xccel_cli extract --source - --database-url '{ready_url}' <&-"
    proc = subprocess.run(["sh", "-c", command], capture_output=True, timeout=120, cwd=tempfile.gettempdir())
    stderr = proc.stderr.decode()
    assert proc.returncode == 4, stderr
    assert "standard input is closed" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_line_over_the_maximum_is_refused_and_the_rest_loads(db: Database, tmp_path: Path) -> None:
    long_line = with_timestamp(500, PLAIN, ', "x": "' + "y" * 5000 + '"')
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES + long_line + b"\n" + line(event(501, 2, START)))
    result = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1, max_line_bytes=2048))
    assert (result.lines_read, result.rejected, result.loaded) == (42, 1, 41)
    number, reason, raw = db.conn.execute("SELECT line_number, reason, raw_line FROM rejects").fetchone()
    assert (number, reason) == (41, "line_too_long")
    assert raw.encode() == long_line[:2048]
    # the same line fits the default maximum
    assert run_extract(db, ExtractOptions(str(source))).rejected == 0


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--max-line-bytes", str(33 << 20)], {}),
        (["--max-line-bytes", "100"], {}),
        ([], {"XCCEL_MAX_LINE_BYTES": str(1 << 30)}),
        ([], {"XCCEL_MAX_LINE_BYTES": "lots"}),
    ],
)
def test_the_maximum_line_length_cannot_exceed_what_jsonb_holds(
    ready_url: str, tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES)
    result = run_xccel(["extract", "--source", str(source), *args, "--database-url", ready_url], env=env)
    assert result.exit_code == 3, result.stderr
    assert "33,554,432" in result.stderr or "XCCEL_MAX_LINE_BYTES" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# extract's decisions are lines.parse_line's; parse_line accepts only what PostgreSQL stores as it reads it

PROPERTY = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
PREFACE_ID = -(2**63)  # the first line of every stream (so a test line never starts the stream); never generated


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([1, 2, 1970, 2026, 9998, 9999]))
    month, day = draw(st.sampled_from([(1, 1), (6, 15), (12, 31), (2, 29), (2, 28)]))
    hour, minute = draw(st.sampled_from([0, 12, 23, 24])), draw(st.sampled_from([0, 34, 59]))
    second = draw(st.sampled_from(["00", "59", "60", "61"]))
    fraction = draw(st.sampled_from(["", ".0", ".5", ".000000", ".123456", ".1234567"]))
    separator = draw(st.sampled_from(["T", "t", " "]))
    offset = draw(
        st.one_of(
            st.sampled_from(["", "Z", "z", "+00:00", "+15:59", "-15:59", "+16:00", "-16:00", "+23:59", "+24:00"]),
            st.builds(
                lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
                st.sampled_from("+-"),
                st.integers(0, 23),
                st.integers(0, 59),
            ),
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second}{fraction}{offset}"


NUMBERS = st.one_of(
    st.sampled_from(["0", "-0", "12.5", "1E+2", "1e-16383", "1e-16384", "1.5e-16383", "1e131071", "1e131072"]),
    st.sampled_from(
        [
            "0e-16384",
            "0e99999999",
            "0e1073741823",
            "0e1073741824",
            "0e-1073741823",
            "1e-1073741823",
            "1e00000000000000001",
        ]
    ),
    st.builds(
        lambda mantissa, sign, exponent: f"{mantissa}e{sign}{exponent}",
        st.sampled_from(["1", "0", "9.99", "0.001", "12345.6789", "-3"]),
        st.sampled_from(["", "+", "-"]),
        st.one_of(st.integers(0, 400), st.integers(16370, 16400), st.integers(131060, 131080)),
    ),
    st.builds(lambda digits: "1" + "0" * digits, st.sampled_from([131070, 131071, 131072])),
    st.builds(lambda digits: "0." + "0" * digits + "1", st.sampled_from([16381, 16382, 16383])),
)
EXTRAS = st.one_of(
    st.just(""),
    NUMBERS.map(lambda number: f', "n": {number}'),
    st.sampled_from([250, 254, 255, 256, 1000]).map(nested),
    st.sampled_from(['"\\u0000"', '"\\ud800"', '"\\udc00x"', '"\\u00e9"', '"tab\\there"', '"\\\\"', '"[[[{{"']).map(
        lambda text: f', "s": {text}, {text}: 1'
    ),
)


@st.composite
def dump_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["event", "event", "event", "garbage", "cut"]))
    if kind == "garbage":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    event_id = draw(
        st.one_of(
            st.integers(-(2**63) + 1, 2**63 - 1), st.sampled_from(["2**63", '"12"', "1.5", "-9223372036854775809"])
        )
    )
    kind_text = draw(st.sampled_from(['"page_view"', '""', "5", '"x\\u0000"', '"t\\t\\\\"', '"placed_order"']))
    customer = draw(st.sampled_from(['"customer-id": 7, ', '"customer-id": null, ', '"customer-id": "7", ', ""]))
    text = (
        f'{{"id": {event_id}, "type": {kind_text}, "event": {{{customer}"timestamp": "{draw(timestamps())}"'
        f"{draw(EXTRAS)}}}}}"
    )
    data = text.encode().replace(b"2**63", str(2**63).encode())
    if kind == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    return data


def extract_verdict(line_bytes: bytes, *, careful: bool, terminated: bool = True) -> tuple[Any, ...]:
    """What extract's hot loop decides about one line (after a good first line), as parse_line's terms."""
    preface = line(event(PREFACE_ID, 1, START))
    rows: list[bytes] = []
    result = ExtractResult(source="property")
    rejects = Rejects(1)
    body = preface + line_bytes + (b"\n" if terminated else b"")
    with closing(rejects):
        _stream(iter([body]), rows.append, LineReader(result, rejects, 16 * MIB, 1.0), 1, True, None, careful=careful)
        assert result.lines_read == 2
        if rejects.count:
            rejects.spool.seek(0)
            cells = rejects.spool.read().rstrip(b"\n").split(b"\t")
            return ("refused", cells[2].decode(), cells[3])
    kept = copy_binary_rows(b"".join(rows))[1:]
    if not kept:
        return ("duplicate",)
    row = dict(zip(COPY_COLUMNS, kept[0], strict=True))
    event_id, event_type, customer, timestamp = row["event_id"], row["event_type"], row["customer_id"], row["timestamp"]
    assert row["payload"] == JSONB_VERSION + (line_bytes[:-1] if line_bytes.endswith(b"\r") else line_bytes)
    assert row["run_id"] == struct.pack(">q", 1)
    assert event_id is not None and event_type is not None and timestamp is not None
    return (
        "kept",
        struct.unpack(">q", event_id)[0],
        event_type.decode(),
        None if customer is None else struct.unpack(">q", customer)[0],
        PG_EPOCH + timedelta(microseconds=struct.unpack(">q", timestamp)[0]),
    )


def copy_binary_rows(data: bytes) -> list[list[bytes | None]]:
    """The rows of a stream in COPY's binary format: a header, rows of length-prefixed fields, a trailer."""
    assert data.startswith(COPY_BINARY_HEADER) and data.endswith(COPY_BINARY_TRAILER)
    position, end = len(COPY_BINARY_HEADER), len(data) - len(COPY_BINARY_TRAILER)
    rows: list[list[bytes | None]] = []
    while position < end:
        (fields,) = struct.unpack_from(">h", data, position)
        position += 2
        row: list[bytes | None] = []
        for _ in range(fields):
            (size,) = struct.unpack_from(">i", data, position)
            position += 4
            row.append(None if size < 0 else data[position : position + size])
            position += max(size, 0)
        rows.append(row)
    assert position == end
    return rows


def verdict_of(line_bytes: bytes) -> tuple[Any, ...]:
    verdict = parse_line(line_bytes)
    if isinstance(verdict, RefusedLine):
        return ("refused", verdict.reason, copy_escape(verdict.detail.encode()))
    if verdict.event_id == PREFACE_ID:
        return ("duplicate",)
    return ("kept", verdict.event_id, verdict.event_type, verdict.customer_id, verdict.timestamp)


@PROPERTY
@given(st.lists(dump_lines(), min_size=1, max_size=8), st.booleans())
def test_extract_decides_every_line_as_parse_line_does(lines_: list[bytes], crlf: bool) -> None:
    for data in lines_:
        expected = verdict_of(data)
        sent = data + b"\r" if crlf and not data.endswith(b"\r") else data
        if crlf and data.endswith(b"\r"):
            expected = verdict_of(data[:-1])
        # every line judged (the careful pass): exactly parse_line's verdict
        assert extract_verdict(sent, careful=True) == expected, data
        # the fast path: the same, except numbers it leaves to PostgreSQL (which refuses them, and the
        # extract then runs the careful pass: tested against the server above)
        fast = extract_verdict(sent, careful=False)
        if expected[:2] == ("refused", "bad_number"):
            assert fast == expected or fast[0] == "kept", data
        else:
            assert fast == expected, data


@PROPERTY
@given(dump_lines())
def test_the_last_line_without_newline_is_a_plain_verdict_unless_it_is_cut(data: bytes) -> None:
    verdict = parse_line(data)
    if isinstance(verdict, RefusedLine) and is_cut(verdict):
        with pytest.raises(DataQualityError, match="probably truncated"):
            extract_verdict(data, careful=True, terminated=False)
    elif data:  # an empty tail is no line at all
        assert extract_verdict(data, careful=True, terminated=False) == verdict_of(data)


@PROPERTY
@given(timestamps(), EXTRAS)
def test_what_parse_line_accepts_postgresql_stores_as_it_reads_it(db: Database, timestamp: str, extra: str) -> None:
    data = with_timestamp(1, timestamp, extra)
    verdict = parse_line(data)
    payload_ok = server_accepts(db, "SELECT %s::jsonb IS NOT NULL", data.decode())
    if isinstance(verdict, ParsedLine):
        assert payload_ok, data
        if len(timestamp.split(".")[-1].rstrip("Zz+-:0123456789")) == 0 and "." in timestamp:
            digits = len(timestamp.split(".")[1].rstrip("Zz").split("+")[0].split("-")[0])
            if digits > 6:
                return  # PostgreSQL and msgspec may round a seventh digit differently; the column holds msgspec's
        assert db.conn.execute("SELECT %s::timestamptz", (timestamp,)).fetchone()[0] == verdict.timestamp
    elif verdict.reason in ("bad_number", "nul_character", "invalid_unicode_escape"):
        assert not payload_ok, data


def server_accepts(db: Database, query: str, value: str) -> bool:
    try:
        db.conn.execute(query, (value,)).fetchone()
    except psycopg.Error:
        return False
    return True


@PROPERTY
@given(
    st.one_of(NUMBERS, st.from_regex(r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,4})?([eE][-+]?[0-9]{1,12})?", fullmatch=True))
)
def test_bad_number_is_exactly_what_postgresql_numeric_refuses(db: Database, number: str) -> None:
    assert (bad_number(number.encode()) is None) == server_accepts(db, "SELECT %s::jsonb IS NOT NULL", number)


def test_an_over_long_first_line_read_past_in_a_crlf_file_is_no_cr_only_file(db: Database, tmp_path: Path) -> None:
    first = with_timestamp(900, PLAIN, ', "x": "' + "z" * (3 * MIB) + '"')  # spans several chunks
    source = tmp_path / "dump.json"
    source.write_bytes(first + b"\r\n" + GOOD_LINES.replace(b"\n", b"\r\n"))
    result = run_extract(db, ExtractOptions(str(source), max_reject_share=0.05, max_line_bytes=1024))
    assert (result.lines_read, result.rejected, result.loaded) == (41, 1, 40)
    assert db.conn.execute("SELECT line_number, reason, length(raw_line) FROM rejects").fetchall() == [
        (1, "line_too_long", 1024)
    ]


def test_an_over_long_last_line_read_past_adds_no_empty_line_after_it(db: Database, tmp_path: Path) -> None:
    last = with_timestamp(901, PLAIN, ', "x": "' + "z" * (3 * MIB) + '"')  # refused while still being read
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES + last + b"\n")
    result = run_extract(db, ExtractOptions(str(source), max_reject_share=0.05, max_line_bytes=1024))
    assert (result.lines_read, result.rejected, result.loaded) == (41, 1, 40)
    assert db.conn.execute("SELECT line_number, reason FROM rejects").fetchall() == [(41, "line_too_long")]


def test_a_duplicate_postgresql_would_refuse_is_a_reject_whichever_pass_reads_it(db: Database, tmp_path: Path) -> None:
    """A duplicate never reaches COPY; its verdict is still parse_line's, the same whether or not another line
    makes the extract judge every line (the careful pass)."""
    duplicate = with_timestamp(1, PLAIN, ', "n": 1e-20000')  # line 1 has id 1
    body = GOOD_LINES + duplicate + b"\n"
    source = tmp_path / "dump.json"
    source.write_bytes(body)
    fast = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1))
    assert (fast.lines_read, fast.loaded, fast.duplicates, fast.rejected) == (41, 40, 0, 1)
    db.conn.execute("TRUNCATE raw_events, rejects")
    # one more line PostgreSQL refuses on COPY: every line is judged by parse_line; the same verdicts
    source.write_bytes(body + with_timestamp(80, PLAIN, ', "n": 1e-20000') + b"\n")
    careful = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1))
    assert (careful.lines_read, careful.loaded, careful.duplicates, careful.rejected) == (42, 40, 0, 2)
    reasons = db.conn.execute("SELECT line_number, reason FROM rejects WHERE run_id = %s", (result_run(db),)).fetchall()
    assert sorted(reasons) == [(41, "bad_number"), (42, "bad_number")]


def test_a_number_postgresql_refuses_refuses_only_a_line_that_is_stored(db: Database, tmp_path: Path) -> None:
    """An anonymous line is not stored (without --keep-anonymous): it is judged as an event, and a number only
    PostgreSQL's numeric cannot hold does not refuse it, in either pass; it claims its id, as any valid line."""
    anonymous = b'{"id": 50, "type": "page_view", "event": {"timestamp": "2026-01-01T00:00:00", "n": 1e-20000}}'
    order = b'{"id": 50, "type": "placed_order", "event": {"customer-id": 7, "timestamp": "2026-01-01T00:01:00"}}'
    assert isinstance(parse_line(anonymous, anonymous_stored=False), ParsedLine)
    stored = parse_line(anonymous)  # with --keep-anonymous
    logged_in = parse_line(with_timestamp(1, PLAIN, ', "n": 1e-20000'), anonymous_stored=False)
    assert isinstance(stored, RefusedLine) and stored.reason == "bad_number"
    assert isinstance(logged_in, RefusedLine) and logged_in.reason == "bad_number"
    source = tmp_path / "dump.json"
    body = GOOD_LINES + anonymous + b"\n" + order + b"\n"
    source.write_bytes(body)
    fast = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1))
    assert (fast.lines_read, fast.loaded, fast.anonymous, fast.duplicates, fast.rejected) == (42, 40, 1, 1, 0)
    db.conn.execute("TRUNCATE raw_events, rejects")
    # a stored line PostgreSQL refuses on COPY: every line is judged by parse_line, with the same verdicts
    source.write_bytes(body + with_timestamp(80, PLAIN, ', "n": 1e-20000') + b"\n")
    careful = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1))
    assert (careful.lines_read, careful.loaded, careful.anonymous, careful.duplicates, careful.rejected) == (
        43,
        40,
        1,
        1,
        1,
    )
    db.conn.execute("TRUNCATE raw_events, rejects")
    # with --keep-anonymous the line is stored: then the number refuses it, and the order keeps id 50
    kept = run_extract(db, ExtractOptions(str(source), max_reject_share=0.1, keep_anonymous=True))
    assert (kept.loaded, kept.anonymous, kept.duplicates, kept.rejected) == (41, 0, 0, 2)


@pytest.mark.parametrize("cut", ["-", "-12.", "-12.5e", "-12.5e+", "12.5E-"])
def test_a_last_line_cut_inside_a_number_is_a_cut_download(db: Database, tmp_path: Path, cut: str) -> None:
    source = tmp_path / "dump.json"
    source.write_bytes(GOOD_LINES + b'{"id": 99, "type": "placed_order", "event": {"total": ' + cut.encode())
    with pytest.raises(DataQualityError, match="probably truncated"):
        run_extract(db, ExtractOptions(str(source)))
    assert db.conn.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0


def test_the_bitmap_of_seen_ids_never_grows_past_its_limit() -> None:
    """Doubling from an odd size must not overshoot: ids up to the limit take at most limit / 8 bytes."""
    seen = SeenIds()
    for event_id in (SeenIds.BITMAP_LIMIT - 16, SeenIds.BITMAP_LIMIT - 1):
        seen.grow(event_id >> 3)
    assert len(seen.bits) == SeenIds.BITMAP_LIMIT >> 3


def test_a_line_of_the_maximum_length_is_not_too_long_when_its_crlf_is_split_between_chunks() -> None:
    """The CR of a CRLF is no part of the line, even while its LF is still to come in the next chunk."""
    good = line(event(1, 5, START))
    chunks = [good + b"z" * 500, b"z" * 524 + b"\r", b"\n" + good]
    result = ExtractResult(source="chunks")
    with closing(Rejects(1)) as rejects:
        _stream(iter(chunks), lambda data: None, LineReader(result, rejects, 1024, 1.0), 1, False, None)
        assert (result.lines_read, rejects.reasons) == (3, {"invalid_json": 1})
