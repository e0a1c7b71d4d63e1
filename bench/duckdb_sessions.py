"""What a data engineer would try first today: DuckDB reading the NDJSON dump and sessionizing it itself.

The same job as `xccel run-all` with the default rules, without PostgreSQL: read the dump, keep logged-in
events (first line wins for a repeated id), the same window functions (previous event per customer in
("timestamp", event id) order, a gap of 30 minutes or more starts a session, a running count numbers
them), tb_events and sessions written as tables of an on-disk DuckDB database, and the same medians as
sql/query_*.sql. One JSON object on stdout with the figures. Run as its own process; the bench measures
its wall time and peak RSS from outside.

    python bench/duckdb_sessions.py --path events.ndjson --database /tmp/x.duckdb
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The fields xccel reads; other fields of `event` are not parsed.
COLUMNS = "{'id': 'BIGINT', 'type': 'VARCHAR', 'event': 'STRUCT(\"customer-id\" BIGINT, \"timestamp\" VARCHAR)'}"

BUILD = """
SET TimeZone = 'UTC';
CREATE OR REPLACE TABLE tb_events AS
WITH lines AS (
    SELECT row_number() OVER () AS line_number, id, type, event
    FROM read_json(?, format = 'newline_delimited', columns = {columns})
),
logged_in AS (
    SELECT id AS event_id, type AS event_type, event."customer-id" AS customer_id,
           CAST(event."timestamp" AS TIMESTAMPTZ) AS "timestamp"
    FROM lines
    WHERE event."customer-id" IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY line_number) = 1
),
with_previous AS (
    SELECT *, lag("timestamp") OVER per_customer AS prev_timestamp
    FROM logged_in
    WINDOW per_customer AS (PARTITION BY customer_id ORDER BY "timestamp", event_id)
),
flagged AS (
    SELECT *,
           (prev_timestamp IS NULL OR "timestamp" - prev_timestamp >= INTERVAL 30 MINUTE)::int AS new_session
    FROM with_previous
)
SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp, new_session,
       epoch("timestamp") - epoch(prev_timestamp) AS "time",
       sum(new_session) OVER (
           PARTITION BY customer_id ORDER BY "timestamp", event_id ROWS UNBOUNDED PRECEDING
       ) AS increment
FROM flagged;

CREATE OR REPLACE TABLE sessions AS
SELECT customer_id || '_' || increment AS session_id, customer_id, increment AS session_number,
       min("timestamp") AS started_at, max("timestamp") AS ended_at,
       (epoch(max("timestamp")) - epoch(min("timestamp"))) / 60 AS duration_minutes,
       count(*) AS event_count, bool_or(event_type = 'placed_order') AS has_order
FROM tb_events
GROUP BY customer_id, increment;
"""

REPORT = """
WITH per_session AS (
    SELECT customer_id, session_number, duration_minutes,
           min(session_number) FILTER (WHERE has_order) OVER (PARTITION BY customer_id) AS first_order_session
    FROM sessions
),
per_customer AS (
    SELECT customer_id, any_value(first_order_session) AS first_order_session,
           coalesce(sum(duration_minutes) FILTER (WHERE session_number < first_order_session), 0) AS total_minutes
    FROM per_session
    WHERE first_order_session IS NOT NULL
    GROUP BY customer_id
)
SELECT (SELECT quantile_cont(first_order_session - 1, 0.5) FROM per_customer),
       (SELECT quantile_cont(duration_minutes, 0.5) FROM per_session WHERE session_number < first_order_session),
       (SELECT quantile_cont(total_minutes, 0.5) FROM per_customer),
       (SELECT count(DISTINCT customer_id) FROM sessions),
       (SELECT count(*) FROM per_customer),
       (SELECT count(*) FROM sessions),
       (SELECT count(*) FROM tb_events)
"""

KEYS = (
    "median_visits_before_order",
    "median_session_duration_minutes_before_order",
    "median_total_minutes_before_order",
    "customers",
    "customers_with_orders",
    "sessions",
    "events",
)


def run(path: Path, database: Path) -> dict[str, Any]:
    import duckdb

    with duckdb.connect(str(database)) as conn:
        statements = [s for s in BUILD.replace("{columns}", COLUMNS).split(";") if s.strip()]
        for statement in statements:
            conn.execute(statement, [str(path)] if "?" in statement else None)
        row = conn.execute(REPORT).fetchone()
    assert row is not None
    return {key: (float(value) if isinstance(value, float) else value) for key, value in zip(KEYS, row, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--path", type=Path, required=True, help="the dump (newline-delimited JSON)")
    parser.add_argument("--database", type=Path, required=True, help="the DuckDB database file to write")
    args = parser.parse_args()
    json.dump(run(args.path, args.database), sys.stdout)
    print()


if __name__ == "__main__":
    main()
