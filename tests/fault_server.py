"""A real HTTP server on 127.0.0.1 that misbehaves on cue, for the source fault tests.

Each served path has a body and a queue of faults; every request takes the next fault (none left:
serve normally). Faults: an error status (with Retry-After), a connection reset, a clean close before
Content-Length is reached, a stall (read timeout), or a hold until the test releases it. With
`ranges=True` the server honours `Range: bytes=N-` with `If-Range`, as a static file server does.
"""

from __future__ import annotations

import gzip
import http.server
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import SERVER_POLL_SECONDS

ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT"


@dataclass
class Fault:
    kind: str  # "status", "reset", "short", "stall", "hold", "drop"
    status: int = 503
    retry_after: str | None = None
    after_bytes: int = 0  # body bytes sent before the fault strikes
    seconds: float = 0.0  # stall length
    reached: threading.Event = field(default_factory=threading.Event)  # set when the fault strikes
    release: threading.Event = field(default_factory=threading.Event)  # ends a hold


@dataclass
class Resource:
    body: bytes
    headers: dict[str, str]
    ranges: bool
    faults: list[Fault]


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float
    status: int = 0


class FaultServer:
    def __init__(self, port: int = 0) -> None:
        self.resources: dict[str, Resource] = {}
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def add(
        self,
        path: str,
        body: bytes,
        *,
        faults: list[Fault] | None = None,
        ranges: bool = False,
        gzip_encoding: bool = False,
        validators: bool = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        extra = dict(headers or {})
        if gzip_encoding:
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        if validators:
            extra.setdefault("ETag", ETAG)
            extra.setdefault("Last-Modified", LAST_MODIFIED)
        self._faults.extend(faults or [])
        self.resources[path] = Resource(body, extra, ranges, list(faults or []))
        return self.base_url + path

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> FaultServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                request = Request(self.path, dict(self.headers), time.monotonic())
                with owner._lock:
                    owner.requests.append(request)
                    resource = owner.resources.get(self.path)
                    fault = resource.faults.pop(0) if resource and resource.faults else None
                if resource is None:
                    self._simple(request, 404, b"not found")
                    return
                if fault and fault.kind == "drop":
                    fault.reached.set()
                    self._reset()
                    return
                if fault and fault.kind == "status":
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    self._simple(request, fault.status, b"try later", headers)
                    return
                if self._not_modified(resource):
                    request.status = 304
                    self.send_response(304)
                    self.send_header("ETag", resource.headers.get("ETag", ""))
                    self.end_headers()
                    return
                body, status, headers = resource.body, 200, dict(resource.headers)
                if resource.ranges:
                    headers["Accept-Ranges"] = "bytes"
                    start = self._range_start(resource)
                    if start is not None and start < len(body):
                        headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                        body, status = body[start:], 206
                request.status = status
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if fault is None:
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: fault.after_bytes])
                self.wfile.flush()
                fault.reached.set()
                if fault.kind == "reset":
                    self._reset()
                elif fault.kind == "short":
                    self.close_connection = True
                elif fault.kind == "stall":
                    time.sleep(fault.seconds)
                    self.close_connection = True
                elif fault.kind == "hold":
                    fault.release.wait(120)
                    self.wfile.write(body[fault.after_bytes :])

            def _simple(
                self, request: Request, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                request.status = status
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _not_modified(self, resource: Resource) -> bool:
                etag = resource.headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    return True
                modified = resource.headers.get("Last-Modified")
                return bool(
                    modified
                    and self.headers.get("If-Modified-Since") == modified
                    and not self.headers.get("If-None-Match")
                )

            def _range_start(self, resource: Resource) -> int | None:
                wanted = self.headers.get("Range", "")
                if not wanted.startswith("bytes=") or not wanted.endswith("-"):
                    return None
                if_range = self.headers.get("If-Range")
                if if_range and if_range not in (resource.headers.get("ETag"), resource.headers.get("Last-Modified")):
                    return None
                first = wanted[6:-1]
                return int(first) if first.isdigit() else None

            def _reset(self) -> None:
                """Abort the connection with a TCP RST, as a crashed proxy would."""
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a reset connection is the point, not a problem

        self._server = Server(("127.0.0.1", self._port), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(SERVER_POLL_SECONDS,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for fault in self._faults:
            fault.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def free_port() -> int:
    """A port nothing listens on (connection refused), that a FaultServer may take later."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    try:
        yield server
    finally:
        server.stop()
