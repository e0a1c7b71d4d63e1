"""Stage 1: stream a dump into raw_events with COPY, keeping every refused line with its reason.

Per line, Python only decodes the few fields it needs with a typed msgspec decoder and
writes the untouched line as the JSONB payload; PostgreSQL parses the payload in parallel.
"""

from __future__ import annotations

import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec
import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter

from xccel_cli.db import Database, translate_errors
from xccel_cli.errors import DataQualityError
from xccel_cli.source import SourceInfo, open_source, open_sources

BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
COPY_BATCH_BYTES = 2 << 20  # with BoundedQueuedWriter: at most ~3 batches in memory
SAMPLE_REASONS = 3


class Event(msgspec.Struct):
    timestamp: datetime
    customer_id: BigInt | None = msgspec.field(name="customer-id", default=None)


class Line(msgspec.Struct):
    id: BigInt
    type: Annotated[str, msgspec.Meta(min_length=1)]
    event: Event


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
        bits.extend(bytes(max(index + 1, 2 * len(bits)) - len(bits)))

    def add(self, event_id: int) -> bool:
        """Record event_id; False when it was seen before."""
        if 0 <= event_id < self.BITMAP_LIMIT:
            index = event_id >> 3
            bits = self.bits
            if index >= len(bits):
                self.grow(index)
            byte = bits[index]
            mask = 1 << (event_id & 7)
            if byte & mask:
                return False
            bits[index] = byte | mask
            return True
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


def classify(error: Exception) -> tuple[str, str]:
    """(reason, detail) for a line msgspec refused."""
    message = str(error)
    if isinstance(error, msgspec.ValidationError):
        if "missing required field" in message:
            return "missing_field", message
        if "datetime" in message:
            return "bad_timestamp", message
        if "`$.id`" in message:
            return "bad_id", message
        if "customer-id" in message:
            return "bad_customer_id", message
        if "`$.type`" in message:
            return "bad_type", message
        return "bad_structure", message
    if "truncated" in message:
        return "invalid_json", "the line ends before the JSON value does (truncated)"
    return "invalid_json", message


def bad_string(value: Any) -> str | None:
    """Why PostgreSQL's jsonb would refuse a decoded value, or None: NUL or a lone surrogate."""
    if isinstance(value, str):
        if "\x00" in value:
            return "nul_character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid_unicode_escape"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            reason = bad_string(key) or bad_string(item)
            if reason:
                return reason
    elif isinstance(value, list):
        for item in value:
            reason = bad_string(item)
            if reason:
                return reason
    return None


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
        self.spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (closed after the COPY)

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
        self.spool.close()


COLUMNS = '(event_id, event_type, customer_id, "timestamp", payload, run_id)'


def extract(
    db: Database,
    source: str | Sequence[str],
    run_id: int,
    *,
    keep_anonymous: bool = False,
    max_reject_share: float = 0.05,
    progress: ProgressCallback | None = None,
    retries: int = 3,
) -> ExtractResult:
    """Read the whole source into raw_events in one transaction; nothing is kept if it fails.

    Two ways in, with the same result: into an empty raw_events the rows are COPYed straight in
    (bulk path); otherwise into a temp stage, merged with an anti-join so already-loaded ids stay.
    """
    started = time.perf_counter()
    # several sources: one stream, in the given order (see open_sources)
    opener = open_source(source, retries=retries) if isinstance(source, str) else open_sources(source, retries=retries)
    with db.transaction(), opener as opened:
        result = ExtractResult(source=opened.info.name, source_info=opened.info)
        rejects = Rejects(run_id)
        with translate_errors():
            # a crash right after commit may lose this run, never corrupt it; the next run reloads it
            db.conn.execute("SET LOCAL synchronous_commit = off")
            primary_key = _prepare_bulk_load(db)
            if primary_key is not None:
                target = f"COPY raw_events {COLUMNS} FROM STDIN WITH (FREEZE)"
            else:
                db.conn.execute(STAGE_TABLE)
                target = f"COPY stage_events {COLUMNS} FROM STDIN"
        with translate_errors(), db.conn.cursor() as cur:
            with cur.copy(target, writer=BoundedQueuedWriter(cur)) as copy:
                _stream(opened.chunks, copy.write, rejects, result, run_id, keep_anonymous, progress)
            copied = cur.rowcount
        result.rejected = rejects.count
        result.reject_reasons = dict(sorted(rejects.reasons.items(), key=lambda kv: -kv[1]))
        _guard(result, rejects, max_reject_share)
        with translate_errors():
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
        kept = result.logged_in + (result.anonymous if keep_anonymous else 0)
        result.already_loaded = kept - result.loaded
    result.seconds = time.perf_counter() - started
    return result


# The stage keeps the payload as text: a line whose id is already loaded is never parsed as jsonb.
STAGE_TABLE = """CREATE TEMP TABLE stage_events (event_id bigint, event_type text, customer_id bigint,
    "timestamp" timestamptz, payload text, run_id bigint) ON COMMIT DROP"""
