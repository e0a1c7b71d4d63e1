"""The definitions of issues 2 and 6, written as plain sequential Python to check the SQL against.

Deliberately naive: one customer at a time, one event at a time, each rule an `if`. It shares no code
with sql/sessionize.sql; it is written from the issue text, not ported from the SQL.

Input: event dicts after parsing (`event_id`, `event_type`, `customer_id`, `timestamp` as an aware
datetime, optional `referrer` and `page`), in the order the lines were read. Output: the rows xccel
should publish in tb_events and sessions, the number of sessions cut by the cap, and every metric.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from xccel_cli.config import SessionRules


@dataclass
class Expected:
    tb_events: list[dict[str, Any]]  # ordered by event_id
    sessions: list[dict[str, Any]]  # ordered by (customer_id, session_number)
    cut_sessions: int
    metrics: dict[str, Any]


def dedupe(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first line read wins; later lines with the same event id are dropped."""
    seen: set[int] = set()
    kept = []
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            kept.append(event)
    return kept


def median(values: list[float]) -> float | None:
    """percentile_cont(0.5): the middle value, or the mean of the two middle values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2


def _text(value: Any) -> str | None:
    """A referrer or page: an empty string counts as absent."""
    return value if value else None


def sessionize(events: Iterable[dict[str, Any]], rules: SessionRules | None = None) -> Expected:
    rules = rules or SessionRules()
    timeout = timedelta(minutes=rules.timeout_minutes)
    zone = ZoneInfo(rules.timezone)
    cap = timedelta(hours=rules.max_session_hours) if rules.max_session_hours is not None else None

    by_customer: dict[int, list[dict[str, Any]]] = {}
    for event in dedupe(events):
        if isinstance(event.get("customer_id"), int):  # anonymous events are never sessionized
            by_customer.setdefault(event["customer_id"], []).append(event)

    tb_events: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    cut_sessions = 0
    for customer_id in sorted(by_customer):
        ordered = sorted(by_customer[customer_id], key=lambda e: (e["timestamp"], e["event_id"]))
        increment = 0
        rule_session_referrer: str | None = None  # referrer of the first event of the session the rules made
        piece_started_at: datetime | None = None  # first event of the current session, cuts included
        previous: dict[str, Any] | None = None
        for event in ordered:
            at: datetime = event["timestamp"]
            referrer = _text(event.get("referrer"))
            if previous is None:
                starts_by_rule = True
            else:
                starts_by_rule = False
                if at - previous["timestamp"] >= timeout:
                    starts_by_rule = True
                if (
                    rules.split_at_midnight
                    and at.astimezone(zone).date() != previous["timestamp"].astimezone(zone).date()
                ):
                    starts_by_rule = True
                if rules.split_on_referrer and referrer is not None and referrer != rule_session_referrer:
                    starts_by_rule = True
            # The cap comes after the other rules: it only cuts inside the sessions they made.
            cut = (
                not starts_by_rule and cap is not None and piece_started_at is not None and at - piece_started_at >= cap
            )
            if starts_by_rule:
                rule_session_referrer = referrer
            if cut:
                cut_sessions += 1
            if starts_by_rule or cut:
                increment += 1
                piece_started_at = at
                sessions.append(
                    {
                        "session_id": f"{customer_id}_{increment}",
                        "customer_id": customer_id,
                        "session_number": increment,
                        "started_at": at,
                        "ended_at": at,
                        "event_count": 0,
                        "has_order": False,
                        "landing_page": _text(event.get("page")),
                        "referrer": referrer,
                    }
                )
            session = sessions[-1]
            session["ended_at"] = at
            session["event_count"] += 1
            session["has_order"] = session["has_order"] or event["event_type"] == "placed_order"
            tb_events.append(
                {
                    "event_id": event["event_id"],
                    "event_type": event["event_type"],
                    "customer_id": customer_id,
                    "timestamp": at,
                    "prev_timestamp": previous["timestamp"] if previous else None,
                    "new_session": 1 if (starts_by_rule or cut) else 0,
                    "time": (at - previous["timestamp"]).total_seconds() if previous else None,
                    "increment": increment,
                    "session_id": f"{customer_id}_{increment}",
                }
            )
            previous = event
    for session in sessions:
        session["duration_minutes"] = (session["ended_at"] - session["started_at"]).total_seconds() / 60

    tb_events.sort(key=lambda row: row["event_id"])
    return Expected(tb_events, sessions, cut_sessions, metrics(sessions, len(tb_events)))


def metrics(sessions: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """Every figure of `xccel report`, straight from the README's definitions."""
    per_customer: dict[int, list[dict[str, Any]]] = {}
    for session in sessions:
        per_customer.setdefault(session["customer_id"], []).append(session)
    visits_before: list[float] = []
    durations_before: list[float] = []
    totals_before: list[float] = []
    for customer_sessions in per_customer.values():
        order_sessions = [s["session_number"] for s in customer_sessions if s["has_order"]]
        if not order_sessions:
            continue  # customers who never order count in none of the three medians
        first_order = min(order_sessions)
        before = [s["duration_minutes"] for s in customer_sessions if s["session_number"] < first_order]
        visits_before.append(first_order - 1)
        durations_before.extend(before)
        totals_before.append(sum(before))
    return {
        "median_visits_before_order": median(visits_before),
        "median_session_duration_minutes_before_order": median(durations_before),
        "median_total_minutes_before_order": median(totals_before),
        "customers": len(per_customer),
        "customers_with_orders": len(visits_before),
        "sessions": len(sessions),
        "events": events,
    }
