"""The verdict on one dump line: kept (with the four fields xccel needs) or refused (with a reason).

Pure: no database, no I/O, no settings. The PostgreSQL extract and the Spark job call it, so both refuse
the same lines for the same reasons. Everything PostgreSQL would refuse when the line is stored (a jsonb
payload, a timestamptz, bigint ids) is refused here first, with its own reason, so one bad line is a reject
and never a failed run.

Streaming concerns (a BOM at the start of a stream, the maximum line length, a last line without a newline,
CR-only files) belong to the caller; parse_line judges one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

# the reasons a line is refused, as stored in rejects.reason (the README lists them)
EMPTY_LINE = "empty_line"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
MISSING_FIELD = "missing_field"
BAD_TIMESTAMP = "bad_timestamp"
BAD_ID = "bad_id"
BAD_CUSTOMER_ID = "bad_customer_id"
BAD_TYPE = "bad_type"
BAD_STRUCTURE = "bad_structure"
NUL_CHARACTER = "nul_character"
INVALID_UNICODE_ESCAPE = "invalid_unicode_escape"
TOO_DEEP = "too_deep"
BAD_NUMBER = "bad_number"
LINE_TOO_LONG = "line_too_long"  # decided by the caller, which sees the stream (too_long)
# The first bytes of an over-long line kept as its raw_line (the rest is read past, never held).
LONG_LINE_KEPT_BYTES = 4 << 10

# Deeper nesting is refused: msgspec and Python give up near 1,000 levels depending on the stack already
# in use, PostgreSQL on its max_stack_depth, Spark's JSON reader at 1,000. A fixed limit well below all of
# them makes the verdict the same everywhere.
MAX_DEPTH = 256
# PostgreSQL's timestamptz refuses UTC offsets beyond 15:59:59 ("time zone displacement out of range").
MAX_UTC_OFFSET = timedelta(hours=16)
# PostgreSQL's numeric (jsonb numbers): at most 131,072 digits before the decimal point, at most 16,383
# after it, and an exponent of at most INT_MAX / 2.
NUMERIC_MAX_INTEGER_DIGITS = 131072
NUMERIC_MAX_SCALE = 16383
NUMERIC_MAX_EXPONENT = 2**31 // 2 - 1

BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


# gc=False: decoded once per line and dropped at once; holding no containers, they can never be in a cycle
class Event(msgspec.Struct, gc=False):
    timestamp: datetime
    customer_id: BigInt | None = msgspec.field(name="customer-id", default=None)


class Line(msgspec.Struct, gc=False):
    """The fields xccel reads out of a line; msgspec skips the rest (it stays in the payload)."""

    id: BigInt
    type: Annotated[str, msgspec.Meta(min_length=1)]
    event: Event


class _RawTimestampEvent(msgspec.Struct):
    timestamp: str


class _RawTimestampLine(msgspec.Struct):
    event: _RawTimestampEvent


decode_line = msgspec.json.Decoder(Line).decode
_decode_raw_timestamp = msgspec.json.Decoder(_RawTimestampLine).decode
_decode_datetime = msgspec.json.Decoder(datetime).decode
_decode_string = msgspec.json.Decoder(str).decode

# a JSON string token, escapes included (written as an unrolled loop: no backtracking)
STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# a JSON number token, in a text whose strings were emptied
NUMBER_TOKEN = re.compile(rb"-?(\d+)(?:\.(\d+))?(?:[eE]([-+]?)(\d+))?")
# where a number PostgreSQL refuses can hide: an exponent ("1e…"), or a very long run of digits; looked for in
# the line with every digit folded to "0" and "E" to "e" (a translate and two finds, no regular expression)
_FOLD_DIGITS = bytes(48 if 48 <= byte <= 57 else 101 if byte == 69 else byte for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 1000
# RFC 3339 allows a leap second (23:59:60); PostgreSQL reads ss = 60 as the next minute, without a fraction
LEAP_SECOND = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d):60(\.0+)?((?:[Zz]|[+-]\d\d:?\d\d)?)")


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A line that may be kept."""

    event_id: int
    event_type: str
    customer_id: int | None
    timestamp: datetime  # timezone-aware, in UTC, a value both PostgreSQL and Python can hold
    payload: bytes  # the line as read, stored as the jsonb payload


