"""No secret, ever: passwords and signed-URL parameters never reach stderr, stdout, the log or a table,
not even in pieces, not even through a parser's error message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Served, run_xccel
from xccel_cli import secrets
from xccel_cli.db import open_connection
from xccel_cli.errors import DatabaseError
from xccel_cli.secrets import mask_password, mask_url

# real xccel processes: killed, raced, their output read
pytestmark = pytest.mark.integration

DEAD = "127.0.0.1:9"  # nothing listens on the discard port: connection refused at once


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    secrets.forget_all()
    yield
    secrets.forget_all()


def pieces(secret: str, size: int = 4) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaked(secret: str, text: str) -> set[str]:
    return {piece for piece in pieces(secret) if piece in text}


# --- the shapes of the issue -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret", "shown"),
    [
        # a bad percent-escape: libpq's own message quotes the password
        ("postgresql://u:Sec%ZZret@127.0.0.1:9/x", "Sec%ZZret", "postgresql://u:***@127.0.0.1:9/x"),
        # unencoded '@', ':', '/', '%', '?', '&' in the password: the userinfo ends at the last '@'
        ("postgresql://u:S3cr@:/%?&t=x@127.0.0.1:9/x", "S3cr@:/%?&t=x", "postgresql://u:***@127.0.0.1:9/x"),
        # the same in the query: nothing after password= can be trusted to be another parameter, and
        # its '@' could end a userinfo that starts at the port's ':' (both readings are hidden)
        ("postgresql://u@127.0.0.1:9/x?password=S3cr@:/%?&t=x", "S3cr@:/%?&t=x", "postgresql://u@127.0.0.1:***"),
        ("postgresql://u@h/x?password=S3cr@:/%?&t=x", "S3cr@:/%?&t=x", "postgresql://u@h/x?password=***"),
    ],
)
def test_a_broken_database_url_never_shows_its_password(url: str, secret: str, shown: str, tmp_path: Path) -> None:
    assert mask_url(url) == shown
    log = tmp_path / "xccel.log"
    result = run_xccel(["--log-file", str(log), "status", "--database-url", url])
    assert result.exit_code == 5
    output = result.stdout + result.stderr + log.read_text()
    assert not leaked(secret, output), output
    assert result.stderr.startswith(f"Error: invalid database URL {shown}: ") or result.stderr.startswith(
        f"Error: cannot connect to the database at {shown}: "
    )
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://b.s3.amazonaws.com/e.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXX%2F2026"
            "&X-Amz-Signature=0123456789abcdef",
            "https://b.s3.amazonaws.com/e.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***",
        ),
        ("https://h/e.json?X-Goog-Signature=deadbeef&X-Goog-Date=1", "https://h/e.json?X-Goog-Signature=***"),
        ("https://h/e.json?sv=2022&sig=abc%2Bdef&se=2026", "https://h/e.json?sv=2022&sig=***"),
        ("https://h/e.json?access_token=tok123&page=2", "https://h/e.json?access_token=***"),
        ("https://h/e.json?key=AIzaSy123", "https://h/e.json?key=***"),
        ("https://h/e.json?signature=s1&token=t2", "https://h/e.json?signature=***"),
        ("https://h/e.json?monkey=1&page=2", "https://h/e.json?monkey=1&page=2"),  # not every name ending in key
        ("https://me:pw-secret@h/e.json", "https://me:***@h/e.json"),
    ],
)
def test_source_url_secrets_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_password(f"GET {url} failed") == f"GET {shown} failed"


def test_source_secrets_stay_out_of_stderr_the_log_and_the_runs_table(
    database_url: str, http_server: Served, tmp_path: Path
) -> None:
    token, signature = "tok-4f9a7c21e0", "sig0b3e8d5a77f1"
    missing = f"{http_server.base_url}/missing.json?token={token}&X-Amz-Signature={signature}"
    log = tmp_path / "xccel.log"
    failed = run_xccel(
        ["-v", "--log-file", str(log), "run-all", "--retries", "0", "--source", missing, "--database-url", database_url]
    )
    assert failed.exit_code == 4, failed.stderr
    served = http_server.add(f"/e.json?token={token}", b'{"id": 1, "type": "page_view", "event": {}}\n')
    ok = run_xccel(
        ["-v", "--log-file", str(log), "run-all", "--max-reject-share", "1", "--source", served]
        + ["--database-url", database_url]
    )
    assert ok.exit_code == 0, ok.stderr
    assert any("token=" in request["path"] for request in http_server.requests)  # the real URL was fetched
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT coalesce(source, ''), coalesce(error, '') FROM runs").fetchall()
        stored = " ".join(" ".join(row) for row in rows)
    text = failed.stdout + failed.stderr + ok.stdout + ok.stderr + log.read_text() + stored
    assert "missing.json?token=***" in text  # masked, not dropped
    for secret in (token, signature):
        assert not leaked(secret, text), text


# --- property: random passwords in every form, a dead and a live server -------------------------------

# the alphabet of ordinary output: a password piece made only of these could occur by chance
_PLAIN = re.compile(r"[A-Za-z0-9 .,:;/_()'\"=*-]{4}")


def _meaningful(password: bytes) -> bool:
    text = password.decode("latin-1")
    return len(password) >= 8 and not any(_PLAIN.fullmatch(piece) for piece in pieces(text))


passwords = st.binary(min_size=8, max_size=20).filter(lambda b: b"\x00" not in b)


def forms(password: bytes) -> set[str]:
    """The password as it could show up in text: raw, percent-encoded, escaped by Python's streams."""
    raw = password.decode("utf-8", "surrogateescape")
    return {
        raw,
        quote(password, safe=""),
        raw.encode("ascii", "backslashreplace").decode("ascii"),
        password.decode("latin-1"),
    }


