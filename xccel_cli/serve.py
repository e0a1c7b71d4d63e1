"""`xccel serve`: the metrics over HTTP.

The shape, and why:
- FastAPI on uvicorn (httptools, uvloop), one worker process: the answers are cached in the process, and
  one process keeps the embedded PostgreSQL (when no URL is configured) and the cache in one place.
  Recomputing an answer (the blocking report code) runs in a thread; the per-request check is an async
  query on the event loop; the two hot GETs skip FastAPI's routing (FastPaths).
- A small psycopg ConnectionPool whose connections default to read-only transactions. An answer is
  computed by the same code as `xccel report` (metrics.report, referrers.referrer_report: the sql/ files
  in a REPEATABLE READ READ ONLY transaction that first takes ACCESS SHARE locks, because the table swap
  on publish is not MVCC-safe on its own) and cached under the publication it was read from.
- Every request checks the latest publication with one indexed query, so an answer is never older than
  the data published when the request arrived. Concurrent requests share that query: a request joins
  only a check sent after it arrived (see SharedCheck), so under load one round trip serves many.
- Errors are JSON {"error": ...}. Neither a response nor a log line carries a traceback, SQL text or a
  connection string: database failures are answered with a fixed message and logged as one masked line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, get_type_hints

import psycopg
import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xccel_cli import __version__, conversion, dashboard, metrics, referrers
from xccel_cli.config import mask_password
from xccel_cli.db import Database
from xccel_cli.errors import ConfigError, DatabaseError, StateError, XccelError
from xccel_cli.schema import require_schema

log = logging.getLogger("xccel.serve")

T = TypeVar("T")

APPLICATION_NAME = "xccel-serve"
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 3  # one per answer being recomputed, one spare
CHECK_LANES = 2  # connections for the per-request check: a new batch need not wait for a slow one
POOL_TIMEOUT_SECONDS = 3.0  # how long a request waits for a connection before answering 503
CONNECT_TIMEOUT_SECONDS = 3
RECONNECT_TIMEOUT_SECONDS = 30.0  # after that the pool stops retrying in the background; requests retry
STATEMENT_TIMEOUT = "60s"
CONNECT_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "application_name": APPLICATION_NAME,
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
}
LATEST_PUBLICATION = "SELECT publication_id, published_at FROM publications ORDER BY publication_id DESC LIMIT 1"
OUTAGE_LOG_SECONDS = 10.0
UNAVAILABLE = "the database is not answering; try again shortly"

# (publication_id, published_at) of the newest publication; None while nothing is published.
# published_at is part of the key so that a database rebuilt from scratch (ids restarting) is noticed.
PublicationKey = tuple[int, datetime] | None


# ---------------------------------------------------------------------------------------------------
# Database side: a pool of read-only connections, and the answers computed from it.


class MetricsService:
    """The answers the server gives, computed by the report code over pooled read-only connections."""

    def __init__(self, url: str, schema: str, display_url: str) -> None:
        self.schema = schema
        self.display_url = display_url
        self._url = url
        self._check_conns: dict[int, psycopg.AsyncConnection[Any]] = {}
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

    def _session_setup(self) -> list[tuple[sql.Composable, tuple[Any, ...]]]:
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

        SharedCheck runs one fetch per lane at a time, so each connection has one user at a time.
        """
        for attempt in (1, 2):
            conn = self._check_conns.get(lane)
            reused = conn is not None and not conn.closed
            try:
                if conn is None or conn.closed:
                    conn = self._check_conns[lane] = await self._connect_async()
                cursor = await conn.execute(LATEST_PUBLICATION)
                row = await cursor.fetchone()
                return None if row is None else (row[0], row[1])
            except psycopg.errors.UndefinedTable as exc:
                await asyncio.to_thread(self.run, require_schema)  # raises the StateError that says what to do
                raise DatabaseError(f"database error: {_first_line(exc)}") from exc
            except psycopg.OperationalError as exc:
                await self._close_check_connection(lane)
                if attempt == 1 and reused:
                    continue  # a connection that worked before died (the server restarted): try a new one
                raise DatabaseError(f"lost the database connection: {_first_line(exc)}") from exc
            except psycopg.Error as exc:
                raise DatabaseError(f"database error: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    async def _connect_async(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, **CONNECT_OPTIONS)
        for statement, params in self._session_setup():
            await conn.execute(statement, params)
        return conn

    async def _close_check_connection(self, lane: int) -> None:
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

    def dashboard_answer(self) -> tuple[PublicationKey, bytes]:
        data = self.run(dashboard.dashboard_data)
        return _key(data.report.publication_id, data.report.published_at), dashboard.render_page(data).encode()

    def windowed_answer(self, kind: str, window: conversion.Window) -> tuple[PublicationKey, bytes]:
        """/metrics/orders, /metrics/conversion or /dashboard over a window of first sessions."""
        if kind == "dashboard":
            data = self.run(lambda db: dashboard.dashboard_data(db, window))
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


def _wants_html(accept: str) -> bool:
    """A browser's Accept names text/html before (or instead of) JSON; API clients send */* or JSON."""
    media = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/html" not in media:
        return False
    return "application/json" not in media or media.index("text/html") < media.index("application/json")


def _key(publication_id: int | None, published_at: datetime | None) -> PublicationKey:
    return None if publication_id is None or published_at is None else (publication_id, published_at)


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------------
# Event-loop side: one shared check per batch of requests, and answers cached by publication.


class SharedCheck:
    """Runs fetch(lane) for many concurrent awaiters at once, never giving one an old result.

    An awaiter joins the next fetch that has not started yet; a fetch already on its way may predate
    the awaiter's arrival (and miss a publish that came in between), so it is never joined. Up to
    `lanes` fetches run at once (each lane has its own connection), so a new batch need not wait for
    a slow one to come back.
    """

    def __init__(self, fetch: Callable[[int], Awaitable[Any]], lanes: int) -> None:
        self._fetch = fetch
        self._free_lanes = list(range(lanes))
        self._next: asyncio.Future[Any] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def result(self) -> Any:
        waiting = self._next
        if waiting is None:
            waiting = self._next = asyncio.get_running_loop().create_future()
            waiting.add_done_callback(_consume_exception)
            self._start_next()
        return await asyncio.shield(waiting)

    def _start_next(self) -> None:
        if self._next is None or not self._free_lanes:
            return
        lane, batch, self._next = self._free_lanes.pop(), self._next, None
        task = asyncio.create_task(self._run(lane, batch))
        self._running.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._running.discard)

    async def _run(self, lane: int, batch: asyncio.Future[Any]) -> None:
        try:
            batch.set_result(await self._fetch(lane))
        except Exception as exc:
            batch.set_exception(exc)
        finally:
            self._free_lanes.append(lane)
            self._start_next()


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # an awaiter that went away (client disconnected) must not leave "exception never retrieved" noise
    if not future.cancelled():
        future.exception()


