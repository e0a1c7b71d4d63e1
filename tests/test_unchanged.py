"""run-all's "source unchanged: nothing to do" only when reading the source again could add nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.conftest import invoke_xccel
from tests.dumps import START, dump, event
from tests.fault_server import FaultServer, fault_server  # noqa: F401 (a fixture)


def events_published(database_url: str) -> int:
    report = invoke_xccel(["report", "--json", "--database-url", database_url])
    assert report.exit_code == 0, report.stderr
    return int(json.loads(report.stdout)["events"])


def test_a_larger_line_limit_reads_an_unchanged_source_again(database_url: str, tmp_path: Path) -> None:
    """The lines a smaller --max-line-bytes refused (line_too_long) are kept by a larger one, as anonymous
    events are by --keep-anonymous: the same file is then not 'unchanged'."""
    records = [event(i, 1, START + timedelta(minutes=i)) for i in range(1, 41)]
    records[19]["event"]["page"] = "https://shop/" + "p" * 2000  # one line over 1 KiB
    path = tmp_path / "events.json"
    path.write_bytes(dump(records))
    run = ["run-all", "--json", "--source", str(path), "--database-url", database_url]

    small = invoke_xccel([*run, "--max-line-bytes", "1024"])
    assert small.exit_code == 0, small.stderr
    assert json.loads(small.stdout)["run"]["reject_reasons"] == {"line_too_long": 1}
    assert events_published(database_url) == 39

    larger = invoke_xccel([*run, "--max-line-bytes", "4096"])
    assert larger.exit_code == 0, larger.stderr
    summary = json.loads(larger.stdout)["run"]
    assert (summary["status"], summary["loaded"]) == ("succeeded", 1)
    assert events_published(database_url) == 40

    # nothing more to gain: the same limit, or a smaller one, finds the source unchanged
    for limit in ("4096", "2048"):
        again = invoke_xccel([*run, "--max-line-bytes", limit])
        assert json.loads(again.stdout)["run"]["status"] == "unchanged", again.stdout


def test_urls_that_differ_only_where_they_are_masked_are_not_taken_for_one_another(
    database_url: str,
    fault_server: FaultServer,  # noqa: F811 (the fixture)
) -> None:
    """runs.source keeps a URL masked, and everything after a secret query parameter is masked: an export served
    as ?token=T&day=1 and ?token=T&day=2, written at the same second (the same Last-Modified), was 'unchanged'
    on day 2, found by day 1's fingerprint, and its events were never read."""
    written = {"Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT"}
    days = {
        day: fault_server.add(
            f"/export?token=s3cr3t-t0ken&day={day}",
            dump([event(100 * day + i, day, START + timedelta(minutes=i)) for i in range(10)]),
            validators=False,
            headers=written,
        )
        for day in (1, 2)
    }

    def run(day: int) -> dict[str, object]:
        done = invoke_xccel(["run-all", "--json", "--source", days[day], "--database-url", database_url])
        assert done.exit_code == 0, done.stderr
        assert "s3cr3t" not in done.stdout
        return dict(json.loads(done.stdout)["run"])

    assert run(1)["loaded"] == 10
    second = run(2)
    assert (second["status"], second["loaded"]) == ("succeeded", 10)
    assert events_published(database_url) == 20
    # the same URL again is still found unchanged (its own digest matches)
    assert run(2)["status"] == "unchanged"
