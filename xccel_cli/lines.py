"""The pure per-line parser: one dump line in, a line to keep or a refusal with its reason out.

Provisional version (written for the Spark engine from extract.py's rules); the hostile-input work owns
this module and replaces it. Both engines call parse_line, so they refuse the same lines for the same reasons.
Streaming concerns (where a line ends, the last line of a stream) stay with the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

BigInt = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class Event(msgspec.Struct):
    timestamp: datetime
    customer_id: BigInt | None = msgspec.field(name="customer-id", default=None)


class Line(msgspec.Struct):
    id: BigInt
    type: Annotated[str, msgspec.Meta(min_length=1)]
    event: Event


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A line that may be kept."""

    event_id: int
    event_type: str
    customer_id: int | None
    timestamp: datetime  # timezone-aware, in UTC
    payload: bytes  # the line, without its line ending


@dataclass(frozen=True, slots=True)
class RefusedLine:
    reason: str  # one of the README's reject reasons
    detail: str


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


_decode_line = msgspec.json.Decoder(Line).decode


def parse_line(line: bytes) -> ParsedLine | RefusedLine:
    """One dump line with its b"\\n" (and a b"\\r" before it) already removed."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RefusedLine("invalid_utf8", f"invalid UTF-8 at byte {exc.start}")
    try:
        record = _decode_line(line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if not line.strip():
            return RefusedLine("empty_line", "the line is empty")
        return RefusedLine(*classify(exc))
    if b"\\u" in line:
        reason = bad_string(msgspec.json.decode(line))
        if reason:
            return RefusedLine(reason, "PostgreSQL's jsonb cannot store this string")
    timestamp = record.event.timestamp
    try:
        timestamp = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp.astimezone(UTC)
    except OverflowError:
        return RefusedLine("bad_timestamp", "the timestamp is outside the years 1 to 9999 in UTC")
    return ParsedLine(record.id, record.type, record.event.customer_id, timestamp, line)