@dataclasses.dataclass
class CachedAnswer:
    key: PublicationKey
    body: bytes


class AnswerCache:
    """One answer (a JSON body), recomputed in a thread only when the latest publication differs."""

    def __init__(self, compute: Callable[[], tuple[PublicationKey, bytes]]) -> None:
        self._compute = compute
        self._answer: CachedAnswer | None = None
        self._lock = asyncio.Lock()

    async def get(self, latest: PublicationKey) -> bytes:
        answer = self._answer
        if answer is not None and answer.key == latest:
            return answer.body
        async with self._lock:  # one recomputation at a time; the others then find it done
            answer = self._answer
            if answer is None or answer.key != latest:
                key, body = await asyncio.to_thread(self._compute)
                answer = self._answer = CachedAnswer(key, body)
        return answer.body


class WindowedAnswers:
    """Answers with since/until: one AnswerCache per (kind, window), the most recently used few kept."""

    LIMIT = 32

    def __init__(self, compute: Callable[[str, conversion.Window], tuple[PublicationKey, bytes]]) -> None:
        self._compute = compute
        self._caches: dict[tuple[str, conversion.Window], AnswerCache] = {}

    async def get(self, kind: str, window: conversion.Window, latest: PublicationKey) -> bytes:
        key = (kind, window)
        cache = self._caches.pop(key, None) or AnswerCache(lambda: self._compute(kind, window))
        self._caches[key] = cache  # the newest last: dicts keep insertion order
        while len(self._caches) > self.LIMIT:
            del self._caches[next(iter(self._caches))]
        return await cache.get(latest)


# ---------------------------------------------------------------------------------------------------
# HTTP side: response models (for /openapi.json), the app, errors as JSON.