@dataclass(frozen=True, slots=True)
class RefusedLine:
    reason: str
    detail: str


def parse_line(line: bytes, *, anonymous_stored: bool = True) -> ParsedLine | RefusedLine:
    """One dump line with its b"\\n" (and a b"\\r" before it) already removed.

    anonymous_stored: whether a line without a customer-id is stored (--keep-anonymous). A number PostgreSQL
    cannot store refuses only a line that is stored: one never stored is judged as an event, not as a row.
    """
    if not line.strip():
        return RefusedLine(EMPTY_LINE, "the line is empty")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return RefusedLine(INVALID_UTF8, f"{CUT_UTF8_PREFIX} (byte {exc.start})")
        return RefusedLine(INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
    # the count includes brackets inside strings: an upper bound of the depth, cheap to take
    deep = len(line) > MAX_DEPTH and line.count(b"[") + line.count(b"{") > MAX_DEPTH
    # strings emptied, so brackets and digits inside them do not count
    bare = STRING_TOKEN.sub(b'""', line) if deep or number_suspect(line) else b""
    if deep:
        depth = nesting_depth(bare)
        if depth > MAX_DEPTH:
            return RefusedLine(TOO_DEEP, f"arrays or objects nested {depth:,} deep (at most {MAX_DEPTH})")
    try:
        record = decode_line(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        refused = classify(exc, len(line))
        if refused.reason != BAD_TIMESTAMP:
            return refused
        leap = _leap_second(line)
        if leap is None:
            return refused
        record = leap
    timestamp = record.event.timestamp
    if timestamp.tzinfo is None:  # no offset: UTC, as the README says
        timestamp = timestamp.replace(tzinfo=UTC)
    else:
        offset = timestamp.utcoffset()
        assert offset is not None
        if not -MAX_UTC_OFFSET < offset < MAX_UTC_OFFSET:
            return RefusedLine(BAD_TIMESTAMP, f"UTC offset {_offset_text(offset)} is beyond ±15:59")
        # after conversion to UTC it must be a year Python's datetime holds (PostgreSQL holds more)
        if (timestamp.year == 1 and offset > timedelta(0)) or (timestamp.year == 9999 and offset < timedelta(0)):
            return RefusedLine(BAD_TIMESTAMP, "the timestamp falls outside the years 1 to 9999 in UTC")
        timestamp = timestamp.astimezone(UTC)
    if b"\\u" in line:
        reason = bad_string(line)
        if reason is not None:
            return RefusedLine(reason, "PostgreSQL's jsonb cannot store this string")
    if bare and (anonymous_stored or record.event.customer_id is not None):
        problem = bad_number(bare)
        if problem is not None:
            return RefusedLine(BAD_NUMBER, f"PostgreSQL cannot store the number {problem}")
    return ParsedLine(record.id, record.type, record.event.customer_id, timestamp, line)


def number_suspect(line: bytes) -> bool:
    """Whether the line may hold a number PostgreSQL refuses (an exponent, or a run of 1,000 digits)."""
    folded = line.translate(_FOLD_DIGITS)
    return b"0e" in folded or (len(line) >= len(_LONG_DIGIT_RUN) and _LONG_DIGIT_RUN in folded)


def classify(error: Exception, length: int | None = None) -> RefusedLine:
    """The reason for a line msgspec refused (`length`: the line's, to tell a line that stops early)."""
    message = str(error)
    if isinstance(error, msgspec.ValidationError):
        if "missing required field" in message:
            return RefusedLine(MISSING_FIELD, message)
        if "datetime" in message:
            return RefusedLine(BAD_TIMESTAMP, message)
        if "`$.id`" in message:
            return RefusedLine(BAD_ID, message)
        if "customer-id" in message:
            return RefusedLine(BAD_CUSTOMER_ID, message)
        if "`$.type`" in message:
            return RefusedLine(BAD_TYPE, message)
        return RefusedLine(BAD_STRUCTURE, message)
    if "truncated" in message or (length is not None and _cut_in_a_number(message, length)):
        return RefusedLine(INVALID_JSON, TRUNCATED_DETAIL)
    return RefusedLine(INVALID_JSON, message)


TRUNCATED_DETAIL = "the line ends before the JSON value does (truncated)"


def _cut_in_a_number(message: str, length: int) -> bool:
    """msgspec's words for a number cut after its "-", "." or exponent (sign): an invalid number or character
    at the byte just past the line's end, where other cuts are "truncated"."""
    return message.endswith(f"(byte {length})") and ("invalid number" in message or "invalid character" in message)


def too_long(max_line_bytes: int, head: bytes) -> RefusedLine:
    """The refusal of a line longer than max_line_bytes, whose first bytes (head) are kept."""
    return RefusedLine(
        LINE_TOO_LONG,
        f"the line is longer than {max_line_bytes:,} bytes (XCCEL_MAX_LINE_BYTES); "
        f"its first {len(head):,} bytes are kept",
    )


def refused_source_question(first_byte: bytes) -> str:
    """The last sentence of a refused-share error, from the source's first byte that is not white space: what the
    source may be instead of an event dump (both engines say the same)."""
    if first_byte == b"[":
        return (
            "The source starts with '[': it looks like one JSON array, not one event per line (NDJSON); "
            "convert it first (jq -c '.[]')"
        )
    if first_byte == b"<":
        return "The source starts with '<': it looks like an HTML or XML page (an error or login page?), not a dump"
    return "Is the source really an event dump?"


def is_cut(refused: RefusedLine) -> bool:
    """Whether a refusal says the line stops early (a cut download), not that it is wrong."""
    return refused.detail == TRUNCATED_DETAIL or (
        refused.reason == INVALID_UTF8 and refused.detail.startswith(CUT_UTF8_PREFIX)
    )


CUT_UTF8_PREFIX = "a UTF-8 character is cut at the end"


def _leap_second(line: bytes) -> Line | None:
    """The line's record with a leap second read as PostgreSQL reads it (ss = 60 is the next minute)."""
    try:
        raw = _decode_raw_timestamp(line).event.timestamp
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    match = LEAP_SECOND.fullmatch(raw)
    if match is None:
        return None
    try:
        base = _decode_datetime(msgspec.json.encode(f"{match[1]}:59{match[3]}"))
        record = decode_line(line.replace(raw.encode(), msgspec.json.encode(base)[1:-1], 1))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        moved = record.event.timestamp + timedelta(seconds=1)
    except OverflowError:
        return None
    return Line(record.id, record.type, Event(moved, record.event.customer_id))


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def nesting_depth(bare: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text whose strings were emptied."""
    depth = deepest = 0
    for match in re.finditer(rb"[\[{]+|[\]}]+", bare):
        run = match.end() - match.start()
        if bare[match.start()] in b"[{":
            depth += run
            deepest = max(deepest, depth)
        else:
            depth -= run
    return deepest


def bad_string(line: bytes) -> str | None:
    """Why PostgreSQL's jsonb would refuse a string of the line (key or value), or None.

    Only escapes can smuggle in what jsonb refuses: \\u0000 (NUL) or a lone surrogate.
    """
    for match in STRING_TOKEN.finditer(line):
        token = match.group()
        if b"\\u" not in token:
            continue
        try:
            text = _decode_string(token)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # not a string on its own (cannot happen in a line msgspec decoded)
        if "\x00" in text:
            return NUL_CHARACTER
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return INVALID_UNICODE_ESCAPE
    return None


def bad_number(bare: bytes) -> str | None:
    """The first number PostgreSQL's numeric cannot hold (shortened), or None; `bare` has its strings emptied."""
    for match in NUMBER_TOKEN.finditer(bare):
        integer, fraction, sign, exponent_digits = match.group(1, 2, 3, 4)
        fraction = fraction or b""
        exponent = 0
        if exponent_digits:
            digits = exponent_digits.lstrip(b"0")
            if len(digits) > 10:
                return _short(match.group())
            exponent = int(digits or b"0") * (-1 if sign == b"-" else 1)
            if abs(exponent) > NUMERIC_MAX_EXPONENT:
                return _short(match.group())
        if len(fraction) - exponent > NUMERIC_MAX_SCALE:
            return _short(match.group())
        significant = (integer + fraction).lstrip(b"0")
        if significant:
            integer_digits = len(significant) - len(fraction) + exponent
            if integer_digits > NUMERIC_MAX_INTEGER_DIGITS:
                return _short(match.group())
    return None


def _short(token: bytes) -> str:
    text = token.decode("ascii")
    return text if len(text) <= 40 else f"{text[:20]}…{text[-12:]} ({len(text):,} characters)"
