"""The FastAPI app of `xccel serve`: its routes, their OpenAPI models, and errors as JSON.

Each answer is one AnswerCache (computed per publication) and one route that sends it with its
validators; a new endpoint follows the same pattern: a compute function in service.py, a cache and a
route here, its media types in OFFERS (and, if it is hot, a fast path in create_app).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import html
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, get_type_hints

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from xccel_cli import __version__, conversion, metrics, referrers
from xccel_cli.config import mask_password
from xccel_cli.errors import ConfigError, DatabaseError, StateError, XccelError
from xccel_cli.web.cache import (
    AnswerCache,
    CachedAnswer,
    Headers,
    PublicationKey,
    SharedCheck,
    WindowedAnswers,
    cached_answer,
)
from xccel_cli.web.middleware import Front, InternalErrorsAsJson, clipped, json_error, no_store_headers
from xccel_cli.web.negotiation import HTML, JSON, TEXT, negotiate
from xccel_cli.web.service import CHECK_LANES, MetricsService
from xccel_cli.web.telemetry import OPENMETRICS, RequestMetrics

log = logging.getLogger(__name__)

OUTAGE_LOG_SECONDS = 10.0
UNAVAILABLE = "the database is not answering; try again shortly"
RETRY_AFTER_OUTAGE = "5"  # seconds: the pool reconnects by itself within a few
RETRY_AFTER_NO_SCHEMA = "60"  # someone has to run init-db first

# what each endpoint can send, in the server's order of preference (for Accept negotiation and 406)
OFFERS: dict[str, tuple[str, ...]] = {
    "/": (JSON, HTML),
    "/metrics/orders": (JSON,),
    "/metrics/referrers": (JSON,),
    "/metrics/conversion": (JSON,),
    "/dashboard": (HTML,),
    "/health": (JSON,),
    "/openapi.json": (JSON,),
    "/metrics": (TEXT, OPENMETRICS),
}
# the request headers each answer depends on (beside Origin, when CORS is on)
VARY = {
    "/": "Accept",
    "/metrics/orders": "Accept",
    "/metrics/referrers": "Accept",
    "/metrics/conversion": "Accept",
    "/dashboard": "Accept, Accept-Encoding",
    "/health": "Accept",
    "/openapi.json": "Accept",
}


# ---------------------------------------------------------------------------------------------------
# Response models: /openapi.json follows the code.


def _model_of(cls: type, name: str, descriptions: dict[str, str], doc: str) -> type[BaseModel]:
    """A pydantic model with the dataclass's fields."""
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

SinceParam = Annotated[
    str | None,
    Query(
        description="Only customers whose first session starts on or after this UTC day (YYYY-MM-DD, inclusive).",
        json_schema_extra={"format": "date"},
    ),
]
UntilParam = Annotated[
    str | None,
    Query(
        description="Only customers whose first session starts on or before this UTC day (YYYY-MM-DD, inclusive).",
        json_schema_extra={"format": "date"},
    ),
]


class ErrorBody(BaseModel):
    """Every error answer (a few hundred bytes at most)."""

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


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


VALIDATOR_HEADERS = {
    "ETag": _header("Strong validator of this answer: send it in If-None-Match to get 304 while it is current."),
    "Last-Modified": _header("When the figures were published (absent while nothing is published)."),
    "Cache-Control": _header("public, no-cache: a cache may keep the answer but must revalidate it (ETag)."),
    "Vary": _header("The request headers the answer depends on."),
}
RETRY_AFTER = {"Retry-After": _header("Seconds to wait before asking again.", "integer")}


ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def documented(
    *, unavailable: str | None = None, html_outage: bool = False, validated: bool = True, json_route: bool = True
) -> dict[int | str, dict[str, Any]]:
    """The answers besides 200 that an endpoint sends, for /openapi.json. Errors are JSON on every route:
    on a route that answers HTML or text (json_route=False) that has to be said, or FastAPI would
    document them in the route's own media type."""

    def error(description: str) -> dict[str, Any]:
        return (
            {"model": ErrorBody, "description": description}
            if json_route
            else {
                "description": description,
                "content": dict(ERROR_JSON),
            }
        )

    answers: dict[int | str, dict[str, Any]] = {
        406: error("The Accept header admits no media type this endpoint sends."),
    }
    if validated:
        answers[200] = {"headers": VALIDATOR_HEADERS}
        answers[304] = {"description": "Not Modified: the ETag in If-None-Match is current (no body)."}
    if unavailable:
        outage = {**error(unavailable), "headers": RETRY_AFTER}
        if html_outage:
            outage["content"] = {**ERROR_JSON, "text/html": {"schema": {"type": "string"}}}
        answers[503] = outage
    return answers


