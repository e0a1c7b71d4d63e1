"""The main job end to end on the shipped example dump, through the real command."""

from __future__ import annotations

import json

from tests.conftest import ROOT, run_xccel

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"


def test_run_all_on_the_example_dump(database_url: str) -> None:
    result = run_xccel(["run-all", "--source", str(EXAMPLE), "--json", "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    run, report = data["run"], data["report"]
    assert run["lines_read"] == 4000
    assert run["rejected"] == 6  # the generator spoiled 9 lines: 3 exact duplicates, 6 bad lines
    assert run["duplicates"] >= 3
    assert run["lines_read"] == run["rejected"] + run["duplicates"] + run["loaded"] + run["anonymous"]
    assert report["events"] == run["loaded"]
    assert report["customers"] > 0 and report["sessions"] >= report["customers"]
    for key in (
        "median_visits_before_order",
        "median_session_duration_minutes_before_order",
        "median_total_minutes_before_order",
        "customers_with_orders",
    ):
        assert key in report

    again = run_xccel(["report", "--json", "--database-url", database_url])
    assert again.exit_code == 0, again.stderr
    assert {k: v for k, v in json.loads(again.stdout).items()} == report
