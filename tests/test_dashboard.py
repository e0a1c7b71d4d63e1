"""The dashboard page: a small dump through the real pipeline, then every figure on the page checked
against report() and against plain-Python computations over the published tb_events and sessions rows."""

from __future__ import annotations

import ast
import json
import math
import random
import re
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import invoke_xccel, run_xccel
from xccel_cli.charts import nice_ticks, number
from xccel_cli.config import SessionRules
from xccel_cli.conversion_cards import TABLE_ROWS
from xccel_cli.dashboard import CHART_VARIANT_IDS, render_dashboard
from xccel_cli.db import Database
from xccel_cli.metrics import report
from xccel_cli.pipeline import ExtractOptions, run_all
from xccel_cli.referrers import referrer_rows

REFERRERS = ["https://www.google.com", "https://bing.com", "https://news.example.org"]
EVENT_TYPES = ["page_view"] * 2 + [
    "visit_related_product",
    "visit_personal_recommendation",
    "search",
    "add_product_to_cart",
    "remove_product_from_cart",
]
DURATION_BIN_MINUTES = 5  # equal widths; the last bin holds 120 minutes and more
DURATION_BINS = 26

__all__ = ["CHART_IDS", "write_dump"]

# The charts the page must show, written here and not imported from the code under test (a chart dropped
# there must fail here).
CHART_IDS = (
    "chart-visits",
    "chart-durations",
    "chart-referrers",
    "chart-daily-counts",
    "chart-daily-share",
    "chart-funnel",
    "chart-km",
    "chart-hazard",
    "chart-weekly-visits",
    "chart-weekly-minutes",
)


def write_dump(path: Path, seed: int = 7, customers: int = 40, referrers: list[str] | None = None) -> Path:
    """A small, varied NDJSON dump in the real dump's shape: repeat customers, buyers and non-buyers,
    sessions with and without a referrer, sessions across midnight, some anonymous events."""
    rng = random.Random(seed)
    referrers = referrers or REFERRERS
    start = datetime(2022, 4, 20, 18, 0)
    event_id = 1000
    lines = []
    for customer in range(1, customers + 1):
        moment = start + timedelta(minutes=rng.randrange(0, 600))
        buyer = rng.random() < 0.6
        for _session in range(rng.randint(1, 6)):
            referrer = rng.choice(referrers) if rng.random() < 0.4 else None
            for position in range(rng.randint(1, 8)):
                kind = "page_view" if position == 0 and rng.random() < 0.7 else rng.choice(EVENT_TYPES)
                if buyer and position > 0 and rng.random() < 0.15:
                    kind = "placed_order"
                event: dict[str, Any] = {
                    "customer-id": customer,
                    "timestamp": moment.isoformat(),
                    "page": f"https://xcc-webshop.com/p/{rng.randrange(50)}",
                }
                if position == 0 and referrer:
                    event["referrer"] = referrer
                event_id += 1
                lines.append({"id": event_id, "type": kind, "event": event})
                moment += timedelta(minutes=rng.choice([0, 1, 3, 7, 12, 25]), seconds=rng.randrange(60))
            moment += timedelta(minutes=rng.randrange(31, 900))
    for _ in range(25):
        event_id += 1
        lines.append(
            {
                "id": event_id,
                "type": "page_view",
                "event": {"customer-id": None, "timestamp": (start + timedelta(hours=3)).isoformat()},
            }
        )
    rng.shuffle(lines)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def load_dump(db: Database, path: Path) -> None:
    run_all(db, ExtractOptions(source=str(path)), SessionRules())


# --------------------------------------------------------------------------------------- page parsing


