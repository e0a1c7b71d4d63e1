"""The definitions of sessions and of the metrics (README: Definitions, Session rules), written as plain
sequential Python to check the SQL against.

Deliberately naive: one customer at a time, one event at a time, each rule an `if`. It shares no code
with sql/sessionize.sql; it is written from the definitions' text, not ported from the SQL.

Input: event dicts after parsing (`event_id`, `event_type`, `customer_id`, `timestamp` as an aware
datetime, optional `referrer` and `page`), in the order the lines were read. Output: the rows xccel
should publish in tb_events and sessions, the number of sessions cut by the cap, and every metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
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
    # "H hours or more after" over whole microseconds: a cap below one microsecond acts as one
    cap = (
        max(timedelta(hours=rules.max_session_hours), timedelta(microseconds=1))
        if rules.max_session_hours is not None
        else None
    )

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
    # A customer's first order session is their lowest-numbered session with an order; every one of their
    # sessions carries its number (None when they never ordered).
    for session in sessions:
        numbers_with_order = [
            other["session_number"]
            for other in sessions
            if other["customer_id"] == session["customer_id"] and other["has_order"]
        ]
        session["first_order_session_number"] = min(numbers_with_order) if numbers_with_order else None

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


# ------------------------------------------------------------------------------------------------------------
# Going past a median: a window on first sessions, conversion by visit number (Kaplan–Meier with
# censoring), and 95 % intervals. Written from the definitions and the textbook formulas, exactly where it can be
# (fractions, integer binomials), sharing no code with xccel_cli/conversion.py or the SQL.

Z95 = 1.959963984540054


def in_window(sessions: list[dict[str, Any]], since: date | None, until: date | None) -> list[dict[str, Any]]:
    """The sessions of customers whose first session starts on since .. until (UTC days, both inclusive)."""
    first_start: dict[int, datetime] = {}
    for session in sessions:
        if session["session_number"] == 1:
            first_start[session["customer_id"]] = session["started_at"]
    kept = set()
    for customer, started in first_start.items():
        day = started.astimezone(UTC).date()
        if (since is None or day >= since) and (until is None or day <= until):
            kept.add(customer)
    return [s for s in sessions if s["customer_id"] in kept]


def windowed_metrics(
    sessions: list[dict[str, Any]], tb_events: list[dict[str, Any]], since: date | None, until: date | None
) -> dict[str, Any]:
    kept = in_window(sessions, since, until)
    customers = {s["customer_id"] for s in kept}
    return metrics(kept, sum(1 for e in tb_events if e["customer_id"] in customers))


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The two roots p of (successes/trials - p)^2 = z^2 p (1 - p) / trials."""
    p_hat = successes / trials
    z2n = Z95 * Z95 / trials
    a = 1 + z2n
    b = -(2 * p_hat + z2n)
    c = p_hat * p_hat
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def median_interval(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """[x(l), x(n+1-l)] with l the largest rank whose two-sided binomial tail 2 P(B < l) is at most 5 %,
    B ~ Binomial(n, 1/2), counted with integers; (None, None, None) when even l = 1 fails."""
    n = len(values)
    ordered = sorted(values)
    best = None
    for rank in range(1, n // 2 + 2):
        tail = Fraction(sum(math.comb(n, i) for i in range(rank)), 2**n)
        if 2 * tail <= Fraction(5, 100) and rank <= n + 1 - rank:
            best = (rank, tail)
    if best is None:
        return None, None, None
    rank, tail = best
    return ordered[rank - 1], ordered[n - rank], float(1 - 2 * tail)


def median_intervals(sessions: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None, float | None]]:
    """The intervals of the three medians of metrics(), over the same samples."""
    per_customer: dict[int, list[dict[str, Any]]] = {}
    for session in sessions:
        per_customer.setdefault(session["customer_id"], []).append(session)
    visits: list[float] = []
    durations: list[float] = []
    totals: list[float] = []
    for customer_sessions in per_customer.values():
        orders = [s["session_number"] for s in customer_sessions if s["has_order"]]
        if orders:
            before = [s["duration_minutes"] for s in customer_sessions if s["session_number"] < min(orders)]
            visits.append(min(orders) - 1)
            durations.extend(before)
            totals.append(sum(before))
    return {
        "median_visits_before_order": median_interval(visits),
        "median_session_duration_minutes_before_order": median_interval(durations),
        "median_total_minutes_before_order": median_interval(totals),
    }


def conversion_by_visit(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """Kaplan–Meier over session numbers, one customer at a time: each customer walks their sessions;
    at each one they are at risk until their first order (an event) or their last session (censored)."""
    per_customer: dict[int, list[dict[str, Any]]] = {}
    for session in sessions:
        per_customer.setdefault(session["customer_id"], []).append(session)
    rows: dict[int, dict[str, int]] = {}
    for customer_sessions in per_customer.values():
        ordered = sorted(customer_sessions, key=lambda s: s["session_number"])
        bought = False
        for session in ordered:
            k = session["session_number"]
            row = rows.setdefault(k, {"customers_reached": 0, "at_risk": 0, "first_orders": 0, "censored": 0})
            row["customers_reached"] += 1
            if bought:
                continue
            row["at_risk"] += 1
            if session["has_order"]:
                row["first_orders"] += 1
                bought = True
            elif session is ordered[-1]:
                row["censored"] += 1
    survival = Fraction(1)
    greenwood = Fraction(0)
    result = []
    for k in sorted(rows):
        row = rows[k]
        if row["at_risk"] == 0:
            continue
        d, n = row["first_orders"], row["at_risk"]
        survival *= 1 - Fraction(d, n)
        if d < n:
            greenwood += Fraction(d, n * (n - d))
        band: tuple[float | None, float | None] = (None, None)
        if 0 < survival < 1:
            log_s = math.log(survival)
            c = Z95 * math.sqrt(greenwood) / abs(log_s)
            # the log(-log S) interval, written as bounds on -log S
            band = (1 - math.exp(log_s * math.exp(-c)), 1 - math.exp(log_s * math.exp(c)))
        result.append(
            {
                "session_number": k,
                **row,
                "hazard": d / n,
                "hazard_interval": wilson(d, n),
                "cumulative_share": float(1 - survival),
                "exact_share": 1 - survival,
                "cumulative_interval": band,
            }
        )

    def first_at_half(values: list[Any]) -> int | None:
        return next(
            (r["session_number"] for r, v in zip(result, values, strict=True) if v is not None and v >= 0.5 - 1e-12),
            None,
        )

    return {
        "rows": result,
        "km_median_order_session": next(
            (r["session_number"] for r in result if r["exact_share"] >= Fraction(1, 2)), None
        ),
        "km_median_interval": (
            first_at_half([r["cumulative_interval"][1] for r in result]),
            first_at_half([r["cumulative_interval"][0] for r in result]),
        ),
    }


def weekly_medians(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The two old medians per Monday-starting UTC week of the customers' first session."""
    by_week: dict[date, list[dict[str, Any]]] = {}
    first_week: dict[int, date] = {}
    for session in sessions:
        if session["session_number"] == 1:
            day = session["started_at"].astimezone(UTC).date()
            first_week[session["customer_id"]] = day - timedelta(days=day.weekday())
    for session in sessions:
        by_week.setdefault(first_week[session["customer_id"]], []).append(session)
    rows = []
    for week in sorted(by_week):
        figures = metrics(by_week[week], 0)
        rows.append(
            {
                "week_start": week,
                "customers": figures["customers"],
                "customers_with_orders": figures["customers_with_orders"],
                "median_visits_before_order": figures["median_visits_before_order"],
                "median_session_duration_minutes_before_order": figures["median_session_duration_minutes_before_order"],
            }
        )
    return rows
