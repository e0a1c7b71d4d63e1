"""extract's two ways into raw_events give the same table: the bulk path (COPY FREEZE into an empty
raw_events, primary key re-added afterwards) and the merge path (text stage + anti-join)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xccel_cli.db import Database
from xccel_cli.errors import DataQualityError
from xccel_cli.extract import BoundedQueuedWriter, ExtractResult, extract


def event_line(event_id: int, customer: int | None, marker: str = "a", minute: int = 0) -> str:
    event: dict[str, Any] = {"timestamp": f"2022-04-22T06:{minute:02d}:00", "page": f"https://shop/{marker}"}
    if customer is not None:
        event["customer-id"] = customer
    return json.dumps({"id": event_id, "type": "page_view", "event": event})


def write_dump(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def raw_events(db: Database) -> list[tuple[Any, ...]]:
    return db.conn.execute(
        'SELECT event_id, event_type, customer_id, "timestamp", payload FROM raw_events ORDER BY event_id'
    ).fetchall()


def primary_key(db: Database) -> str | None:
    row = db.conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'raw_events'::regclass AND contype = 'p'"
    ).fetchone()
    return row[0] if row else None


def counts(result: ExtractResult) -> tuple[int, ...]:
    return (
        result.lines_read,
        result.loaded,
        result.logged_in,
        result.anonymous,
        result.duplicates,
        result.already_loaded,
        result.rejected,
    )


DUMP = [
    event_line(1, 10, "first"),
    event_line(2, None),
    event_line(3, 11),
    event_line(1, 10, "second"),  # a duplicate id: the first line read wins
    "{not json",
    event_line(4, 10, minute=5),
    event_line(2, None, "again"),
]


def filenode(db: Database) -> int:
    """Changes when raw_events is truncated: tells the bulk path (truncate + COPY FREEZE) from the merge path."""
    return db.conn.execute("SELECT pg_relation_filenode('raw_events')").fetchone()[0]


def test_bulk_path_on_an_empty_table(db: Database, tmp_path: Path) -> None:
    before = filenode(db)
    result = extract(db, write_dump(tmp_path / "d.ndjson", DUMP), 1, max_reject_share=0.5)
    assert counts(result) == (7, 3, 3, 1, 2, 0, 1)
    rows = raw_events(db)
    assert [r[0] for r in rows] == [1, 3, 4]
    assert rows[0][4]["event"]["page"] == "https://shop/first"
    assert primary_key(db) == "PRIMARY KEY (event_id)"
    assert filenode(db) != before  # truncated and COPYed into: the bulk path


def test_merge_path_keeps_what_was_loaded_first(db: Database, tmp_path: Path) -> None:
    extract(db, write_dump(tmp_path / "old.ndjson", [event_line(3, 11, "old"), event_line(99, 12)]), 1)
    before = filenode(db)
    result = extract(db, write_dump(tmp_path / "d.ndjson", DUMP), 2, max_reject_share=0.5)
    assert filenode(db) == before  # not truncated: the merge path
    assert counts(result) == (7, 2, 3, 1, 2, 1, 1)
    rows = raw_events(db)
    assert [r[0] for r in rows] == [1, 3, 4, 99]
    assert rows[1][4]["event"]["page"] == "https://shop/old"  # already loaded: not replaced
    assert primary_key(db) == "PRIMARY KEY (event_id)"

    again = extract(db, write_dump(tmp_path / "d.ndjson", DUMP), 3, max_reject_share=0.5)
    assert (again.loaded, again.already_loaded) == (0, 3)
    assert [r[0] for r in raw_events(db)] == [1, 3, 4, 99]


def test_a_failed_bulk_load_keeps_nothing_and_keeps_the_key(db: Database, tmp_path: Path) -> None:
    lines = [event_line(1, 10), "junk", "more junk"]
    with pytest.raises(DataQualityError):
        extract(db, write_dump(tmp_path / "bad.ndjson", lines), 1, max_reject_share=0.5)
    assert raw_events(db) == []
    assert primary_key(db) == "PRIMARY KEY (event_id)"
    assert db.conn.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0


def test_bulk_path_over_http_with_anonymous_kept(db: Database, http_server: Any, tmp_path: Path) -> None:
    url = http_server.add("/events.ndjson", "".join(line + "\n" for line in DUMP).encode(), gzip_encoding=True)
    result = extract(db, url, 1, keep_anonymous=True, max_reject_share=0.5)
    assert counts(result) == (7, 4, 3, 1, 2, 0, 1)
    assert [(r[0], r[2]) for r in raw_events(db)] == [(1, 10), (2, None), (3, 11), (4, 10)]


lines_strategy = st.lists(
    st.tuples(st.integers(1, 40), st.one_of(st.none(), st.integers(1, 5)), st.sampled_from("abc")),
    min_size=1,
    max_size=40,
)


SEED = event_line(1000, 1)  # an id the strategy never draws


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=lines_strategy, cut=st.integers(1, 39))
def test_bulk_and_merge_paths_give_the_same_raw_events(
    db: Database, tmp_path: Path, events: list[Any], cut: int
) -> None:
    """A dump loaded into an empty raw_events (bulk path), into one holding an unrelated row (merge path),
    and split over two runs (bulk, then merge) ends in the same raw_events, equal to a plain-Python oracle."""
    lines = [event_line(i, c, m) for i, c, m in events]
    whole = write_dump(tmp_path / "whole.ndjson", lines)

    db.conn.execute("TRUNCATE raw_events")
    once = extract(db, whole, 1)
    bulk = raw_events(db)

    db.conn.execute("TRUNCATE raw_events")
    extract(db, write_dump(tmp_path / "seed.ndjson", [SEED]), 1)
    merged = extract(db, whole, 2)
    assert [r for r in raw_events(db) if r[0] != 1000] == bulk
    assert counts(merged) == counts(once)

    # split over two runs; anonymous lines are kept so that the second run knows their ids too
    db.conn.execute("TRUNCATE raw_events")
    once_kept = extract(db, whole, 1, keep_anonymous=True)
    bulk_kept = raw_events(db)
    db.conn.execute("TRUNCATE raw_events")
    cut = min(cut, len(lines))
    first = extract(db, write_dump(tmp_path / "first.ndjson", lines[:cut]), 1, keep_anonymous=True)
    second = (
        extract(db, write_dump(tmp_path / "second.ndjson", lines[cut:]), 2, keep_anonymous=True)
        if cut < len(lines)
        else None
    )
    assert raw_events(db) == bulk_kept
    assert first.loaded + (second.loaded if second else 0) == once_kept.loaded
    assert primary_key(db) == "PRIMARY KEY (event_id)"

    # the oracle: the first line read per id wins; anonymous lines are kept only when asked
    first_seen: dict[int, tuple[int | None, str]] = {}
    for event_id, customer, marker in events:
        first_seen.setdefault(event_id, (customer, marker))
    expected = [(i, c, f"https://shop/{m}") for i, (c, m) in sorted(first_seen.items())]
    assert [(r[0], r[2], r[4]["event"]["page"]) for r in bulk_kept] == expected
    assert [(r[0], r[2], r[4]["event"]["page"]) for r in bulk] == [e for e in expected if e[1] is not None]


def test_queued_writer_sends_every_batch_in_order(db: Database) -> None:
    db.conn.execute("CREATE TEMP TABLE numbers (n int)")
    with db.conn.cursor() as cur:
        with cur.copy("COPY numbers FROM STDIN", writer=BoundedQueuedWriter(cur, max_queued=1)) as copy:
            for start in range(0, 50_000, 1000):
                copy.write("".join(f"{n}\n" for n in range(start, start + 1000)).encode())
        assert cur.rowcount == 50_000
    assert db.conn.execute("SELECT count(*), sum(n) FROM numbers").fetchone() == (50_000, sum(range(50_000)))


def test_queued_writer_hands_a_server_error_to_the_caller(db: Database) -> None:
    """A COPY the server refuses part-way ends in an error in the main thread, not a hang or a lost error."""
    db.conn.execute("CREATE TEMP TABLE small (n int CHECK (n < 1000))")
    with (
        pytest.raises(psycopg.Error),
        db.conn.transaction(),
        db.conn.cursor() as cur,
        cur.copy("COPY small FROM STDIN", writer=BoundedQueuedWriter(cur, max_queued=1)) as copy,
    ):
        for start in range(0, 200_000, 1000):
            copy.write("".join(f"{n}\n" for n in range(start, start + 1000)).encode())
    assert db.conn.execute("SELECT count(*) FROM small").fetchone()[0] == 0


def test_duplicates_are_found_for_every_kind_of_id(db: Database, tmp_path: Path) -> None:
    """Ids in the bitmap (also past its first size), negative ones and huge ones (the set) are deduplicated."""
    ids = [7, 10_000_000, -5, 2**40, 300_000_000, 2**63 - 1, 0]
    lines = [event_line(i, 1, "first") for i in ids] + [event_line(i, 1, "again") for i in reversed(ids)]
    result = extract(db, write_dump(tmp_path / "ids.ndjson", lines), 1)
    assert (result.loaded, result.duplicates) == (len(ids), len(ids))
    rows = raw_events(db)
    assert [r[0] for r in rows] == sorted(ids)
    assert {r[4]["event"]["page"] for r in rows} == {"https://shop/first"}


def test_a_reader_holding_raw_events_means_the_merge_path_not_a_wait(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url) as reader:
        reader.execute("SELECT count(*) FROM raw_events").fetchone()  # holds ACCESS SHARE until rollback
        before = filenode(db)
        result = extract(db, write_dump(tmp_path / "d.ndjson", DUMP), 1, max_reject_share=0.5)
        reader.rollback()
    assert filenode(db) == before  # not truncated: the merge path
    assert counts(result) == (7, 3, 3, 1, 2, 0, 1)
    assert [r[0] for r in raw_events(db)] == [1, 3, 4]


def test_a_user_who_does_not_own_raw_events_takes_the_merge_path(db: Database, tmp_path: Path) -> None:
    can = db.conn.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    if not can[0]:
        pytest.skip("the test server's user may not create roles")
    role = f"xccel_loader_{filenode(db)}"
    db.conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.conn.execute(f"GRANT SELECT, INSERT ON raw_events, rejects TO {role}")
        db.conn.execute(f"GRANT SELECT, UPDATE ON runs TO {role}")  # extract records its count with its rows
        db.conn.execute(f"SET ROLE {role}")
        before = filenode(db)
        result = extract(db, write_dump(tmp_path / "d.ndjson", DUMP), 1, max_reject_share=0.5)
        db.conn.execute("RESET ROLE")
        assert filenode(db) == before
        assert result.loaded == 3 and primary_key(db) == "PRIMARY KEY (event_id)"
    finally:
        db.conn.execute("RESET ROLE")
        db.conn.execute(f"DROP OWNED BY {role}")
        db.conn.execute(f"DROP ROLE {role}")


def test_each_of_several_files_may_start_with_a_bom(db: Database, tmp_path: Path) -> None:
    """Several files are one dump, but each is its own file: a BOM at the start of any of them is skipped."""
    first = tmp_path / "a.json"
    first.write_bytes(b"\xef\xbb\xbf" + "".join(event_line(i, 10) + "\n" for i in (1, 2)).encode())
    second = tmp_path / "b.json"
    second.write_bytes(b"\xef\xbb\xbf" + "".join(event_line(i, 10) + "\n" for i in (3, 1)).encode() + b"{bad\n")
    result = extract(db, [str(first), str(second)], 1, max_reject_share=0.5)
    assert (result.lines_read, result.loaded, result.duplicates, result.rejected) == (5, 3, 1, 1)
    assert db.conn.execute("SELECT line_number, reason FROM rejects").fetchall() == [(5, "invalid_json")]


def test_a_file_whose_name_looks_like_a_glob_is_read_as_named(tmp_path: Path) -> None:
    """run-all takes globs, but a pattern that matches nothing while a file has exactly that name is that file."""
    from xccel_cli.source import expand_sources

    literal = tmp_path / "dump[1].json"
    literal.write_text(event_line(1, 10) + "\n")
    other = tmp_path / "dump1.json"
    assert expand_sources([str(literal)]) == [str(literal)]
    other.write_text(event_line(2, 10) + "\n")
    assert expand_sources([str(literal)]) == [str(other)]  # a glob that matches wins, as in a shell
    assert expand_sources([str(literal), str(tmp_path / "*.json")]) == sorted({str(literal), str(other)})


def test_one_file_named_twice_is_read_once_in_its_place_by_path(db: Database, tmp_path: Path) -> None:
    """a.json and ./a.json (or dir/../a.json) are one file: read once, as the Spark job reads it (it read it
    twice: every line a duplicate); several files are ordered by their absolute paths, as Spark orders them."""
    from xccel_cli.source import expand_sources

    (tmp_path / "sub").mkdir()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text("".join(event_line(i, 10, minute=i) + "\n" for i in (1, 2)))
    second.write_text(event_line(3, 10) + "\n" + event_line(1, 11) + "\n")
    again = str(tmp_path / "sub" / ".." / "a.json")
    assert expand_sources([str(second), again, str(first)]) == [again, str(second)]
    result = extract(db, expand_sources([str(second), again, str(first)]), 1)
    assert (result.lines_read, result.loaded, result.duplicates) == (4, 3, 1)
    # the first line of id 1 is a.json's (customer 10), read first by path
    assert db.conn.execute("SELECT customer_id FROM raw_events WHERE event_id = 1").fetchone() == (10,)
