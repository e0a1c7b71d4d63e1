"""Configuration: every bad setting is one line naming where it came from, and passwords never show."""

from __future__ import annotations

import pytest

from tests.conftest import run_xccel
from xccel_cli.config import mask_password, mask_url

# --- masking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "masked"), [
    # URL userinfo, with a password holding '@' and ':'
    ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:se@c:ret@h/db failed", "postgresql://u:***@h/db failed"),
    # a password in the query ends at '&' (a literal '&' cannot be in a query value); the rest stays
    ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
    ("postgresql://u@h/db?sslmode=require&password=se:cret&application_name=x",
     "postgresql://u@h/db?sslmode=require&password=***&application_name=x"),
    # libpq keyword strings: plain, spaces around '=', quoted with spaces and an escaped quote
    ("host=h password=secret dbname=db", "host=h password=*** dbname=db"),
    ("host=h password = secret dbname=db", "host=h password = *** dbname=db"),
    ("host=h password='se cr\\'et' dbname=db", "host=h password=*** dbname=db"),
    ("host=h password='never closed", "host=h password=***"),
    ("PGPASSWORD=secret psql", "PGPASSWORD=*** psql"),
])
def test_mask_password_hides_every_shape(text: str, masked: str) -> None:
    assert mask_password(text) == masked
    assert mask_password(masked) == masked  # masking twice changes nothing


def test_a_masked_url_quoted_in_a_message_keeps_its_punctuation() -> None:
    """The CLI masks the whole error line again; the ':' after an already masked URL must survive."""
    for url, shown in [("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
                       ("postgresql://u:secret@h/db", "postgresql://u:***@h/db")]:
        assert mask_url(url) == shown
        line = f"cannot connect to the database at {mask_url(url)}: connection failed"
        assert mask_password(line) == f"cannot connect to the database at {shown}: connection failed"
    assert mask_password("password=***, then") == "password=***, then"


def test_a_password_in_the_query_never_shows_through_the_command() -> None:
    url = "postgresql://nobody@127.0.0.1:9/none?password=pw-secret:x"
    result = run_xccel(["status", "--database-url", url])
    assert result.exit_code == 5
    assert "pw-secret" not in result.stderr + result.stdout
    assert result.stderr.startswith(
        "Error: cannot connect to the database at postgresql://nobody@127.0.0.1:9/none?password=***: ")
