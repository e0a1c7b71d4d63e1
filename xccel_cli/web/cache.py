"""Answers cached by publication, with everything HTTP needs to send or revalidate them.

An answer is computed (in a thread) only when the latest publication differs from the one it was read
from. With it, once, go its validators: a strong ETag (the publication id and a hash of the exact bytes
sent, so each representation, gzip included, has its own), Last-Modified (the publication time), and the
headers of a 200 and of a 304 ready to send. Concurrent requests share the per-request publication check
(SharedCheck), so under load one round trip to the database serves many requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

from xccel_cli.web.negotiation import accepts_gzip, etag_matches

# (publication_id, published_at) of the newest publication; None while nothing is published.
# published_at is part of the key so that a database rebuilt from scratch (ids restarting) is noticed.
PublicationKey = tuple[int, datetime] | None
Headers = list[tuple[bytes, bytes]]

# a cache may keep an answer but must ask again before using it: a publication can come at any moment,
# and the ETag makes asking cheap (304)
REVALIDATE = b"public, no-cache"
GZIP_MIN_BYTES = 1024  # smaller bodies gain nothing worth a Content-Encoding


class SharedCheck:
    """Runs fetch(lane) for many concurrent awaiters at once, never giving one an old result.

    An awaiter joins the next fetch that has not started yet; a fetch already on its way may predate
    the awaiter's arrival (and miss a publish that came in between), so it is never joined. Up to
    `lanes` fetches run at once (each lane has its own connection), so a new batch need not wait for
    a slow one to come back.
    """

    def __init__(self, fetch: Callable[[int], Awaitable[Any]], lanes: int) -> None:
        self._fetch = fetch
        self._free_lanes = list(range(lanes))
        self._next: asyncio.Future[Any] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def result(self) -> Any:
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            waiting.add_done_callback(_consume_exception)
            self._start_next()
        return await asyncio.shield(waiting)

    def _start_next(self) -> None:
        if self._next is None or not self._free_lanes:
            return
        lane, batch, self._next = self._free_lanes.pop(), self._next, None
        task = asyncio.create_task(self._run(lane, batch))
        self._running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._running.discard)

    async def _run(self, lane: int, batch: asyncio.Future[Any]) -> None:
        try:
            batch.set_result(await self._fetch(lane))
        except Exception as exc:
            batch.set_exception(exc)
        finally:
            self._free_lanes.append(lane)
            self._start_next()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # an awaiter that went away (client disconnected) must not leave "exception never retrieved" noise
    if not future.cancelled():
        future.exception()


@dataclasses.dataclass(frozen=True)
class Representation:
    """One encoding of an answer: its bytes, its ETag, and the headers of a 200 and of a 304."""

    body: bytes
    etag: str
    ok_headers: Headers
    not_modified_headers: Headers


def etag_of(key: PublicationKey, body: bytes, suffix: str = "") -> str:
    """Strong: it names the exact bytes (so a new publication, or another encoding, gets another)."""
    digest = hashlib.blake2b(body, digest_size=10).hexdigest()
    return f'"p{key[0] if key else 0}-{digest}{suffix}"'


def representation(
    key: PublicationKey,
    body: bytes,
    media_type: str,
    vary: str,
    *,
    encoding: str | None = None,
    cache_control: bytes = REVALIDATE,
) -> Representation:
    etag = etag_of(key, body, f"-{encoding}" if encoding else "")
    validators: Headers = [(b"etag", etag.encode()), (b"cache-control", cache_control)]
    if key is not None:
        validators.append((b"last-modified", format_datetime(key[1], usegmt=True).encode()))
    if vary:
        validators.append((b"vary", vary.encode()))
    ok: Headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    if encoding:
        ok.append((b"content-encoding", encoding.encode()))
    return Representation(body, etag, ok + validators, validators)


@dataclasses.dataclass(frozen=True)
class CachedAnswer:
    key: PublicationKey
    plain: Representation
    gzipped: Representation | None = None

    def choose(self, accept_encoding: str | None) -> Representation:
        if self.gzipped is not None and accepts_gzip(accept_encoding):
            return self.gzipped
        return self.plain

    def respond(
        self, accept_encoding: str | None, if_none_match: str | None, if_modified_since: str | None = None
    ) -> tuple[int, Headers, bytes]:
        """(status, headers, body): 304 when the client's copy is current, else 200 with the body.

        If-None-Match decides when present; If-Modified-Since only without it (RFC 9110, 13.2.2)."""
        if accept_encoding is None and if_none_match is None and if_modified_since is None:
            return 200, self.plain.ok_headers, self.plain.body  # most API clients: nothing to choose
        chosen = self.choose(accept_encoding)
        if if_none_match is not None:
            current = etag_matches(if_none_match, chosen.etag)
        else:
            current = if_modified_since is not None and not_modified_since(self.key, if_modified_since)
        if current:
            return 304, chosen.not_modified_headers, b""
        return 200, chosen.ok_headers, chosen.body


def not_modified_since(key: PublicationKey, if_modified_since: str) -> bool:
    """Whether the publication is no newer than the client's date (HTTP dates have whole seconds)."""
    since = _http_date(if_modified_since)
    return key is not None and since is not None and int(key[1].timestamp()) <= since


