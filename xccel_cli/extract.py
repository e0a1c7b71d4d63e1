"""Stage 1: stream a dump into raw_events with COPY, keeping every refused line with its reason.

Per line, Python only decodes the few fields it needs with a typed msgspec decoder and
writes the untouched line as the JSONB payload; PostgreSQL parses the payload in parallel.
"""

from __future__ import annotations

import logging
import queue
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter

from xccel_cli import lines as verdicts
from xccel_cli.config import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_MAX_LINE_BYTES,
)
from xccel_cli.db import Database, one_row, translate_errors
from xccel_cli.errors import DataQualityError
from xccel_cli.lines import MAX_DEPTH, Line, ParsedLine, RefusedLine, is_cut, number_suspect, parse_line
from xccel_cli.source import BOM, HttpOptions, SourceInfo, open_source, open_sources, whole_head

__all__ = ["ExtractResult", "Line", "ProgressCallback", "extract"]

log = logging.getLogger(__name__)

COPY_BATCH_BYTES = 2 << 20  # with BoundedQueuedWriter: at most ~3 batches in memory
SAMPLE_REASONS = 3

# The reject share is checked while the dump is read, once this much of it was read (lines or bytes):
# a share over the limit by then stops the run at once instead of reading (and spooling) the rest.
EARLY_GUARD_LINES = 100_000
EARLY_GUARD_BYTES = 256 << 20
# Distinct event types whose COPY cell is cached; a dump of ever new types must not grow the cache.
TYPE_CACHE_ENTRIES = 1024
TYPE_CACHE_MAX_LENGTH = 256

# checked by the fast path as timedelta comparisons (see lines.MAX_UTC_OFFSET)
MAX_UTC_OFFSET = verdicts.MAX_UTC_OFFSET
NEG_MAX_UTC_OFFSET = -verdicts.MAX_UTC_OFFSET


@dataclass
class ExtractResult:
    source: str
    lines_read: int = 0
    loaded: int = 0  # new rows in raw_events
    logged_in: int = 0  # distinct valid events with a customer-id in this dump
    anonymous: int = 0  # distinct valid events without one
    duplicates: int = 0  # lines whose event id appeared earlier in this dump
    already_loaded: int = 0  # events kept by an earlier run
    rejected: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    source_info: SourceInfo | None = None


ProgressCallback = Callable[[int, int], None]


class SeenIds:
    """Event ids seen so far: a growable bitmap for the dense ids dumps have, a set for outliers."""

    BITMAP_LIMIT = 1 << 28  # ids above this (256 M) go to the set; the bitmap stays <= 32 MB

    def __init__(self) -> None:
        self.bits = bytearray(1 << 17)
        self.other: set[int] = set()

    def grow(self, index: int) -> None:
        """Make byte `index` exist, in place (callers keep a reference to self.bits)."""
        bits = self.bits
        # doubling from a size that is no power of two would overshoot the limit
        bits.extend(bytes(max(index + 1, min(2 * len(bits), self.BITMAP_LIMIT >> 3)) - len(bits)))

    def add_outlier(self, event_id: int) -> bool:
        """Record an id outside the bitmap's range (the reader tests and sets bits in the bitmap itself, inline:
        it runs once per line); False when it was seen before."""
        if event_id in self.other:
            return False
        self.other.add(event_id)
        return True


def copy_escape(data: bytes) -> bytes:
    """Escape a value for COPY's text format."""
    if b"\\" in data:
        data = data.replace(b"\\", b"\\\\")
    if b"\t" in data:
        data = data.replace(b"\t", b"\\t")
    if b"\r" in data:
        data = data.replace(b"\r", b"\\r")
    if b"\n" in data:
        data = data.replace(b"\n", b"\\n")
    return data


def raw_text(line: bytes) -> str:
    """The line as text for the rejects table: invalid UTF-8 as \\xNN escapes, NUL spelled out."""
    return line.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