def _model_of(cls: type, name: str, descriptions: dict[str, str], doc: str) -> type[BaseModel]:
    """A pydantic model with the dataclass's fields: the OpenAPI document follows the code."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], Field(description=descriptions.get(f.name))) for f in dataclasses.fields(cls)
    }
    return create_model(name, __doc__=doc, **fields)


ORDERS_DESCRIPTIONS = {
    **metrics.DEFINITIONS,
    "rules": "The session rules of the published result (null when nothing is published yet).",
    "published_at": "When the result was published (ISO 8601, UTC; null when nothing is published yet).",
    "publication_id": "Which publication the figures come from (null when nothing is published yet).",
    "definitions": "A one-line definition of each figure.",
}
OrdersReport = _model_of(
    metrics.Report,
    "OrdersReport",
    ORDERS_DESCRIPTIONS,
    "The figures of `xccel report --json`: visits and time before the first order.",
)
ReferrerRow = _model_of(
    referrers.ReferrerRow,
    "ReferrerRow",
    referrers.DEFINITIONS,
    "Sessions with one referrer (that of their first event); largest groups first.",
)


ConversionReport = create_model(
    "ConversionReport",
    __doc__="Conversion by visit number (`xccel report --by visit --json`), over the window asked for.",
    km_median_order_session=(int | None, Field(description=conversion.DEFINITIONS["km_median_order_session"])),
    km_median_interval=(
        dict[str, float | None],
        Field(description="95 % interval of km_median_order_session (low, high; null: not reached)."),
    ),
    buyers_median_order_session=(
        float | None,
        Field(description=conversion.DEFINITIONS["buyers_median_order_session"]),
    ),
    window=(dict[str, Any], Field(description=conversion.DEFINITIONS["window"])),
    rows=(
        list[dict[str, Any]],
        Field(
            description="Per session number k: "
            + "; ".join(
                f"{key}: {conversion.DEFINITIONS[key]}"
                for key in ("session_number", "customers_reached", "at_risk", "first_orders", "censored", "hazard")
            )
            + "; hazard_interval: its Wilson 95 % interval; cumulative_share: the Kaplan–Meier share bought by k; "
            "cumulative_interval: its Greenwood log-log 95 % interval."
        ),
    ),
    definitions=(dict[str, str], Field(description="A one-line definition of each figure.")),
)


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="What went wrong, in one line.")


class Health(BaseModel):
    """Whether the database answers, and when data was last published."""

    status: Literal["ok", "unavailable"] = Field(description="ok (HTTP 200) or unavailable (HTTP 503).")
    database: Literal["up", "down"] = Field(description="Whether the database answered just now.")
    schema_ready: bool | None = Field(
        description="Whether the xccel schema exists (else: run `xccel init-db`); "
        "null when the database does not answer."
    )
    publication_id: int | None = Field(description="The latest publication (null: nothing published yet).")
    published_at: datetime | None = Field(description="When it was published (null: nothing published yet).")
    error: str | None = Field(default=None, description="Why the database is unavailable, when it is.")


SinceParam = Annotated[
    str | None,
    Query(description="Only customers whose first session starts on or after this UTC day (YYYY-MM-DD, inclusive)."),
]
UntilParam = Annotated[
    str | None,
    Query(description="Only customers whose first session starts on or before this UTC day (YYYY-MM-DD, inclusive)."),
]

UNAVAILABLE_RESPONSE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "The database is unreachable, or has no xccel schema yet."},
}


def create_app(service: MetricsService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # what exists at startup (modules, the app) lives as long as the server: keep the collector off it
        gc.collect()
        gc.freeze()
        yield
        await service.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="xccel",
        version=__version__,
        description="Webshop sessions and time to first order, as published by `xccel load`.",
        docs_url=None,  # a browser page pulling assets from a CDN; /openapi.json is the contract
        redoc_url=None,
    )
    check = SharedCheck(service.latest_key, CHECK_LANES)
    orders_cache = AnswerCache(service.orders_answer)
    referrers_cache = AnswerCache(service.referrers_answer)
    dashboard_cache = AnswerCache(service.dashboard_answer)
    windowed = WindowedAnswers(service.windowed_answer)

    outage = OutageLog()

    async def latest() -> PublicationKey:
        key: PublicationKey = await check.result()
        outage.answered()
        return key

    async def body_of(cache: AnswerCache) -> bytes:
        return await cache.get(await latest())

    async def answer(cache: AnswerCache) -> Response:
        return Response(await body_of(cache), media_type="application/json")

    @app.get(
        "/metrics/orders",
        response_model=OrdersReport,
        responses=UNAVAILABLE_RESPONSE,
        summary="Visits and time before the first order (the object of `xccel report --json`)",
    )
    async def orders(since: SinceParam = None, until: UntilParam = None) -> Response:
        window = conversion.parse_window(since, until)
        if window.is_open:
            return await answer(orders_cache)
        return Response(await windowed.get("orders", window, await latest()), media_type="application/json")

    @app.get(
        "/",
        response_model=OrdersReport,
        responses={**UNAVAILABLE_RESPONSE, 303: {"description": "A browser (Accept: text/html) is sent to /dashboard"}},
        summary="The same as /metrics/orders (the old script's address); browsers go to /dashboard",
    )
    async def root(request: Request) -> Response:
        if _wants_html(request.headers.get("accept", "")):
            return RedirectResponse("/dashboard", status_code=303)
        return await answer(orders_cache)

    @app.get(
        "/dashboard",
        response_class=HTMLResponse,
        responses=UNAVAILABLE_RESPONSE,
        summary="The dashboard: one self-contained HTML page (the same as `xccel report --html`)",
    )
    async def dashboard_page(since: SinceParam = None, until: UntilParam = None) -> Response:
        window = conversion.parse_window(since, until)
        if window.is_open:
            return HTMLResponse(await body_of(dashboard_cache))
        return HTMLResponse(await windowed.get("dashboard", window, await latest()))

    @app.get(
        "/metrics/conversion",
        response_model=ConversionReport,
        responses={**UNAVAILABLE_RESPONSE, 400: {"model": ErrorBody, "description": "A bad since/until."}},
        summary="Conversion by visit number: hazard and Kaplan–Meier share bought per session number, 95 % "
        "intervals, the Kaplan–Meier median beside the buyers-only one (`xccel report --by visit --json`)",
    )
    async def conversion_by_visit(since: SinceParam = None, until: UntilParam = None) -> Response:
        window = conversion.parse_window(since, until)
        return Response(await windowed.get("conversion", window, await latest()), media_type="application/json")

    @app.get(
        "/metrics/referrers",
        response_model=list[ReferrerRow],  # type: ignore[valid-type]
        responses=UNAVAILABLE_RESPONSE,
        summary="Sessions by referrer: duration and share with an order (`xccel report --by referrer`)",
    )
    async def by_referrer(since: SinceParam = None, until: UntilParam = None) -> Response:
        window = conversion.parse_window(since, until)
        if window.is_open:
            return await answer(referrers_cache)
        return Response(await windowed.get("referrers", window, await latest()), media_type="application/json")

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health}},
        summary="Whether the database answers (200) or not (503), and when data was last published",
    )
    async def health() -> JSONResponse:
        try:
            key = await latest()
        except StateError:
            body = Health(status="ok", database="up", schema_ready=False, publication_id=None, published_at=None)
        except XccelError as exc:
            outage.failed(exc)
            body = Health(
                status="unavailable",
                database="down",
                schema_ready=None,
                publication_id=None,
                published_at=None,
                error=UNAVAILABLE,
            )
            return JSONResponse(_health_json(body), status_code=503)
        else:
            body = Health(
                status="ok",
                database="up",
                schema_ready=True,
                publication_id=key[0] if key else None,
                published_at=key[1] if key else None,
            )
        return JSONResponse(_health_json(body))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see /openapi.json)"
        elif exc.status_code == 405:
            if headers.get("Allow", "GET") == "GET":  # HeadAsGet answers HEAD wherever GET is answered
                headers["Allow"] = "GET, HEAD"
            message = f"method {request.method} is not allowed on {request.url.path} (allowed: {headers['Allow']})"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(ConfigError)
    async def bad_parameter(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(StateError)
    async def not_ready(request: Request, exc: StateError) -> JSONResponse:
        return JSONResponse({"error": mask_password(str(exc))}, status_code=503)

    @app.exception_handler(DatabaseError)
    async def unavailable(request: Request, exc: DatabaseError) -> JSONResponse:
        outage.failed(exc)
        return JSONResponse({"error": UNAVAILABLE}, status_code=503)

    app.add_middleware(InternalErrorsAsJson)
    app.add_middleware(
        FastPaths,
        answers={
            "/metrics/orders": lambda: body_of(orders_cache),
            "/metrics/referrers": lambda: body_of(referrers_cache),
        },
    )
    app.add_middleware(HeadAsGet)  # the outermost: FastPaths and the routes only ever see GET
    return app


def _health_json(body: Health) -> dict[str, Any]:
    """/health as JSON, published_at written like everywhere else (datetime.isoformat: '+00:00', as in
    `report --json` and /metrics/orders), not pydantic's 'Z'."""
    data = body.model_dump(mode="json")
    data["published_at"] = body.published_at.isoformat() if body.published_at else None
    return data


