"""Fetch an http(s) source: one download with retries, resumed after a drop, and the conditional GET that tells
an unchanged source. Imported by xccel_cli.source only for an HTTP source.

HTTP downloads survive a flaky server: connection failures, 408/429/5xx (honouring Retry-After),
read timeouts and connections dropped mid-body are retried with exponential backoff. A dropped
body is resumed with a Range request when the server supports it, so the chunk iterator goes on
transparently after the bytes already delivered; otherwise SourceInterrupted tells the caller to
start the extract over. A body shorter than its Content-Length is never taken for a whole one.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

from xccel_cli.config import mask_url
from xccel_cli.errors import SourceError
from xccel_cli.source import CHUNK_BYTES, SourceInfo, SourceInterrupted, gunzip, user_agent

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 300.0
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}

# not retried: the request could never succeed (a URL urllib3 cannot parse raises a bare ValueError)
INVALID_REQUEST = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.URLRequired,
    urllib3.exceptions.LocationValueError,
)


class HttpFetch:
    """One download with retries; chunks() yields the decoded body and resumes it after a drop."""

    def __init__(self, url: str, *, retries: int, timeout_seconds: float, backoff_seconds: float) -> None:
        self.url = url
        self.shown = mask_url(url)
        self.retries = retries
        self.timeout = (min(10.0, timeout_seconds), timeout_seconds)
        self.backoff = backoff_seconds
        self.failures = 0  # retries used so far, across the whole download
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
        while True:
            try:
                response = self.session.get(self.url, stream=True, timeout=self.timeout, headers=headers)
            except INVALID_REQUEST:
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
            return gunzip(raw, self.shown)
        return raw

    def _raw_chunks(self) -> Iterator[bytes]:
        """The body as sent, resumed with Range after a drop, checked against Content-Length.

        Bytes are gathered with read1 into chunks of about CHUNK_BYTES, so that when the connection
        breaks, everything received so far is still delivered and the resume offset is exact.
        """
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


def http_unchanged(source: str, previous: dict[str, Any], *, timeout_seconds: float) -> bool:
    """A conditional GET (If-None-Match, If-Modified-Since) with the previous run's validators answered 304."""
    headers = {}
    if previous.get("etag"):
        headers["If-None-Match"] = previous["etag"]
    if previous.get("last_modified"):
        headers["If-Modified-Since"] = previous["last_modified"]
    if not headers:
        return False
    headers["User-Agent"] = user_agent()
    try:
        with requests.get(source, headers=headers, stream=True, timeout=timeout_seconds) as response:
            return response.status_code == 304
    except requests.RequestException:
        return False