UNAVAILABLE_TEXT = "The database is unreachable, or has no xccel schema yet."


# ---------------------------------------------------------------------------------------------------
# Sending an answer.


class Prepared(Response):
    """A response whose status, headers and body are already made (by the cache): nothing to render."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code = status
        self.raw_headers = list(headers)
        self.body = body
        self.background = None


def send_cached(request: Request, answer: CachedAnswer) -> Prepared:
    """200 with the representation the client accepts, or 304 when its copy is current."""
    headers = request.headers
    return Prepared(
        *answer.respond(headers.get("accept-encoding"), headers.get("if-none-match"), headers.get("if-modified-since"))
    )


def validated_json(request: Request, data: Any, vary: str, status: int = 200, extra: Headers | None = None) -> Prepared:
    """An uncached JSON answer, with an ETag (and 304) all the same."""
    body = json.dumps(data, default=str, separators=(",", ":")).encode()
    if status != 200:  # an error answer: no validator, and no-store like every other error
        headers = [*no_store_headers(JSON.encode(), body), (b"vary", vary.encode())]
        return Prepared(status, headers + (extra or []), body)
    return send_cached(request, cached_answer(None, body, JSON, vary, compress=False))


def unavailable_page(message: str) -> bytes:
    """The dashboard's outage page for browsers: what happened, in words, and that it will come back."""
    text = html.escape(message)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>xccel: data unavailable</title>'
        "<style>body{font:16px system-ui,sans-serif;margin:3em auto;max-width:40em;color:#222}</style></head>"
        f"<body><h1>The data is unavailable right now</h1><p>{text}</p>"
        "<p>This page works again by itself when the database answers; reload in a few seconds.</p></body></html>\n"
    ).encode()


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


# ---------------------------------------------------------------------------------------------------
# The app.