def assert_no_piece(password: bytes, output: str) -> None:
    for form in forms(password):
        assert not leaked(form, output), (form, output)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _keyword_value(password: bytes) -> str:
    raw = password.decode("utf-8", "surrogateescape")
    return "'" + raw.replace("\\", "\\\\").replace("'", "\\'") + "'"


def database_urls(password: bytes, host: str, dbname: str, query: str = "") -> list[str]:
    """Every way to put the password into a connection string (host: 'h:port' or a socket directory)."""
    raw = password.decode("utf-8", "surrogateescape")
    encoded = quote(password, safe="")
    socket = host.startswith("/")
    netloc, hostq = ("", f"host={quote(host, safe='')}&") if socket else (host, "")
    name, _, port = host.partition(":")
    keyword_host = f"host={host}" if socket else f"host={name} port={port}"
    return [
        f"postgresql://postgres:{raw}@{netloc}/{dbname}?{hostq}{query}".rstrip("?&"),
        f"postgresql://postgres:{encoded}@{netloc}/{dbname}?{hostq}{query}".rstrip("?&"),
        f"postgresql://postgres@{netloc}/{dbname}?{hostq}{query}password={raw}",
        f"postgresql://postgres@{netloc}/{dbname}?{hostq}{query}password={encoded}",
        f"{keyword_host} dbname={dbname} user=postgres password={_keyword_value(password)}",
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(password=passwords, form=st.integers(0, 4))
def test_property_no_piece_of_a_password_in_a_connection_error(password: bytes, form: int) -> None:
    assume(_meaningful(password))
    secrets.forget_all()
    url = database_urls(password, DEAD, "x")[form]
    secrets.remember_url(url)  # what config.database_url does with every configured URL
    shown = mask_url(url)
    assert_no_piece(password, shown)
    with pytest.raises(DatabaseError) as failure:
        open_connection(url, shown, "public")
    assert_no_piece(password, mask_password(str(failure.value)))
    assert "\n" not in str(failure.value).strip()


def _xccel(args: list[str], log: Path) -> tuple[int, str]:
    """Run the real command with arguments that may hold any byte but NUL; everything it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    with tempfile.TemporaryDirectory(prefix="xccel-data-") as data_dir:  # gone when the command is
        env["XCCEL_DATA_DIR"] = data_dir
        proc = subprocess.run(
            [sys.executable, "-m", "xccel_cli", "--log-file", str(log), *args],
            capture_output=True,
            env=env,
            timeout=120,
            cwd=tempfile.gettempdir(),
        )
    written = (proc.stdout + proc.stderr).decode("utf-8", "surrogateescape")
    return proc.returncode, written + (log.read_text("utf-8", "surrogateescape") if log.exists() else "")


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(password=passwords, form=st.integers(0, 4))
def test_property_the_command_never_shows_a_password_of_a_dead_server(
    password: bytes, form: int, tmp_path: Path
) -> None:
    assume(_meaningful(password))
    url = database_urls(password, DEAD, "x")[form]
    code, output = _xccel(["status", "--database-url", url], tmp_path / f"dead-{form}.log")
    assert code == 5, output
    assert_no_piece(password, output)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(password=passwords, form=st.integers(0, 4))
@example(password="ü%@/:?&'\\ zQ\x7f".encode(), form=1)  # connects: percent-encoded
@example(password="S3cr@:/%?&t=xé".encode(), form=3)
def test_property_the_command_never_shows_a_password_of_a_live_server(
    password: bytes, form: int, database_url: str, http_server: Served, tmp_path: Path
) -> None:
    """The test server trusts every local connection, so any password connects: the run goes through
    init-db and into the runs table, and fails on a source whose token is the same password."""
    assume(_meaningful(password))
    parts = urlsplit(database_url)
    socket_dir = dict(p.split("=", 1) for p in parts.query.split("&") if p).get("host")
    host = socket_dir or f"{parts.hostname}:{parts.port or 5432}"
    url = database_urls(password, host, parts.path.lstrip("/"))[form]
    token = password.decode("utf-8", "surrogateescape")
    source = f"{http_server.base_url}/missing.json?token={token}"
    code, output = _xccel(
        ["run-all", "--retries", "0", "--source", source, "--database-url", url], tmp_path / f"live-{form}.log"
    )
    if code == 5:  # not every password makes a connection string libpq can read (raw), or psycopg (UTF-8)
        assert form not in (1, 3) or not _utf8(password), output
        assert output.startswith("Error: invalid database URL"), output
        assert_no_piece(password, output)
        return
    assert code in (4, 6), output  # refused by the HTTP server (or a URL requests cannot even send)
    with psycopg.connect(database_url) as conn:
        stored = " ".join(
            " ".join(str(v) for v in row)
            for row in conn.execute("SELECT command, source, status, error FROM runs").fetchall()
        )
    assert "run-all" in stored  # the run was recorded: the check below looked at a real row
    assert_no_piece(password, output + stored)
