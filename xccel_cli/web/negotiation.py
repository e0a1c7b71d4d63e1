"""Reading the request headers that choose an answer: Accept (with q-values), Accept-Encoding, If-None-Match.

Pure functions over header values, so they are tested without a server. Parsed Accept values are kept in a
small cache: clients send the same few values over and over.
"""

from __future__ import annotations

from functools import lru_cache

JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain"

# one media range: (type, subtype, q)
MediaRange = tuple[str, str, float]


def _quality(params: list[str]) -> float | None:
    """The q parameter (default 1); None when it is not a number from 0 to 1 (the range is then ignored)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


@lru_cache(maxsize=256)
def parse_accept(header: str) -> tuple[MediaRange, ...]:
    """The media ranges of an Accept value; malformed ranges are skipped."""
    ranges = []
    for part in header.split(","):
        media, *params = part.split(";")
        kind, slash, subtype = media.strip().lower().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        q = _quality(params)
        if q is not None:
            ranges.append((kind, subtype, q))
    return tuple(ranges)


def negotiate(accept: str | None, offers: tuple[str, ...]) -> str | None:
    """The offer the client prefers (highest q of the most specific matching range; ties go to the earlier
    offer), or None when it accepts none of them (406). No Accept, or one with no valid range, accepts any."""
    ranges = parse_accept(accept) if accept else ()
    if not ranges:
        return offers[0]
    best, best_q = None, 0.0
    for offer in offers:
        kind, _, subtype = offer.partition("/")
        q, specificity = 0.0, -1
        for range_kind, range_subtype, range_q in ranges:
            if range_kind == kind and range_subtype == subtype:
                level = 2
            elif range_kind == kind and range_subtype == "*":
                level = 1
            elif range_kind == "*":
                level = 0
            else:
                continue
            if level > specificity:
                q, specificity = range_q, level
        if q > best_q:
            best, best_q = offer, q
    return best


@lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether gzip is acceptable: named (or `*`) with a q above 0, and not refused by name."""
    if not accept_encoding:
        return False
    named: dict[str, float] = {}
    for part in accept_encoding.split(","):
        coding, *params = part.split(";")
        q = _quality(params)
        if q is not None:
            named[coding.strip().lower()] = q
    if "gzip" in named:
        return named["gzip"] > 0
    return named.get("*", 0.0) > 0


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match against our (strong) ETag, by the weak comparison RFC 9110 prescribes for it."""
    value = if_none_match.strip()
    if value == "*":
        return True
    for candidate in value.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
