"""The database side of `xccel serve`: a pool of read-only connections, and the answers computed from it.

An answer is computed by the same code as `xccel report` (metrics.report, referrers.referrer_report,
dashboard.dashboard_data: the sql/ files in a REPEATABLE READ READ ONLY transaction that first takes
ACCESS SHARE locks, because the table swap on publish is not MVCC-safe on its own) and cached by the
caller under the publication it was read from. The per-request publication check is an async query on
the event loop, on a connection of its own per lane: in the steady state a prepared statement sent through
libpq directly (RawCheck), every other case (the first check, a new publication, any error) by psycopg.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.adapt import Transformer
from psycopg_pool import ConnectionPool, PoolTimeout

from xccel_cli import conversion, dashboard, metrics, monitoring, referrers
from xccel_cli.config import mask_password
from xccel_cli.db import Database
from xccel_cli.errors import DatabaseError, XccelError
from xccel_cli.publications import LATEST_PUBLICATION_KEY
from xccel_cli.schema import require_schema
from xccel_cli.web.cache import PublicationKey

T = TypeVar("T")

APPLICATION_NAME = "xccel-serve"
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 3  # one per answer being recomputed, one spare
CHECK_LANES = 2  # connections for the per-request check: a new batch need not wait for a slow one
CHECK_STATEMENT = "xccel_latest_publication_key"  # the check's prepared statement, on each check connection
HELPER_WAIT_SECONDS = 0.2  # for the dashboard's second connection: when none comes that soon, it uses one
POOL_TIMEOUT_SECONDS = 3.0  # how long a request waits for a connection before answering 503
CONNECT_TIMEOUT_SECONDS = 3
RECONNECT_TIMEOUT_SECONDS = 30.0  # after that the pool stops retrying in the background; requests retry
STATEMENT_TIMEOUT = "60s"
CONNECT_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "application_name": APPLICATION_NAME,
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
}


class MetricsService:
    """The answers the server gives, computed by the report code over pooled read-only connections."""

    def __init__(self, url: str, schema: str, display_url: str) -> None:
        self.schema = schema
        self.display_url = display_url
        self._url = url
        self._check_conns: dict[int, psycopg.AsyncConnection[Any]] = {}
        self._raw_checks: dict[int, RawCheck] = {}
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            open=False,
            name=APPLICATION_NAME,
            kwargs=CONNECT_OPTIONS,
            configure=self._configure,
            timeout=POOL_TIMEOUT_SECONDS,
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        for statement, params in self._session_setup():
            conn.execute(statement, params)

    def _session_setup(self) -> list[tuple[sql.SQL | sql.Composed, tuple[Any, ...]]]:
        # the session db.connect sets up, and: this server never writes, never waits forever
        return [
            (sql.SQL("SET TIME ZONE 'UTC'"), ()),
            (sql.SQL("SELECT set_config('search_path', %s, false)"), (sql.Identifier(self.schema).as_string(),)),
            (sql.SQL("SET default_transaction_read_only = on"), ()),
            (sql.SQL("SET statement_timeout = {}").format(sql.Literal(STATEMENT_TIMEOUT)), ()),
        ]

    def open(self) -> None:
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS * 3)
        except PoolTimeout:
            self.pool.close()
            raise DatabaseError(f"cannot connect to the database at {self.display_url}") from None

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _database(self) -> Iterator[Database]:
        try:
            with self.pool.connection() as conn:
                yield Database(conn=conn, schema=self.schema, display_url=self.display_url)
        except PoolTimeout:
            raise DatabaseError("no database connection could be made in time") from None

    def run(self, work: Callable[[Database], T]) -> T:
        """work(db) on a pooled connection; once more on a fresh one if the first was broken.

        After the database restarts, every idle connection in the pool is dead: one failure makes the
        pool test them all (check()), dropping the dead ones, so the retry gets a live one or none.
        """
        try:
            with self._database() as db:
                return work(db)
        except DatabaseError as exc:
            if not isinstance(exc.__cause__, psycopg.OperationalError):
                raise
        self.pool.check()
        with self._database() as db:
            return work(db)

    async def latest_key(self, lane: int = 0) -> PublicationKey:
        """The check every request makes, on the lane's own async connection: no thread hop, no pool wait.

        SharedCheck runs one fetch per lane at a time, so each connection has one user at a time. The
        lane's RawCheck answers when it can; whatever it cannot answer (an error, a broken connection, the
        first check on a connection) is asked here through psycopg, which also says what went wrong.
        """
        raw = self._raw_checks.get(lane)
        if raw is not None:
            try:
                return await raw.key()
            except Exception:  # psycopg asks again, and says what went wrong
                pass
            if raw.broken:  # the connection is in an unknown state: start over on a new one
                await self._close_check_connection(lane)
                raw = None
            else:
                raw.detach()  # psycopg's turn
        for attempt in (1, 2):
            conn = self._check_conns.get(lane)
            reused = conn is not None and not conn.closed
            try:
                if conn is None or conn.closed:
                    conn = self._check_conns[lane] = await self._connect_async()
                cursor = await conn.execute(LATEST_PUBLICATION_KEY)
                row = await cursor.fetchone()
                key: PublicationKey = None if row is None else (row[0], row[1])
            except psycopg.errors.UndefinedTable as exc:
                await asyncio.to_thread(self.run, require_schema)  # raises the StateError that says what to do
                raise DatabaseError(f"database error: {first_line(exc)}") from exc
            except psycopg.OperationalError as exc:
                await self._close_check_connection(lane)
                if attempt == 1 and reused:
                    continue  # a connection that worked before died (the server restarted): try a new one
                raise DatabaseError(f"lost the database connection: {first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise DatabaseError(f"database error: {first_line(exc)}") from exc
            if raw is not None and raw.conn is conn:
                raw.attach()
            else:
                prepared = await RawCheck.prepare(conn)
                if prepared is not None:
                    self._raw_checks[lane] = prepared
            return key
        raise AssertionError("unreachable")

    async def _connect_async(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, **CONNECT_OPTIONS)
        for statement, params in self._session_setup():
            await conn.execute(statement, params)
        return conn

    async def _close_check_connection(self, lane: int) -> None:
        raw = self._raw_checks.pop(lane, None)
        if raw is not None:
            raw.detach()
        conn = self._check_conns.pop(lane, None)
        if conn is not None:
            with suppress(Exception):
                await conn.close()

    async def aclose(self) -> None:
        for lane in list(self._check_conns):
            await self._close_check_connection(lane)

    def orders_answer(self) -> tuple[PublicationKey, bytes]:
        report = self.run(metrics.report)
        return _key(report.publication_id, report.published_at), _json_bytes(report.as_json())

    def dashboard_data(self, window: conversion.Window | None = None) -> dashboard.DashboardData:
        """The dashboard's rows, read on two pooled connections at once when a second one is free."""

        def read(db: Database) -> dashboard.DashboardData:
            try:
                conn = self.pool.getconn(timeout=HELPER_WAIT_SECONDS)
            except PoolTimeout:
                return dashboard.dashboard_data(db, window)  # db has no URL: the queries run on it in turn
            try:
                helper = Database(conn=conn, schema=self.schema, display_url=self.display_url)
                return dashboard.dashboard_data(db, window, helper)
            finally:
                self.pool.putconn(conn)

        return self.run(read)

    def dashboard_answer(self) -> tuple[PublicationKey, bytes]:
        data = self.dashboard_data()
        return _key(data.report.publication_id, data.report.published_at), dashboard.render_page(data).encode()

    def windowed_answer(self, kind: str, window: conversion.Window) -> tuple[PublicationKey, bytes]:
        """/metrics/orders, /metrics/conversion, /metrics/referrers or /dashboard over a window of first sessions."""
        if kind == "dashboard":
            data = self.dashboard_data(window)
            return _key(data.report.publication_id, data.report.published_at), dashboard.render_page(data).encode()
        if kind == "referrers":
            result = self.run(lambda db: referrers.referrer_report(db, window))
            return _key(result.publication_id, result.published_at), _json_bytes(result.as_json())
        report = self.run(lambda db: metrics.report(db, window))
        body = report.as_json() if kind == "orders" else report.conversion
        return _key(report.publication_id, report.published_at), _json_bytes(body)

    def referrers_answer(self) -> tuple[PublicationKey, bytes]:
        result = self.run(referrers.referrer_report)
        return _key(result.publication_id, result.published_at), _json_bytes(result.as_json())

    def run_figures(self) -> monitoring.RunFigures:
        """The run figures for /metrics; when the database fails, figures saying so (never an error)."""
        try:
            return self.run(monitoring.figures_or_down)
        except XccelError:
            return monitoring.RunFigures(database_up=False)


