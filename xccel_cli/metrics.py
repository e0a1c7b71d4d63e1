"""`xccel report`: the metrics, computed by the SQL files a user can also run with psql."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from xccel_cli.conversion import Window, conversion, median_intervals
from xccel_cli.db import Database
from xccel_cli.publications import latest_publication
from xccel_cli.schema import require_schema

DEFINITIONS: dict[str, str] = {
    "median_visits_before_order": "Median, over customers with an order, of the sessions before the session "
    "of their first order (0 = ordered in the first session).",
    "median_session_duration_minutes_before_order": "Median duration (last event minus first event, minutes) "
    "of the sessions that come before their customer's first order session.",
    "median_total_minutes_before_order": "Median, over customers with an order, of the summed duration of "
    "their sessions before the first order session (0 for first-session buyers).",
    "customers": "Customers with at least one sessionized event (events with an integer customer-id).",
    "customers_with_orders": "Of those, customers with at least one placed_order event.",
    "sessions": "Sessions: bursts of a customer's events separated by the inactivity gap (and the other rules).",
    "events": "Sessionized events (rows of tb_events; duplicate event ids count once).",
    "cut_sessions": "Sessions ended by --max-session-hours (0 when no cap is set).",
    "window": "The figures cover customers whose first session starts in this window (UTC days, both bounds "
    "inclusive; null: open). cut_sessions and rules are the publication's.",
    "median_intervals": "95 % interval of each median: the exact distribution-free interval between two order "
    "statistics of its sample (null bounds: fewer than 6 values).",
    "conversion": "Conversion by visit number: per session number k, customers at risk, first orders, the hazard "
    "and the Kaplan–Meier share bought by k, with 95 % intervals; its median beside the buyers-only one.",
}

# Each median comes from sql/<its name>.sql (the old script's query_1..3.sql are psql aliases of them).
MEDIANS = (
    "median_visits_before_order",
    "median_session_duration_minutes_before_order",
    "median_total_minutes_before_order",
)
# The headline figures of a report, in the order the report shows them.
HEADLINE = (*MEDIANS, "customers", "customers_with_orders", "sessions", "events")


@dataclass
class Report:
    median_visits_before_order: float | None
    median_session_duration_minutes_before_order: float | None
    median_total_minutes_before_order: float | None
    customers: int
    customers_with_orders: int
    sessions: int
    events: int
    cut_sessions: int = 0
    rules: dict[str, Any] | None = None
    published_at: datetime | None = None
    publication_id: int | None = None
    window: dict[str, Any] = field(default_factory=lambda: Window().as_json())
    median_intervals: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["published_at"] = self.published_at.isoformat() if self.published_at else None
        return data


def report(db: Database, window: Window | None = None) -> Report:
    """Every figure from one consistent read of the published tables, over the customers whose first session
    starts in the window (default: all)."""
    window = window or Window()
    require_schema(db)
    with db.published_snapshot():
        values: dict[str, Any] = {}
        for median in MEDIANS:
            values[median] = db.query_file(f"{median}.sql", window.settings())[0][median]
        values.update(db.query_file("report_counts.sql", window.settings())[0])
        intervals = median_intervals(db, window)
        by_visit = conversion(db, window, values["median_visits_before_order"])
        published = latest_publication(db)
    return Report(
        **values,
        cut_sessions=published["cut_sessions"] if published else 0,
        rules=published["rules"] if published else None,
        published_at=published["published_at"] if published else None,
        publication_id=published["publication_id"] if published else None,
        window=window.as_json(),
        median_intervals={key: interval.as_json() for key, interval in intervals.items()},
        conversion=by_visit.as_json(),
    )
