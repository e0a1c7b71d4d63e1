"""Operating xccel: what `status` and `runs` say about a killed run, `load` after a newer extract,
`--quiet` on every command."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psycopg
import pytest

from tests.conftest import invoke_xccel
from tests.dumps import dump, random_events
from tests.test_faults import start_xccel, wait_for_line, wait_until

RECORDS = random_events(2000, customers=40, seed=23)


@pytest.fixture
def days(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "day1.json", tmp_path / "day2.json"
    first.write_bytes(dump(RECORDS[:1200]))
    second.write_bytes(dump(RECORDS))
    return first, second


def xccel_backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'xccel'").fetchone()[0]


@pytest.mark.integration
def test_status_calls_a_killed_run_interrupted_before_the_next_run(database_url: str, days: tuple[Path, Path]) -> None:
    assert invoke_xccel(["run-all", "--source", str(days[0]), "--database-url", database_url]).exit_code == 0
    proc = start_xccel(
        ["run-all", "--source", str(days[1]), "--database-url", database_url], env={"XCCEL_TEST_PAUSE_AT": "load"}
    )
    wait_for_line(proc, "paused at load")

    alive = invoke_xccel(["status", "--json", "--database-url", database_url])
    assert alive.exit_code == 0, alive.stderr  # a run in progress is not a failure
    assert json.loads(alive.stdout)["last_run"]["status"] == "running"

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: xccel_backends(database_url) == 0, "the killed run's connection to close")
    dead = invoke_xccel(["status", "--database-url", database_url])
    assert dead.exit_code == 9
    assert (
        ": interrupted: the run ended without recording an outcome (killed, or the connection was lost)" in dead.stdout
    )
    runs = json.loads(invoke_xccel(["runs", "--json", "--database-url", database_url]).stdout)
    assert [r["status"] for r in runs] == ["interrupted", "succeeded"]


def test_load_refuses_a_result_older_than_the_events(database_url: str, days: tuple[Path, Path]) -> None:
    url = ["--database-url", database_url]
    for args in (
        ["init-db"],
        ["extract", "--source", str(days[0])],
        ["sessionize"],
        ["extract", "--source", str(days[1])],
    ):
        assert invoke_xccel([*args, *url]).exit_code == 0
    stale = invoke_xccel(["load", *url])
    assert (stale.exit_code, stale.stdout) == (8, "")
    assert stale.stderr == (
        "Error: the sessionized result is out of date (run 3 extracted events after it): run `xccel sessionize` again\n"
    )
    assert invoke_xccel(["sessionize", *url]).exit_code == 0
    assert invoke_xccel(["load", *url]).exit_code == 0
    reported = json.loads(invoke_xccel(["report", "--json", *url]).stdout)
    assert reported["events"] == len({r["id"] for r in RECORDS if r["event"]["customer-id"] is not None})


def test_quiet_silences_every_command_that_changes_data(
    database_url: str, days: tuple[Path, Path], tmp_path: Path
) -> None:
    url = ["--database-url", database_url]
    steps = [
        ["init-db"],
        ["extract", "--source", str(days[0])],
        ["sessionize"],
        ["load"],
        ["report", "--html", str(tmp_path / "page.html")],
    ]
    for args in steps:
        said = invoke_xccel([*args, *url])
        assert said.exit_code == 0 and (said.stdout + said.stderr).strip(), args  # each says what it did ...
    for args in steps[:4]:
        quiet = invoke_xccel(["--quiet", *args, *url])
        assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", ""), args  # ... unless told not to
    html = invoke_xccel(["--quiet", "report", "--json", "--html", str(tmp_path / "again.html"), *url])
    assert html.stderr == "" and json.loads(html.stdout)["events"] > 0  # what was asked for is still printed
    assert (tmp_path / "again.html").read_text().startswith("<!DOCTYPE html>")


def postmaster_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_the_embedded_server_stops_after_a_killed_command(tmp_path: Path, days: tuple[Path, Path]) -> None:
    data = tmp_path / "data"
    env = {"XCCEL_DATA_DIR": str(data)}
    proc = start_xccel(["run-all", "--source", str(days[0])], env={**env, "XCCEL_TEST_PAUSE_AT": "load"})
    try:
        wait_for_line(proc, "paused at load")
        assert postmaster_running(data)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    try:
        assert postmaster_running(data)  # the killed command could not stop it ...
        later = invoke_xccel(["status"], env=env)
        assert later.exit_code == 9 and "interrupted" in later.stdout
        assert not postmaster_running(data)  # ... the next command that used it did
    finally:
        if postmaster_running(data):  # do not leave a server behind when the test fails
            os.kill(int((data / "pgdata" / "postmaster.pid").read_text().split()[0]), signal.SIGTERM)
