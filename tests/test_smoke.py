"""The main job end to end on the shipped example dump, through the command: its exact figures."""

from __future__ import annotations

import json

from tests.conftest import ROOT, invoke_xccel

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"

# The example dump is fixed (4,000 lines; the generator spoiled 9 of them: 3 exact duplicates and 6 bad lines),
# so every figure is known. A change here is a change of behaviour: say why in the commit.
EXPECTED_RUN = {
    "lines_read": 4000,
    "loaded": 1142,
    "anonymous": 2849,
    "duplicates": 3,
    "already_loaded": 0,
    "rejected": 6,
    "reject_reasons": {
        "missing_field": 2,
        "bad_timestamp": 1,
        "bad_customer_id": 1,
        "invalid_json": 1,
        "invalid_utf8": 1,
    },
    "customers": 48,
    "customers_rebuilt": 48,
    "sessions": 314,
    "events": 1142,
}
EXPECTED_REPORT = {
    "median_visits_before_order": 2.0,
    "median_session_duration_minutes_before_order": 8.0,
    "median_total_minutes_before_order": 26.0,
    "customers": 48,
    "customers_with_orders": 24,
    "sessions": 314,
    "events": 1142,
    "cut_sessions": 0,
}


def test_run_all_on_the_example_dump(database_url: str) -> None:
    result = invoke_xccel(["run-all", "--source", str(EXAMPLE), "--json", "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    run, report = data["run"], data["report"]
    assert {key: run[key] for key in EXPECTED_RUN} == EXPECTED_RUN
    assert run["lines_read"] == run["rejected"] + run["duplicates"] + run["loaded"] + run["anonymous"]
    assert {key: report[key] for key in EXPECTED_REPORT} == EXPECTED_REPORT
    assert report["rules"] == {
        "timezone": "UTC",
        "timeout_minutes": 30,
        "max_session_hours": None,
        "split_at_midnight": False,
        "split_on_referrer": False,
    }

    again = invoke_xccel(["report", "--json", "--database-url", database_url])
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == report
