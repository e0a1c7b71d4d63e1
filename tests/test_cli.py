"""The real `xccel` command: exit codes and exact messages, secrets kept out of every output, logging,
and the `runs` / `status` commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from tests.conftest import invoke_xccel
from tests.dumps import dump, random_events
from tests.fault_server import free_port
from xccel_cli.cli import app

SECRET = "s3cret-Pa55"


@pytest.fixture
def dump_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.json"
    path.write_bytes(dump(random_events(300, seed=1)))
    return path


def test_a_missing_source(database_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dump.json"
    result = invoke_xccel(["run-all", "--source", str(missing), "--database-url", database_url])
    assert (result.exit_code, result.stdout, result.stderr) == (4, "", f"Error: source not found: {missing}\n")


def test_an_unreachable_database_keeps_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://xccel:{SECRET}@127.0.0.1:{port}/shop"
    result = invoke_xccel(["run-all", "--source", str(tmp_path / "x.json"), "--database-url", url])
    assert result.exit_code == 5
    assert result.stderr == (
        f"Error: cannot connect to the database at postgresql://xccel:***@127.0.0.1:{port}/shop: "
        f'connection failed: connection to server at "127.0.0.1", port {port} failed: '
        "Connection refused\n"
    )
    # the same through the environment, and with -v and --debug off: no password anywhere
    log = tmp_path / "xccel.log"
    env_result = invoke_xccel(["-v", "--log-file", str(log), "status"], env={"XCCEL_DATABASE_URL": url})
    assert env_result.exit_code == 5
    everything = env_result.stdout + env_result.stderr + log.read_text()
    assert SECRET not in everything
    assert "postgresql://xccel:***@127.0.0.1" in log.read_text()


@pytest.fixture
def password_role(pg_admin_url: str, database_url: str) -> Iterator[str]:
    """A role that must give its password (scram), on the test server: the URL with the right one."""
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        hba = conn.execute("SHOW hba_file").fetchone()[0]
        if not Path(hba).is_file():
            pytest.skip("the test server's pg_hba.conf is not local")
        original = Path(hba).read_text()
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(sql.SQL("CREATE ROLE xccel_pw LOGIN SUPERUSER PASSWORD {}").format(sql.Literal(SECRET)))
        Path(hba).write_text("local all xccel_pw scram-sha-256\nhost all xccel_pw all scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield urlunsplit(parts._replace(netloc=f"xccel_pw:{SECRET}@{host}"))
    finally:
        Path(hba).write_text(original)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY xccel_pw")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP ROLE IF EXISTS xccel_pw")


def test_a_wrong_password_is_refused_and_never_shown(password_role: str, dump_file: Path, tmp_path: Path) -> None:
    good = invoke_xccel(["run-all", "--source", str(dump_file), "--database-url", password_role])
    assert good.exit_code == 0, good.stderr  # the role and its password really work
    wrong = password_role.replace(SECRET, "not-" + SECRET)
    log = tmp_path / "xccel.log"
    result = invoke_xccel(
        ["-v", "--log-file", str(log), "run-all", "--source", str(dump_file), "--database-url", wrong]
    )
    assert result.exit_code == 5
    assert result.stderr.startswith("Error: cannot connect to the database at postgresql://xccel_pw:***@")
    assert 'password authentication failed for user "xccel_pw"' in result.stderr
    for text in (result.stdout, result.stderr, log.read_text(), good.stdout, good.stderr):
        assert SECRET not in text


def test_help_never_shows_a_configured_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XCCEL_DATABASE_URL", f"postgresql://me:{SECRET}@db.example/shop")
    runner = CliRunner()
    for command in ([], ["run-all"], ["runs"], ["status"], ["db"]):
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0
        assert SECRET not in result.output
        assert "Example: xccel" in result.output


COMMANDS = ("init-db", "extract", "sessionize", "load", "report", "run-all", "db", "serve", "runs", "status")


def test_help_version_and_completion_work_whatever_the_environment_holds(tmp_path: Path) -> None:
    """A bad XCCEL_* setting, or a log file that cannot be opened, fails a command, never its --help, --version
    or shell completion (the settings are resolved before Click parses a subcommand's --help)."""
    unopenable = str(tmp_path / "missing" / "x.log")
    bad = {"XCCEL_RETRIES": "lots", "XCCEL_SESSION_TIMEOUT_MINUTES": "0", "XCCEL_LOG_FILE": unopenable}
    for command in ([], *([name] for name in COMMANDS)):
        shown = invoke_xccel([*command, "--help"], env=bad)
        assert (shown.exit_code, shown.stderr) == (0, ""), (command, shown.stderr)
        assert shown.stdout.startswith(f"Usage: python -m xccel_cli {' '.join(command)}".rstrip() + " [OPTIONS]")
    version = invoke_xccel(["--version"], env=bad)
    assert (version.exit_code, version.stdout.startswith("xccel "), version.stderr) == (0, True, "")
    completed = CliRunner().invoke(
        app,
        [],
        prog_name="xccel",
        env={**bad, "_XCCEL_COMPLETE": "complete_bash", "COMP_WORDS": "xccel ru", "COMP_CWORD": "1"},
    )
    assert (completed.exit_code, completed.stdout.split()) == (0, ["run-all", "runs"])
    # the command itself still fails, before any connection, on the setting first and then on the log file
    for env, message in (
        (bad, "XCCEL_SESSION_TIMEOUT_MINUTES must be a whole number of minutes from 1 to 240, got '0'"),
        ({"XCCEL_LOG_FILE": unopenable}, f"cannot open the log file {unopenable}: No such file or directory"),
    ):
        failed = invoke_xccel(["status", "--database-url", "postgresql://nobody@127.0.0.1:9/none"], env=env)
        assert (failed.exit_code, failed.stdout, failed.stderr) == (3, "", f"Error: {message}\n")


def test_an_invalid_option_and_an_invalid_value() -> None:
    unknown = invoke_xccel(["run-all", "--bogus"])  # run as `python -m xccel_cli`, which is what usage shows
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "Usage: python -m xccel_cli run-all [OPTIONS]\nTry 'python -m xccel_cli run-all "
        "--help' for help.\n\nError: No such option: --bogus\n"
    )
    out_of_range = invoke_xccel(["run-all", "--timeout-minutes", "0"])
    assert (out_of_range.exit_code, out_of_range.stderr) == (
        3,
        "Error: the session timeout must be between 1 and 240 minutes, got 0\n",
    )
    bad_env = invoke_xccel(["run-all"], env={"XCCEL_RETRIES": "lots"})
    assert (bad_env.exit_code, bad_env.stderr) == (3, "Error: XCCEL_RETRIES must be a whole number, got 'lots'\n")