class BoundedQueuedWriter(LibpqWriter):
    """Sends COPY data from a thread, so the hot loop formats the next batch while PostgreSQL parses this one.

    psycopg's QueuedLibpqWriter does the same with a queue of up to 1024 x 128 KB; this one holds at most
    `max_queued` batches, so memory stays flat when the server is the slower side.
    """

    def __init__(self, cursor: Any, max_queued: int = 2) -> None:
        super().__init__(cursor)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=max_queued)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _send(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                LibpqWriter.write(self, data)
        except BaseException as exc:  # handed to the main thread at its next write or at finish
            self._error = exc
            while self._queue.get() is not None:
                pass

    def write(self, data: Any) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._send, name="xccel-copy", daemon=True)
            self._thread.start()
        self._queue.put(bytes(data))

    def finish(self, exc: BaseException | None = None) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None and exc is None:
            raise self._error
        super().finish(exc)


class Rejects:
    """Refused lines, spooled to disk past a few MB, then COPYed into rejects."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.count = 0
        self.reasons: dict[str, int] = {}
        self.samples: list[str] = []
        self.spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed by close())

    def add(self, line_number: int, reason: str, detail: str, line: bytes) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.samples) < SAMPLE_REASONS:
            self.samples.append(f"line {line_number}: {reason}")
        cells = (
            b"%d" % self.run_id,
            b"%d" % line_number,
            reason.encode(),
            copy_escape(detail.encode()),
            copy_escape(raw_text(line).encode()),
        )
        self.spool.write(b"\t".join(cells) + b"\n")

    def copy_into_table(self, db: Database) -> None:
        self.spool.seek(0)
        with (
            db.conn.cursor() as cur,
            cur.copy("COPY rejects (run_id, line_number, reason, detail, raw_line) FROM STDIN") as copy,
        ):
            while block := self.spool.read(1 << 20):
                copy.write(block)
        self.close()

    def close(self) -> None:
        self.spool.close()


# The order of the fields in a COPY row: the two that are the same for every row of a type come first and the
# payload last, so a row is three pieces (a cached prefix, one packed run of numbers, the line as read).
COPY_COLUMNS = ("event_type", "run_id", "event_id", "customer_id", "timestamp", "payload")
COLUMNS = "(" + ", ".join(f'"{name}"' if name == "timestamp" else name for name in COPY_COLUMNS) + ")"
# COPY's binary format: PostgreSQL takes the values as they are, without scanning each line for delimiters
# and escapes or parsing the timestamp's text (the JSON payload is still parsed into jsonb).
COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_BINARY_TRAILER = struct.pack(">h", -1)
COPY_FIELDS = len(COPY_COLUMNS)
NULL_LENGTH = -1
JSONB_VERSION = b"\x01"  # jsonb's binary input: this version byte, then the JSON text
# timestamptz's binary value: microseconds since 2000-01-01 00:00 UTC (a naive timestamp is UTC)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
PG_EPOCH_NAIVE = datetime(2000, 1, 1)
MICROSECOND = timedelta(microseconds=1)
# what PostgreSQL says when it refuses a value in COPY (class 22, or a value beyond one of its limits)
SERVER_REFUSALS = (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded, psycopg.errors.StatementTooComplex)


class _RefusedByServer(Exception):
    """PostgreSQL refused a row the fast path let through; the extract is started over, every line judged."""


def extract(
    db: Database,
    source: str | Sequence[str],
    run_id: int,
    *,
    keep_anonymous: bool = False,
    max_reject_share: float = 0.05,
    progress: ProgressCallback | None = None,
    retries: int = 3,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_size: Callable[[int], None] | None = None,
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS,
    retry_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS,
) -> ExtractResult:
    """Read the whole source into raw_events in one transaction; nothing is kept if it fails.

    Two ways in, with the same result: into an empty raw_events the rows are COPYed straight in
    (bulk path); otherwise into a temp stage, merged with an anti-join so already-loaded ids stay.

    Well-formed lines take a fast path that decodes only the four fields. The few things it does not look
    for (numbers beyond PostgreSQL's numeric, in the payload) PostgreSQL refuses during COPY; the
    transaction is then rolled back and the source read again with every line judged by parse_line.
    """
    http = HttpOptions(retries, http_timeout_seconds, retry_backoff_seconds)
    options = (db, source, run_id, keep_anonymous, max_reject_share, progress, http, max_line_bytes, on_size)
    try:
        return _extract(*options, careful=False)
    except _RefusedByServer as exc:
        if source == "-":
            raise DataQualityError(
                f"PostgreSQL refused a line of stdin ({exc}); stdin cannot be read twice to find it: "
                "save the dump to a file and extract that; nothing was loaded"
            ) from None
        log.warning("PostgreSQL refused a line (%s); reading the source again, judging every line", exc)
    try:
        return _extract(*options, careful=True)
    except _RefusedByServer as exc:
        raise DataQualityError(f"PostgreSQL refused a line of the dump: {exc}; nothing was loaded") from None


def _extract(
    db: Database,
    source: str | Sequence[str],
    run_id: int,
    keep_anonymous: bool,
    max_reject_share: float,
    progress: ProgressCallback | None,
    http: HttpOptions,
    max_line_bytes: int,
    on_size: Callable[[int], None] | None,
    *,
    careful: bool,
) -> ExtractResult:
    started = time.perf_counter()
    # several sources: one stream, in the given order (see open_sources)
    opener = open_source(source, http) if isinstance(source, str) else open_sources(source, http)
    # closing(): a failed run must not leave the spool file open (it may have rolled over to disk)
    with db.transaction(), opener as opened, closing(Rejects(run_id)) as rejects:
        result = ExtractResult(source=opened.info.name, source_info=opened.info)
        if on_size is not None and opened.info.kind == "http" and opened.info.size:
            on_size(opened.info.size)  # Content-Length: a progress bar can show a total (a local file's is known)
        with translate_errors():
            # a crash right after commit may lose this run, never corrupt it; the next run reloads it
            db.conn.execute("SET LOCAL synchronous_commit = off")
            primary_key = _prepare_bulk_load(db)
            if primary_key is not None:
                target = f"COPY raw_events {COLUMNS} FROM STDIN WITH (FORMAT binary, FREEZE)"
            else:
                db.conn.execute(STAGE_TABLE)
                target = f"COPY stage_events {COLUMNS} FROM STDIN WITH (FORMAT binary)"
        reader = LineReader(result, rejects, max_line_bytes, max_reject_share)
        with translate_errors(), db.conn.cursor() as cur:
            try:
                with cur.copy(target, writer=BoundedQueuedWriter(cur)) as copy:
                    _stream(
                        opened.chunks,
                        copy.write,
                        reader,
                        run_id,
                        keep_anonymous,
                        progress,
                        careful=careful,
                        jsonb_payload=primary_key is not None,
                    )
            except SERVER_REFUSALS as exc:
                raise _RefusedByServer(_first_line(exc)) from exc
            copied = cur.rowcount
        result.rejected = rejects.count
        result.reject_reasons = dict(sorted(rejects.reasons.items(), key=lambda kv: -kv[1]))
        _guard(result, reader)
        with translate_errors():
            try:
                rejects.copy_into_table(db)
                if primary_key is not None:
                    name, definition = primary_key
                    db.conn.execute(
                        sql.SQL("ALTER TABLE raw_events ADD CONSTRAINT {} {}").format(
                            sql.Identifier(name), sql.SQL(definition)
                        )
                    )
                    result.loaded = copied
                else:
                    result.loaded = db.conn.execute(MERGE_STAGE).rowcount
                # committed with the rows, so runs.loaded > 0 says for certain that this run added events
                # (load checks it: no result sessionized before them may be published)
                db.conn.execute("UPDATE runs SET loaded = %s WHERE run_id = %s", (result.loaded, run_id))
            except SERVER_REFUSALS as exc:  # the merge path casts the payload to jsonb here
                raise _RefusedByServer(_first_line(exc)) from exc
        kept = result.logged_in + (result.anonymous if keep_anonymous else 0)
        result.already_loaded = kept - result.loaded
    result.seconds = time.perf_counter() - started
    return result


# The stage keeps the payload as text: a line whose id is already loaded is never parsed as jsonb.
STAGE_TABLE = """CREATE TEMP TABLE stage_events (event_id bigint, event_type text, customer_id bigint,
    "timestamp" timestamptz, payload text, run_id bigint) ON COMMIT DROP"""
MERGE_STAGE = """INSERT INTO raw_events (event_id, event_type, customer_id, "timestamp", payload, run_id)
SELECT s.event_id, s.event_type, s.customer_id, s."timestamp", s.payload::jsonb, s.run_id
FROM stage_events s
WHERE NOT EXISTS (SELECT 1 FROM raw_events r WHERE r.event_id = s.event_id)
ON CONFLICT (event_id) DO NOTHING"""


def _prepare_bulk_load(db: Database) -> tuple[str, str] | None:
    """When raw_events is empty: truncate it and drop its primary key; returns (name, definition) to re-add.

    A table truncated in this transaction takes COPY FREEZE (rows written once, never revisited to set
    hint bits or freeze), and one index build after the load is cheaper than a million index inserts.
    None when raw_events holds rows: they go through the stage, so the first line read still wins.
    """
    conn = db.conn
    # only the table's owner may truncate it and drop its key
    owner, filled = one_row(
        conn.execute(
            "SELECT pg_has_role(relowner, 'USAGE'), EXISTS (SELECT FROM raw_events) FROM pg_class"
            " WHERE oid = 'raw_events'::regclass"
        )
    )
    if filled or not owner:
        return None
    try:
        with conn.transaction():  # a savepoint: a reader holding raw_events means the merge path, not a wait
            conn.execute("LOCK TABLE raw_events IN ACCESS EXCLUSIVE MODE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        return None
    if one_row(conn.execute("SELECT EXISTS (SELECT FROM raw_events)"))[0]:  # filled before we got the lock
        return None
    key = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'raw_events'::regclass AND contype = 'p'"
    ).fetchone()
    if key is None:
        return None
    conn.execute("TRUNCATE raw_events")
    conn.execute(sql.SQL("ALTER TABLE raw_events DROP CONSTRAINT {}").format(sql.Identifier(key[0])))
    return key[0], key[1]


def _first_line(exc: Exception) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _guard(result: ExtractResult, reader: LineReader) -> None:
    if result.lines_read == 0:
        raise DataQualityError(f"the source {result.source} is empty: nothing to load")
    share, max_share = result.rejected / result.lines_read, reader.max_reject_share
    if share > max_share:
        question = verdicts.refused_source_question(reader.first_byte)
        raise DataQualityError(
            f"refused {result.rejected:,} of {result.lines_read:,} lines ({share:.1%}, limit {max_share:.1%}); "
            f"nothing was loaded. First: {'; '.join(reader.rejects.samples)}. {question}"
        )


class LineReader:
    """Cuts a stream of chunks into lines, whatever the stream holds, in memory bounded by the maximum line length.

    What belongs to the stream and not to one line is decided here: a BOM at its start is skipped; UTF-16
    text and CR-only line endings are named as such; a line longer than the maximum is refused as
    line_too_long (its first bytes kept) and read past without being held; and the reject share is watched
    as the stream is read, so a dump that is mostly refused stops early instead of being read to its end.
    """

    def __init__(self, result: ExtractResult, rejects: Rejects, max_line_bytes: int, max_reject_share: float) -> None:
        self.result = result
        self.rejects = rejects
        self.max_line_bytes = max_line_bytes
        self.max_reject_share = max_reject_share
        self.line_number = 0
        self.bytes_read = 0
        self.saw_newline = False
        self.cr_before_first_newline = False
        self.kept_bytes = min(verdicts.LONG_LINE_KEPT_BYTES, max_line_bytes)
        self.first_byte = b""  # the first byte of the stream that is not white space

    def blocks(self, chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
        """(block, last): blocks of whole lines joined by b"\\n"; `last` marks the stream's tail without a newline.

        The caller numbers the lines of each block; over-long lines are refused here (and numbered here).
        """
        parts: list[bytes] = []  # the current line's bytes so far (none of them a newline)
        held = 0
        skipping = False  # inside an over-long line, already refused: read on to its end
        first = True
        for chunk in whole_head(chunks, 4):  # enough to tell a BOM or UTF-16
            self.bytes_read += len(chunk)
            if first:
                first = False
                chunk = self._start(chunk)
            if skipping:
                newline = chunk.find(b"\n")
                if newline < 0:
                    self.check_share()
                    continue
                chunk = chunk[newline + 1 :]
                skipping = False
                self.saw_newline = True
            cut = chunk.rfind(b"\n")
            if cut < 0:
                # a CR with more after it (a CR at the very end may be the first half of a CRLF)
                if not self.saw_newline and b"\r" in chunk[:-1]:
                    self.cr_before_first_newline = True
                parts.append(chunk)
                held += len(chunk)
                # a CR at the chunk's end may be the first half of a CRLF, which is no part of the line
                if held > self.max_line_bytes + chunk.endswith(b"\r"):
                    self._cr_only_check()
                    self.refuse_long(_head(parts, self.kept_bytes))
                    parts.clear()
                    held = 0
                    skipping = True
                    self.check_share()
                continue
            if not self.saw_newline:
                self.saw_newline = True
                if b"\r" in chunk[: chunk.find(b"\n")]:
                    self.cr_before_first_newline = True
            if parts:
                parts.append(chunk[:cut])
                block = b"".join(parts)
                parts.clear()
            else:
                block = chunk[:cut]
            rest = chunk[cut + 1 :]
            if rest:
                parts.append(rest)
            held = len(rest)
            yield block, False
            self.check_share()
        if parts and not skipping:
            tail = b"".join(parts)
            self._cr_only_check(tail)
            # nothing after the last newline (an over-long line read past to its end, an empty chunk): no line
            if tail:
                yield tail, True

    def _start(self, chunk: bytes) -> bytes:
        if chunk.startswith(BOM):
            chunk = chunk[len(BOM) :]
        else:
            # a BOM, or ASCII text with a NUL before (big-endian) or after (little-endian) every character
            little = len(chunk) >= 4 and chunk[0] != 0 and chunk[1] == 0 and chunk[2] != 0 and chunk[3] == 0
            big = len(chunk) >= 4 and chunk[0] == 0 and chunk[1] != 0 and chunk[2] == 0 and chunk[3] != 0
            if chunk.startswith((b"\xff\xfe", b"\xfe\xff")) or little or big:
                raise DataQualityError(
                    f"the source {self.result.source} is UTF-16 text, not UTF-8: convert it first "
                    "(iconv -f UTF-16 -t UTF-8); nothing was loaded"
                )
        # a JSON array or a web page instead of a dump: worth naming when most of its lines are then refused
        self.first_byte = chunk[:4096].lstrip(b" \t\r\n")[:1]
        return chunk

    def _cr_only_check(self, tail: bytes | None = None) -> None:
        if self.saw_newline:
            return
        if self.cr_before_first_newline or (tail is not None and b"\r" in tail):
            raise DataQualityError(
                f"the source {self.result.source} ends its lines with CR alone (old Mac line endings); xccel "
                "reads lines ending in LF or CRLF: convert it first (tr '\\r' '\\n'); nothing was loaded"
            )

    def refuse_long(self, head: bytes) -> None:
        self.line_number += 1
        refused = verdicts.too_long(self.max_line_bytes, head)
        self.rejects.add(self.line_number, refused.reason, refused.detail, head)

    def check_share(self) -> None:
        """Stop at once when the share refused so far is over the limit, once enough was read to judge."""
        lines, refused = self.line_number, self.rejects.count
        if refused <= self.max_reject_share * lines:
            return
        if lines < EARLY_GUARD_LINES and self.bytes_read < EARLY_GUARD_BYTES:
            return
        share = refused / lines
        raise DataQualityError(
            f"refused {refused:,} of the first {lines:,} lines ({share:.1%}, limit {self.max_reject_share:.1%}) "
            f"in the first {self.bytes_read / 1e6:,.0f} MB: stopped reading; nothing was loaded. "
            f"First: {'; '.join(self.rejects.samples)}. {verdicts.refused_source_question(self.first_byte)}"
        )


def _head(parts: list[bytes], size: int) -> bytes:
    """The first `size` bytes of a line held in parts, without joining all of it."""
    head = b""
    for part in parts:
        head += part[: size - len(head)]
        if len(head) >= size:
            break
    return head


def unusual_time(timestamp: datetime) -> bool:
    """An offset PostgreSQL refuses, or a year that conversion to UTC may take out of Python's range."""
    offset = timestamp.utcoffset()
    return offset is None or not NEG_MAX_UTC_OFFSET < offset < MAX_UTC_OFFSET or not 1 < timestamp.year < 9999


def _judge_every_line(line: bytes) -> Line:
    """The careful pass's decoder: declines every line, so that parse_line judges each."""
    raise msgspec.DecodeError("careful pass")


def _stream(
    chunks: Iterable[bytes],
    write: Callable[[bytes], None],
    reader: LineReader,
    run_id: int,
    keep_anonymous: bool,
    progress: ProgressCallback | None,
    *,
    careful: bool = False,
    jsonb_payload: bool = True,
) -> None:
    """The hot loop: split chunks into lines, decode, dedupe, write COPY rows (binary format) in large batches.

    jsonb_payload: the payload column is jsonb (raw_events), else text (the merge path's stage).

    A well-formed line is decoded once by the typed decoder and checked with a few cheap tests (a fast path
    that only ever accepts lines parse_line accepts); anything else, and every line when `careful`, is
    judged by lines.parse_line, so every refusal has parse_line's reason.
    """
    decode: Callable[[bytes], Line] = _judge_every_line if careful else verdicts.decode_line
    seen_ids = SeenIds()
    seen_bits, bitmap_limit, seen_other = seen_ids.bits, SeenIds.BITMAP_LIMIT, seen_ids.add_outlier
    # per event type, the row's first bytes: the field count, the type and run_id
    row_prefixes: dict[str, bytes] = {}
    run_cell = struct.pack(">iq", 8, run_id)
    # then event_id, customer_id (or NULL), the timestamp, the payload's length and its jsonb version byte
    # ("0s" takes the empty prefix of a text payload and writes nothing)
    payload_prefix = JSONB_VERSION if jsonb_payload else b""
    payload_extra = len(payload_prefix)
    prefix_format = f"{len(payload_prefix)}s"
    pack_numbers = struct.Struct(">iqiqiqi" + prefix_format).pack
    pack_numbers_null = struct.Struct(">iqiiqi" + prefix_format).pack
    numbers_bytes = struct.calcsize(">iqiqiqi" + prefix_format)
    epoch, epoch_naive, microsecond = PG_EPOCH, PG_EPOCH_NAIVE, MICROSECOND
    rows: list[bytes] = [COPY_BINARY_HEADER]
    pending = len(COPY_BINARY_HEADER)
    logged_in = anonymous = duplicates = 0
    result, rejects = reader.result, reader.rejects
    max_line = reader.max_line_bytes
    # a valid line nested deeper than MAX_DEPTH has at least this many bytes
    deep_length = 2 * MAX_DEPTH
    decode_errors = (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError, RecursionError)

    def refuse(line_number: int, reason: str, detail: str, line: bytes) -> None:
        rejects.add(line_number, reason, detail, line)
        if not rejects.count & 4095:
            reader.line_number = line_number
            reader.check_share()

    def refused_duplicate(line_number: int, line: bytes) -> bool:
        """Whether a duplicate the fast path took is refused: it never reaches COPY, where PostgreSQL would look
        at its numbers, and the careful pass refuses it (the verdict comes before the id)."""
        if not number_suspect(line):
            return False
        verdict = parse_line(line, anonymous_stored=keep_anonymous)
        if type(verdict) is RefusedLine:
            refuse(line_number, verdict.reason, verdict.detail, line)
            return True
        return False

    def row_prefix(event_type: str) -> bytes:
        encoded = event_type.encode()
        prefix = struct.pack(">hi", COPY_FIELDS, len(encoded)) + encoded + run_cell
        if len(event_type) <= TYPE_CACHE_MAX_LENGTH:
            if len(row_prefixes) >= TYPE_CACHE_ENTRIES:
                row_prefixes.clear()
            row_prefixes[event_type] = prefix
        return prefix

    def process(block: bytes, last: bool) -> None:
        nonlocal logged_in, anonymous, duplicates, pending
        line_number = reader.line_number
        check_utf8 = False
        if not block.isascii():  # isascii is a scan without a copy; most dumps are plain ASCII
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                check_utf8 = True
        backslash = b"\\" in block
        carriage = b"\r" in block
        check_length = len(block) > max_line
        record: Line | None
        for line in block.split(b"\n"):
            line_number += 1
            if carriage and line.endswith(b"\r"):
                line = line[:-1]
            size = len(line)
            if check_length and size > max_line:
                reader.line_number = line_number - 1
                reader.refuse_long(line[: reader.kept_bytes])
                continue
            try:
                if check_utf8:
                    line.decode("utf-8")
                record = decode(line)
            except decode_errors:
                record = None
            else:
                event = record.event
                timestamp = event.timestamp
                # the cheap tests (a naive or UTC timestamp needs none): anything unusual goes to parse_line
                if (
                    (backslash and b"\\u" in line)
                    or (size > deep_length and line.count(b"[") + line.count(b"{") > MAX_DEPTH)
                    or (timestamp.tzinfo is not None and timestamp.tzinfo is not UTC and unusual_time(timestamp))
                ):
                    record = None
            if record is not None:
                event_id = record.id
                customer = event.customer_id
            else:
                verdict = parse_line(line, anonymous_stored=keep_anonymous)
                if type(verdict) is RefusedLine:
                    if last and is_cut(verdict):
                        raise DataQualityError(
                            f"the source {result.source} ends in a cut line (line {line_number:,}): "
                            "the download was probably truncated; nothing was loaded"
                        )
                    refuse(line_number, verdict.reason, verdict.detail, line)
                    continue
                assert isinstance(verdict, ParsedLine)
                event_id = verdict.event_id
                customer = verdict.customer_id
                timestamp = verdict.timestamp
                judged_type = verdict.event_type
            if 0 <= event_id < bitmap_limit:  # the bitmap half of SeenIds, inline: this runs once per line
                index = event_id >> 3
                mask = 1 << (event_id & 7)
                try:
                    byte = seen_bits[index]
                except IndexError:
                    seen_ids.grow(index)
                    byte = 0
                if byte & mask:
                    if record is None or not refused_duplicate(line_number, line):
                        duplicates += 1
                    continue
                seen_bits[index] = byte | mask
            elif not seen_other(event_id):
                if record is None or not refused_duplicate(line_number, line):
                    duplicates += 1
                continue
            if customer is not None:
                logged_in += 1
            else:
                anonymous += 1
                if not keep_anonymous:
                    continue
            micros = (timestamp - (epoch_naive if timestamp.tzinfo is None else epoch)) // microsecond
            if customer is not None:
                numbers = pack_numbers(8, event_id, 8, customer, 8, micros, size + payload_extra, payload_prefix)
            else:
                numbers = pack_numbers_null(8, event_id, NULL_LENGTH, 8, micros, size + payload_extra, payload_prefix)
            event_type = record.type if record is not None else judged_type
            prefix = row_prefixes.get(event_type)
            if prefix is None:
                prefix = row_prefix(event_type)
            rows.extend((prefix, numbers, line))
            pending += len(prefix) + numbers_bytes + size
            if pending >= COPY_BATCH_BYTES:
                write(b"".join(rows))
                rows.clear()
                pending = 0
        reader.line_number = line_number

    for block, last in reader.blocks(chunks):
        result.lines_read = reader.line_number
        process(block, last)
        if progress is not None:
            progress(reader.bytes_read, reader.line_number)
    rows.append(COPY_BINARY_TRAILER)
    write(b"".join(rows))
    result.lines_read = reader.line_number
    result.logged_in, result.anonymous, result.duplicates = logged_in, anonymous, duplicates
    result.bytes_read = reader.bytes_read
    if progress is not None:
        progress(reader.bytes_read, reader.line_number)
