"""`xccel serve` by the web's rules: validators and 304, negotiation, redirects, every error JSON and
small, outage answers, gzip, security headers, CORS and GET /metrics; spoken to over real sockets."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import run_xccel
from tests.test_serve import EXAMPLE, RestartablePostgres, Server, example_database, raw_exchange, report_json, xccel_ok

# real xccel processes (the command, serve): started, measured, their output read
pytestmark = pytest.mark.integration

ORIGIN = "https://figures.example"
VALIDATED = ("/", "/metrics/orders", "/metrics/referrers", "/dashboard", "/health", "/openapi.json")
MAX_ERROR_BYTES = 512


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def ask(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        named: dict[str, str] = {}
        for name, value in response.getheaders():
            named[name.lower()] = f"{named[name.lower()]}, {value}" if name.lower() in named else value
        return Answer(response.status, named, response.read())
    finally:
        conn.close()


def split_raw(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


def assert_security_headers(headers: dict[str, str]) -> None:
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by the Prometheus client's own text parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def loaded(pg_admin_url: str) -> Iterator[str]:
    with example_database(pg_admin_url, f"xccel_http_{os.getpid()}") as url:
        yield url


@pytest.fixture(scope="module")
def cors_server(loaded: str) -> Iterator[Server]:
    """A server with CORS on for ORIGIN (from the environment: XCCEL_CORS_ORIGINS)."""
    started = Server(loaded, env={"XCCEL_CORS_ORIGINS": f"{ORIGIN}, https://other.example"})
    yield started
    assert started.stop() == 0
    started.log_path.unlink(missing_ok=True)


def test_every_get_has_a_strong_etag_and_answers_304_to_it(cors_server: Server, loaded: str) -> None:
    publication = report_json(loaded)["publication_id"]
    for path in VALIDATED:
        first = ask(cors_server.port, path)
        assert first.status == 200, path
        etag = first.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/"), path
        assert first.headers["cache-control"] == "public, no-cache", path
        if path not in ("/health", "/openapi.json"):
            assert etag.startswith(f'"p{publication}-'), path  # tied to the publication
            assert first.headers["last-modified"].endswith(" GMT"), path
        again = ask(cors_server.port, path)
        assert again.headers["etag"] == etag, path  # stable while nothing is published
        for sent in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            cached = ask(cors_server.port, path, {"If-None-Match": sent})
            assert (cached.status, cached.body) == (304, b""), (path, sent)
            assert cached.headers["etag"] == etag and cached.headers["cache-control"] == "public, no-cache"
            assert_security_headers(cached.headers)
        stale = ask(cors_server.port, path, {"If-None-Match": '"p0-stale"'})
        assert stale.status == 200 and stale.body == first.body, path
        head = ask(cors_server.port, path, {"If-None-Match": etag}, method="HEAD")
        assert head.status == 304, path
        if "last-modified" in first.headers:
            since = ask(cors_server.port, path, {"If-Modified-Since": first.headers["last-modified"]})
            assert (since.status, since.body) == (304, b""), path


def test_vary_and_q_values_at_the_root(cors_server: Server) -> None:
    port = cors_server.port
    for accept in ("text/html;q=0.1, application/json", "application/json", "*/*", "application/json, text/html"):
        reply = ask(port, "/", {"Accept": accept})
        assert reply.status == 200 and reply.headers["content-type"] == "application/json", accept
        assert "Accept" in reply.headers["vary"] and "Origin" in reply.headers["vary"]
    for accept in ("text/html", "application/json;q=0.5, text/html", "text/html,application/xhtml+xml,*/*;q=0.8"):
        reply = ask(port, "/", {"Accept": accept})
        assert reply.status == 303, accept
        assert reply.headers["location"] == "/dashboard"
        assert "Accept" in reply.headers["vary"]
    for path in ("/metrics/orders", "/metrics/referrers", "/dashboard", "/health"):
        assert "Accept" in ask(port, path).headers["vary"], path
    assert "Accept-Encoding" in ask(port, "/dashboard").headers["vary"]


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/metrics/orders", "text/csv"),
        ("/metrics/referrers", "application/json;q=0, text/html"),
        ("/", "image/png"),
        ("/dashboard", "application/json"),
        ("/health", "text/html"),
        ("/metrics", "application/json"),
    ],
)
def test_an_accept_nothing_satisfies_gets_406_json(cors_server: Server, path: str, accept: str) -> None:
    reply = ask(cors_server.port, path, {"Accept": accept})
    assert reply.status == 406
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json) == {"error"} and "Accept" in reply.json["error"]
    assert_security_headers(reply.headers)


def test_redirects_are_relative_whatever_the_host_header_says(cors_server: Server) -> None:
    raw = raw_exchange(
        cors_server.port, b"GET /metrics/orders/?x=1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = split_raw(raw)
    assert status == 307
    assert headers["location"] == "/metrics/orders?x=1"
    assert b"evil" not in raw
    assert set(json.loads(body)) == {"error"}
    assert ask(cors_server.port, "/nope/").status == 404  # only known endpoints are redirected to


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a path of 70 KB
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",  # a NUL in a header
        b"GET /metrics orders HTTP/1.1\r\nHost: x\r\n\r\n",  # a space in the path
        b"FROBNICATE /health HTTP/1.1\r\nHost: x\r\n\r\n",  # an unknown method
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # TLS spoken to a plain port
    ],
    ids=["long-path", "nul-in-header", "space-in-path", "unknown-method", "tls-hello"],
)
def test_requests_the_parser_refuses_get_small_json(cors_server: Server, request_bytes: bytes) -> None:
    status, headers, body = split_raw(raw_exchange(cors_server.port, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body) <= MAX_ERROR_BYTES
    assert set(json.loads(body)) == {"error"}
    assert_security_headers(headers)


def test_error_bodies_are_bounded_and_never_echo_a_long_path(cors_server: Server) -> None:
    long_path = "/metrics/" + "x" * 20_000
    for method in ("GET", "DELETE"):
        reply = ask(cors_server.port, long_path, method=method)
        assert reply.status in (404, 405)
        assert reply.headers["content-type"] == "application/json"
        assert len(reply.body) <= MAX_ERROR_BYTES and set(reply.json) == {"error"}
        assert reply.headers["cache-control"] == "no-store"
        assert_security_headers(reply.headers)


def test_the_dashboard_is_gzipped_when_accepted(cors_server: Server) -> None:
    plain = ask(cors_server.port, "/dashboard")
    packed = ask(cors_server.port, "/dashboard", {"Accept-Encoding": "gzip, deflate"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body
    assert len(packed.body) * 3 < len(plain.body)
    assert packed.headers["etag"] != plain.headers["etag"]  # another representation, another strong tag
    assert ask(cors_server.port, "/dashboard", {"Accept-Encoding": "gzip;q=0"}).body == plain.body
    assert_security_headers(packed.headers)


def test_the_content_security_policy_admits_what_the_page_uses(cors_server: Server) -> None:
    page = ask(cors_server.port, "/dashboard")
    policy = page.headers["content-security-policy"]
    text = page.body.decode()
    assert "<script" not in text and "src=" not in text.replace("data:", "")  # nothing to fetch or run
    if "<style" in text or "style=" in text:
        assert "style-src 'unsafe-inline'" in policy


def test_cors_preflight_and_headers_when_an_origin_is_allowed(cors_server: Server) -> None:
    port = cors_server.port
    preflight = ask(
        port,
        "/metrics/orders",
        {"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "if-none-match"},
        method="OPTIONS",
    )
    assert preflight.status == 204 and preflight.body == b""
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-methods"] == "GET, HEAD"
    assert "If-None-Match" in preflight.headers["access-control-allow-headers"]
    assert "Origin" in preflight.headers["vary"]
    for origin, method in (("https://evil.example", "GET"), (ORIGIN, "POST")):
        refused = ask(
            port, "/metrics/orders", {"Origin": origin, "Access-Control-Request-Method": method}, method="OPTIONS"
        )
        assert refused.status == 403 and set(refused.json) == {"error"}
        assert "access-control-allow-origin" not in refused.headers
    for path in ("/metrics/orders", "/dashboard", "/health", "/nope"):
        allowed = ask(port, path, {"Origin": ORIGIN})
        assert allowed.headers["access-control-allow-origin"] == ORIGIN, path
        assert "ETag" in allowed.headers["access-control-expose-headers"]
        assert "Origin" in allowed.headers["vary"], path
        other = ask(port, path, {"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers, path


def test_cors_is_off_by_default(pg_admin_url: str, loaded: str) -> None:
    server = Server(loaded)
    try:
        preflight = ask(
            server.port, "/metrics/orders", {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}, "OPTIONS"
        )
        assert preflight.status == 405 and "access-control-allow-origin" not in preflight.headers
        plain = ask(server.port, "/metrics/orders", {"Origin": ORIGIN})
        assert plain.status == 200 and "access-control-allow-origin" not in plain.headers
        assert "Origin" not in plain.headers["vary"]
    finally:
        assert server.stop() == 0
        server.log_path.unlink(missing_ok=True)


def test_a_bad_cors_origin_is_a_configuration_error(loaded: str) -> None:
    result = run_xccel(["serve", "--cors-origin", "https://ok.example/path", "--database-url", loaded], timeout=60)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "Error: --cors-origin must be origins like https://example.com (no path), got 'https://ok.example/path'"
    ]


def test_allowed_hosts_refuse_every_other_host_header(loaded: str) -> None:
    server = Server(loaded, env={"XCCEL_ALLOWED_HOSTS": "127.0.0.1 *.figures.example"})
    try:
        for host in ("127.0.0.1", f"127.0.0.1:{server.port}", "api.figures.example", "API.Figures.Example.:8000"):
            reply = raw_exchange(
                server.port, f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            assert split_raw(reply)[0] == 200, host
        for host in ("evil.example", "figures.example", "figures.example.evil", "127.0.0.2", ""):
            for path in ("/metrics/orders", "/metrics/orders/", "/dashboard"):
                raw = raw_exchange(
                    server.port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
                )
                status, headers, body = split_raw(raw)
                assert status == 400, (host, path)
                assert "location" not in headers and (not host or host.encode() not in raw)
                assert headers["content-type"] == "application/json" and set(json.loads(body)) == {"error"}
                assert_security_headers(headers)
    finally:
        assert server.stop() == 0
        server.log_path.unlink(missing_ok=True)


def test_a_bad_allowed_host_is_a_configuration_error(loaded: str) -> None:
    result = run_xccel(["serve", "--allowed-host", "https://x.example", "--database-url", loaded], timeout=60)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        "Error: --allowed-host must be host names like example.com or *.example.com (no scheme, port or path), "
        "got 'https://x.example'"
    ]


def test_metrics_in_the_prometheus_format_and_request_counters_move(cors_server: Server, loaded: str) -> None:
    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        reply = ask(cors_server.port, "/metrics")
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
        assert reply.headers["cache-control"] == "no-store"
        return metric_samples(reply.body.decode())

    orders_200 = ("xccel_http_requests_total", (("endpoint", "/metrics/orders"), ("status", "200")))
    latency_count = ("xccel_http_request_duration_seconds_count", orders_200[1])
    other_404 = ("xccel_http_requests_total", (("endpoint", "other"), ("status", "404")))
    before = scrape()
    for _ in range(3):
        assert ask(cors_server.port, "/metrics/orders").status == 200
    assert ask(cors_server.port, "/no/such/path").status == 404
    after = scrape()
    assert after[orders_200] == before.get(orders_200, 0) + 3
    assert after[latency_count] == before.get(latency_count, 0) + 3
    assert after[other_404] == before.get(other_404, 0) + 1
    bucket = ("xccel_http_request_duration_seconds_bucket", (*orders_200[1][:1], ("le", "+Inf"), orders_200[1][1]))
    assert after[bucket] == after[latency_count]

    # the run figures: those of the run-all that loaded the example
    runs = run_xccel(["runs", "--json", "--limit", "1", "--database-url", loaded])
    last = json.loads(runs.stdout)[0]
    report = report_json(loaded)
    assert after[("xccel_database_up", ())] == 1
    assert after[("xccel_last_run_id", ())] == last["run_id"]
    assert after[("xccel_last_run_outcome", (("command", "run-all"), ("outcome", "succeeded")))] == 1
    assert after[("xccel_last_run_outcome", (("command", "run-all"), ("outcome", "failed")))] == 0
    assert after[("xccel_last_run_lines_read", ())] == last["lines_read"] > 0
    assert after[("xccel_last_run_lines_loaded", ())] == last["loaded"]
    assert after[("xccel_last_run_lines_rejected", ())] == last["rejected"] > 0
    assert set(last["stage_seconds"]) == {"init_db", "extract", "sessionize", "load", "report"}  # the README's list
    for stage in last["stage_seconds"]:
        assert after[("xccel_last_run_stage_seconds", (("stage", stage),))] == pytest.approx(
            last["stage_seconds"][stage]
        )
    assert after[("xccel_published_sessions", ())] == report["sessions"]
    assert after[("xccel_published_customers", ())] == report["customers"]
    assert after[("xccel_publication_id", ())] == report["publication_id"]
    assert 0 <= after[("xccel_publication_age_seconds", ())] < 3600
    assert ("xccel_last_run_end_timestamp_seconds", (("outcome", "succeeded"),)) in after


def test_openmetrics_when_the_scraper_asks_for_it(cors_server: Server) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    reply = ask(cors_server.port, "/metrics", {"Accept": accept})
    assert reply.status == 200 and reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.body.rstrip().endswith(b"# EOF")


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text;q=0, text/plain",
        "text/plain, application/openmetrics-text;q=0.5",
        "application/openmetrics-text;version=1.0.0;q=0.2, */*",
    ],
)
def test_openmetrics_only_when_the_scraper_prefers_it_by_q_value(cors_server: Server, accept: str) -> None:
    reply = ask(cors_server.port, "/metrics", {"Accept": accept})
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain"), accept
    assert not reply.body.rstrip().endswith(b"# EOF")
    assert reply.headers["vary"] == "Accept, Origin"  # the format depends on Accept, and says so


def test_a_new_publication_gives_new_etags_and_moves_the_run_figures(cors_server: Server, loaded: str) -> None:
    """Last in this module: it publishes again on the shared database."""
    port = cors_server.port
    before = {path: ask(port, path).headers["etag"] for path in ("/metrics/orders", "/metrics/referrers", "/dashboard")}
    scraped = metric_samples(ask(port, "/metrics").body.decode())
    xccel_ok("sessionize", "--timeout-minutes", "45", "--database-url", loaded)
    xccel_ok("load", "--database-url", loaded)
    publication = report_json(loaded)["publication_id"]
    for path, etag in before.items():
        fresh = ask(port, path, {"If-None-Match": etag})
        assert fresh.status == 200, path  # the old tag no longer matches
        assert fresh.headers["etag"] != etag and fresh.headers["etag"].startswith(f'"p{publication}-'), path
    rescraped = metric_samples(ask(port, "/metrics").body.decode())
    assert rescraped[("xccel_last_run_id", ())] == scraped[("xccel_last_run_id", ())] + 2
    assert rescraped[("xccel_publication_id", ())] == publication == scraped[("xccel_publication_id", ())] + 1
    assert rescraped[("xccel_last_run_outcome", (("command", "load"), ("outcome", "succeeded")))] == 1


# --- servers of their own ------------------------------------------------------------------------


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start servers for a test; each is stopped (SIGTERM) at the end and must then exit cleanly."""
    started: list[Server] = []

    def start(database_url: str, global_args: tuple[str, ...] = ()) -> Server:
        started.append(Server(database_url, global_args=global_args))
        return started[-1]

    yield start
    codes = [server.stop() for server in started]
    for server in started:
        server.log_path.unlink(missing_ok=True)
    assert codes == [0] * len(codes)


