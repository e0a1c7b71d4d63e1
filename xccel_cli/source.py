"""Open a dump as a stream of byte chunks: an http(s) URL, a local path, or '-' for stdin.

Gzip is undone on the fly: a gzip Content-Encoding or a gzipped body or file (recognised by its
magic bytes, whatever its name) by zlib. Nothing is read whole.

An http(s) URL is fetched by xccel_cli.http_source, imported only then (a local file does not pay for
requests): retries, resumed bodies, conditional GETs.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from xccel_cli.config import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_RETRIES,
    check_source,
    mask_url,
)
from xccel_cli.errors import DataQualityError, SourceError

CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"


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


def gunzip(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
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
        return gunzip(rest(), name)
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
        from xccel_cli.http_source import HttpFetch  # requests is imported only for an HTTP source

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


def source_unchanged(source: str, previous: dict[str, Any], *, timeout_seconds: float = 10.0) -> bool:
    """Whether the source is the one fingerprinted by a previous successful run, found cheaply.

    A file: same size and mtime, or same size and the same sha256 (a touched copy). HTTP: a
    conditional GET (If-None-Match, If-Modified-Since) answered 304. Any doubt answers False.
    """
    if source == "-" or not previous:
        return False
    if _is_http(source):
        from xccel_cli.http_source import http_unchanged

        return http_unchanged(source, previous, timeout_seconds=timeout_seconds)
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
    """Sources as given, local globs expanded: one source stays as it is; several are sorted by path, each file once.

    Several sources are read one after the other in this order, so "first line wins" means first by path
    (lexicographic), then by line. URLs and '-' are never globbed; a glob that matches nothing is an error.
    """
    found: list[str] = []
    for pattern in patterns:
        if pattern == "-" or "://" in pattern or not any(c in pattern for c in "*?["):
            found.append(pattern)
            continue
        matches = sorted(str(p) for p in map(Path, glob.glob(os.path.expanduser(pattern))) if p.is_file())
        if not matches and Path(pattern).expanduser().is_file():
            matches = [pattern]  # no match, but a file has that very name ("dump[1].json"): as a shell does
        if not matches:
            raise SourceError(f"source not found: no file matches {pattern}")
        found.extend(matches)
    if len(found) <= 1:
        return found
    if "-" in found:
        raise SourceError("stdin ('-') cannot be combined with other sources")
    # one file under two spellings (a.json, ./a.json, dir/../a.json) is one source, in its place by its
    # absolute path, as the Spark job orders and merges its files
    by_path: dict[str, str] = {}
    for source in found:
        by_path.setdefault(source if "://" in source else os.path.abspath(os.path.expanduser(source)), source)
    return [by_path[key] for key in sorted(by_path)]


def whole_head(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The chunks, the first one at least `size` bytes long (when the stream is), so its start can be judged."""
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= size:
            break
    if head:
        yield head
    yield from iterator


def _without_bom(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks without a UTF-8 BOM at their start."""
    rest = whole_head(chunks, len(BOM))
    if head := next(rest, b"").removeprefix(BOM):
        yield head
    yield from rest


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
        for index, source in enumerate(sources):
            with open_source(source, http) as opened:
                last = b""
                # the reader skips a BOM at the start of the stream only; each later file may start with one too
                for chunk in opened.chunks if index == 0 else _without_bom(opened.chunks):
                    if chunk:
                        last = chunk
                    yield chunk
                if info.size is not None and opened.info.size is not None:
                    info.size += opened.info.size
            if last and not last.endswith(b"\n") and source != sources[-1]:
                yield b"\n"

    info.size = 0
    yield OpenSource(info, chunks())
