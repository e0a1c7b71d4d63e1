"""Open a dump as a stream of byte chunks: an http(s) URL, a local path, or '-' for stdin.

Gzip is undone on the fly: a gzip transfer encoding by urllib3, a gzipped body or file
(recognised by its magic bytes, whatever its name) by zlib. Nothing is read whole.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from xccel_cli.config import mask_url
from xccel_cli.errors import DataQualityError, SourceError

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
USER_AGENT = "xccel/0.1"


@dataclass
class SourceInfo:
    """What is known about a source before reading it (used to say what was read)."""

    name: str
    kind: str  # "http", "file" or "stdin"
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class OpenSource:
    info: SourceInfo
    chunks: Iterator[bytes]


def _gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream chunk by chunk."""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    in_member = False
    try:
        for chunk in chunks:
            while chunk:
                in_member = True
                out = inflater.decompress(chunk)
                if out:
                    yield out
                if inflater.eof:  # a member ended; another may follow
                    chunk = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                    in_member = False
                else:
                    chunk = b""
    except zlib.error as exc:
        raise DataQualityError(f"{name} is not a valid gzip stream: {exc}") from None
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


def _file_chunks(handle, name: str) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    try:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
    except OSError as exc:
        raise SourceError(f"cannot read {name}: {exc.strerror or exc}") from None


@contextmanager
def open_source(
    source: str, *, retries: int = 3, timeout_seconds: float = 60.0, backoff_seconds: float = 1.0
) -> Iterator[OpenSource]:
    """Yield an OpenSource; the caller iterates its chunks inside the with-block."""
    if source == "-":
        yield OpenSource(SourceInfo("stdin", "stdin"), _maybe_gunzip(_file_chunks(sys.stdin.buffer, "stdin"), "stdin"))
        return
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        with _open_http(source, retries, timeout_seconds, backoff_seconds) as opened:
            yield opened
        return
    if scheme == "file":
        source = urlsplit(source).path
    elif scheme and len(scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise SourceError(f"unsupported source {mask_url(source)}: use an http(s) URL, a file path or '-'")
    path = Path(source).expanduser()
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
        yield OpenSource(info, _maybe_gunzip(_file_chunks(handle, str(path)), str(path)))


RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@contextmanager
def _open_http(url: str, retries: int, timeout_seconds: float, backoff_seconds: float) -> Iterator[OpenSource]:
    shown = mask_url(url)
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    attempt = 0
    while True:
        attempt += 1
        try:
            response = session.get(url, stream=True, timeout=(10, timeout_seconds))
        except requests.RequestException as exc:
            if attempt <= retries:
                time.sleep(backoff_seconds * 2 ** (attempt - 1))
                continue
            raise SourceError(f"cannot fetch {shown}: {_reason(exc)}") from None
        if response.status_code in RETRYABLE_STATUS and attempt <= retries:
            wait = _retry_after(response.headers.get("Retry-After"), backoff_seconds * 2 ** (attempt - 1))
            response.close()
            time.sleep(wait)
            continue
        if response.status_code >= 400:
            response.close()
            raise SourceError(f"cannot fetch {shown}: HTTP {response.status_code} {response.reason}")
        break
    with response:
        length = response.headers.get("Content-Length")
        info = SourceInfo(
            shown,
            "http",
            size=int(length) if length and length.isdigit() else None,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )
        yield OpenSource(info, _maybe_gunzip(_http_chunks(response, shown), shown))


def _http_chunks(response: requests.Response, shown: str) -> Iterator[bytes]:
    try:
        yield from response.raw.stream(CHUNK_BYTES, decode_content=True)
    except Exception as exc:  # urllib3 raises ProtocolError/ReadTimeoutError/DecodeError mid-body
        raise SourceError(f"the download of {shown} failed part-way: {_reason(exc)}") from None


def _retry_after(header: str | None, default: float) -> float:
    if header and header.strip().isdigit():
        return min(float(header), 300.0)
    return default


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:200]