def test_outage_answers_carry_retry_after_and_the_dashboard_speaks_html_to_browsers(
    serve: Any, database_url: str
) -> None:
    server = serve(database_url)  # no schema yet: every figure answers 503
    browser = ask(server.port, "/dashboard", {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status == 503 and browser.headers["content-type"] == "text/html; charset=utf-8"
    assert b"unavailable" in browser.body and b"xccel init-db" in browser.body
    assert browser.headers["retry-after"] == "60"
    assert_security_headers(browser.headers)
    json_client = ask(server.port, "/dashboard", {"Accept": "application/json, text/html;q=0.5"})
    assert json_client.status == 503 and json_client.headers["content-type"] == "application/json"
    assert set(json_client.json) == {"error"} and json_client.headers["retry-after"] == "60"
    for path in ("/", "/metrics/orders", "/metrics/referrers"):
        reply = ask(server.port, path)
        assert reply.status == 503 and reply.headers["retry-after"] == "60", path
        assert reply.headers["cache-control"] == "no-store"
    scraped = metric_samples(ask(server.port, "/metrics").body.decode())
    assert scraped[("xccel_schema_ready", ())] == 0 and scraped[("xccel_database_up", ())] == 1


def test_one_log_setup_serve_writes_to_the_log_file(serve: Any, database_url: str, tmp_path: Path) -> None:
    log_file = tmp_path / "xccel.log"
    xccel_ok("init-db", "--database-url", database_url)
    server = serve(database_url, global_args=("-v", "--log-file", str(log_file)))
    assert ask(server.port, "/health").status == 200
    assert server.stop() == 0
    written = log_file.read_text()
    assert f"serving http://127.0.0.1:{server.port}" in written
    assert "xccel_cli.web.runtime" in written  # the module's logger, one stack for every command
    assert all(line.split(" ")[2].isdigit() for line in written.splitlines())  # timestamp, pid, ...
    assert "Traceback" not in written


# --- the contract, tried by an outside client ------------------------------------------------------


# A window whose since comes after its until is refused with 400: a rule across two parameters that an
# OpenAPI schema cannot state, so a schema-valid request may rightly get it (documented on those routes).
WINDOW_RULE = '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "3xx", "400", "404"]\n'
# ... and during an outage, a 503 (documented, with Retry-After) is the right answer to any request
OUTAGE_RULES = (
    '[checks.not_a_server_error]\nexpected-statuses = ["1xx", "2xx", "3xx", "4xx", "503"]\n'
    '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "3xx", "400", "404", "503"]\n'
)


def schemathesis(port: int, cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """schemathesis 4 (the test extra) against the running server's own /openapi.json: every check,
    the stateful phase off (there are no links between these read-only endpoints)."""
    if config is None:
        config = cwd / "schemathesis.toml"
        config.write_text(WINDOW_RULE)
    command = Path(sys.executable).with_name("st")
    args = [
        str(command),
        *(["--config-file", str(config)] if config else []),
        "run",
        f"http://127.0.0.1:{port}/openapi.json",
        "--checks",
        "all",
    ]
    args += ["--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "15", "--workers", "1"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_schemathesis_finds_nothing_with_the_database_up(cors_server: Server, tmp_path: Path) -> None:
    done = schemathesis(cors_server.port, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "7 selected / 7 total" in done.stdout and " passed" in done.stdout


def test_schemathesis_finds_nothing_with_the_database_down(tmp_path: Path) -> None:
    directory = Path(tempfile.mkdtemp(prefix="xccel-st-"))  # short: the socket path must fit
    postgres = RestartablePostgres(directory)
    server = None
    try:
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        xccel_ok("run-all", "--source", str(EXAMPLE), "--database-url", postgres.url("shop"))
        server = Server(postgres.url("shop"))
        postgres.stop()
        assert ask(server.port, "/metrics/orders").status == 503
        # every check still runs; a 503 (documented, with Retry-After) is this outage's right answer, while
        # any other 5xx would still fail the check
        config = tmp_path / "schemathesis.toml"
        config.write_text(OUTAGE_RULES)
        done = schemathesis(server.port, tmp_path, config=config)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert "7 selected / 7 total" in done.stdout
        scraped = metric_samples(ask(server.port, "/metrics").body.decode())
        assert scraped[("xccel_database_up", ())] == 0
        outages = ("xccel_http_requests_total", (("endpoint", "/metrics/orders"), ("status", "503")))
        assert scraped[outages] >= 1
    finally:
        if server is not None:
            assert server.stop() == 0
            server.log_path.unlink(missing_ok=True)
        postgres.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def test_openapi_says_what_each_answer_is(cors_server: Server) -> None:
    document = ask(cors_server.port, "/openapi.json").json
    for path, operations in document["paths"].items():
        for status, answer in operations["get"]["responses"].items():
            media = set(answer.get("content", {}))
            if status in ("406", "503") and path != "/health":
                expected = {"application/json", "text/html"} if (path, status) == ("/dashboard", "503") else None
                assert media == (expected or {"application/json"}), (path, status)
                if status == "503":
                    assert "Retry-After" in answer["headers"], path
    dashboard = document["paths"]["/dashboard"]["get"]["responses"]
    assert set(dashboard["200"]["content"]) == {"text/html"} and "304" in dashboard
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain", "application/openmetrics-text"}


def test_a_header_sent_on_several_lines_is_read_as_one_list(cors_server: Server) -> None:
    """RFC 9110, 5.3: Accept, Accept-Encoding and If-None-Match lines repeated in a request form one
    comma-separated list, on the paths Front answers itself and on those the routes answer alike."""

    def exchange(path: str, *lines: str) -> tuple[int, dict[str, str], bytes]:
        head = "".join(f"{line}\r\n" for line in lines)
        return split_raw(
            raw_exchange(
                cors_server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode()
            )
        )

    for path in ("/metrics/orders", "/metrics/orders?since=2022-04-01", "/dashboard", "/health"):
        etag = ask(cors_server.port, path).headers["etag"]
        for first, second in ((etag, '"other"'), ('"other"', etag)):
            status, _, body = exchange(path, f"If-None-Match: {first}", f"If-None-Match: {second}")
            assert (status, body) == (304, b""), (path, first)
        for first, second in (("application/json", "text/html"), ("text/html", "application/json")):
            status, headers, _ = exchange(path, f"Accept: {first}", f"Accept: {second}")
            assert status == 200 and headers["content-type"].startswith(
                "text/html" if path == "/dashboard" else "application/json"
            )
    for first, second in (("br", "gzip"), ("gzip", "br")):
        status, headers, body = exchange("/dashboard", f"Accept-Encoding: {first}", f"Accept-Encoding: {second}")
        assert status == 200 and headers.get("content-encoding") == "gzip", (first, second)
        assert gzip.decompress(body).startswith(b"<!DOCTYPE html>")


def test_if_modified_since_with_more_than_one_date_is_ignored(cors_server: Server) -> None:
    """RFC 9110, 13.1.3: If-Modified-Since is ignored when its value is not one valid HTTP-date, so two lines
    (or two dates on one line) get the whole answer, on the paths Front answers itself and on the routes'."""

    def exchange(path: str, *lines: str) -> tuple[int, bytes]:
        head = "".join(f"{line}\r\n" for line in lines)
        raw = raw_exchange(
            cors_server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode()
        )
        status, _, body = split_raw(raw)
        return status, body

    old = "Sun, 06 Nov 1994 08:49:37 GMT"
    for path in ("/metrics/orders", "/metrics/orders?since=2022-04-01", "/dashboard", "/metrics/referrers"):
        modified = ask(cors_server.port, path).headers["last-modified"]
        assert exchange(path, f"If-Modified-Since: {modified}")[0] == 304, path  # one date: honoured
        for lines in (
            (f"If-Modified-Since: {modified}", f"If-Modified-Since: {old}"),
            (f"If-Modified-Since: {old}", f"If-Modified-Since: {modified}"),
            (f"If-Modified-Since: {modified}", f"If-Modified-Since: {modified}"),
            (f"If-Modified-Since: {modified}, {modified}",),
        ):
            status, body = exchange(path, *lines)
            assert status == 200 and body, (path, lines)
