"""`xccel report --by referrer` and GET /metrics/referrers: sessions compared by where they came from.

Computed by sql/referrers.sql (also runnable under psql) from the published sessions table, in the same
kind of consistent read as metrics.report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from xccel_cli.conversion import Window
from xccel_cli.db import Database
from xccel_cli.publications import latest_publication
from xccel_cli.schema import require_schema

DIRECT = "(direct)"

DEFINITIONS: dict[str, str] = {
    "referrer": f"The referrer of the session's first event; {DIRECT!r} when it has none.",
    "sessions": "Sessions with this referrer.",
    "customers": "Distinct customers with at least one such session.",
    "median_duration_minutes": "Median duration_minutes of these sessions (percentile_cont(0.5)).",
    "p90_duration_minutes": "90th percentile of duration_minutes of these sessions (percentile_cont(0.9)).",
    "share_with_order": "Share of these sessions that hold a placed_order event (0 to 1).",
    "mean_events_per_session": "Mean number of events in these sessions.",
}


@dataclass(frozen=True)
class ReferrerRow:
    referrer: str
    sessions: int
    customers: int
    median_duration_minutes: float
    p90_duration_minutes: float
    share_with_order: float
    mean_events_per_session: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReferrerReport:
    """The rows, and which publication they were computed from (None: nothing published yet)."""

    rows: list[ReferrerRow]
    publication_id: int | None
    published_at: datetime | None

    def as_json(self) -> list[dict[str, Any]]:
        return [row.as_json() for row in self.rows]


def referrer_rows(db: Database, window: Window | None = None) -> list[ReferrerRow]:
    """Inside the caller's snapshot: one row per session referrer, largest first (with a window: the sessions of
    customers whose first session starts in it)."""
    return [ReferrerRow(**row) for row in db.query_file("referrers.sql", (window or Window()).settings())]


def referrer_report(db: Database, window: Window | None = None) -> ReferrerReport:
    """referrer_rows from one consistent read of the published tables, with the publication they come from."""
    require_schema(db)
    with db.published_snapshot():
        rows = referrer_rows(db, window)
        published = latest_publication(db)
    return ReferrerReport(
        rows=rows,
        publication_id=published["publication_id"] if published else None,
        published_at=published["published_at"] if published else None,
    )
