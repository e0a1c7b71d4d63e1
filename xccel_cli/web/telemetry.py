"""The server's own figures for GET /metrics: requests and their latency by endpoint and status, beside the
run figures (xccel_cli.monitoring) read from the database at each scrape.

Requests are counted in plain integers on the event loop (the only writer, and /metrics is rendered there
too), and turned into a counter and a histogram family by a collector at scrape time: the hot path pays a
dictionary lookup and an increment, not the client library's locked value objects.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from xccel_cli.monitoring import FiguresCollector, RunFigures
from xccel_cli.web.negotiation import TEXT, negotiate

# from a cached answer (well under a millisecond) to a recomputed dashboard (a fraction of a second)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OPENMETRICS = "application/openmetrics-text"
OTHER = "other"  # any path that is not an endpoint: one label, whatever clients send


class _Requests:
    """Per (endpoint, status): requests per latency bucket (the last one: above every bound) and their sum."""

    __slots__ = ("buckets", "seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0


class RequestMetrics(Collector):
    def __init__(self, endpoints: frozenset[str]) -> None:
        self.endpoints = endpoints
        self._requests: dict[tuple[str, int], _Requests] = {}
        self.figures = FiguresCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.registry.register(self.figures)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        requests = self._requests.get((endpoint, status))
        if requests is None:
            requests = self._requests[(endpoint, status)] = _Requests()
        requests.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        requests.seconds += seconds

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "xccel_http_requests",
            "HTTP requests answered, by endpoint (path; 'other' for unknown paths) and status",
            labels=["endpoint", "status"],
        )
        histogram = HistogramMetricFamily(
            "xccel_http_request_duration_seconds",
            "Time from receiving a request to sending its answer, by endpoint and status",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), requests in sorted(self._requests.items()):
            labels = [endpoint, str(status)]
            total = sum(requests.buckets)
            counter.add_metric(labels, total)
            cumulative, running = [], 0
            for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), requests.buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric(labels, cumulative, requests.seconds)
        yield counter
        yield histogram

    def exposition(self, figures: RunFigures, accept: str | None) -> tuple[bytes, str]:
        """(body, content type): the Prometheus text format, or OpenMetrics when the scraper asks for it."""
        self.figures.figures = figures
        # choose_encoder picks OpenMetrics whenever the header names it, q=0 included: the q-values decide here
        chosen = negotiate(accept, (TEXT, OPENMETRICS))
        encoder, content_type = choose_encoder(accept if accept and chosen == OPENMETRICS else "")
        return encoder(self.registry), content_type
