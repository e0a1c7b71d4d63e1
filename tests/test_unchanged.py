"""run-all's "source unchanged: nothing to do" only when reading the source again could add nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.conftest import invoke_xccel
from tests.dumps import START, dump, event


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
