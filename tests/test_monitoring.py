"""run-all --metrics-file: the run figures for node_exporter's textfile collector, written atomically."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, run_xccel
from tests.fault_server import free_port
from xccel_cli.monitoring import RunFigures, exposition, write_textfile

# real xccel processes (the command, serve): started, measured, their output read
pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "examples" / "events.ndjson.gz"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def outcome(scraped: Samples, command: str, name: str) -> float:
    return scraped[("xccel_last_run_outcome", (("command", command), ("outcome", name)))]


def test_run_all_writes_its_figures_and_a_failed_run_replaces_them(database_url: str, tmp_path: Path) -> None:
    metrics_file = tmp_path / "xccel.prom"
    done = run_xccel(
        [
            "run-all",
            "--json",
            "--source",
            str(EXAMPLE),
            "--metrics-file",
            str(metrics_file),
            "--database-url",
            database_url,
        ]
    )
    assert done.exit_code == 0, done.stderr
    run = json.loads(done.stdout)
    written = samples(metrics_file.read_text())
    assert outcome(written, "run-all", "succeeded") == 1 and outcome(written, "run-all", "failed") == 0
    assert written[("xccel_last_run_id", ())] == run["run"]["run_id"]
    assert written[("xccel_last_run_lines_read", ())] == run["run"]["lines_read"] == 4000
    assert written[("xccel_last_run_lines_rejected", ())] == run["run"]["rejected"] > 0
    assert written[("xccel_published_sessions", ())] == run["report"]["sessions"]
    assert written[("xccel_published_customers", ())] == run["report"]["customers"]
    assert written[("xccel_database_up", ())] == 1
    assert (metrics_file.stat().st_mode & 0o777) == 0o644  # the collector usually runs as another user
    succeeded_at = written[("xccel_last_run_end_timestamp_seconds", (("outcome", "succeeded"),))]

    garbage = tmp_path / "garbage.ndjson"
    garbage.write_text("not json\n" * 50)
    failed = run_xccel(
        ["run-all", "--source", str(garbage), "--database-url", database_url],
        env={"XCCEL_METRICS_FILE": str(metrics_file)},
    )
    assert failed.exit_code == 6, failed.stderr
    rewritten = samples(metrics_file.read_text())
    assert outcome(rewritten, "run-all", "failed") == 1 and outcome(rewritten, "run-all", "succeeded") == 0
    assert rewritten[("xccel_last_run_id", ())] == run["run"]["run_id"] + 1
    assert rewritten[("xccel_last_run_end_timestamp_seconds", (("outcome", "succeeded"),))] == succeeded_at
    assert ("xccel_last_run_end_timestamp_seconds", (("outcome", "failed"),)) in rewritten
    # the published result is the one the failed run left in place
    assert rewritten[("xccel_publication_id", ())] == written[("xccel_publication_id", ())]
    assert sorted(os.listdir(tmp_path)) == ["garbage.ndjson", "xccel.prom"]  # no temporary file left


def test_a_run_that_cannot_reach_the_database_says_so_in_the_metrics_file(database_url: str, tmp_path: Path) -> None:
    """The textfile is what node_exporter shows: a run that failed to connect must replace a succeeded run's
    figures with database_up 0 (XccelRunFailed's second half), not leave them looking healthy."""
    metrics_file = tmp_path / "xccel.prom"
    done = run_xccel(
        ["run-all", "--source", str(EXAMPLE), "--metrics-file", str(metrics_file), "--database-url", database_url]
    )
    assert done.exit_code == 0, done.stderr
    assert samples(metrics_file.read_text())[("xccel_database_up", ())] == 1
    unreachable = f"postgresql://xccel@127.0.0.1:{free_port()}/shop"
    failed = run_xccel(
        ["run-all", "--source", str(EXAMPLE), "--database-url", unreachable],
        env={"XCCEL_METRICS_FILE": str(metrics_file)},
    )
    assert failed.exit_code == 5, failed.stderr
    assert failed.stderr.startswith("Error: cannot connect to the database at ")
    written = samples(metrics_file.read_text())
    assert written[("xccel_database_up", ())] == 0
    assert not any(name == "xccel_last_run_outcome" for name, _ in written)  # nothing known, nothing made up
    assert sorted(os.listdir(tmp_path)) == ["xccel.prom"]


def test_a_metrics_file_in_a_missing_directory_is_a_configuration_error(database_url: str, tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "xccel.prom"
    done = run_xccel(
        ["run-all", "--source", str(EXAMPLE), "--metrics-file", str(target), "--database-url", database_url]
    )
    assert done.exit_code == 3
    assert done.stderr.strip().splitlines() == [f"Error: the metrics file's directory does not exist: {target.parent}"]


def test_the_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    """A reader polling the file while it is rewritten sees one whole version or the other, never a mix."""
    target = tmp_path / "xccel.prom"
    versions = [
        RunFigures(database_up=True, schema_ready=True, last_run_id=1, last_run_command="run-all",
                   last_run_outcome="succeeded", lines_read=10**6, stage_seconds={"extract": 1.5}),
        RunFigures(database_up=False),
    ]  # fmt: skip
    texts = {exposition(figures).decode() for figures in versions}
    assert len(texts) == 2
    write_textfile(target, versions[0])
    stop = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(target.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_number in range(400):
            write_textfile(target, versions[round_number % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) <= texts
    assert os.listdir(tmp_path) == ["xccel.prom"]
    for text in texts:  # and each version parses
        assert samples(text)[("xccel_database_up", ())] in (0, 1)
