"""Past a median: conversion by visit number (Kaplan–Meier), 95 % intervals, a window on first sessions.

The per-session-number counts and the Kaplan–Meier curve come from sql/conversion_by_visit.sql, the samples
behind the three medians from sql/median_samples.sql and the weekly trend from sql/weekly_medians.sql (all
runnable under psql). This module adds the intervals, which are small arithmetic over those rows:

- a share (a hazard): the Wilson score interval;
- the Kaplan–Meier share bought by session k: Greenwood's variance on the log(-log) scale, so the
  interval stays inside [0, 1]; undefined (None bounds) while the curve is at 0 (no order yet) or 1
  (everyone still at risk bought);
- a median: the exact distribution-free interval between two order statistics of the sample (the ranks
  come from the Binomial(n, 1/2) distribution), deterministic and valid for any distribution; None when
  the sample is too small (n < 6) for 95 %;
- the Kaplan–Meier median: the first session numbers at which the upper and the lower band reach one half
  (Brookmeyer–Crowley); a None bound is not reached within the data.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from xccel_cli.db import Database
from xccel_cli.errors import ConfigError

CONFIDENCE = 0.95
Z = 1.959963984540054  # the standard normal quantile for a two-sided 95 % interval
HALF = 0.5 - 1e-12  # "half of all customers": the curve comes from exp/ln sums, so allow for rounding

DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # the one form of a window's day: YYYY-MM-DD
WINDOW_BOUNDS = "UTC calendar days, both inclusive: since 00:00:00 to until 23:59:59.999999"
MEDIAN_INTERVAL_METHOD = "exact distribution-free order-statistic interval (Binomial(n, 1/2) ranks), >= 95 %"

DEFINITIONS: dict[str, str] = {
    "session_number": "k: the customer's k-th session.",
    "customers_reached": "Customers with at least k sessions.",
    "at_risk": "Customers who reached session k without an order in an earlier session.",
    "first_orders": "Of those, customers whose first order is in session k.",
    "censored": "Customers who never ordered and whose last session is k (they leave the curve there).",
    "hazard": "first_orders / at_risk: the chance that a customer still without an order buys in session k.",
    "cumulative_share": "Kaplan–Meier estimate of the share of all customers who have bought by session k: "
    "1 - product over j <= k of (1 - hazard(j)); customers who never ordered count as censored at their last "
    "session.",
    "km_median_order_session": "The first session number by which the Kaplan–Meier share reaches one half "
    "(null: not reached).",
    "buyers_median_order_session": "Median, over customers with an order, of the session number of their first "
    "order (median_visits_before_order + 1): it ignores customers who have not bought.",
    "window": "Figures cover the customers whose first session starts between since and until "
    f"({WINDOW_BOUNDS}); null bounds are open.",
    "intervals": f"95 % intervals: Wilson for a hazard, Greenwood (log-log) for the Kaplan–Meier share, "
    f"Brookmeyer–Crowley for its median, and for the three medians the {MEDIAN_INTERVAL_METHOD}.",
}


# ---------------------------------------------------------------------------------------------- window


@dataclass(frozen=True)
class Window:
    """Customers whose first session starts on since .. until (UTC days, both inclusive); None is open."""

    since: date | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            # one wording for the command line (--since/--until) and the API (?since=/&until=)
            raise ConfigError(f"the window is empty: since {self.since} is after until {self.until}")

    @property
    def is_open(self) -> bool:
        return self.since is None and self.until is None

    def settings(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "bounds": WINDOW_BOUNDS,
        }


def parse_window(since: str | None, until: str | None) -> Window:
    """A window from YYYY-MM-DD texts (the API's query parameters); a bad date is a ConfigError."""

    def day(name: str, text: str | None) -> date | None:
        if text is None:
            return None
        try:
            # fromisoformat alone also takes 20220401 and 2022-W13-7, which `report --since` refuses
            if not DAY.fullmatch(text):
                raise ValueError(text)
            return date.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{name} must be a date as YYYY-MM-DD, not {text!r}") from None

    return Window(day("since", since), day("until", until))


# ---------------------------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None

    def as_json(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}


def wilson(successes: int, trials: int, z: float = Z) -> Interval:
    """The Wilson score interval of successes / trials (None bounds when there are no trials)."""
    if trials <= 0:
        return Interval(None, None)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # clamp: at p = 0 or 1 the exact bound is 0 or 1, rounding may step past it
    return Interval(
        max(0.0, centre - half) if successes > 0 else 0.0, min(1.0, centre + half) if successes < trials else 1.0
    )


def order_statistic_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float] | None:
    """(lower rank, upper rank, coverage), 1-based, of the exact interval for the median of n values.

    The interval [x(l), x(n + 1 - l)] covers the median with probability 1 - 2 P(B <= l - 1), B ~
    Binomial(n, 1/2); l is the largest rank that keeps this at least `confidence`. None when n is too small.
    """
    alpha_half = (1 - confidence) / 2
    if n <= 0:
        return None
    log_half_n = n * math.log(0.5)
    log_choose = 0.0  # log C(n, j)
    cdf = 0.0  # P(B <= j - 1) before the step
    lower = 0
    for j in range(0, n // 2 + 1):
        if j > 0:
            log_choose += math.log(n - j + 1) - math.log(j)
        next_cdf = cdf + math.exp(log_choose + log_half_n)  # P(B <= j)
        if next_cdf > alpha_half:
            break
        lower = j + 1  # P(B <= lower - 1) = P(B <= j) <= alpha/2
        cdf = next_cdf
    if lower == 0:
        return None
    return lower, n + 1 - lower, 1 - 2 * cdf


@dataclass(frozen=True)
class MedianInterval:
    low: float | None
    high: float | None
    n: int
    coverage: float | None  # the exact coverage of [low, high] (>= 0.95), None when there is none

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def median_interval(counts: list[tuple[float, int]]) -> MedianInterval:
    """The exact interval for the median of a sample given as (value, count) in value order."""
    n = sum(count for _, count in counts)
    ranks = order_statistic_ranks(n)
    if ranks is None:
        return MedianInterval(None, None, n, None)
    lower, upper, coverage = ranks
    return MedianInterval(_order_statistic(counts, lower), _order_statistic(counts, upper), n, coverage)


def _order_statistic(counts: list[tuple[float, int]], rank: int) -> float:
    seen = 0
    for value, count in counts:
        seen += count
        if seen >= rank:
            return float(value)
    raise ValueError(f"rank {rank} beyond a sample of {seen}")


def km_band(rows: list[dict[str, Any]]) -> list[Interval]:
    """Greenwood log(-log) 95 % intervals of the Kaplan–Meier share bought, one per row."""
    bands = []
    greenwood = 0.0
    survival = 1.0
    for row in rows:
        at_risk, events = row["at_risk"], row["first_orders"]
        if events >= at_risk:
            survival = 0.0
        else:
            survival *= 1 - events / at_risk
            greenwood += events / (at_risk * (at_risk - events))
        if survival <= 0.0 or survival >= 1.0:
            bands.append(Interval(None, None))
            continue
        spread = Z * math.sqrt(greenwood) / abs(math.log(survival))
        survival_low = survival ** math.exp(spread)
        survival_high = survival ** math.exp(-spread)
        bands.append(Interval(1 - survival_high, 1 - survival_low))
    return bands


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class VisitRow:
    session_number: int
    customers_reached: int
    at_risk: int
    first_orders: int
    censored: int
    hazard: float
    hazard_interval: Interval
    cumulative_share: float
    cumulative_interval: Interval

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hazard_interval"] = self.hazard_interval.as_json()
        data["cumulative_interval"] = self.cumulative_interval.as_json()
        return data


@dataclass(frozen=True)
class Conversion:
    """Conversion by visit number over one window, and the medians beside each other."""

    rows: list[VisitRow]
    km_median_order_session: int | None
    km_median_interval: Interval
    buyers_median_order_session: float | None
    window: Window = field(default_factory=Window)

    def as_json(self) -> dict[str, Any]:
        return {
            "km_median_order_session": self.km_median_order_session,
            "km_median_interval": self.km_median_interval.as_json(),
            "buyers_median_order_session": self.buyers_median_order_session,
            "window": self.window.as_json(),
            "rows": [row.as_json() for row in self.rows],
            "definitions": dict(DEFINITIONS),
        }


def _first_reaching_half(values: list[float | None], rows: list[VisitRow]) -> int | None:
    for value, row in zip(values, rows, strict=True):
        if value is not None and value >= HALF:
            return row.session_number
    return None


def conversion_from_rows(
    raw: list[dict[str, Any]], buyers_median_visits: float | None, window: Window | None = None
) -> Conversion:
    """The result for rows of conversion_by_visit.sql (pure: no database)."""
    bands = km_band(raw)
    rows = [
        VisitRow(
            session_number=r["session_number"],
            customers_reached=r["customers_reached"],
            at_risk=r["at_risk"],
            first_orders=r["first_orders"],
            censored=r["censored"],
            hazard=r["hazard"],
            hazard_interval=wilson(r["first_orders"], r["at_risk"]),
            cumulative_share=r["cumulative_share"],
            cumulative_interval=band,
        )
        for r, band in zip(raw, bands, strict=True)
    ]
    median = _first_reaching_half([row.cumulative_share for row in rows], rows)
    # Brookmeyer–Crowley: the band's upper edge reaches one half first (the lower bound of the median)
    low = _first_reaching_half([row.cumulative_interval.high for row in rows], rows)
    high = _first_reaching_half([row.cumulative_interval.low for row in rows], rows)
    return Conversion(
        rows=rows,
        km_median_order_session=median,
        km_median_interval=Interval(None if low is None else float(low), None if high is None else float(high)),
        buyers_median_order_session=None if buyers_median_visits is None else buyers_median_visits + 1,
        window=window or Window(),
    )


def conversion(db: Database, window: Window | None = None, buyers_median_visits: float | None = None) -> Conversion:
    """Inside the caller's snapshot: conversion by visit number over the window."""
    window = window or Window()
    raw = db.query_file("conversion_by_visit.sql", window.settings())
    return conversion_from_rows(raw, buyers_median_visits, window)


MEDIAN_SAMPLES = {
    "visits_before_order": "median_visits_before_order",
    "session_duration_minutes_before_order": "median_session_duration_minutes_before_order",
    "total_minutes_before_order": "median_total_minutes_before_order",
}


def median_intervals(db: Database, window: Window | None = None) -> dict[str, MedianInterval]:
    """Inside the caller's snapshot: the 95 % interval of each of the three medians, by the report's key."""
    window = window or Window()
    samples: dict[str, list[tuple[float, int]]] = {sample: [] for sample in MEDIAN_SAMPLES}
    for row in db.query_file("median_samples.sql", window.settings()):
        samples[row["sample"]].append((row["value"], row["count"]))
    return {MEDIAN_SAMPLES[sample]: median_interval(counts) for sample, counts in samples.items()}


@dataclass(frozen=True)
class WeekRow:
    week_start: date
    customers: int
    customers_with_orders: int
    median_visits_before_order: float | None
    median_session_duration_minutes_before_order: float | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["week_start"] = self.week_start.isoformat()
        return data


def weekly_medians(db: Database, window: Window | None = None) -> list[WeekRow]:
    """Inside the caller's snapshot: the two old medians per week of the customers' first session."""
    window = window or Window()
    return [WeekRow(**row) for row in db.query_file("weekly_medians.sql", window.settings())]
