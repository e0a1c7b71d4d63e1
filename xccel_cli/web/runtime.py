"""Running `xccel serve`: the socket, uvicorn with a parser that answers JSON, and the lifetime of the pool."""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from xccel_cli import logs
from xccel_cli.db import Database
from xccel_cli.errors import ConfigError, StateError
from xccel_cli.schema import require_schema
from xccel_cli.web.app import create_app
from xccel_cli.web.middleware import SECURITY_HEADERS, no_store_headers
from xccel_cli.web.service import MetricsService

log = logging.getLogger(__name__)

INVALID_REQUEST = {"error": "invalid HTTP request (a malformed request line or header, or an unknown method)"}


class JsonErrorsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, but a request its parser refuses (a path of tens of KB, a NUL in a
    header, a space in the path, an unknown method) is answered like every other error: JSON, small,
    with the security headers, instead of uvicorn's plain-text 400."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(INVALID_REQUEST, separators=(",", ":")).encode()
        headers = [*no_store_headers(b"application/json", body), *SECURITY_HEADERS, (b"connection", b"close")]
        content = [STATUS_LINE[400]]
        for name, value in [*self.server_state.default_headers, *headers]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()


def listen(host: str, port: int) -> socket.socket:
    """Bind first, so that a port in use is a one-line error rather than a server log."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class StoppableServer(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, which kills the process before our
    own cleanup (the pool, the embedded PostgreSQL) runs; here a stop signal just ends run()."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def serve(
    db: Database,
    url: str,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    cors_origins: tuple[str, ...] = (),
    allowed_hosts: tuple[str, ...] = (),
) -> str:
    """Serve until SIGINT or SIGTERM; returns the address it served on.

    db is the command's own connection: its embedded server, if any, stays up while this serves; the
    connection itself is closed and a pool of read-only ones, to url, takes over.
    """
    sock = listen(host, port)
    address = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    service = MetricsService(url, db.schema, db.display_url)
    logs.serving()
    try:
        config = uvicorn.Config(
            create_app(service, cors_origins, allowed_hosts),
            workers=1,
            lifespan="on",
            log_config=None,  # logs.configure set up every logger, uvicorn's included
            access_log=access_log,
            server_header=False,
            proxy_headers=False,
            http=JsonErrorsProtocol,
        )
        try:
            require_schema(db)
        except StateError as exc:
            log.warning("%s (until then the metrics answer 503)", exc)
        db.conn.close()
        service.open()
        log.info("serving %s (schema %s)%s%s", address, db.schema, _cors_note(cors_origins), _hosts_note(allowed_hosts))
        StoppableServer(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return address


def _cors_note(origins: tuple[str, ...]) -> str:
    return f"; cross-origin GET/HEAD allowed from {', '.join(origins)}" if origins else ""


def _hosts_note(hosts: tuple[str, ...]) -> str:
    return f"; answering Host {', '.join(hosts)} only" if hosts else ""
