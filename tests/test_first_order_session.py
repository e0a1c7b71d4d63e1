"""sessions.first_order_session_number (migration 0004): the sessions build writes each customer's first order
session once, and every metric file reads it. Here: an incremental run that moves it, an upgrade that fills it
in for a result built before it, and the metric files (and the old query_1..3.sql) as psql runs them, with and
without a report window. The column against the oracle on hand-computed and generated cases is in
test_sessions.py and test_properties.py (assert_matches_oracle compares every column)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import run_xccel
from tests.test_sessions import ANONYMOUS, C1, C2, C3, C4, dump_lines
from tests.xccel_driver import assert_matches_oracle, event, line, metrics_of, publish, published
from xccel_cli.config import SessionRules
from xccel_cli.conversion import Window
from xccel_cli.db import Database
from xccel_cli.metrics import MEDIANS, report
from xccel_cli.pipeline import run_load, run_sessionize
from xccel_cli.schema import init_db

SQL_FOLDER = Path(__file__).resolve().parent.parent / "sql"  # psql reads the files of the checkout

# customer 5 starts three days after the others and orders in their second session
C5 = [
    event(60, 5, "2022-04-25 08:00:00"),
    event(61, 5, "2022-04-25 10:00:00", "placed_order"),
]


def first_order_numbers(db: Database) -> dict[str, int | None]:
    return {row["session_id"]: row["first_order_session_number"] for row in published(db).sessions}


def test_an_incremental_run_moves_it_for_the_customers_it_rebuilds(db: Database) -> None:
    """Customer 2 had no order (NULL on their session); a later dump gives them an order in a new session, so
    their first session carries 2 from then on; customer 1, without new events, keeps the rows carried over."""
    publish(db, dump_lines())
    assert first_order_numbers(db) == {"1_1": 2, "1_2": 2, "2_1": None, "3_1": 1, "3_2": 1, "4_1": 1}
    later = [event(21, 2, "2022-04-22 12:00:00"), event(22, 2, "2022-04-22 12:05:00", "placed_order")]
    result = publish(db, later)
    assert not result.full_refresh and result.customers_rebuilt == 1
    assert first_order_numbers(db) == {"1_1": 2, "1_2": 2, "2_1": 2, "2_2": 2, "3_1": 1, "3_2": 1, "4_1": 1}
    assert_matches_oracle(db, oracle.dedupe(C1 + C2 + C3 + C4 + [ANONYMOUS] + later))


def test_init_db_fills_it_in_for_a_result_published_and_one_staged_before_it(db: Database) -> None:
    """A database at the schema before migration 0004: a published result and a staged one without the column.
    The upgrade fills both; load then publishes the staged one as it is."""
    publish(db, dump_lines())
    expected = published(db)
    run_sessionize(db, SessionRules(), full_refresh=True)  # staged in sessions_next, not published
    with db.transaction() as conn:  # back to the schema of version 2
        for table in ("sessions", "sessions_next"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN first_order_session_number")
        conn.execute("DROP FUNCTION report_window_is_open(), report_window_customers()")
        conn.execute("DELETE FROM schema_migrations WHERE version = 4")
    assert init_db(db).applied == ["0004_first_order_session.sql"]
    assert published(db).sessions == expected.sessions
    run_load(db)
    after = published(db)
    assert after.sessions == expected.sessions
    assert metrics_of(after.report) == metrics_of(expected.report)


def psql_values(database_url: str, script: str) -> list[float | None]:
    """The values psql prints for the script's queries (each a single value; NULL as None)."""
    setup = "\\set ON_ERROR_STOP on\n\\set QUIET on\n\\pset format unaligned\n\\pset tuples_only on\n"
    setup += "\\pset null null\n\\echo values:\n"
    result = run_xccel(["db", "--psql", "--database-url", database_url], input=(setup + script).encode())
    assert result.exit_code == 0, result.stderr
    values = result.stdout.split("values:\n", 1)[1].split()
    return [None if text == "null" else float(text) for text in values]


@pytest.mark.integration
def test_the_metric_files_and_the_old_query_names_run_under_psql(db: Database, database_url: str) -> None:
    """`\\i sql/<metric>.sql` and `\\i sql/query_N.sql` (which include the named files) print the report's
    medians; with xccel.since set, those over the customers whose first session starts from that day."""
    publish(db, dump_lines() + [line(e) for e in C5])
    everyone = report(db)
    later = report(db, Window(since=date(2022, 4, 23)))
    assert later.customers == 1 and later.median_visits_before_order == 1.0  # customer 5 only
    files = [*(f"{median}.sql" for median in MEDIANS), "query_1.sql", "query_2.sql", "query_3.sql"]
    script = "".join(f"\\i {SQL_FOLDER / name}\n" for name in files)
    printed = psql_values(database_url, script + "SET xccel.since = '2022-04-23';\n" + script)
    open_medians = [getattr(everyone, median) for median in MEDIANS]
    window_medians = [getattr(later, median) for median in MEDIANS]
    assert printed == open_medians * 2 + window_medians * 2
    assert open_medians != window_medians