def create_app(
    service: MetricsService, cors_origins: tuple[str, ...] = (), allowed_hosts: tuple[str, ...] = ()
) -> Front:
    """The ASGI app uvicorn serves: Front, outermost, in front of the FastAPI app (see Front)."""

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
        openapi_url=None,  # served below, with an ETag like every other GET
        redirect_slashes=False,  # Front redirects, relatively: Starlette's redirect would quote the Host header
    )

    def vary(path: str) -> str:
        return VARY.get(path, "Accept") + (", Origin" if cors_origins else "")

    check = SharedCheck(service.latest_key, CHECK_LANES)
    orders_cache = AnswerCache(service.orders_answer, JSON, vary("/metrics/orders"))
    referrers_cache = AnswerCache(service.referrers_answer, JSON, vary("/metrics/referrers"))
    dashboard_cache = AnswerCache(
        service.dashboard_answer, "text/html; charset=utf-8", vary("/dashboard"), compress=True
    )
    html_type = "text/html; charset=utf-8"
    windowed = WindowedAnswers(
        service.windowed_answer,
        {
            "orders": (JSON, vary("/metrics/orders"), False),
            "referrers": (JSON, vary("/metrics/referrers"), False),
            "conversion": (JSON, vary("/metrics/conversion"), False),
            "dashboard": (html_type, vary("/dashboard"), True),
        },
    )
    telemetry = RequestMetrics(frozenset(OFFERS))
    outage = OutageLog()

    async def latest() -> PublicationKey:
        key: PublicationKey = await check.result()
        outage.answered()
        return key

    async def current(cache: AnswerCache) -> CachedAnswer:
        return await cache.get(await latest())

    async def current_in(kind: str, cache: AnswerCache | None, since: str | None, until: str | None) -> CachedAnswer:
        """The answer over a window of first sessions (since/until); without one, the plain cache's."""
        window = conversion.parse_window(since, until)
        if window.is_open and cache is not None:
            return await current(cache)
        return await windowed.get(kind, window, await latest())

    bad_window: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "A bad since/until: not a date, or since after until."}
    }

    @app.get(
        "/metrics/orders",
        response_model=OrdersReport,
        responses={**documented(unavailable=UNAVAILABLE_TEXT), **bad_window},
        summary="Visits and time before the first order (the object of `xccel report --json`)",
    )
    async def orders(request: Request, since: SinceParam = None, until: UntilParam = None) -> Response:
        return send_cached(request, await current_in("orders", orders_cache, since, until))

    @app.get(
        "/",
        response_model=OrdersReport,
        responses={
            **documented(unavailable=UNAVAILABLE_TEXT),
            303: {"description": "A client preferring text/html (by q-value) is sent to /dashboard."},
        },
        summary="The same as /metrics/orders; clients preferring HTML are sent to /dashboard",
    )
    async def root(request: Request) -> Response:
        if negotiate(request.headers.get("accept"), OFFERS["/"]) == HTML:
            # relative: the Host header never reaches a Location
            headers = {"location": "/dashboard", "vary": vary("/"), "cache-control": "no-cache"}
            return Response(status_code=303, headers=headers)
        return send_cached(request, await current(orders_cache))

    @app.get(
        "/dashboard",
        response_class=HTMLResponse,
        responses=documented(
            unavailable="The data is unavailable: an HTML page for clients preferring text/html (browsers, and "
            "clients that send no Accept), else the JSON error.",
            html_outage=True,
            json_route=False,
        )
        | {400: {"description": "A bad since/until: not a date, or since after until.", "content": dict(ERROR_JSON)}},
        summary="The dashboard: one self-contained HTML page (the same as `xccel report --html`); gzip if accepted",
    )
    async def dashboard_page(request: Request, since: SinceParam = None, until: UntilParam = None) -> Response:
        return send_cached(request, await current_in("dashboard", dashboard_cache, since, until))

    @app.get(
        "/metrics/conversion",
        response_model=ConversionReport,
        responses={**documented(unavailable=UNAVAILABLE_TEXT), **bad_window},
        summary="Conversion by visit number: hazard and Kaplan–Meier share bought per session number, 95 % "
        "intervals, the Kaplan–Meier median beside the buyers-only one (`xccel report --by visit --json`)",
    )
    async def conversion_by_visit(request: Request, since: SinceParam = None, until: UntilParam = None) -> Response:
        return send_cached(request, await current_in("conversion", None, since, until))

    @app.get(
        "/metrics/referrers",
        response_model=list[ReferrerRow],  # type: ignore[valid-type]
        responses={**documented(unavailable=UNAVAILABLE_TEXT), **bad_window},
        summary="Sessions by referrer: duration and share with an order (`xccel report --by referrer`)",
    )
    async def by_referrer(request: Request, since: SinceParam = None, until: UntilParam = None) -> Response:
        return send_cached(request, await current_in("referrers", referrers_cache, since, until))

    @app.get(
        "/health",
        response_model=Health,
        responses={**documented(), 503: {"model": Health, "headers": RETRY_AFTER}},
        summary="Whether the database answers (200) or not (503), and when data was last published",
    )
    async def health(request: Request) -> Response:
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
            retry = [(b"retry-after", RETRY_AFTER_OUTAGE.encode())]
            return validated_json(request, _health_json(body), vary("/health"), status=503, extra=retry)
        else:
            body = Health(
                status="ok",
                database="up",
                schema_ready=True,
                publication_id=key[0] if key else None,
                published_at=key[1] if key else None,
            )
        return validated_json(request, _health_json(body), vary("/health"))

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {OPENMETRICS: {"schema": {"type": "string"}}}},
            406: documented(json_route=False)[406],
        },
        summary="Prometheus metrics: the last run, the published result, and this server's requests",
    )
    async def prometheus_metrics(request: Request) -> Response:
        figures = await asyncio.to_thread(service.run_figures)
        body, content_type = telemetry.exposition(figures, request.headers.get("accept"))
        return Response(body, media_type=content_type, headers={"cache-control": "no-store", "vary": "Accept"})

    openapi_answer: list[CachedAnswer] = []

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        if not openapi_answer:
            body = json.dumps(app.openapi(), separators=(",", ":")).encode()
            openapi_answer.append(cached_answer(None, body, JSON, vary("/openapi.json"), compress=False))
        return send_cached(request, openapi_answer[0])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        path = clipped(request.url.path)
        if exc.status_code == 404:
            message = f"no such endpoint: {path} (see /openapi.json)"
        elif exc.status_code == 405:
            if headers.get("Allow", "GET") == "GET":  # Front answers HEAD wherever GET is answered
                headers["Allow"] = "GET, HEAD"
            message = f"method {clipped(request.method)} is not allowed on {path} (allowed: {headers['Allow']})"
        else:
            message = clipped(str(exc.detail))
        extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        return Prepared(*json_error(exc.status_code, message, extra))

    def outage_answer(request: Request, message: str, retry_after: str) -> Response:
        extra = [(b"retry-after", retry_after.encode())]
        if request.url.path == "/dashboard" and negotiate(request.headers.get("accept"), (HTML, JSON)) == HTML:
            body = unavailable_page(message)
            headers = [*no_store_headers(b"text/html; charset=utf-8", body), (b"vary", vary("/dashboard").encode())]
            return Prepared(503, headers + extra, body)
        path_vary = VARY.get(request.url.path)
        if path_vary:
            extra.append((b"vary", (path_vary + (", Origin" if cors_origins else "")).encode()))
        return Prepared(*json_error(503, message, extra))

    @app.exception_handler(ConfigError)
    async def bad_parameter(request: Request, exc: ConfigError) -> Response:
        return Prepared(*json_error(400, clipped(str(exc))))

    @app.exception_handler(StateError)
    async def not_ready(request: Request, exc: StateError) -> Response:
        return outage_answer(request, mask_password(str(exc)), RETRY_AFTER_NO_SCHEMA)

    @app.exception_handler(DatabaseError)
    async def unavailable(request: Request, exc: DatabaseError) -> Response:
        outage.failed(exc)
        return outage_answer(request, UNAVAILABLE, RETRY_AFTER_OUTAGE)

    app.add_middleware(InternalErrorsAsJson)
    # outside FastAPI's own layers (its telemetry hooks, body limit, error pages): what Front answers itself
    # never goes through them, and what it hands on still does
    return Front(
        app,
        offers=OFFERS,
        fast_paths={
            "/metrics/orders": lambda: current(orders_cache),
            "/metrics/referrers": lambda: current(referrers_cache),
        },
        telemetry=telemetry,
        cors_origins=cors_origins,
        allowed_hosts=allowed_hosts,
    )


def _health_json(body: Health) -> dict[str, Any]:
    """/health as JSON, published_at written like everywhere else (datetime.isoformat: '+00:00', as in
    `report --json` and /metrics/orders), not pydantic's 'Z'."""
    data = body.model_dump(mode="json")
    data["published_at"] = body.published_at.isoformat() if body.published_at else None
    return data
