"""What a command imports: every command pays for its imports at start-up, so run-all must not load what it never
uses (the web server, Spark, the bench's alternatives; requests for a local file; rich with --json)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Served, run_xccel

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"

# never needed by run-all on the PostgreSQL engine
NEVER_FOR_RUN_ALL = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pyspark",
    "pandas",
    "duckdb",
    "sqlalchemy",
    "prometheus_client",
    "psycopg_pool",
    "click",  # typer vendors its own copy; importing the package as well costs a second click
)
# needed only for an HTTP source, for the progress bar and tables, for --version
NOT_FOR_A_LOCAL_FILE_WITH_JSON = ("requests", "urllib3", "rich")


def imported_modules(stderr: str) -> set[str]:
    """The modules named in a `python -X importtime` log (its lines end in `| <indent><module>`)."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_the_command_line_module_imports_no_heavy_package() -> None:
    code = (
        "import sys, json; import xccel_cli.cli, xccel_cli.pipeline, xccel_cli.source, xccel_cli.spark.engine; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = top_level(
        set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout))
    )
    assert "psycopg" in loaded  # the check sees what was imported
    assert not loaded & set(NEVER_FOR_RUN_ALL + NOT_FOR_A_LOCAL_FILE_WITH_JSON)


@pytest.mark.integration
def test_run_all_on_a_local_file_imports_only_what_it_uses(database_url: str) -> None:
    result = run_xccel(
        ["run-all", "--source", str(EXAMPLE), "--json", "--database-url", database_url],
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert result.exit_code == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["run"]["status"] == "succeeded"
    loaded = top_level(imported_modules(result.stderr))
    assert {"psycopg", "msgspec", "typer"} <= loaded  # the log was read
    assert not loaded & set(NEVER_FOR_RUN_ALL + NOT_FOR_A_LOCAL_FILE_WITH_JSON)


@pytest.mark.integration
def test_run_all_over_http_imports_requests_but_not_the_rest(database_url: str, http_server: Served) -> None:
    url = http_server.add("/events.ndjson.gz", EXAMPLE.read_bytes())
    result = run_xccel(
        ["run-all", "--source", url, "--json", "--database-url", database_url], env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert result.exit_code == 0, result.stderr[-2000:]
    loaded = top_level(imported_modules(result.stderr))
    assert "requests" in loaded
    assert not loaded & set(NEVER_FOR_RUN_ALL)