class PageParser(HTMLParser):
    """Collects elements, attributes, <style> text and the data-value cells of every table by id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.tables: dict[str, list[list[Any]]] = {}
        self._table: str | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        self._in_style = tag == "style"
        if tag == "table":
            self._table = attributes.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            raw = attributes["data-value"] or ""
            self.tables[self._table][-1].append(None if raw == "null" else ast.literal_eval(raw))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def table(parsed: PageParser, table_id: str) -> list[list[Any]]:
    return [row for row in parsed.tables[table_id] if row]  # the header row has no td cells


def assert_self_contained(parsed: PageParser) -> None:
    """No element that loads anything, no URL in src/href, no url( in any CSS."""
    for tag, attributes in parsed.tags:
        if tag == "link" and attributes == {"rel": "icon", "href": "data:,"}:
            continue  # the empty inline icon that stops browsers from fetching /favicon.ico
        assert tag not in {"script", "link", "img", "iframe", "object", "embed", "image", "use", "source"}, tag
        for name, value in attributes.items():
            assert name not in {"src", "href", "xlink:href", "srcset", "action", "poster", "background"}, (tag, name)
            assert not name.startswith("on"), (tag, name)  # no event handlers, no script at all
            if name == "style":
                assert "url(" not in (value or "").lower()
    assert all("url(" not in style.lower() and "@import" not in style for style in parsed.styles)


# ------------------------------------------------------------------------------ plain-Python oracle


def published_rows(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with db.conn.cursor() as cur:
        cur.execute('SELECT session_id, event_type, "timestamp" FROM tb_events')
        events = [dict(zip(["session_id", "event_type", "timestamp"], row, strict=True)) for row in cur.fetchall()]
        cur.execute(
            "SELECT customer_id, session_number, started_at, duration_minutes, event_count, has_order,"
            " referrer FROM sessions"
        )
        names = [
            "customer_id",
            "session_number",
            "started_at",
            "duration_minutes",
            "event_count",
            "has_order",
            "referrer",
        ]
        sessions = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return events, sessions


def first_order_sessions(sessions: list[dict[str, Any]]) -> dict[int, int]:
    first: dict[int, int] = {}
    for s in sessions:
        if s["has_order"]:
            first[s["customer_id"]] = min(first.get(s["customer_id"], s["session_number"]), s["session_number"])
    return first


def expected_visits(sessions: list[dict[str, Any]]) -> list[list[Any]]:
    counts = Counter(number - 1 for number in first_order_sessions(sessions).values())
    return [[visits, counts[visits]] for visits in sorted(counts)]


def duration_bin(minutes: float) -> int:
    if minutes == 0:
        return 0
    return min(int(minutes // DURATION_BIN_MINUTES), DURATION_BINS - 2) + 1


def expected_durations(sessions: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    first = first_order_sessions(sessions)
    before, every = [0] * DURATION_BINS, [0] * DURATION_BINS
    for s in sessions:
        b = duration_bin(s["duration_minutes"])
        every[b] += 1
        if s["customer_id"] in first and s["session_number"] < first[s["customer_id"]]:
            before[b] += 1
    return before, every


def percentile(values: list[float], share: float) -> float:
    """percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def wilson(successes: int, n: int, z: float = 1.959964) -> list[float]:
    """The 95 % Wilson score interval of a share, in plain Python."""
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [max(0.0, (centre - spread) / (1 + z * z / n)), min(1.0, (centre + spread) / (1 + z * z / n))]


def expected_referrers(sessions: list[dict[str, Any]]) -> list[list[Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in sessions:
        groups[s["referrer"] or "(direct)"].append(s)
    rows = []
    for name, group in groups.items():
        durations = [s["duration_minutes"] for s in group]
        rows.append(
            [
                name,
                len(group),
                statistics.median(durations),
                percentile(durations, 0.9),
                sum(s["has_order"] for s in group) / len(group),
                statistics.fmean(s["event_count"] for s in group),
                wilson(sum(s["has_order"] for s in group), len(group)),
            ]
        )
    return sorted(rows, key=lambda row: (-row[1], row[0]))


def expected_daily(events: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> list[list[Any]]:
    """Every day from the first to the last (no outliers in these dumps), with the hours of it the data covers."""
    started: Counter[Any] = Counter()
    converted: Counter[Any] = Counter()
    for s in sessions:
        day = s["started_at"].astimezone(UTC).date()
        started[day] += 1
        converted[day] += s["has_order"]
    orders = Counter(e["timestamp"].astimezone(UTC).date() for e in events if e["event_type"] == "placed_order")
    first_event = min(e["timestamp"] for e in events).astimezone(UTC)
    last_event = max(e["timestamp"] for e in events).astimezone(UTC)
    days = set(started) | set(orders)
    rows = []
    day = min(days)
    while day <= max(days):
        share = converted[day] / started[day] if started[day] else None
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        covered = min(midnight + timedelta(days=1), last_event) - max(midnight, first_event)
        hours = max(covered.total_seconds() / 3600, 0.0)
        rows.append([day.isoformat(), started[day], converted[day], orders[day], share, round(hours, 2)])
        day += timedelta(days=1)
    return rows


def expected_funnel(events: list[dict[str, Any]]) -> list[list[Any]]:
    kinds: dict[str, set[str]] = defaultdict(set)
    for e in events:
        kind = e["event_type"]
        kinds[e["session_id"]].add("visit_*" if kind.startswith("visit_") else kind)
    steps = ["page_view", "visit_*", "add_product_to_cart", "placed_order"]
    rows = [["session", len(kinds), len(kinds)]]
    for i, step in enumerate(steps):
        through = sum(1 for held in kinds.values() if all(s in held for s in steps[: i + 1]))
        rows.append([step, through, sum(1 for held in kinds.values() if step in held)])
    return rows


# -------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("seed", "customers"), [(7, 40), (3, 1), (19, 150)])
def test_page_figures_equal_report_and_plain_python(db: Database, tmp_path: Path, seed: int, customers: int) -> None:
    load_dump(db, write_dump(tmp_path / "events.ndjson", seed=seed, customers=customers))
    page = render_dashboard(db)
    parsed = parse(page)

    assert page.startswith("<!DOCTYPE html>")
    assert_self_contained(parsed)
    assert "url(" not in page.lower() and "http" not in "".join(parsed.styles)
    charts = {attrs.get("id"): attrs for tag, attrs in parsed.tags if tag == "svg"}
    assert set(charts) == {svg_id for ids in CHART_VARIANT_IDS.values() for svg_id in ids}
    for chart_id, attrs in charts.items():
        assert attrs["role"] == "img" and attrs["aria-labelledby"] == f"{chart_id}-title {chart_id}-desc"
        assert re.search(rf'<title id="{chart_id}-title">[^<]+</title>', page)
    assert "Nothing is published yet" not in page
    assert "sessions before the first order session" in page and "session duration (minutes, 5-minute bins)" in page

    expected = report(db)
    headlines = {attrs["data-key"]: attrs["data-value"] for tag, attrs in parsed.tags if "data-key" in attrs}
    for key in (
        "median_visits_before_order",
        "median_session_duration_minutes_before_order",
        "median_total_minutes_before_order",
    ):
        value = getattr(expected, key)
        assert headlines[key] == ("null" if value is None else repr(value)), key
        shown = re.search(rf'id="headline-{key}".*?<span class="value">([^<]*)</span>', page)
        assert shown and shown.group(1) == ("–" if value is None else number(value)), key
    counts = next(attrs for tag, attrs in parsed.tags if attrs.get("id") == "counts")
    assert int(counts["data-sessions"] or 0) == expected.sessions
    assert int(counts["data-events"] or 0) == expected.events
    assert f"publication {expected.publication_id}" in page and "timeout_minutes = 30" in page

    events, sessions = published_rows(db)
    assert len(sessions) == expected.sessions > 0
    assert table(parsed, "table-visits") == expected_visits(sessions)
    before, every = expected_durations(sessions)
    durations = table(parsed, "table-durations")
    assert [row[1] for row in durations] == before and [row[2] for row in durations] == every
    widths = {float(b) - float(a) for a, b in (row[0].split("–") for row in durations if "–" in row[0])}
    assert widths == {DURATION_BIN_MINUTES} and durations[0][0] == "0" and durations[-1][0] == "120+"  # equal bins
    referrers = table(parsed, "table-referrers")
    assert [row[:2] for row in referrers] == [row[:2] for row in expected_referrers(sessions)]
    for got, want in zip(referrers, expected_referrers(sessions), strict=True):
        assert got[2:6] == pytest.approx(want[2:6])
        assert got[6] == pytest.approx(want[6]) and got[6][0] <= got[4] <= got[6][1]
    assert {row[0] for row in referrers} <= {"(direct)", *REFERRERS}
    daily = table(parsed, "table-daily")
    want_daily = expected_daily(events, sessions)
    assert [row[:4] for row in daily] == [row[:4] for row in want_daily]
    assert [row[4] for row in daily] == pytest.approx([row[4] for row in want_daily])
    assert [row[5] for row in daily] == pytest.approx([row[5] for row in want_daily], abs=0.01)
    assert daily[0][5] < 23 and daily[-1][5] < 23  # these dumps start and end during a day: partial, marked
    assert 'class="partial"' in page and "Open circles: partial days" in page
    funnel = table(parsed, "table-funnel")
    assert funnel == expected_funnel(events)
    if customers >= 40:  # the larger dumps exercise every part: buyers, sessions before orders, referrers, days
        assert expected.median_visits_before_order is not None and sum(before) > 0 and funnel[-1][2] > 0
        assert len(referrers) == 1 + len(REFERRERS) and len(daily) >= 2


def test_empty_database_renders_every_chart_frame(db: Database) -> None:
    page = render_dashboard(db)
    parsed = parse(page)
    assert_self_contained(parsed)
    assert {attrs.get("id") for tag, attrs in parsed.tags if tag == "svg"} >= set(CHART_IDS)
    assert 'id="nothing-published"' in page and "No data published yet" in page
    headlines = {attrs["data-key"]: attrs["data-value"] for tag, attrs in parsed.tags if "data-key" in attrs}
    assert set(headlines.values()) == {"null"}


def test_hostile_referrers_stay_text(db: Database, tmp_path: Path) -> None:
    hostile = [
        '"><script>alert(1)</script><img src="https://evil.example/x.png">',
        "</title><style>body{background:url(https://evil.example/bg.png)}</style>",
    ]
    load_dump(db, write_dump(tmp_path / "events.ndjson", seed=11, referrers=hostile))
    page = render_dashboard(db)
    parsed = parse(page)
    assert_self_contained(parsed)  # no script, img or extra style got through
    assert len(parsed.styles) == 1
    assert {row[0] for row in table(parsed, "table-referrers")} >= set(hostile)


def test_report_html_writes_the_same_page(database_url: str, tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "events.ndjson")
    loaded = invoke_xccel(["run-all", "--source", str(dump), "--json", "--database-url", database_url])
    assert loaded.exit_code == 0, loaded.stderr
    page_path = tmp_path / "out" / "dashboard.html"
    page_path.parent.mkdir()
    result = invoke_xccel(["report", "--json", "--html", str(page_path), "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    assert f"dashboard written to {page_path}" in result.stderr
    figures = json.loads(result.stdout)  # stdout stays pure JSON
    assert figures == json.loads(loaded.stdout)["report"]
    parsed = parse(page_path.read_text())
    assert_self_contained(parsed)
    assert {attrs.get("id") for tag, attrs in parsed.tags if tag == "svg"} >= set(CHART_IDS)
    headlines = {attrs["data-key"]: attrs["data-value"] for tag, attrs in parsed.tags if "data-key" in attrs}
    for key, value in headlines.items():
        assert value == repr(figures[key])
    assert [p.name for p in page_path.parent.iterdir()] == ["dashboard.html"]  # no temporary file left


def test_report_by_visit_or_referrer_with_html_writes_the_page_too(database_url: str, tmp_path: Path) -> None:
    """--html FILE writes the dashboard whatever --by prints (it was ignored with --by: no file, no word)."""
    dump = write_dump(tmp_path / "events.ndjson")
    assert invoke_xccel(["run-all", "--source", str(dump), "--json", "--database-url", database_url]).exit_code == 0
    for by in ("visit", "referrer"):
        page_path = tmp_path / f"by-{by}.html"
        command = ["report", "--by", by, "--json", "--database-url", database_url]
        result = invoke_xccel([*command, "--html", str(page_path)])
        assert result.exit_code == 0, result.stderr
        assert f"dashboard written to {page_path}" in result.stderr
        assert json.loads(result.stdout) == json.loads(invoke_xccel(command).stdout)  # the same --by output
        parsed = parse(page_path.read_text())
        assert {attrs.get("id") for tag, attrs in parsed.tags if tag == "svg"} >= set(CHART_IDS)


def test_report_html_to_an_unwritable_place_is_one_line(database_url: str, tmp_path: Path) -> None:
    assert invoke_xccel(["init-db", "--database-url", database_url]).exit_code == 0
    target = tmp_path / "missing-directory" / "dashboard.html"
    result = invoke_xccel(["report", "--html", str(target), "--database-url", database_url])
    assert result.exit_code == 3
    assert result.stderr.strip() == f"Error: cannot write the dashboard to {target}: No such file or directory"
    assert not target.exists()


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.integers(min_value=2, max_value=8))
def test_axis_ticks_start_at_zero_and_cover_the_largest_value(top: float, count: int) -> None:
    ticks = nice_ticks(top, count)
    assert ticks[0] == 0 and ticks[-1] >= top
    assert ticks == sorted(set(ticks)) and len(ticks) <= 2 * count + 2


OUTLIERS = [  # one customer's clock far off, in both directions
    {"id": 900_001, "type": "page_view", "event": {"customer-id": 1, "timestamp": "9999-06-01T12:00:00"}},
    {"id": 900_002, "type": "placed_order", "event": {"customer-id": 2, "timestamp": "9999-12-31T23:59:59"}},
    {"id": 900_003, "type": "page_view", "event": {"customer-id": 2, "timestamp": "0001-01-01T00:00:00"}},
    {"id": 900_004, "type": "page_view", "event": {"customer-id": 3, "timestamp": "0001-01-01T00:00:00+14:00"}},
]


@pytest.mark.integration  # serves the page from a real `xccel serve`
def test_outlier_timestamps_keep_the_page_small_and_say_what_is_left_out(database_url: str, tmp_path: Path) -> None:
    import psycopg

    from tests.test_serve import Server

    normal = write_dump(tmp_path / "normal.ndjson")
    with_outliers = tmp_path / "outliers.ndjson"
    with_outliers.write_text(normal.read_text() + "".join(json.dumps(line) + "\n" for line in OUTLIERS))
    pages = {}
    for dump_path in (normal, with_outliers):  # the same dump, then again with the outliers added
        loaded = run_xccel(["run-all", "--source", str(dump_path), "--json", "--database-url", database_url])
        assert loaded.exit_code == 0, loaded.stderr
        page_path = tmp_path / f"{dump_path.stem}.html"
        written = run_xccel(["report", "--html", str(page_path), "--database-url", database_url])
        assert written.exit_code == 0, written.stderr
        pages[dump_path.stem] = page_path.read_text()

    with psycopg.connect(database_url) as conn:
        far = conn.execute(
            "SELECT count(*) FROM sessions WHERE started_at NOT BETWEEN '2022-01-01' AND '2023-01-01'"
        ).fetchone()
    outside = far[0] if far else 0
    assert outside >= 3  # 9999 twice (two customers), 0001 at least once (extract may refuse the +14:00 one)

    page, baseline = pages["outliers"], pages["normal"]
    assert len(page.encode()) < len(baseline.encode()) + 20_000  # the same page, plus a note: not megabytes
    parsed, base = parse(page), parse(baseline)
    assert len(table(parsed, "table-daily")) == len(table(base, "table-daily"))  # the same days drawn
    assert f"Not drawn: {outside:,} sessions" in page and "9999-12-31 23:59:59" in page
    assert f"{outside:,} sessions far outside these dates are not drawn." in page  # on the charts themselves
    assert f"and {outside:,} far outside those dates" in page  # and in the page header

    server = Server(database_url)
    try:
        served = server.request("/dashboard", timeout=120)
    finally:
        assert server.stop() == 0
        server.log_path.unlink(missing_ok=True)
    assert served.status == 200
    assert abs(len(served.text.encode()) - len(page.encode())) < 2_000  # the same page (its clock line differs)


def test_the_page_reads_on_two_connections_and_gets_the_same_rows(db: Database, tmp_path: Path) -> None:
    """dashboard_data reads the report's side of the page on a second connection, concurrently with the charts;
    the rows are those it reads on one connection alone, and the second connection really was used."""
    from dataclasses import asdict, dataclass, field

    from xccel_cli.dashboard import dashboard_data

    @dataclass
    class Recording(Database):
        """A real connection that notes the SQL files run on it."""

        files: list[str] = field(default_factory=list)

        def query_file(self, name: str, settings: Any = None) -> list[dict[str, Any]]:
            self.files.append(name)
            return super().query_file(name, settings)

    load_dump(db, write_dump(tmp_path / "events.ndjson", seed=7, customers=40))
    alone = Recording(conn=db.conn, schema=db.schema, display_url=db.display_url)  # no URL: no second connection
    one = dashboard_data(alone)
    assert "weekly_medians.sql" in alone.files and "dashboard_daily.sql" in alone.files
    with db.helper() as opened:
        assert opened is not None
        helper = Recording(conn=opened.conn, schema=opened.schema, display_url=opened.display_url)
        main = Recording(conn=db.conn, schema=db.schema, display_url=db.display_url)
        two = dashboard_data(main, helper=helper)
    assert "weekly_medians.sql" in helper.files and "median_samples.sql" in helper.files
    assert "dashboard_daily.sql" in main.files and "weekly_medians.sql" not in main.files
    assert asdict(two) == asdict(one)
    assert two.report.publication_id is not None and two.weeks and two.daily and two.funnel and two.referrers


def test_a_window_leaves_the_histograms_and_their_medians_over_every_customer(db: Database, tmp_path: Path) -> None:
    """The visit and duration histograms cover every customer (the window is for the headlines, the conversion and
    the weekly trend), so the median each one marks and names is every customer's too, not the window's."""
    from datetime import date

    from xccel_cli.conversion import Window

    load_dump(db, write_dump(tmp_path / "events.ndjson", seed=1, customers=60))
    whole = report(db)
    window = Window(date(2022, 4, 20), date(2022, 4, 20))
    windowed = report(db, window)
    assert windowed.customers and windowed.median_visits_before_order != whole.median_visits_before_order
    assert windowed.median_session_duration_minutes_before_order != whole.median_session_duration_minutes_before_order
    page = render_dashboard(db, window)
    assert table(parse(page), "table-visits") == table(parse(render_dashboard(db)), "table-visits")
    visits = re.search(r'<figure id="figure-visits">.*?</figure>', page)
    assert visits is not None
    assert f"(median {number(whole.median_visits_before_order)}, dashed line)" in visits.group(0)
    assert f"median {number(whole.median_visits_before_order)} sessions before the first order" in visits.group(0)
    durations = re.search(r'<figure id="figure-durations">.*?</figure>', page)
    assert durations is not None
    assert f"first order: {number(whole.median_session_duration_minutes_before_order)} min" in durations.group(0)
    # the headlines are the window's
    shown = re.search(r'id="headline-median_visits_before_order".*?<span class="value">([^<]*)</span>', page)
    assert shown and shown.group(1) == number(windowed.median_visits_before_order)


def test_a_window_without_customers_does_not_say_nothing_is_published(db: Database, tmp_path: Path) -> None:
    from datetime import date

    from xccel_cli.conversion import Window

    load_dump(db, write_dump(tmp_path / "events.ndjson", seed=7, customers=10))
    page = render_dashboard(db, Window(None, date(2000, 1, 1)))
    assert report(db).publication_id is not None
    assert 'id="nothing-published"' not in page and "Nothing is published yet" not in page
    assert 'id="window"' in page


def hostile_dump(path: Path, long_sessions: int, referrers: int) -> Path:
    """One customer of long_sessions sessions without an order (a conversion row per session number), and
    referrers customers of one session each from a referrer of their own (a referrer row each)."""
    start = datetime(2022, 4, 20, 18, 0)
    lines = [
        {"id": n, "type": "page_view", "event": {"customer-id": 1, "timestamp": (start + n * timedelta(minutes=31))}}
        for n in range(1, long_sessions + 1)
    ]
    for n in range(referrers):
        event = {"customer-id": 2 + n, "timestamp": start + timedelta(seconds=n), "referrer": f"https://r{n}.example"}
        lines.append({"id": 1_000_000 + n, "type": "placed_order" if n % 3 == 0 else "page_view", "event": event})
    path.write_text("".join(json.dumps(line, default=datetime.isoformat) + "\n" for line in lines))
    return path


def figure_html(page: str, figure_id: str) -> str:
    found = re.search(rf'<figure id="{figure_id}".*?</figure>', page, re.S)
    assert found is not None, figure_id
    return found.group(0)


def test_the_conversion_and_referrer_tables_stay_bounded_and_say_how_many_rows_are_left_out(
    db: Database, tmp_path: Path
) -> None:
    """A customer of hundreds of sessions, or a referrer per session, must not make the page grow with the
    data: each table lists its first rows in its own order, then one line saying how many more there are
    and where every row is. Up to the cap, every row is listed and no such line shown."""
    sizes = {}
    for long_sessions, referrers in ((TABLE_ROWS, TABLE_ROWS - 1), (300, 300), (600, 600)):
        load_dump(db, hostile_dump(tmp_path / f"hostile-{long_sessions}.ndjson", long_sessions, referrers))
        page = render_dashboard(db)
        parsed = parse(page)
        assert_self_contained(parsed)
        figures = report(db).conversion
        assert figures is not None and len(figures["rows"]) == long_sessions  # the data does hold every row
        every = [row.referrer for row in referrer_rows(db)]
        assert len(every) == referrers + 1  # and "(direct)"
        conversion_rows = [row[0] for row in table(parsed, "table-conversion")]
        referrer_shown = [row[0] for row in table(parsed, "table-referrers")]
        if long_sessions == TABLE_ROWS:  # at the cap: all of it
            assert conversion_rows == list(range(1, TABLE_ROWS + 1)) and referrer_shown == every
            assert "table-conversion-more" not in page and "table-referrers-more" not in page
            continue
        assert conversion_rows == list(range(1, TABLE_ROWS + 1))  # the first session numbers
        more = long_sessions - TABLE_ROWS
        assert re.search(rf'id="table-conversion-more"[^>]*>{more:,} more session numbers', page)
        assert "xccel report --by visit" in page and "/metrics/conversion" in page
        assert referrer_shown == every[:TABLE_ROWS]  # the largest ones
        assert re.search(rf'id="table-referrers-more"[^>]*>{len(every) - TABLE_ROWS:,} more referrers', page)
        assert "xccel report --by referrer" in page and "/metrics/referrers" in page
        sizes[long_sessions] = {key: len(figure_html(page, key)) for key in ("figure-conversion", "figure-referrers")}
    for key in ("figure-conversion", "figure-referrers"):  # twice the rows, the same size (give or take digits)
        assert abs(sizes[600][key] - sizes[300][key]) < 200, (key, sizes)


def test_the_weekly_trend_stays_bounded_when_first_sessions_spread_over_years(db: Database, tmp_path: Path) -> None:
    """One customer per week over decades (a clock gone wrong, a hostile dump) must not make the page grow
    with the data: the weekly trend keeps to the days the day-by-day charts span, and says what it leaves out."""
    start = datetime(2000, 1, 3, 12, 0)  # a Monday
    sizes = {}
    for customers in (600, 1200):
        lines = []
        for n in range(customers):
            moment = start + timedelta(weeks=n)
            for offset, kind in enumerate(("page_view", "placed_order")):
                event = {"customer-id": n + 1, "timestamp": (moment + timedelta(minutes=offset)).isoformat()}
                lines.append({"id": 2 * n + offset + 1, "type": kind, "event": event})
        dump = tmp_path / f"weeks-{customers}.ndjson"
        dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
        load_dump(db, dump)
        page = render_dashboard(db)
        parsed = parse(page)
        daily = table(parsed, "table-daily")
        first, last = date.fromisoformat(daily[0][0]), date.fromisoformat(daily[-1][0])
        weeks = table(parsed, "table-weekly")
        mondays = first - timedelta(days=first.weekday()), last - timedelta(days=last.weekday())
        assert len(weeks) == (mondays[1] - mondays[0]).days // 7 + 1  # each week of the days drawn, no other
        assert all(first - timedelta(days=6) <= date.fromisoformat(row[0]) <= last for row in weeks)
        left_out = customers - len(weeks)
        assert f"Not shown: {left_out:,} weeks of first sessions ({left_out:,} customers)" in page
        sizes[customers] = len(figure_html(page, "figure-weekly"))
    assert abs(sizes[1200] - sizes[600]) < 200, sizes


def test_the_visits_table_stays_bounded(db: Database, tmp_path: Path) -> None:
    """Buyers after 0, 1, 2, … sessions: a row per distinct count would make the page grow with the data; the
    table lists the lowest counts, then says how many more rows there are and where every row is."""
    start = datetime(2022, 4, 20, 18, 0)
    sizes = {}
    for buyers in (TABLE_ROWS, 160, 220):
        lines = []
        for customer in range(buyers):  # this customer orders in session customer + 1
            for n in range(customer + 1):
                event = {"customer-id": customer + 1, "timestamp": (start + n * timedelta(minutes=31)).isoformat()}
                kind = "placed_order" if n == customer else "page_view"
                lines.append({"id": customer * 1000 + n + 1, "type": kind, "event": event})
        dump = tmp_path / f"visits-{buyers}.ndjson"
        dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
        load_dump(db, dump)
        page = render_dashboard(db)
        shown = table(parse(page), "table-visits")
        assert shown == [[visits, 1] for visits in range(min(buyers, TABLE_ROWS))]
        if buyers == TABLE_ROWS:
            assert "table-visits-more" not in page
            continue
        more = buyers - TABLE_ROWS
        assert re.search(rf'id="table-visits-more"[^>]*>{more:,} more rows \({more:,} customers', page)
        numbers = re.search(r"<details>.*?</details>", figure_html(page, "figure-visits"), re.S)
        assert numbers is not None
        sizes[buyers] = len(numbers.group(0))  # the table (the chart's bars are capped on their own)
    assert abs(sizes[220] - sizes[160]) < 20, sizes


def test_long_referrers_do_not_make_the_page_grow_with_them(db: Database, tmp_path: Path) -> None:
    """A referrer as long as a line may be (megabytes) is written on the page cut, in the table and in every
    drawing of the chart (labels, tooltips), so the page stays the same size however long the referrers are."""
    start = datetime(2022, 4, 20, 18, 0)
    sizes = {}
    for length in (5_000, 50_000):
        lines = []
        for n in range(12):  # each its own session, all drawn in the chart
            referrer = f"https://r{n}.example/" + "x" * length
            event = {
                "customer-id": n + 1,
                "timestamp": (start + timedelta(minutes=n)).isoformat(),
                "referrer": referrer,
            }
            lines.append({"id": length + n, "type": "page_view", "event": event})
        dump = tmp_path / f"long-{length}.ndjson"
        dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
        with db.conn.cursor() as cur:  # each length on its own: the earlier sessions out of the way
            cur.execute("TRUNCATE raw_events, sessions, tb_events")
        db.conn.commit()
        load_dump(db, dump)
        page = render_dashboard(db)
        shown = [row[0] for row in table(parse(page), "table-referrers")]
        assert len(shown) == 12 and all(r.startswith("https://r") and r.endswith("…") for r in shown)
        assert "/metrics/referrers" in figure_html(page, "figure-referrers")  # where they are whole
        sizes[length] = len(page)
    assert abs(sizes[50_000] - sizes[5_000]) < 1_000, sizes


def test_weekly_trend_across_a_new_year_names_each_week_with_its_year(db: Database, tmp_path: Path) -> None:
    """Weeks from December into January: an axis saying one year under month-day labels would date the
    January weeks a year early; like the day-by-day charts, the labels then carry their years."""
    start = datetime(2022, 12, 19, 12, 0)  # a Monday
    lines = []
    for n in range(4):
        event = {"customer-id": n + 1, "timestamp": (start + timedelta(weeks=n)).isoformat()}
        lines.append({"id": n + 1, "type": "placed_order", "event": event})
    dump = tmp_path / "new-year.ndjson"
    dump.write_text("".join(json.dumps(line) + "\n" for line in lines))
    load_dump(db, dump)
    weekly = figure_html(render_dashboard(db), "figure-weekly")
    assert "UTC, 2022)" not in weekly
    assert ">2023-01-02<" in weekly and ">2022-12-19<" in weekly
