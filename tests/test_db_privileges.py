"""xccel as a role with only the privileges it needs: its schema, not the database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.conftest import ROOT, invoke_xccel

ROLE = "xccel_app_only"


@pytest.fixture
def schema_only_role(pg_admin_url: str, database_url: str) -> Iterator[str]:
    """A login role that may create in the schemas `public` and `shop` but not in the database (no CREATE on
    it): a schema made for the application by its administrator. Yields the database's URL as that role."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
        conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))
        conn.execute(sql.SQL("GRANT CREATE, USAGE ON SCHEMA public TO {}").format(sql.Identifier(ROLE)))
        conn.execute(sql.SQL("CREATE SCHEMA shop AUTHORIZATION {}").format(sql.Identifier(ROLE)))
    try:
        yield urlunsplit(urlsplit(database_url)._replace(netloc=f"{ROLE}@"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(ROLE)))
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


@pytest.mark.parametrize("schema", ["public", "shop"])
def test_run_all_needs_no_create_on_the_database_when_its_schema_exists(schema: str, schema_only_role: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS checks the database's CREATE privilege even for a schema that exists:
    init-db and run-all failed with 'permission denied for database' where the role had all it needed."""
    env = {"XCCEL_SCHEMA": schema}
    init = invoke_xccel(["init-db", "--database-url", schema_only_role], env=env)
    assert init.exit_code == 0, init.stderr
    example = ROOT / "examples" / "events.ndjson.gz"
    ran = invoke_xccel(["run-all", "--json", "--source", str(example), "--database-url", schema_only_role], env=env)
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["report"]["customers"] > 0


def test_a_missing_schema_the_role_cannot_create_is_one_line(schema_only_role: str, tmp_path: Path) -> None:
    missing = invoke_xccel(["init-db", "--database-url", schema_only_role], env={"XCCEL_SCHEMA": "other"})
    assert missing.exit_code == 5
    assert missing.stderr == "Error: database error: permission denied for database " + (
        f"{urlsplit(schema_only_role).path.lstrip('/')}\n"
    )
