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


READER = "xccel_reader_only"


def test_grants_on_the_published_tables_survive_the_next_publication(database_url: str, pg_admin_url: str) -> None:
    """An analyst's role granted SELECT on tb_events and sessions keeps it: each publication swaps in new tables,
    which had none of the old ones' grants ('permission denied' for the reporting role after the next run)."""
    example = ROOT / "examples" / "events.ndjson.gz"
    run_all = ["run-all", "--json", "--source", str(example), "--database-url", database_url]
    assert invoke_xccel(run_all).exit_code == 0
    reader = sql.Identifier(READER)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(reader))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(reader))
        conn.execute(sql.SQL("GRANT SELECT ON tb_events TO {} WITH GRANT OPTION").format(reader))
        conn.execute("GRANT SELECT ON sessions TO PUBLIC")
        before = conn.execute("SELECT 'tb_events'::regclass::oid, 'sessions'::regclass::oid").fetchone()
    try:
        again = invoke_xccel([*run_all, "--full-refresh"])
        assert again.exit_code == 0, again.stderr
        report = json.loads(again.stdout)["report"]
        with psycopg.connect(database_url, autocommit=True) as conn:
            after = conn.execute("SELECT 'tb_events'::regclass::oid, 'sessions'::regclass::oid").fetchone()
            assert after is not None and before is not None and set(after).isdisjoint(before)  # new tables
            granted = conn.execute(
                "SELECT has_table_privilege(%(r)s, 'tb_events', 'SELECT WITH GRANT OPTION'),"
                " has_table_privilege(%(r)s, 'tb_events', 'INSERT'), has_table_privilege(%(r)s, 'sessions', 'SELECT')",
                {"r": READER},
            ).fetchone()
            assert granted == (True, False, True)  # the same grants, no more
            conn.execute(sql.SQL("SET ROLE {}").format(reader))
            counts = conn.execute("SELECT (SELECT count(*) FROM tb_events), (SELECT count(*) FROM sessions)").fetchone()
        assert counts == (report["events"], report["sessions"])
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(reader))
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(reader))