class HeadAsGet:
    """HEAD answered as GET without the body: the same status and headers, content-length included.

    Monitors probe with HEAD. Doing it here keeps the routes GET-only, so /openapi.json documents GET
    alone, and the fast paths need no HEAD case. uvicorn drops a HEAD response's body by itself; it is
    dropped here as well so that the answer does not depend on the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # a copy: the server keeps its own scope, which must still say HEAD
        await self.app({**scope, "method": "GET"}, receive, without_body)


class FastPaths:
    """GET /metrics/orders and /metrics/referrers answered straight from the cache.

    Once the check and the cache are this cheap, FastAPI's routing and response objects are most of the
    cost of a request (measured here: ~12k requests/s through the routes, ~20-30k for bare ASGI), and
    under load that cost is latency. The routes stay the implementation of record: they describe the
    endpoints in /openapi.json, and any failure here is handed to them, so errors are answered (and
    logged) in one place. "/" is left to its route, for content negotiation.
    """

    def __init__(self, app: ASGIApp, answers: dict[str, Callable[[], Awaitable[bytes]]]) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string")
        answer = self.answers.get(scope["path"]) if plain else None  # a query (since/until) goes to the route
        if answer is not None:
            try:
                body = await answer()
            except Exception:  # the route answers again, with the error handling
                pass
            else:
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class OutageLog:
    """Logs a database outage when it starts (then at most every OUTAGE_LOG_SECONDS) and when it ends,
    not once per failed request."""

    def __init__(self) -> None:
        self.down_since: float | None = None
        self._last_logged = 0.0

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
        if now - self._last_logged >= OUTAGE_LOG_SECONDS:
            self._last_logged = now
            log.warning("database unavailable: %s", exc)  # XccelError text: one line, password masked

    def answered(self) -> None:
        if self.down_since is not None:
            log.info("database answers again after %.1f s", time.monotonic() - self.down_since)
            self.down_since, self._last_logged = None, 0.0


class InternalErrorsAsJson:
    """Any other exception: a JSON 500 and one log line, instead of a plain-text page and a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.error("internal error on %s %s: %s", scope.get("method"), scope.get("path"), _describe(exc))
            if not started:
                await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, send)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return mask_password(lines[0] if lines else type(exc).__name__)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"