# the three HTTP-date forms (RFC 9110, 5.6.7), all GMT: IMF-fixdate, the obsolete RFC 850 form and asctime.
# Anything else (an offset, a zone name, junk after the date, two dates) is not an HTTP-date, and
# If-Modified-Since must then be ignored (13.1.3): email's lenient date parser would read it all the same.
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS = {name: number for number, name in enumerate(MONTH_NAMES, 1)}
_MONTH = rf"(?P<month>{'|'.join(MONTHS)})"
_TIME = r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
HTTP_DATES = (
    re.compile(rf"{_DAY}, (?P<day>\d{{2}}) {_MONTH} (?P<year>\d{{4}}) {_TIME} GMT"),
    re.compile(
        rf"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (?P<day>\d{{2}})-{_MONTH}-(?P<yy>\d{{2}}) "
        rf"{_TIME} GMT"
    ),
    re.compile(rf"{_DAY} {_MONTH} (?P<day>[ \d]\d) {_TIME} (?P<year>\d{{4}})"),
)


@lru_cache(maxsize=64)
def _http_date(text: str) -> int | None:
    """The seconds since the epoch of one HTTP-date, or None when text is not exactly one."""
    text = text.strip()
    for form in HTTP_DATES:
        found = form.fullmatch(text)
        if found is not None:
            break
    else:
        return None
    fields = found.groupdict()
    if fields.get("yy") is not None:
        # RFC 850's two-digit year: the coming one, unless that is more than 50 years ahead
        now = datetime.now(UTC)
        year = now.year - now.year % 100 + int(fields["yy"])
        if year > now.year + 50:
            year -= 100
    else:
        year = int(fields["year"])
    try:
        parsed = datetime(
            year,
            MONTHS[fields["month"]],
            int(fields["day"]),
            int(fields["hour"]),
            int(fields["minute"]),
            min(int(fields["second"]), 59),  # a leap second names the last second of its minute
            tzinfo=UTC,
        )
    except ValueError:  # 31 Feb, hour 25: not a date
        return None
    return int(parsed.timestamp())


def cached_answer(key: PublicationKey, body: bytes, media_type: str, vary: str, *, compress: bool) -> CachedAnswer:
    plain = representation(key, body, media_type, vary)
    if not compress or len(body) < GZIP_MIN_BYTES:
        return CachedAnswer(key, plain)
    # mtime=0: the same bytes for the same body, so the gzip ETag stays the same for a publication
    packed = gzip.compress(body, compresslevel=6, mtime=0)
    return CachedAnswer(key, plain, representation(key, packed, media_type, vary, encoding="gzip"))


class AnswerCache:
    """One answer, recomputed in a thread only when the latest publication differs."""

    def __init__(
        self,
        compute: Callable[[], tuple[PublicationKey, bytes]],
        media_type: str,
        vary: str,
        *,
        compress: bool = False,
    ) -> None:
        self._compute = compute
        self.media_type = media_type
        self.vary = vary
        self.compress = compress
        self._answer: CachedAnswer | None = None
        self._lock = asyncio.Lock()

    def _build(self) -> CachedAnswer:
        key, body = self._compute()
        return cached_answer(key, body, self.media_type, self.vary, compress=self.compress)

    async def get(self, latest: PublicationKey) -> CachedAnswer:
        answer = self._answer
        if answer is not None and answer.key == latest:
            return answer
        async with self._lock:  # one recomputation at a time; the others then find it done
            answer = self._answer
            if answer is None or answer.key != latest:
                answer = self._answer = await asyncio.to_thread(self._build)
        return answer


class WindowedAnswers:
    """Answers asked with since/until: one AnswerCache per (kind, window), the most recently asked few kept."""

    LIMIT = 32

    def __init__(
        self,
        compute: Callable[[str, Any], tuple[PublicationKey, bytes]],
        formats: dict[str, tuple[str, str, bool]],
    ) -> None:
        self._compute = compute
        self._formats = formats  # kind -> (media type, vary, compress)
        self._caches: dict[tuple[str, Any], AnswerCache] = {}

    async def get(self, kind: str, window: Any, latest: PublicationKey) -> CachedAnswer:
        key = (kind, window)
        cache = self._caches.pop(key, None)
        if cache is None:
            media_type, vary, compress = self._formats[kind]
            cache = AnswerCache(lambda: self._compute(kind, window), media_type, vary, compress=compress)
        self._caches[key] = cache  # the newest last: dicts keep insertion order
        while len(self._caches) > self.LIMIT:
            del self._caches[next(iter(self._caches))]
        return await cache.get(latest)
