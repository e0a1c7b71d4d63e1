"""The old design's algorithm, as the bench's baseline: what xccel replaced, run on the same dump and PostgreSQL.

Faithful to the old script: the whole dump read into one pandas DataFrame (`read_json(lines=True)`), the
nested fields pulled out with row-wise `apply`, per-customer `shift` and `cumsum` after a sort, row-wise
`apply` again for the flags and session ids, and both tables written with `to_sql(if_exists='replace')`.
The medians are those of README's Definitions, computed in pandas. One JSON object on stdout: the figures,
for the bench to compare with xccel's. Run it as a separate process (the bench measures its wall time and
peak RSS from outside).

    python bench/old_design.py --source URL_OR_PATH --database-url URL
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

SESSION_GAP_SECONDS = 30 * 60


def sqlalchemy_url(database_url: str) -> str:
    """postgresql://... as SQLAlchemy's psycopg 3 dialect spells it."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgresql", "postgres") else database_url


def sessionize(source: str) -> tuple[Any, Any]:
    import pandas as pd  # type: ignore[import-untyped]

    df = pd.read_json(source, lines=True, dtype=False)
    df["customer_id"] = df["event"].apply(lambda e: e.get("customer-id") if isinstance(e, dict) else None)
    df["timestamp"] = df["event"].apply(lambda e: e.get("timestamp") if isinstance(e, dict) else None)
    df = df[df["customer_id"].notnull()].copy()
    df = df.drop_duplicates(subset="id", keep="first")
    df["customer_id"] = df["customer_id"].astype("int64")
    df["timestamp"] = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True)
    df = df.rename(columns={"id": "event_id", "type": "event_type"}).drop(columns=["event"])
    df = df.sort_values(["customer_id", "timestamp", "event_id"])
    df["prev_timestamp"] = df.groupby("customer_id")["timestamp"].shift(1)
    df["time"] = (df["timestamp"] - df["prev_timestamp"]).dt.total_seconds()
    df["new_session"] = df.apply(
        lambda row: 1 if pd.isnull(row["prev_timestamp"]) or row["time"] >= SESSION_GAP_SECONDS else 0, axis=1
    )
    df["increment"] = df.groupby("customer_id")["new_session"].cumsum()
    df["session_id"] = df.apply(lambda row: f"{row['customer_id']}_{row['increment']}", axis=1)
    df["is_order"] = df["event_type"] == "placed_order"
    sessions = (
        df.groupby(["customer_id", "increment"])
        .agg(started_at=("timestamp", "min"), ended_at=("timestamp", "max"), has_order=("is_order", "any"))
        .reset_index()
        .rename(columns={"increment": "session_number"})
    )
    sessions["duration_minutes"] = (sessions["ended_at"] - sessions["started_at"]).dt.total_seconds() / 60
    return df.drop(columns=["is_order"]), sessions


def medians(sessions: Any) -> dict[str, Any]:
    """README's Definitions: first order session, then the three medians (percentile_cont: linear interpolation)."""
    first_order = sessions[sessions["has_order"]].groupby("customer_id")["session_number"].min()
    with_first = sessions.join(first_order.rename("first_order_session"), on="customer_id", how="inner")
    before = with_first[with_first["session_number"] < with_first["first_order_session"]]
    totals = before.groupby("customer_id")["duration_minutes"].sum().reindex(first_order.index, fill_value=0.0)

    def median(series: Any) -> float | None:
        return float(series.median()) if len(series) else None

    return {
        "median_visits_before_order": median(first_order - 1),
        "median_session_duration_minutes_before_order": median(before["duration_minutes"]),
        "median_total_minutes_before_order": median(totals),
        "customers": int(sessions["customer_id"].nunique()),
        "customers_with_orders": len(first_order),
        "sessions": len(sessions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", required=True, help="the dump: an http(s) URL or a file path")
    parser.add_argument("--database-url", required=True, help="PostgreSQL URL to write tb_events_old, sessions_old")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from sqlalchemy import create_engine

    tb_events, sessions = sessionize(args.source)
    engine = create_engine(sqlalchemy_url(args.database_url))
    tb_events.to_sql("tb_events_old", engine, if_exists="replace", index=False)
    sessions.to_sql("sessions_old", engine, if_exists="replace", index=False)
    engine.dispose()
    figures = medians(sessions)
    figures["events"] = len(tb_events)
    json.dump(figures, sys.stdout)
    print()


if __name__ == "__main__":
    main()