class _NotRaw(Exception):
    """RawCheck cannot answer (no prepared statement, or the query failed): psycopg asks, and says why."""


class RawCheck:
    """The check's steady state: the prepared statement sent through libpq, its one row compared as text.

    Checks come many times a second and almost always find the publication they found before, so this
    skips what psycopg does for every query (its cursor, its generators, converting the row, registering
    the socket with the event loop and removing it again): it sends the prepared statement, and a reader
    attached to the socket for the connection's life collects the result. The row is converted (with
    psycopg's own loaders) only when its text differs from the last one's. Nothing else uses the connection
    while the reader is attached (SharedCheck runs one check per lane at a time; psycopg's turns detach it).
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.broken = False  # the connection failed, or a check was cut off with its answer still to come
        self._text: tuple[bytes | None, bytes | None] | None = None  # the last row read, as text
        self._key: PublicationKey = None  # its key
        self._waiting: asyncio.Future[list[pq.abc.PGresult]] | None = None
        self._results: list[pq.abc.PGresult] = []
        self._fd: int | None = None  # the socket, while the reader is attached

    @classmethod
    async def prepare(cls, conn: psycopg.AsyncConnection[Any]) -> RawCheck | None:
        """A RawCheck on conn, attached; None when the statement cannot be prepared (e.g. no schema yet)."""
        try:
            await conn.execute(
                sql.SQL("PREPARE {} AS {}").format(sql.Identifier(CHECK_STATEMENT), sql.SQL(LATEST_PUBLICATION_KEY))
            )
        except psycopg.Error:
            return None
        check = cls(conn)
        check.attach()
        return check

    def attach(self) -> None:
        fd = self.conn.pgconn.socket
        asyncio.get_running_loop().add_reader(fd, self._readable)
        self._fd = fd

    def detach(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None

    async def key(self) -> PublicationKey:
        if self.broken or self._fd is None:
            raise _NotRaw
        pgconn = self.conn.pgconn
        self._waiting = done = asyncio.get_running_loop().create_future()
        self._results = []
        try:
            pgconn.send_query_prepared(CHECK_STATEMENT.encode(), None)
            if pgconn.flush() != 0:
                raise psycopg.OperationalError("the check could not be sent whole")
            results = await done
        except BaseException:
            self.broken = True
            self.detach()
            raise
        finally:
            self._waiting = None
        if len(results) != 1 or results[0].status != pq.ExecStatus.TUPLES_OK:
            raise _NotRaw
        result = results[0]
        if result.ntuples == 0:
            return None
        text = (result.get_value(0, 0), result.get_value(0, 1))
        if text != self._text:
            loader = Transformer(self.conn)
            loader.set_pgresult(result)
            publication_id, published_at = loader.load_row(0, tuple)
            self._text, self._key = text, (publication_id, published_at)
        return self._key

    def _readable(self) -> None:
        pgconn, waiting = self.conn.pgconn, self._waiting
        try:
            pgconn.consume_input()  # also when idle: a closed connection then fails here, once
            while waiting is not None and not waiting.done() and not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    waiting.set_result(self._results)
                else:
                    self._results.append(result)
        except Exception as exc:
            self.broken = True
            self.detach()
            if waiting is not None and not waiting.done():
                waiting.set_exception(exc)


def _key(publication_id: int | None, published_at: datetime | None) -> PublicationKey:
    return None if publication_id is None or published_at is None else (publication_id, published_at)


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return mask_password(lines[0] if lines else type(exc).__name__)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"
