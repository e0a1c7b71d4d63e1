"""`xccel init-db`: apply the versioned migrations in sql/migrations that the database has not seen."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from xccel_cli.db import Database, one_row, sql_names, translate_errors
from xccel_cli.errors import StateError

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass
class InitResult:
    applied: list[str] = field(default_factory=list)
    version: int = 0


def migrations() -> list[tuple[int, str]]:
    found = []
    for name in sql_names("migrations"):
        match = MIGRATION_NAME.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return found


def init_db(db: Database) -> InitResult:
    """Create or upgrade the schema; safe to run again. Each migration runs once; all pending ones run in one
    transaction, so a failing migration leaves the schema as it was."""
    result = InitResult()
    with db.transaction() as conn:
        # serialise concurrent init-db runs; released at commit
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('xccel-init:' || current_schema()))")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name in migrations():
            if version in done:
                continue
            db.run_file(f"migrations/{name}")
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            result.applied.append(name)
        result.version = max([v for v, _ in migrations()] + [0])
    return result


def require_schema(db: Database) -> None:
    """Fail with a clear message when init-db has not been run, or the code is newer than the schema."""
    with translate_errors():
        row = db.conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        latest = max([v for v, _ in migrations()] + [0])
        current = 0
        if row and row[0]:
            current = one_row(db.conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations"))[0]
    if current == 0:
        raise StateError(f"the database has no xccel schema in {db.schema!r} yet: run `xccel init-db` first")
    if current < latest:
        raise StateError(f"the xccel schema is at version {current}, this xccel needs {latest}: run `xccel init-db`")
