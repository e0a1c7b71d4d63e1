"""Accept (q-values), Accept-Encoding and If-None-Match as the server reads them: the pure functions."""

from __future__ import annotations

import gzip

import pytest

from xccel_cli.web.cache import cached_answer
from xccel_cli.web.negotiation import HTML, JSON, accepts_gzip, etag_matches, negotiate

ROOT = (JSON, HTML)


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/html", HTML),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", HTML),  # a browser
        ("text/html;q=0.1, application/json", JSON),  # q-values win over order
        ("application/json;q=0.5, text/html", HTML),
        ("application/json, text/html", JSON),  # a tie: the server's order
        ("text/*;q=0.9, application/json;q=0.8", HTML),
        ("application/*", JSON),
        ("text/html;q=0, */*", JSON),  # q=0 refuses, even when */* would admit it
        ("image/png", None),
        ("application/json;q=0", None),
        ("application/json;q=abc, text/html", HTML),  # a malformed range is skipped
        ("nonsense", JSON),  # nothing valid: as if absent
    ],
)
def test_negotiate_honours_q_values_and_specificity(accept: str | None, chosen: str | None) -> None:
    assert negotiate(accept, ROOT) == chosen


def test_the_most_specific_range_sets_the_quality() -> None:
    assert negotiate("*/*;q=1, application/json;q=0", (JSON,)) is None
    assert negotiate("application/*;q=0, application/json", (JSON,)) == JSON


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("*", True),
        ("*;q=0.1, gzip;q=0", False),
        ("br", False),
        ("identity", False),
    ],
)
def test_accepts_gzip(header: str | None, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


def test_if_none_match_uses_weak_comparison() -> None:
    etag = '"p3-abc"'
    assert etag_matches('"p3-abc"', etag)
    assert etag_matches('W/"p3-abc"', etag)
    assert etag_matches('"x", "p3-abc"', etag)
    assert etag_matches("*", etag)
    assert not etag_matches('"p3-abd"', etag)
    assert not etag_matches("p3-abc", etag)  # unquoted: not the same entity tag


def test_each_representation_has_its_own_strong_etag_and_headers() -> None:
    from datetime import UTC, datetime

    body = b"<html>" + b"x" * 5000 + b"</html>"
    key = (7, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    answer = cached_answer(key, body, "text/html; charset=utf-8", "Accept, Accept-Encoding", compress=True)
    assert answer.gzipped is not None
    assert gzip.decompress(answer.gzipped.body) == body
    assert answer.plain.etag.startswith('"p7-') and answer.gzipped.etag.endswith('-gzip"')
    assert answer.plain.etag != answer.gzipped.etag
    # the same bytes, the same validator: a re-render of the same publication is not a change
    again = cached_answer(key, body, "text/html; charset=utf-8", "Accept, Accept-Encoding", compress=True)
    assert again.gzipped is not None and (again.plain.etag, again.gzipped.etag) == (
        answer.plain.etag,
        answer.gzipped.etag,
    )
    status, headers, sent = answer.respond("gzip", None)
    assert (status, sent) == (200, answer.gzipped.body)
    named = dict(headers)
    assert named[b"content-encoding"] == b"gzip" and named[b"last-modified"] == b"Wed, 01 May 2024 12:00:00 GMT"
    assert answer.respond("gzip", answer.gzipped.etag)[0] == 304
    assert answer.respond(None, answer.gzipped.etag)[0] == 200  # the plain copy has another tag
    assert answer.respond(None, answer.plain.etag) == (304, answer.plain.not_modified_headers, b"")
    small = cached_answer(key, b"{}", JSON, "Accept", compress=True)
    assert small.gzipped is None  # too small to be worth it


def test_if_modified_since_only_without_if_none_match() -> None:
    from datetime import UTC, datetime

    key = (7, datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC))
    answer = cached_answer(key, b'{"a":1}', JSON, "Accept", compress=False)
    same_second = "Wed, 01 May 2024 12:00:00 GMT"
    assert answer.respond(None, None, same_second)[0] == 304  # HTTP dates have whole seconds
    assert answer.respond(None, None, "Wed, 01 May 2024 13:00:00 GMT")[0] == 304
    assert answer.respond(None, None, "Wed, 01 May 2024 11:59:59 GMT")[0] == 200
    assert answer.respond(None, None, "yesterday")[0] == 200  # not a date: ignored
    assert answer.respond(None, '"other"', same_second)[0] == 200  # If-None-Match decides when present
    unpublished = cached_answer(None, b"{}", JSON, "Accept", compress=False)
    assert unpublished.respond(None, None, same_second)[0] == 200


def test_if_modified_since_is_read_in_all_three_http_date_formats() -> None:
    """RFC 9110, 5.6.7: a recipient must accept IMF-fixdate, the obsolete RFC 850 form and asctime (all GMT)."""
    from datetime import UTC, datetime

    key = (7, datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC))
    answer = cached_answer(key, b'{"a":1}', JSON, "Accept", compress=False)
    for same_second in (
        "Wed, 01 May 2024 12:00:00 GMT",
        "Wednesday, 01-May-24 12:00:00 GMT",
        "Wed May  1 12:00:00 2024",
    ):
        assert answer.respond(None, None, same_second)[0] == 304, same_second
    for earlier in ("Wed, 01 May 2024 11:59:59 GMT", "Wednesday, 01-May-24 11:59:59 GMT", "Wed May  1 11:59:59 2024"):
        assert answer.respond(None, None, earlier)[0] == 200, earlier
    assert answer.respond(None, None, "Wed, 01 May 2024 12:00:00")[0] == 200  # no zone: not an HTTP date, ignored


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 01 May 2024 12:00:00 GMT, Wed, 01 May 2024 12:00:00 GMT",  # two members
        "Wed, 01 May 2024 12:00:00 GMT, Wed May  1 12:00:00 2024",
        "Wed, 01 May 2024 12:00:00 GMT junk",
        "Wed, 01 May 2024 14:00:00 +0200",  # an offset: RFC 5322, not an HTTP-date
        "Wed, 01 May 2024 07:00:00 EST",
        "01 May 2024 12:00:00 GMT",  # no day name
        "Wed, 1 May 2024 12:00:00 GMT",  # IMF-fixdate has two-digit days
        "Wed, 01 May 24 12:00:00 GMT",
    ],
)
def test_if_modified_since_that_is_not_one_http_date_is_ignored(value: str) -> None:
    """RFC 9110, 13.1.3: a recipient MUST ignore If-Modified-Since unless its value is one valid HTTP-date."""
    from datetime import UTC, datetime

    key = (7, datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC))
    answer = cached_answer(key, b'{"a":1}', JSON, "Accept", compress=False)
    assert answer.respond(None, None, value)[0] == 200


def test_a_two_digit_rfc_850_year_is_read_as_rfc_9110_says() -> None:
    """RFC 9110, 5.6.7: a two-digit year that would be more than 50 years ahead is the latest past one with
    those digits; any other is the coming one."""
    from datetime import UTC, datetime

    from xccel_cli.web.cache import _http_date

    this_year = datetime.now(UTC).year
    for ahead, century_back in ((45, 0), (55, 100)):
        expected = datetime(this_year + ahead - century_back, 5, 1, 12, tzinfo=UTC)
        sent = f"{expected:%A}, 01-May-{expected.year % 100:02d} 12:00:00 GMT"
        assert _http_date(sent) == int(expected.timestamp()), sent
