"""Conversion by visit number, the intervals and the window as a user meets them: the real `xccel report`
(--by visit, --since/--until, --json, the table), the real `xccel serve` (/metrics/conversion, since/until
on /metrics/orders and /dashboard) and the dashboard page, on the hand-computed dump of test_conversion."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_xccel
from tests.test_conversion import HAND
from tests.test_serve import Server
from tests.xccel_driver import line, write_dump
from xccel_cli.charts import DESKTOP, MIN_FONT, PHONE
from xccel_cli.dashboard import render_dashboard
from xccel_cli.db import connect
from xccel_cli.metrics import report

pytestmark = pytest.mark.integration  # the real command and server, as a user meets them


@pytest.fixture
def loaded(database_url: str, tmp_path: Path) -> str:
    path = write_dump([line(e) for e in HAND], tmp_path)
    result = run_xccel(["run-all", "--source", str(path), "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    return database_url


def svg(page: str, svg_id: str) -> str:
    """The markup of one drawing on the page."""
    start = page.index(f'<svg class="chart" id="{svg_id}"')
    return page[start : page.index("</svg>", start)]


def xccel_json(*args: str) -> Any:
    result = run_xccel(["report", "--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_report_by_visit_json_and_the_window(loaded: str) -> None:
    whole = xccel_json("--database-url", loaded)
    by_visit = xccel_json("--by", "visit", "--database-url", loaded)
    assert by_visit == whole["conversion"]
    assert [r["at_risk"] for r in by_visit["rows"]] == [4, 3, 1, 1]
    assert by_visit["km_median_order_session"] == 2 and by_visit["buyers_median_order_session"] == 2
    assert set(whole["median_intervals"]) == {
        "median_visits_before_order",
        "median_session_duration_minutes_before_order",
        "median_total_minutes_before_order",
    }
    assert whole["window"]["since"] is None and whole["window"]["until"] is None

    windowed = xccel_json("--since", "2022-04-02", "--until", "2022-04-03", "--database-url", loaded)
    assert (windowed["customers"], windowed["customers_with_orders"], windowed["sessions"]) == (2, 1, 3)
    assert windowed["window"]["since"] == "2022-04-02" and windowed["window"]["until"] == "2022-04-03"
    assert [r["at_risk"] for r in windowed["conversion"]["rows"]] == [2, 1]
    assert windowed["conversion"]["window"] == windowed["window"]


def test_bad_windows_are_one_line_errors(loaded: str) -> None:
    reversed_window = run_xccel(["report", "--since", "2022-04-05", "--until", "2022-04-01", "--database-url", loaded])
    assert reversed_window.exit_code == 3
    assert reversed_window.stderr == "Error: the window is empty: since 2022-04-05 is after until 2022-04-01\n"
    not_a_date = run_xccel(["report", "--since", "2022-13-01", "--database-url", loaded])
    assert not_a_date.exit_code == 2 and "Traceback" not in not_a_date.stderr


@pytest.mark.parametrize("columns", ["60", "80", "120"])
def test_the_visit_table_shows_every_figure_whole(loaded: str, columns: str) -> None:
    result = run_xccel(["report", "--by", "visit", "--database-url", loaded], env={"COLUMNS": columns})
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    by_visit = xccel_json("--by", "visit", "--database-url", loaded)
    for row in by_visit["rows"]:
        assert f"{row['hazard']:.1%}" in text
        assert f"{row['cumulative_share']:.1%}" in text
        for interval in (row["hazard_interval"], row["cumulative_interval"]):
            if interval["low"] is not None:
                assert f"({interval['low']:.1%}–{interval['high']:.1%})" in text
    flat = " ".join(text.split())
    assert "half of all customers have bought by session 2" in flat
    assert "buyers only: median first-order session 2" in flat

    headline = run_xccel(["report", "--database-url", loaded], env={"COLUMNS": columns})
    assert headline.exit_code == 0
    assert "km_median_order_session" in headline.stdout and "95 %" in headline.stdout


@pytest.fixture
def server(loaded: str) -> Iterator[Server]:
    started = Server(loaded)
    yield started
    assert started.stop() == 0
    started.log_path.unlink(missing_ok=True)


def test_the_api_answers_conversion_and_windows(server: Server, loaded: str) -> None:
    assert server.get_json("/metrics/conversion") == xccel_json("--by", "visit", "--database-url", loaded)
    window = ("--since", "2022-04-02", "--until", "2022-04-03")
    expected = xccel_json("--by", "visit", *window, "--database-url", loaded)
    assert server.get_json("/metrics/conversion?since=2022-04-02&until=2022-04-03") == expected
    assert server.get_json("/metrics/conversion?since=2022-04-02&until=2022-04-03") == expected  # cached
    orders = server.get_json("/metrics/orders?since=2022-04-02&until=2022-04-03")
    assert orders == xccel_json(*window, "--database-url", loaded)
    assert orders["customers"] == 2
    assert server.get_json("/metrics/orders")["customers"] == 4  # the plain path is not the windowed answer
    # YYYY-MM-DD only, as `report --since` takes it: not the other ISO 8601 forms (basic, week dates)
    for bad in ("since=2022-04-05&until=2022-04-01", "since=yesterday", "since=20220402", "until=2022-W13-7"):
        for path in ("/metrics/conversion", "/metrics/orders", "/metrics/referrers", "/dashboard"):
            reply = server.request(f"{path}?{bad}")
            assert reply.status == 400 and set(reply.json) == {"error"}, (path, bad, reply.status)
            assert "--" not in reply.json["error"], reply.json  # the API's parameters, not the command's flags
    by_referrer = server.get_json("/metrics/referrers?since=2022-04-02&until=2022-04-03")
    assert by_referrer == xccel_json("--by", "referrer", *window, "--database-url", loaded)
    assert sum(row["sessions"] for row in by_referrer) == 3
    assert sum(row["sessions"] for row in server.get_json("/metrics/referrers")) == 10
    page = server.request("/dashboard?since=2022-04-02")
    assert page.status == 200 and 'id="window"' in page.text and 'data-since="2022-04-02"' in page.text
    assert 'id="chart-km"' in page.text


def test_the_dashboard_draws_conversion_with_intervals_and_the_weekly_trend(loaded: str) -> None:
    with connect(loaded, "public") as db:
        page = render_dashboard(db)
        rep = report(db)
    for chart in ("chart-km", "chart-hazard", "chart-weekly-visits", "chart-weekly-minutes"):
        assert f'id="{chart}"' in page and f'id="{chart}-phone"' in page  # drawn for the desktop and the phone
    assert rep.conversion is not None and rep.median_intervals is not None
    # the table under the charts holds every row's exact figures
    table = page[page.index('id="table-conversion"') :]
    table = table[: table.index("</table>")]
    values = re.findall(r'data-value="([^"]*)"', table)
    assert len(values) == 7 * len(rep.conversion["rows"])
    for i, row in enumerate(rep.conversion["rows"]):
        assert values[7 * i + 2] == repr(row["at_risk"]) and values[7 * i + 6] == repr(row["cumulative_share"])
    # in every drawing: a band rectangle where the Kaplan–Meier interval is defined; a whisker per defined Wilson
    # interval; no text under the charts' smallest size
    for layout in ("", "-phone"):
        km, hazard = svg(page, "chart-km" + layout), svg(page, "chart-hazard" + layout)
        assert km.count('class="km-band"') == sum(
            r["cumulative_interval"]["low"] is not None for r in rep.conversion["rows"]
        )
        assert hazard.count('class="whisker"') == len(rep.conversion["rows"])
        for drawing in (km, hazard):
            sizes = [int(size) for size in re.findall(r'font-size="(\d+)"', drawing)]
            assert sizes and min(sizes) >= MIN_FONT
    widths = {int(w) for w in re.findall(r'<svg[^>]*id="chart-km(?:-phone)?"[^>]*viewBox="0 0 (\d+) ', page)}
    assert widths == {DESKTOP, PHONE}
    for key, interval in rep.median_intervals.items():
        assert f'id="interval-{key}"' in page
        assert f'data-low="{"null" if interval["low"] is None else repr(interval["low"])}"' in page
    assert "Half of all customers have bought by session 2 (95 %" in page
    # the four customers start in the weeks of 2022-03-28 (A, B, C) and 2022-04-04 (D)
    weekly = page[page.index('id="table-weekly"') :]
    weekly = weekly[: weekly.index("</table>")]
    assert weekly.count("<tr>") == 1 + 2 and "2022-03-28" in weekly and "2022-04-04" in weekly
