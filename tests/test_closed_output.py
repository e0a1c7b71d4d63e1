"""A reader that goes away (`xccel runs | head -1`): the command ends quietly with 141, as a shell reports a
process SIGPIPE ended, instead of an internal error (exit 1) or Python's complaint about a broken pipe."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, command_environment, loaded_database, started_process
from xccel_cli.errors import ExitCode

pytestmark = pytest.mark.integration  # real processes: a closed pipe is the subject

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"


@pytest.fixture(scope="module")
def loaded_url(pg_admin_url: str) -> Iterator[str]:
    with loaded_database(pg_admin_url, "xccel_closed_output", EXAMPLE) as url:
        yield url


@pytest.mark.parametrize(
    "args",
    [["report", "--json"], ["report"], ["runs"], ["run-all", "--json", "--source", str(EXAMPLE)]],
    ids=["report --json", "report", "runs", "run-all --json"],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(loaded_url: str, args: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:
        proc = started_process(
            subprocess.Popen(
                [sys.executable, "-m", "xccel_cli", *args, "--database-url", loaded_url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=command_environment(None, data_dir),
                cwd=tempfile.gettempdir(),
            )
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # gone before the command has written anything (its start-up alone takes longer)
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=120)
    assert (code, stderr) == (ExitCode.OUTPUT_CLOSED, "")


def test_the_same_commands_print_their_output_to_a_reader_that_stays(loaded_url: str, tmp_path: Path) -> None:
    """The other side: with the reader there, the same processes exit 0 and print (the test above proves nothing
    if these fail for another reason)."""
    for args in (["report", "--json"], ["runs"]):
        with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:
            done = subprocess.run(
                [sys.executable, "-m", "xccel_cli", *args, "--database-url", loaded_url],
                capture_output=True,
                env=command_environment(None, data_dir),
                cwd=tempfile.gettempdir(),
                timeout=120,
            )
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