def test_quiet_verbose_and_log_file(database_url: str, dump_file: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "xccel.log"
    log.parent.mkdir()
    quiet = invoke_xccel(
        ["--quiet", "--log-file", str(log), "run-all", "--source", str(dump_file), "--database-url", database_url]
    )
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    logged = log.read_text()
    assert "run 1 (run-all) started on " in logged and "run 1 (run-all) succeeded" in logged
    assert "published " in logged
    assert " lines in " in logged and " loaded, 0 already loaded, " in logged  # the extract stage says what it did

    verbose = invoke_xccel(["-v", "run-all", "--source", str(dump_file), "--database-url", database_url])
    assert verbose.exit_code == 0
    assert "xccel: run 2 (run-all) started" in verbose.stderr
    assert "xccel: source " in verbose.stderr and "unchanged since run 1" in verbose.stderr

    failed = invoke_xccel(
        ["--log-file", str(log), "run-all", "--source", str(tmp_path / "gone.json"), "--database-url", database_url]
    )
    assert failed.exit_code == 4
    assert failed.stderr == f"Error: source not found: {tmp_path / 'gone.json'}\n"  # printed once
    assert f"ERROR xccel_cli.cli: failed: source not found: {tmp_path / 'gone.json'}" in log.read_text()


def test_runs_and_status(database_url: str, dump_file: Path, tmp_path: Path) -> None:
    nothing = invoke_xccel(["status", "--database-url", database_url])
    assert nothing.exit_code == 8 and "run `xccel init-db` first" in nothing.stderr

    assert invoke_xccel(["run-all", "--source", str(dump_file), "--database-url", database_url]).exit_code == 0
    fresh = invoke_xccel(["status", "--database-url", database_url])
    assert fresh.exit_code == 0, fresh.stderr
    lines = fresh.stdout.splitlines()
    assert lines[0].startswith("published: ") and " by run 1: " in lines[0]
    assert lines[1].startswith("last run: 1 (run-all) started ") and lines[1].endswith(": succeeded")

    assert (
        invoke_xccel(["run-all", "--source", str(tmp_path / "gone.json"), "--database-url", database_url]).exit_code
        == 4
    )
    failed = invoke_xccel(["status", "--json", "--database-url", database_url])
    assert failed.exit_code == 9
    data = json.loads(failed.stdout)
    assert data["last_run"]["status"] == "failed" and data["last_run_failed"] is True
    assert data["last_run"]["error"] == f"source not found: {tmp_path / 'gone.json'}"
    assert data["last_success"]["run_id"] == 1 and data["published_by_run_id"] == 1

    table = invoke_xccel(["runs", "--database-url", database_url])
    assert table.exit_code == 0
    assert table.stdout.startswith("xccel runs (newest first)\nrun 2  run-all  failed  started ")
    assert f"\n    source  {tmp_path / 'gone.json'}\n    stages  init_db " in table.stdout.split("\nrun 1 ")[0]
    assert (
        f"\n    error   source not found: {tmp_path / 'gone.json'}\n" in table.stdout
    )  # in full, in a pipe of 80 columns
    assert "\nrun 1  run-all  succeeded  started " in table.stdout and "\n    stages  init_db " in table.stdout
    assert all(f" · {stage} " in table.stdout for stage in ("extract", "sessionize", "load", "report"))
    listed = json.loads(invoke_xccel(["runs", "--json", "--limit", "1", "--database-url", database_url]).stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [(2, "failed")]


def test_a_hostile_schema_name_is_only_ever_an_identifier(database_url: str, dump_file: Path) -> None:
    schema = 'Shop "x"; DROP TABLE runs; --'
    env = {"XCCEL_SCHEMA": schema}
    ran = invoke_xccel(["run-all", "--json", "--source", str(dump_file), "--database-url", database_url], env=env)
    assert ran.exit_code == 0, ran.stderr
    reported = json.loads(invoke_xccel(["report", "--json", "--database-url", database_url], env=env).stdout)
    assert reported["events"] == json.loads(ran.stdout)["report"]["events"] > 0
    listed = json.loads(invoke_xccel(["runs", "--json", "--database-url", database_url], env=env).stdout)
    assert [run["status"] for run in listed] == ["succeeded"]
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    assert {name for where, name in tables if where == schema} >= {
        "raw_events",
        "rejects",
        "runs",
        "tb_events",
        "sessions",
        "publications",
    }
    assert [name for where, name in tables if where != schema] == []  # nothing landed anywhere else


@pytest.mark.parametrize(
    "args",
    [["report"], ["report", "--json"], ["report", "--by", "visit"], ["report", "--html", "dashboard.html"]],
)
def test_every_report_without_a_schema_says_what_to_do(args: list[str], database_url: str, tmp_path: Path) -> None:
    """--html read the dashboard's tables before asking for the schema: a raw SQL error and exit 5."""
    args = [str(tmp_path / arg) if arg.endswith(".html") else arg for arg in args]
    result = invoke_xccel([*args, "--database-url", database_url])
    assert result.exit_code == 8, result.stderr
    assert result.stderr.strip().splitlines() == [
        "Error: the database has no xccel schema in 'public' yet: run `xccel init-db` first"
    ]
    assert list(tmp_path.iterdir()) == []  # no page was written


def test_a_runs_limit_beyond_what_postgresql_counts_lists_every_run(database_url: str, dump_file: Path) -> None:
    """It reached the database as a LIMIT and came back as 'bigint out of range', exit 5."""
    assert invoke_xccel(["run-all", "--source", str(dump_file), "--database-url", database_url]).exit_code == 0
    result = invoke_xccel(["runs", "--json", "--limit", str(10**20), "--database-url", database_url])
    assert result.exit_code == 0, result.stderr
    assert [run["run_id"] for run in json.loads(result.stdout)] == [1]


def test_a_glob_that_matches_nothing_is_a_failed_run(database_url: str, dump_file: Path, tmp_path: Path) -> None:
    """An empty dump folder under cron: the run fails (exit 4), and status, runs and the metrics file must say
    so; it failed before it was recorded, so the run before it still looked like the last word."""
    assert invoke_xccel(["run-all", "--source", str(dump_file), "--database-url", database_url]).exit_code == 0
    pattern = str(tmp_path / "dumps" / "*.ndjson.gz")
    metrics = tmp_path / "xccel.prom"
    failed = invoke_xccel(
        ["run-all", "--source", pattern, "--metrics-file", str(metrics), "--database-url", database_url]
    )
    assert (failed.exit_code, failed.stderr) == (4, f"Error: source not found: no file matches {pattern}\n")
    status = invoke_xccel(["status", "--json", "--database-url", database_url])
    assert status.exit_code == 9, status.stdout
    last = json.loads(status.stdout)["last_run"]
    assert (last["run_id"], last["status"]) == (2, "failed")
    assert last["error"] == f"source not found: no file matches {pattern}"
    assert 'xccel_last_run_outcome{command="run-all",outcome="failed"} 1.0' in metrics.read_text()


def test_debug_shows_the_traceback_and_keeps_the_exit_code(database_url: str, tmp_path: Path) -> None:
    """--debug (or XCCEL_DEBUG=1) let the exception out of the command: every failure became exit 1, the code of
    a bug, where the table promises 4 for a missing source, 5 for a database, 7 for a busy lock..."""
    missing = tmp_path / "no-such-dump.json"
    result = invoke_xccel(["--debug", "run-all", "--source", str(missing), "--database-url", database_url])
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.rstrip().endswith(f"xccel_cli.errors.SourceError: source not found: {missing}")
    url = f"postgresql://xccel:{SECRET}@127.0.0.1:{free_port()}/shop"
    down = invoke_xccel(["status", "--database-url", url], env={"XCCEL_DEBUG": "1"})
    assert down.exit_code == 5, down.stderr
    assert "Traceback" in down.stderr and "DatabaseError: cannot connect to the database at " in down.stderr
    assert SECRET not in down.stderr
