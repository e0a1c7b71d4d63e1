"""The ASGI layer in front of the FastAPI app: what every answer shares, in one place.

Front, the outermost layer, does for every request what does not depend on the route: HEAD answered as
GET without the body; CORS (off unless origins are configured: preflights for GET/HEAD, and the
Access-Control-* headers); the security headers; 406 when the Accept header admits nothing an endpoint
sends; relative redirects from a trailing slash; the request counter and latency histogram; and any
exception left over becomes a JSON 500. It also answers the two hot JSON endpoints straight from their
caches (fast paths): once the check and the cache are cheap, FastAPI's routing and response objects are
most of the cost of a request, and under load that cost is latency. The routes stay the implementation
of record (they describe the endpoints in /openapi.json and build the same answer from the same cache),
and any failure on a fast path is handed to them, so errors are answered (and logged) in one place.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xccel_cli.web.cache import CachedAnswer, Headers
from xccel_cli.web.negotiation import negotiate
from xccel_cli.web.service import describe
from xccel_cli.web.telemetry import OTHER, RequestMetrics

log = logging.getLogger(__name__)

# the dashboard is one self-contained page: inline CSS and SVG, no script, nothing fetched
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)
SECURITY_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
]
NO_STORE = b"no-store"
CORS_METHODS = ("GET", "HEAD")
CORS_REQUEST_HEADERS = b"Accept, If-None-Match, If-Modified-Since"
CORS_EXPOSED_HEADERS = b"ETag, Retry-After, Vary"
CORS_MAX_AGE = b"600"
MAX_PATH_IN_ERRORS = 120  # an error names the path it is about, but never echoes an unbounded one


def clipped(path: str) -> str:
    return path if len(path) <= MAX_PATH_IN_ERRORS else path[:MAX_PATH_IN_ERRORS] + "..."


def no_store_headers(content_type: bytes, body: bytes) -> Headers:
    """The first headers of an answer no cache may keep (an error, an outage): its type and length, no-store."""
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"cache-control", NO_STORE)]


def json_error(status: int, message: str, extra: Headers | None = None) -> tuple[int, Headers, bytes]:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    return status, no_store_headers(b"application/json", body) + (extra or []), body


class Front:
    def __init__(
        self,
        app: ASGIApp,
        *,
        offers: dict[str, tuple[str, ...]],
        fast_paths: dict[str, Callable[[], Awaitable[CachedAnswer]]],
        telemetry: RequestMetrics,
        cors_origins: tuple[str, ...] = (),
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        names = [host.rstrip(".").encode() for host in allowed_hosts]
        self.hosts = frozenset(name for name in names if not name.startswith(b"*."))
        self.host_suffixes = tuple(name[1:] for name in names if name.startswith(b"*."))  # ".example.com"
        self.check_host = bool(allowed_hosts)
        self.offers = offers
        self.fast_paths = fast_paths
        self.telemetry = telemetry
        self.cors_origins = frozenset(origin.encode() for origin in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        accept = if_none_match = accept_encoding = if_modified_since = None
        origin: bytes | None = None
        preflight_method: bytes | None = None
        host = b""
        repeated = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"accept":
                if accept is None:
                    accept = value.decode("latin-1")
                else:  # repeated lines: one list (RFC 9110, 5.3), joined by commas in order
                    accept, repeated = f"{accept}, {value.decode('latin-1')}", True
            elif name == b"if-none-match":
                if if_none_match is None:
                    if_none_match = value.decode("latin-1")
                else:
                    if_none_match, repeated = f"{if_none_match}, {value.decode('latin-1')}", True
            elif name == b"accept-encoding":
                if accept_encoding is None:
                    accept_encoding = value.decode("latin-1")
                else:
                    accept_encoding, repeated = f"{accept_encoding}, {value.decode('latin-1')}", True
            elif name == b"if-modified-since":
                if if_modified_since is None:
                    if_modified_since = value.decode("latin-1")
                else:  # not a list: two dates on one line are no HTTP-date, so the condition is ignored
                    if_modified_since, repeated = f"{if_modified_since}, {value.decode('latin-1')}", True
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight_method = value

        if repeated:  # the routes read these as one line too
            joined = _with_lists_joined(scope["headers"], accept, if_none_match, accept_encoding, if_modified_since)
            scope = {**scope, "headers": joined}
        shared = SECURITY_HEADERS
        if self.cors_origins and origin is not None and origin in self.cors_origins:
            shared = [
                *SECURITY_HEADERS,
                (b"access-control-allow-origin", origin),
                (b"access-control-expose-headers", CORS_EXPOSED_HEADERS),
            ]
        head = method == "HEAD"
        status = 500
        try:
            if self.check_host and not self._host_allowed(host):
                status, headers, body = json_error(400, "this server does not answer for that Host")
            elif method == "OPTIONS" and self.cors_origins and origin is not None and preflight_method is not None:
                status, headers, body = self._preflight(origin, preflight_method)
                shared = SECURITY_HEADERS  # the preflight's own Access-Control-* headers, not a request's
            elif head or method == "GET":
                offers = self.offers.get(path)
                # a query (since/until) is the route's: the fast paths answer the plain figures only
                fast = None if scope.get("query_string") else self.fast_paths.get(path)
                if offers is None and len(path) > 1 and path.endswith("/") and path.rstrip("/") in self.offers:
                    status, headers, body = self._slash_redirect(path.rstrip("/"), scope.get("query_string", b""))
                elif offers is not None and accept is not None and negotiate(accept, offers) is None:
                    status, headers, body = json_error(
                        406, f"this endpoint sends only {', '.join(offers)}; the request's Accept admits none of it"
                    )
                else:
                    answer = None
                    if fast is not None:
                        try:
                            answer = await fast()
                        except Exception:  # the route answers again, with the error handling
                            answer = None
                    if answer is None:
                        status = await self._inner(scope, receive, send, shared, head)
                        return
                    status, headers, body = answer.respond(accept_encoding, if_none_match, if_modified_since)
            else:
                status = await self._inner(scope, receive, send, shared, head)
                return
            await send({"type": "http.response.start", "status": status, "headers": headers + shared})
            await send({"type": "http.response.body", "body": b"" if head else body})
        finally:
            telemetry = self.telemetry
            endpoint = path if path in telemetry.endpoints else OTHER
            telemetry.observe(endpoint, status, time.perf_counter() - started)

    def _host_allowed(self, host: bytes) -> bool:
        """The Host header's name (its port dropped) is a configured host, or under a *.suffix one."""
        name = host.lower()
        if name.startswith(b"["):  # [v6]:port
            name = name[: name.find(b"]") + 1]
        elif b":" in name:  # name:port
            name = name.rpartition(b":")[0]
        name = name.rstrip(b".")
        return name in self.hosts or any(name.endswith(suffix) for suffix in self.host_suffixes)

    def _preflight(self, origin: bytes, method: bytes) -> tuple[int, Headers, bytes]:
        vary = (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        if origin not in self.cors_origins:
            return json_error(403, "cross-origin requests are not allowed from this origin", [vary])
        if method.decode("latin-1") not in CORS_METHODS:
            return json_error(403, "cross-origin requests may only use GET or HEAD", [vary])
        headers = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ", ".join(CORS_METHODS).encode()),
            (b"access-control-allow-headers", CORS_REQUEST_HEADERS),
            (b"access-control-max-age", CORS_MAX_AGE),
            vary,
            (b"cache-control", NO_STORE),
        ]
        return 204, headers, b""

    @staticmethod
    def _slash_redirect(target: str, query: bytes) -> tuple[int, Headers, bytes]:
        # relative: the Host header (anyone's to write) never reaches the Location
        location = target.encode() + (b"?" + query if query else b"")
        status, headers, body = json_error(307, f"this endpoint is {target} (no trailing slash)")
        return status, [*headers, (b"location", location)], body

    async def _inner(self, scope: Scope, receive: Receive, send: Send, shared: Headers, head: bool) -> int:
        """The FastAPI app, GET for HEAD (so the routes and /openapi.json know GET only), headers added."""
        state = {"status": 500, "started": False}
        vary_origin = bool(self.cors_origins)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"cache-control" not in names:
                    headers.append((b"cache-control", NO_STORE))
                if vary_origin:
                    headers = _with_vary_origin(headers)
                message = {**message, "headers": headers + shared}
            elif message["type"] == "http.response.body" and head:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        inner_scope = {**scope, "method": "GET"} if head else scope  # a copy: the server's scope still says HEAD
        try:
            await self.app(inner_scope, receive, send_with_headers)
        except Exception as exc:
            log.error("internal error on %s %s: %s", scope.get("method"), clipped(scope.get("path", "")), describe(exc))
            if not state["started"]:
                status, headers, body = json_error(500, "internal error")
                await send({"type": "http.response.start", "status": status, "headers": headers + shared})
                await send({"type": "http.response.body", "body": b"" if head else body})
                return status
        return int(state["status"])


def _with_lists_joined(headers: Headers, *values: str | None) -> Headers:
    """The request's headers with Accept, If-None-Match, Accept-Encoding and If-Modified-Since each on one line."""
    names = (b"accept", b"if-none-match", b"accept-encoding", b"if-modified-since")
    kept = [(name, value) for name, value in headers if name not in names]
    return kept + [
        (name, value.encode("latin-1")) for name, value in zip(names, values, strict=True) if value is not None
    ]


def _with_vary_origin(headers: Headers) -> Headers:
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"origin" not in value.lower():
                headers[index] = (name, value + b", Origin")
            return headers
    return [*headers, (b"vary", b"Origin")]


class InternalErrorsAsJson:
    """Inside FastAPI's own error layer: any other exception becomes a JSON 500 and one log line, instead of
    Starlette's plain-text page and a traceback."""

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
            log.error("internal error on %s %s: %s", scope.get("method"), clipped(scope.get("path", "")), describe(exc))
            if not started:
                status, headers, body = json_error(500, "internal error")
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