MERGE_STAGE = f"""INSERT INTO raw_events {COLUMNS}
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
    owner, filled = conn.execute(
        "SELECT pg_has_role(relowner, 'USAGE'), EXISTS (SELECT FROM raw_events) FROM pg_class"
        " WHERE oid = 'raw_events'::regclass"
    ).fetchone()
    if filled or not owner:
        return None
    try:
        with conn.transaction():  # a savepoint: a reader holding raw_events means the merge path, not a wait
            conn.execute("LOCK TABLE raw_events IN ACCESS EXCLUSIVE MODE NOWAIT")
    except psycopg.errors.LockNotAvailable:
        return None
    if conn.execute("SELECT EXISTS (SELECT FROM raw_events)").fetchone()[0]:  # filled before we got the lock
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


def _guard(result: ExtractResult, rejects: Rejects, max_share: float) -> None:
    if result.lines_read == 0:
        raise DataQualityError(f"the source {result.source} is empty: nothing to load")
    share = result.rejected / result.lines_read
    if share > max_share:
        raise DataQualityError(
            f"refused {result.rejected:,} of {result.lines_read:,} lines ({share:.1%}, limit {max_share:.1%}); "
            f"nothing was loaded. First: {'; '.join(rejects.samples)}. Is the source really an event dump?"
        )


def _stream(
    chunks: Any,
    write: Callable[[bytes], None],
    rejects: Rejects,
    result: ExtractResult,
    run_id: int,
    keep_anonymous: bool,
    progress: ProgressCallback | None,
) -> None:
    """The hot loop: split chunks into lines, decode, dedupe, write COPY rows in large batches."""
    decode = msgspec.json.Decoder(Line).decode
    encode_json = msgspec.json.encode
    seen_ids = SeenIds()
    seen_bits, bitmap_limit, seen_other = seen_ids.bits, SeenIds.BITMAP_LIMIT, seen_ids.add
    type_cells: dict[str, bytes] = {}
    run_cell = b"%d" % run_id
    rows: list[bytes] = []
    pending = 0
    line_number = 0
    carry = b""
    logged_in = anonymous = duplicates = 0
    bytes_read = 0

    def process(block: bytes, last: bool) -> None:
        nonlocal line_number, logged_in, anonymous, duplicates, pending
        check_utf8 = False
        if not block.isascii():  # isascii is a scan without a copy; most dumps are plain ASCII
            try:
                block.decode("utf-8")
            except UnicodeDecodeError:
                check_utf8 = True
        escape = b"\\" in block or b"\t" in block or b"\r" in block
        lines = block.split(b"\n")
        for line in lines:
            line_number += 1
            if escape and line.endswith(b"\r"):
                line = line[:-1]
            try:
                if check_utf8:
                    line.decode("utf-8")
                record = decode(line)
            except UnicodeDecodeError as exc:
                rejects.add(line_number, "invalid_utf8", f"invalid UTF-8 at byte {exc.start}", line)
                continue
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if last and line.strip():
                    raise DataQualityError(
                        f"the source {result.source} ends in a cut line (line {line_number:,}): "
                        "the download was probably truncated; nothing was loaded"
                    ) from None
                if not line.strip():
                    rejects.add(line_number, "empty_line", "the line is empty", line)
                else:
                    reason, detail = classify(exc)
                    rejects.add(line_number, reason, detail, line)
                continue
            if escape and b"\\u" in line:
                reason = bad_string(msgspec.json.decode(line))
                if reason:
                    rejects.add(line_number, reason, "PostgreSQL's jsonb cannot store this string", line)
                    continue
            event_id = record.id
            if 0 <= event_id < bitmap_limit:  # SeenIds.add inlined: this runs once per line
                index = event_id >> 3
                if index >= len(seen_bits):
                    seen_ids.grow(index)
                mask = 1 << (event_id & 7)
                byte = seen_bits[index]
                if byte & mask:
                    duplicates += 1
                    continue
                seen_bits[index] = byte | mask
            elif not seen_other(event_id):
                duplicates += 1
                continue
            customer = record.event.customer_id
            if customer is None:
                anonymous += 1
                if not keep_anonymous:
                    continue
                customer_cell = b"\\N"
            else:
                logged_in += 1
                customer_cell = b"%d" % customer
            type_cell = type_cells.get(record.type)
            if type_cell is None:
                type_cell = type_cells[record.type] = copy_escape(record.type.encode())
            payload = copy_escape(line) if escape else line
            row = b"%d\t%s\t%s\t%s\t%s\t%s\n" % (
                event_id,
                type_cell,
                customer_cell,
                encode_json(record.event.timestamp)[1:-1],  # ISO 8601 without the quotes
                payload,
                run_cell,
            )
            rows.append(row)
            pending += len(row)
            if pending >= COPY_BATCH_BYTES:
                write(b"".join(rows))
                rows.clear()
                pending = 0

    for chunk in chunks:
        bytes_read += len(chunk)
        cut = chunk.rfind(b"\n")
        if cut < 0:
            carry += chunk
            continue
        block = carry + chunk[:cut] if carry else chunk[:cut]
        carry = chunk[cut + 1 :]
        result.lines_read = line_number
        process(block, last=False)
        if progress is not None:
            progress(bytes_read, line_number)
    result.lines_read = line_number
    if carry:
        process(carry, last=True)
    if rows:
        write(b"".join(rows))
    result.lines_read = line_number
    result.logged_in, result.anonymous, result.duplicates = logged_in, anonymous, duplicates
    result.bytes_read = bytes_read
    if progress is not None:
        progress(bytes_read, line_number)
