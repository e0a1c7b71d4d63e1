"""Open a dump as a stream of byte chunks: an http(s) URL, a local path, or '-' for stdin.

Gzip is undone on the fly: a gzip Content-Encoding or a gzipped body or file (recognised by its
magic bytes, whatever its name) by zlib. Nothing is read whole.

HTTP downloads survive a flaky server: connection failures, 408/429/5xx (honouring Retry-After),
read timeouts and connections dropped mid-body are retried with exponential backoff. A dropped
body is resumed with a Range request when the server supports it, so the chunk iterator goes on
transparently after the bytes already delivered; otherwise SourceInterrupted tells the caller to
start the extract over. A body shorter than its Content-Length is never taken for a whole one.
"""

from __future__ import annotations

import email.utils
import glob
import hashlib
import logging
import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from xccel_cli.config import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_RETRIES,
    check_source,
    mask_url,
)
from xccel_cli.errors import DataQualityError, SourceError

if TYPE_CHECKING:  # requests is imported where an HTTP source is fetched: a local file does not pay for it
    import requests

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
MAX_RETRY_AFTER_SECONDS = 300.0
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _invalid_request() -> tuple[type[Exception], ...]:
    """What is not retried: the request could never succeed (a URL urllib3 cannot parse raises a bare ValueError)."""
    import requests
    import urllib3

    return (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        requests.exceptions.MissingSchema,
        requests.exceptions.URLRequired,
        urllib3.exceptions.LocationValueError,
    )


@dataclass(frozen=True)
class HttpOptions:
    """How an HTTP source is fetched (the settings XCCEL_RETRIES, XCCEL_HTTP_TIMEOUT_SECONDS and
    XCCEL_RETRY_BACKOFF_SECONDS)."""

    retries: int = DEFAULT_RETRIES  # how often a failing request is tried again
    # the read timeout of each request (the longest silence tolerated from the server, before the headers or
    # between two reads of the body); its connect timeout is the same, capped at 10 s. Not a limit on the
    # whole download.
    timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS  # the first wait; each retry doubles it


def user_agent() -> str:
    from xccel_cli import __version__

    return f"xccel/{__version__}"


class SourceInterrupted(SourceError):
    """The body broke off and cannot be resumed: the whole extract may be started over."""


@dataclass
class SourceInfo:
    """What is known about a source (used to say what was read, and to recognise it next time)."""

    name: str
    kind: str  # "http", "file" or "stdin"
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # sha256 of a file, once read to the end

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            **self.extra,
        }


@dataclass
class OpenSource:
    info: SourceInfo
    chunks: Iterator[bytes]


