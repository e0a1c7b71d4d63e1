"""The server's own figures for GET /metrics: requests and their latency by endpoint and status, beside the
run figures (xccel_cli.monitoring) read from the database at each scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

from xccel_cli.monitoring import FiguresCollector, RunFigures

# from a cached answer (well under a millisecond) to a recomputed dashboard (a fraction of a second)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OTHER = "other"  # any path that is not an endpoint: one label, whatever clients send


class RequestMetrics:
    def __init__(self, endpoints: frozenset[str]) -> None:
        self.endpoints = endpoints
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "xccel_http_requests",
            "HTTP requests answered, by endpoint (path; 'other' for unknown paths, 'invalid' for requests the "
            "HTTP parser refused) and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "xccel_http_request_duration_seconds",
            "Time from receiving a request to sending its answer, by endpoint and status",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.figures = FiguresCollector()
        self.registry.register(self.figures)
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def endpoint(self, path: str) -> str:
        return path if path in self.endpoints else OTHER

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, status))
        if children is None:  # labels() takes a lock and builds a key: once per (endpoint, status)
            label = str(status)
            children = self._children[(endpoint, status)] = (
                self.requests.labels(endpoint, label),
                self.latency.labels(endpoint, label),
            )
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self, figures: RunFigures, accept: str | None) -> tuple[bytes, str]:
        """(body, content type): the Prometheus text format, or OpenMetrics when the scraper asks for it."""
        self.figures.figures = figures
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
