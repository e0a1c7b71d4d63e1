"""`xccel db --psql` on the embedded server opens the psql bundled with the wheel."""

from __future__ import annotations

from tests.conftest import run_xccel


def test_db_psql_runs_the_bundled_psql_on_the_embedded_server() -> None:
    result = run_xccel(["db", "--psql"], input=b"SELECT 40 + 2 AS answer;\n")
    assert result.exit_code == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "42" in result.stdout