def _gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream chunk by chunk.

    Each step yields at most CHUNK_BYTES, however much one compressed chunk expands to (a gzip bomb
    holds gigabytes in a few MB): memory stays flat and the reader may stop at any point.
    """
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    try:
        for chunk in chunks:
            while chunk:
                in_member = True
                out = inflater.decompress(chunk, CHUNK_BYTES)
                if out:
                    yield out
                if inflater.eof:  # a member ended; another may follow
                    chunk = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    in_member = False
                else:
                    chunk = inflater.unconsumed_tail
                    # all input taken, but a full step may leave output inside zlib: drain it
                    while not chunk and len(out) == CHUNK_BYTES and not inflater.eof:
                        out = inflater.decompress(b"", CHUNK_BYTES)
                        if out:
                            yield out
                    if inflater.eof and not chunk:
                        chunk = inflater.unused_data
                        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                        in_member = False
    except zlib.error as exc:
        raise DataQualityError(f"{name} is not a valid gzip stream ({exc}); nothing was loaded") from None
    if in_member:
        raise DataQualityError(f"{name} ends in the middle of its gzip data: the file is truncated")


def _maybe_gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    first = b""
    for chunk in chunks:
        first = chunk
        if chunk:
            break
    if not first:
        return iter(())

    def rest() -> Iterator[bytes]:
        yield first
        yield from chunks

    if first.startswith(GZIP_MAGIC):
        return _gunzip(rest(), name)
    return rest()


def _file_chunks(handle: BinaryIO, name: str, info: SourceInfo | None = None) -> Iterator[bytes]:
    """Read a file in chunks; with info, record its sha256 once the end is reached (for `unchanged`)."""
    digest = hashlib.sha256() if info is not None else None
    try:
        while chunk := handle.read(CHUNK_BYTES):
            if digest is not None:
                digest.update(chunk)
            yield chunk
    except OSError as exc:
        raise SourceError(f"cannot read {name}: {exc.strerror or exc}") from None
    if digest is not None and info is not None:
        info.extra["sha256"] = digest.hexdigest()


def _local_path(source: str) -> Path:
    scheme = urlsplit(source).scheme.lower()
    if scheme == "file":
        return Path(urlsplit(source).path)
    if scheme and len(scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise SourceError(f"unsupported source {mask_url(source)}: use an http(s) URL, a file path or '-'")
    return Path(source).expanduser()


def _is_http(source: str) -> bool:
    try:
        return urlsplit(source).scheme.lower() in ("http", "https")
    except ValueError:  # malformed: not a URL we can fetch; check_source says why
        return False


@contextmanager
def open_source(source: str, http: HttpOptions = HttpOptions()) -> Iterator[OpenSource]:
    """Yield an OpenSource; the caller iterates its chunks inside the with-block."""
    if source == "-":
        if sys.stdin is None:  # the process was started with its standard input closed
            raise SourceError("the source is '-' (standard input), but standard input is closed: nothing to read")
        yield OpenSource(SourceInfo("stdin", "stdin"), _maybe_gunzip(_file_chunks(sys.stdin.buffer, "stdin"), "stdin"))
        return
    check_source(source)
    if _is_http(source):
        fetch = HttpFetch(
            source,
            retries=http.retries,
            timeout_seconds=http.timeout_seconds,
            backoff_seconds=http.backoff_seconds,
        )
        with fetch:
            yield OpenSource(fetch.info, _maybe_gunzip(fetch.chunks(), fetch.shown))
        return
    path = _local_path(source)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise SourceError(f"source not found: {path}") from None
    except IsADirectoryError:
        raise SourceError(f"source is a directory, not a file: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror or exc}") from None
    with handle:
        stat = path.stat()
        info = SourceInfo(str(path), "file", size=stat.st_size, last_modified=str(stat.st_mtime_ns))
        yield OpenSource(info, _maybe_gunzip(_file_chunks(handle, str(path), info), str(path)))


class HttpFetch:
    """One download with retries; chunks() yields the decoded body and resumes it after a drop."""

    def __init__(self, url: str, *, retries: int, timeout_seconds: float, backoff_seconds: float) -> None:
        self.url = url
        self.shown = mask_url(url)
        self.retries = retries
        self.timeout = (min(10.0, timeout_seconds), timeout_seconds)
        self.backoff = backoff_seconds
        self.failures = 0  # retries used so far, across the whole download
        import requests

        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent()
        # only encodings we undo ourselves: the resume offsets count the bytes as sent
        self.session.headers["Accept-Encoding"] = "gzip"
        self.response = self._request({})
        headers = self.response.headers
        length = headers.get("Content-Length")
        self.total = int(length) if length and length.isdigit() else None
        self.encoding = headers.get("Content-Encoding", "identity").strip().lower()
        if self.encoding not in ("identity", "gzip", "x-gzip", ""):
            self.response.close()
            raise SourceError(f"cannot read {self.shown}: unsupported Content-Encoding {self.encoding!r}")
        self.validator = headers.get("ETag") or headers.get("Last-Modified")
        self.ranges = headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        self.info = SourceInfo(
            self.shown, "http", size=self.total, etag=headers.get("ETag"), last_modified=headers.get("Last-Modified")
        )

    def __enter__(self) -> HttpFetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.response.close()
        self.session.close()

    def _wait(self, retry_after: str | None = None) -> None:
        self.failures += 1
        delay = _retry_after(retry_after, self.backoff * 2 ** (self.failures - 1))
        log.warning("%s: retry %d of %d in %.1f s", self.shown, self.failures, self.retries, delay)
        time.sleep(delay)

    def _request(self, headers: dict[str, str]) -> requests.Response:
        """GET until a usable answer: retryable failures are retried, others are final."""
        import requests

        while True:
            try:
                response = self.session.get(self.url, stream=True, timeout=self.timeout, headers=headers)
            except _invalid_request():
                # a fixed text: these exceptions quote the URL, password and all
                raise SourceError(f"cannot fetch {self.shown}: not a valid URL") from None
            except requests.RequestException as exc:
                if self.failures < self.retries:
                    log.warning("%s: %s", self.shown, _reason(exc))
                    self._wait()
                    continue
                raise SourceError(f"cannot fetch {self.shown}: {_reason(exc)}{self._tries()}") from None
            if response.status_code in RETRYABLE_STATUS and self.failures < self.retries:
                log.warning("%s: HTTP %d %s", self.shown, response.status_code, response.reason)
                response.close()
                self._wait(response.headers.get("Retry-After"))
                continue
            if response.status_code >= 400:
                response.close()
                raise SourceError(
                    f"cannot fetch {self.shown}: HTTP {response.status_code} {response.reason}"
                    f"{self._tries() if response.status_code in RETRYABLE_STATUS else ''}"
                )
            return response

    def _tries(self) -> str:
        return f" (after {self.failures + 1} attempts)" if self.failures else ""

    def chunks(self) -> Iterator[bytes]:
        raw = self._raw_chunks()
        if self.encoding in ("gzip", "x-gzip"):
            return _gunzip(raw, self.shown)
        return raw

    def _raw_chunks(self) -> Iterator[bytes]:
        """The body as sent, resumed with Range after a drop, checked against Content-Length.

        Bytes are gathered with read1 into chunks of about CHUNK_BYTES, so that when the connection
        breaks, everything received so far is still delivered and the resume offset is exact.
        """
        import requests
        import urllib3

        delivered = 0
        response = self.response
        while True:
            buffer = bytearray()
            problem = None
            try:
                while data := response.raw.read1(CHUNK_BYTES - len(buffer), decode_content=False):
                    buffer += data
                    if len(buffer) >= CHUNK_BYTES:
                        delivered += len(buffer)
                        yield bytes(buffer)
                        buffer.clear()
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                problem = _reason(exc)
            if buffer:
                delivered += len(buffer)
                yield bytes(buffer)
            if problem is None and (self.total is None or delivered >= self.total):
                return
            response.close()
            problem = problem or "body shorter than announced"
            if self.total is not None:
                problem = f"{problem}; got {delivered:,} of {self.total:,} bytes"
            if self.failures >= self.retries:
                raise SourceError(
                    f"the download of {self.shown} broke off: {problem}{self._tries()}; nothing was loaded"
                )
            if not (self.ranges and self.validator):
                raise SourceInterrupted(
                    f"the download of {self.shown} broke off ({problem}) and the server cannot resume it"
                )
            log.warning("%s: %s; resuming at byte %d", self.shown, problem, delivered)
            self._wait()
            response = self._resume(delivered)

    def _resume(self, offset: int) -> requests.Response:
        assert self.validator is not None
        response = self._request({"Range": f"bytes={offset}-", "If-Range": self.validator})
        self.response = response
        start = _content_range_start(response.headers.get("Content-Range"))
        if response.status_code != 206 or start != offset:
            response.close()
            # a 200 answers If-Range when the resource changed: the bytes so far belong to another version
            raise SourceInterrupted(
                f"{self.shown} changed while it was being downloaded (HTTP {response.status_code} to a resume request)"
            )
        return response


def _content_range_start(header: str | None) -> int | None:
    # "bytes 100-199/200"
    if not header or not header.startswith("bytes "):
        return None
    first = header[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _retry_after(header: str | None, default: float) -> float:
    """Retry-After as seconds or an HTTP date, capped; else the backoff."""
    if not header:
        return default
    header = header.strip()
    if header.isdigit():
        return min(float(header), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return max(0.0, min(when.timestamp() - time.time(), MAX_RETRY_AFTER_SECONDS))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Connection reset",
        "IncompleteRead",
        "Connection broken",
    ):
        if marker in text:
            return {"IncompleteRead": "body shorter than announced", "timed out": "read timed out"}.get(
                marker, marker.lower()
            )
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:200]


def source_unchanged(source: str, previous: dict[str, Any], *, timeout_seconds: float = 10.0) -> bool:
    """Whether the source is the one fingerprinted by a previous successful run, found cheaply.

    A file: same size and mtime, or same size and the same sha256 (a touched copy). HTTP: a
    conditional GET (If-None-Match, If-Modified-Since) answered 304. Any doubt answers False.
    """
    if source == "-" or not previous:
        return False
    if _is_http(source):
        headers = {}
        if previous.get("etag"):
            headers["If-None-Match"] = previous["etag"]
        if previous.get("last_modified"):
            headers["If-Modified-Since"] = previous["last_modified"]
        if not headers:
            return False
        headers["User-Agent"] = user_agent()
        import requests

        try:
            with requests.get(source, headers=headers, stream=True, timeout=timeout_seconds) as response:
                return response.status_code == 304
        except requests.RequestException:
            return False
    try:
        path = _local_path(source)
        stat = path.stat()
    except (SourceError, OSError, ValueError):  # ValueError: a malformed URL, which open_source refuses
        return False
    if stat.st_size != previous.get("size"):
        return False
    if str(stat.st_mtime_ns) == previous.get("last_modified"):
        return True
    if not previous.get("sha256"):
        return False
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while block := handle.read(CHUNK_BYTES):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == previous["sha256"]


def expand_sources(patterns: Sequence[str]) -> list[str]:
    """Sources as given, local globs expanded: one source stays as it is; several are sorted by path, each once.

    Several sources are read one after the other in this order, so "first line wins" means first by path
    (lexicographic), then by line. URLs and '-' are never globbed; a glob that matches nothing is an error.
    """
    found: list[str] = []
    for pattern in patterns:
        if pattern == "-" or "://" in pattern or not any(c in pattern for c in "*?["):
            found.append(pattern)
            continue
        matches = sorted(str(p) for p in map(Path, glob.glob(os.path.expanduser(pattern))) if p.is_file())
        if not matches:
            raise SourceError(f"source not found: no file matches {pattern}")
        found.extend(matches)
    if len(found) <= 1:
        return found
    if "-" in found:
        raise SourceError("stdin ('-') cannot be combined with other sources")
    return sorted(set(found))


@contextmanager
def open_sources(sources: Sequence[str], http: HttpOptions = HttpOptions()) -> Iterator[OpenSource]:
    """Several sources as one stream of chunks, in the given order (each opened as open_source opens it).

    A source whose last line has no newline gets one, so its last line never runs into the next source's
    first; only the last source's last line can be a cut line. Line numbers run on across the sources.
    """
    if len(sources) == 1:
        with open_source(sources[0], http) as opened:
            yield opened
        return
    names = [mask_url(s) for s in sources]
    info = SourceInfo(" ".join(names), "files")

    def chunks() -> Iterator[bytes]:
        for source in sources:
            with open_source(source, http) as opened:
                last = b""
                for chunk in opened.chunks:
                    if chunk:
                        last = chunk
                    yield chunk
                if info.size is not None and opened.info.size is not None:
                    info.size += opened.info.size
            if last and not last.endswith(b"\n") and source != sources[-1]:
                yield b"\n"

    info.size = 0
    yield OpenSource(info, chunks())