# ---------------------------------------------------------------------------------------------------
# Logging: one masked line per record, never a traceback.


class OneLineFormatter(logging.Formatter):
    """Masks passwords and replaces a traceback by the exception's one-line description."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info = record.exc_info
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        text = super().format(record)
        if exc_info and exc_info[1] is not None:
            text = f"{text} ({_describe(exc_info[1])})"
        return mask_password(" | ".join(line for line in text.splitlines() if line.strip()))


def log_config(level: str = "INFO") -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "one_line", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "one_line": {"()": f"{__name__}.OneLineFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
        },
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            "xccel": {"handlers": ["stderr"], "level": level, "propagate": False},
            "psycopg": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


# ---------------------------------------------------------------------------------------------------
# Running it.


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


@dataclasses.dataclass
class ServeResult:
    address: str


def serve(db: Database, url: str, host: str, port: int, *, access_log: bool = False) -> ServeResult:
    """Serve until SIGINT or SIGTERM.

    db is the command's own connection: its embedded server, if any, stays up while this serves; the
    connection itself is closed and a pool of read-only ones, to url, takes over.
    """
    sock = listen(host, port)
    address = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    service = MetricsService(url, db.schema, db.display_url)
    try:
        config = uvicorn.Config(
            create_app(service),
            workers=1,
            lifespan="on",
            log_config=log_config(),
            access_log=access_log,
            server_header=False,
            proxy_headers=False,
        )
        try:
            require_schema(db)
        except StateError as exc:
            log.warning("%s (until then the metrics answer 503)", exc)
        db.conn.close()
        service.open()
        log.info("serving %s (schema %s)", address, db.schema)
        StoppableServer(config).run(sockets=[sock])
    finally:
        service.close()
        sock.close()
    return ServeResult(address)
