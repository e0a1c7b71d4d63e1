"""Configuration: every bad setting is one line naming where it came from, and passwords never show."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import Served, invoke_xccel
from xccel_cli.config import Settings, mask_password, mask_url, resolve
from xccel_cli.db import one_row
from xccel_cli.errors import ExitCode

UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none"  # config errors must come before any connection


# --- one settings object, resolved once ----------------------------------------------------------------


def test_a_bad_setting_fails_a_command_that_does_not_use_it_before_any_connection(
    tmp_path: Path, database_url: str
) -> None:
    """init-db fetches nothing, yet a bad XCCEL_HTTP_TIMEOUT_SECONDS fails it at once: no embedded server is
    started (its data directory is never made) and the configured database is not touched."""
    data = tmp_path / "data"
    bad = {"XCCEL_HTTP_TIMEOUT_SECONDS": "soon", "XCCEL_DATA_DIR": str(data)}
    expected = (
        "Error: XCCEL_HTTP_TIMEOUT_SECONDS must be a number of seconds more than 0 and at most 3600, got 'soon'\n"
    )
    embedded = invoke_xccel(["init-db"], env=bad)
    assert (embedded.exit_code, embedded.stdout, embedded.stderr) == (int(ExitCode.CONFIG), "", expected)
    assert not data.exists()
    configured = invoke_xccel(["init-db"], env={**bad, "XCCEL_DATABASE_URL": database_url})
    assert (configured.exit_code, configured.stderr) == (int(ExitCode.CONFIG), expected)
    with psycopg.connect(database_url) as conn:
        tables = one_row(conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))[0]
    assert tables == 0
    fine = invoke_xccel(["init-db"], env={"XCCEL_DATABASE_URL": database_url})
    assert fine.exit_code == 0, fine.stderr  # the same command without the bad setting does connect


def test_an_option_beats_the_environment_which_beats_the_default(tmp_path: Path) -> None:
    assert resolve({}) == Settings()  # nothing set: every field its documented default
    settings = resolve(
        {
            "XCCEL_MAX_REJECT_SHARE": "0.5",
            "XCCEL_RETRIES": "7",
            "XCCEL_SESSION_TIMEOUT_MINUTES": "45",
            "XCCEL_RULES": "ga-universal",
            "XCCEL_SPLIT_AT_MIDNIGHT": "off",
            "XCCEL_MAX_LINE_BYTES": "4096",
            "XCCEL_CORS_ORIGINS": "https://a.example, https://b.example",
            "XCCEL_DATA_DIR": str(tmp_path),
            "XCCEL_SCHEMA": "",  # empty is unset
            "DATABASE_URL": "postgresql://u@h/db",
        }
    )
    assert (settings.max_reject_share, settings.retries, settings.max_line_bytes) == (0.5, 7, 4096)
    assert (settings.data_dir, settings.schema, settings.database_url) == (tmp_path, "public", "postgresql://u@h/db")
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert (settings.reject_share_for(None), settings.reject_share_for(0.1)) == (0.5, 0.1)
    assert (settings.retries_for(None), settings.retries_for(0)) == (7, 0)
    assert (settings.line_bytes_for(None), settings.line_bytes_for(2048)) == (4096, 2048)
    assert settings.cors_origins_for(["https://c.example"]) == ("https://c.example",)
    # as a browser sends the Origin header: scheme and host in lower case
    assert settings.cors_origins_for(["HTTPS://Shop.Example:8443", "https://shop.example:8443"]) == (
        "https://shop.example:8443",
    )
    assert resolve({"XCCEL_CORS_ORIGINS": "https://[::1]:80, http://A.B"}).cors_origins == (
        "https://[::1]:80",
        "http://a.b",
    )
    assert settings.database_url_for("postgresql://v@w/x") == "postgresql://v@w/x"
    rules = settings.session_rules()
    # the preset from the environment, then each rule setting on top of it
    assert (rules.timeout_minutes, rules.split_at_midnight, rules.split_on_referrer) == (45, False, True)
    rules = settings.session_rules("ga4", timeout_minutes=10, split_at_midnight=True)
    assert (rules.timeout_minutes, rules.split_at_midnight, rules.split_on_referrer) == (10, True, False)
    with pytest.raises(AttributeError):
        settings.retries = 1  # type: ignore[misc]  # frozen: resolved once, changed by nobody


# --- masking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # URL userinfo, with a password holding '@' and ':'
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:se@c:ret@h/db failed", "postgresql://u:***@h/db failed"),
        # a password in the query hides the rest of the query: written unencoded, it may hold '&'
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=se:cret&application_name=x",
            "postgresql://u@h/db?sslmode=require&password=***",
        ),
        # libpq keyword strings: plain, spaces around '=', quoted with spaces and an escaped quote
        ("host=h password=secret dbname=db", "host=h password=*** dbname=db"),
        ("host=h password = secret dbname=db", "host=h password = *** dbname=db"),
        ("host=h password='se cr\\'et' dbname=db", "host=h password=*** dbname=db"),
        ("host=h password='never closed", "host=h password=***"),
        ("PGPASSWORD=secret psql", "PGPASSWORD=*** psql"),
    ],
)
def test_mask_password_hides_every_shape(text: str, masked: str) -> None:
    assert mask_password(text) == masked
    assert mask_password(masked) == masked  # masking twice changes nothing


def test_a_masked_url_quoted_in_a_message_keeps_its_punctuation() -> None:
    """The CLI masks the whole error line again; the ':' after an already masked URL must survive."""
    for url, shown in [
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
    ]:
        assert mask_url(url) == shown
        line = f"cannot connect to the database at {mask_url(url)}: connection failed"
        assert mask_password(line) == f"cannot connect to the database at {shown}: connection failed"
    assert mask_password("password=***, then") == "password=***, then"


def test_a_password_in_the_query_never_shows_through_the_command() -> None:
    url = "postgresql://nobody@127.0.0.1:9/none?password=pw-secret:x"
    result = invoke_xccel(["status", "--database-url", url])
    assert result.exit_code == 5
    assert "pw-secret" not in result.stderr + result.stdout
    assert result.stderr.startswith(
        "Error: cannot connect to the database at postgresql://nobody@127.0.0.1:9/none?password=***: "
    )


# --- settings from the environment are named; from an option, described ------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["sessionize"],
            {"XCCEL_SESSION_TIMEOUT_MINUTES": "abc"},
            "XCCEL_SESSION_TIMEOUT_MINUTES must be a whole number of minutes from 1 to 240, got 'abc'",
        ),
        (
            ["sessionize"],
            {"XCCEL_SESSION_TIMEOUT_MINUTES": "0"},
            "XCCEL_SESSION_TIMEOUT_MINUTES must be a whole number of minutes from 1 to 240, got '0'",
        ),
        (
            ["sessionize", "--timeout-minutes", "300"],
            {"XCCEL_SESSION_TIMEOUT_MINUTES": "45"},  # the option wins (a bad setting fails every command)
            "the session timeout must be between 1 and 240 minutes, got 300",
        ),
        (
            ["run-all", "--source", "x.json"],
            {"XCCEL_MAX_REJECT_SHARE": "x"},
            "XCCEL_MAX_REJECT_SHARE must be a number from 0 to 1, got 'x'",
        ),
        (
            ["run-all", "--source", "x.json"],
            {"XCCEL_MAX_REJECT_SHARE": "1.5"},
            "XCCEL_MAX_REJECT_SHARE must be a number from 0 to 1, got '1.5'",
        ),
        (
            ["run-all", "--source", "x.json", "--max-reject-share", "1.5"],
            {},
            "the maximum reject share must be between 0 and 1, got 1.5",
        ),
        (
            ["sessionize"],
            {"XCCEL_MAX_SESSION_HOURS": "inf"},
            "XCCEL_MAX_SESSION_HOURS must be a number of hours more than 0 and at most 744, got 'inf'",
        ),
        (["sessionize"], {"XCCEL_RULES": "ga5"}, "XCCEL_RULES must be one of: ga4, ga-universal, got 'ga5'"),
        (
            ["sessionize"],
            {"XCCEL_TIMEZONE": "Mars/Olympus_Mons"},
            "XCCEL_TIMEZONE must be an IANA time zone name such as Europe/Amsterdam, got 'Mars/Olympus_Mons'",
        ),
        # files of the zone folder that are no zone: PostgreSQL refuses them (it was exit 5, a database error)
        (
            ["sessionize", "--split-at-midnight", "--timezone", "localtime"],
            {},
            "unknown time zone 'localtime': use an IANA name such as Europe/Amsterdam",
        ),
        (
            ["sessionize"],
            {"XCCEL_TIMEZONE": "posixrules"},
            "XCCEL_TIMEZONE must be an IANA time zone name such as Europe/Amsterdam, got 'posixrules'",
        ),
        (
            ["sessionize", "--split-at-midnight", "--timezone", "right/UTC"],
            {},
            "unknown time zone 'right/UTC': use an IANA name such as Europe/Amsterdam",
        ),
        (["sessionize"], {"XCCEL_SPLIT_AT_MIDNIGHT": "2"}, "XCCEL_SPLIT_AT_MIDNIGHT must be true or false, got '2'"),
        (
            ["init-db"],
            {"XCCEL_SCHEMA": "s" * 64},
            f"XCCEL_SCHEMA must be at most 63 characters (and no NUL), got '{'s' * 64}'",
        ),
        (["run-all", "--source", "x.json"], {"XCCEL_RETRIES": "21"}, "XCCEL_RETRIES must be between 0 and 20, got 21"),
        # it was read as "off" unless exactly 1: a typo silently gave no traceback
        (["init-db"], {"XCCEL_DEBUG": "verbose"}, "XCCEL_DEBUG must be true or false, got 'verbose'"),
        (
            ["report"],
            {"XCCEL_DATABASE_URL": " "},
            "the database URL is empty (XCCEL_DATABASE_URL is set but empty; unset it for DATABASE_URL or the "
            "embedded server)",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(args: list[str], env: dict[str, str], message: str) -> None:
    result = invoke_xccel([*args, "--database-url", UNREACHABLE], env=env)
    assert (result.exit_code, result.stdout) == (3, ""), result.stderr
    assert result.stderr == f"Error: {message}\n"


@pytest.mark.parametrize("command", [["report"], ["init-db"], ["db"], ["run-all", "--source", "-"]])
def test_an_empty_database_url_option_is_an_error_not_the_embedded_server(command: list[str]) -> None:
    """--database-url "$DB" with DB unset: the run went to a private embedded server, where nobody looks."""
    result = invoke_xccel([*command, "--database-url", ""], input=b"")
    assert (result.exit_code, result.stdout) == (3, ""), result.stderr
    assert result.stderr == (
        "Error: the database URL is empty (--database-url ''): give a PostgreSQL URL, or leave the option out for "
        "XCCEL_DATABASE_URL or the embedded server\n"
    )


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        (
            "XCCEL_HTTP_TIMEOUT_SECONDS",
            ["-1", "0", "abc", "nan", "1e9"],
            "a number of seconds more than 0 and at most 3600",
        ),
        ("XCCEL_RETRY_BACKOFF_SECONDS", ["-1", "abc", "inf"], "a number of seconds from 0 to 3600"),
    ],
)
def test_bad_http_timing_settings_are_config_errors(
    name: str, values: list[str], expected: str, http_server: Served
) -> None:
    source = http_server.add("/e.json", b"")
    for value in values:
        # resolved with every other setting when the command starts: before any connection or request
        result = invoke_xccel(["extract", "--source", source, "--database-url", UNREACHABLE], env={name: value})
        assert (result.exit_code, result.stderr) == (3, f"Error: {name} must be {expected}, got '{value}'\n")
    assert http_server.requests == []  # refused before any request


# --- the source ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "env", "message"),
    [
        (["--source", ""], {}, "the source is empty (--source ''): give an http(s) URL, a file path or '-'"),
        (["--source", " "], {}, "the source is empty (--source ' '): give an http(s) URL, a file path or '-'"),
        (
            [],
            {"XCCEL_SOURCE": ""},
            "the source is empty (XCCEL_SOURCE is set but empty; unset it for the default "
            "dump): give an http(s) URL, a file path or '-'",
        ),
    ],
)
def test_an_empty_source_is_an_error_not_the_default_dump(option: list[str], env: dict[str, str], message: str) -> None:
    result = invoke_xccel(["run-all", *option, "--database-url", UNREACHABLE], env=env)
    assert (result.exit_code, result.stderr) == (3, f"Error: {message}\n")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("https://[::1", "invalid source URL https://[::1: its host cannot be parsed"),
        ("http://u:pw-secret@[::1/e.json", "invalid source URL http://u:***@[::1/e.json: its host cannot be parsed"),
        ("http://", "invalid source URL http://: it has no host"),
        ("https:///e.json", "invalid source URL https:///e.json: it has no host"),
        (
            "http://127.0.0.1:99999/x",
            "invalid source URL http://127.0.0.1:99999/x: the port must be a number from 1 to 65535",
        ),
        (
            "http://u:pw-secret@127.0.0.1:0/x",
            "invalid source URL http://u:***@127.0.0.1:0/x: the port must be a number from 1 to 65535",
        ),
        (
            "http://127.0.0.1:http/x",
            "invalid source URL http://127.0.0.1:http/x: the port must be a number from 1 to 65535",
        ),
    ],
)
def test_a_url_that_cannot_be_valid_fails_at_once(source: str, message: str) -> None:
    # an unreachable database: the source is checked before anything is connected or retried (a retry would
    # log a warning line on stderr, and wait an hour)
    result = invoke_xccel(
        ["run-all", "--source", source, "--database-url", UNREACHABLE], env={"XCCEL_RETRY_BACKOFF_SECONDS": "3600"}
    )
    assert (result.exit_code, result.stderr) == (4, f"Error: {message}\n")


# --- .env: read by the real command's entry point, from its working directory ----------------------------------


def _in_folder_with_dotenv(folder: Path, dotenv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`xccel status` run as a user runs it, in a folder holding this .env: (exit code, stderr)."""
    import subprocess
    import sys

    from tests.conftest import command_environment

    (folder / ".env").write_text(dotenv)
    done = subprocess.run(
        [sys.executable, "-m", "xccel_cli", "status", "--database-url", UNREACHABLE],
        capture_output=True,
        text=True,
        cwd=folder,
        env=command_environment(env, str(folder / "data")),
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.mark.integration
def test_dotenv_is_read_below_the_environment(tmp_path: Path) -> None:
    """export, quotes and comments as shells write them; the environment beats .env."""
    dotenv = '# settings\nexport XCCEL_RETRIES="21"  # too many\n'
    code, stderr = _in_folder_with_dotenv(tmp_path, dotenv)
    assert (code, stderr) == (3, "Error: XCCEL_RETRIES must be between 0 and 20, got 21\n")
    code, stderr = _in_folder_with_dotenv(tmp_path, dotenv, {"XCCEL_RETRIES": "2"})
    assert code == 5 and stderr.startswith("Error: cannot connect to the database at "), stderr


@pytest.mark.integration
def test_xccel_database_url_in_dotenv_wins_over_database_url_in_the_environment(tmp_path: Path) -> None:
    """The README's rule for the two names: XCCEL_DATABASE_URL wins wherever each is set."""
    import subprocess
    import sys

    from tests.conftest import command_environment

    (tmp_path / ".env").write_text("XCCEL_DATABASE_URL=postgresql://from_dotenv@127.0.0.1:1/xccel\n")
    env = command_environment({"DATABASE_URL": "postgresql://from_environment@127.0.0.1:1/xccel"}, str(tmp_path))
    command = [sys.executable, "-m", "xccel_cli", "status"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("Error: cannot connect to the database at postgresql://from_dotenv@127.0.0.1:1/")


@pytest.mark.integration
@pytest.mark.parametrize(
    "dotenv",
    [
        'XCCEL_DATABASE_URL="postgresql://shop:pa55word@db.example/shop\n',  # the closing quote forgotten
        "XCCEL_RULES=ga-universal\nXCCEL DATABASE_URL=postgresql://shop:pa55word@db.example/shop\n",
    ],
)
def test_a_dotenv_line_that_cannot_be_read_is_a_configuration_error(dotenv: str, tmp_path: Path) -> None:
    """It was skipped with a warning from python-dotenv: a dropped XCCEL_DATABASE_URL sent the run to the
    embedded server, and its exit code said nothing was wrong."""
    code, stderr = _in_folder_with_dotenv(tmp_path, dotenv)
    line = dotenv.count("\n", 0, dotenv.index("DATABASE_URL")) + 1
    assert (code, stderr.splitlines()) == (3, [f"Error: cannot read .env: line {line} is not NAME=value"]), stderr
    assert "pa55word" not in stderr


def test_a_metrics_file_that_is_a_directory_fails_before_the_run(tmp_path: Path) -> None:
    """It passed the check (its parent exists), the run published, and only then the command failed: exit 3
    after the work was done, with no figures written."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    expected = f"Error: the metrics file is a directory: {folder}\n"
    option = invoke_xccel(
        ["run-all", "--source", "x.json", "--metrics-file", str(folder), "--database-url", UNREACHABLE]
    )
    assert (option.exit_code, option.stderr) == (3, expected)
    env = invoke_xccel(
        ["run-all", "--source", "x.json", "--database-url", UNREACHABLE], env={"XCCEL_METRICS_FILE": str(folder)}
    )
    assert (env.exit_code, env.stderr) == (3, expected)
