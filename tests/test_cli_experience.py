"""What a command-line user expects: --version, shell completion, help summaries that are not cut,
counts that add up in `runs` and `status`, one `run-all --json` shape, and `make run` without network."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Served, pause_hook_environment, run_xccel
from tests.dumps import START, dump, event, random_events

# real xccel processes: the installed command, make, a pty
pytestmark = pytest.mark.integration

COUNTS = ("loaded", "already_loaded", "anonymous", "duplicates", "rejected")
COMMANDS = ("init-db", "extract", "sessionize", "load", "report", "run-all", "db", "serve", "runs", "status")


def test_version() -> None:
    result = run_xccel(["--version"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"xccel {version('xccel')}\n", "")


def test_shell_completion_is_offered_and_completes_commands(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "xccel"  # completion is keyed to the program name a shell sees
    if not script.exists():
        pytest.skip(f"the xccel script is not installed beside {sys.executable}")

    def xccel(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("XCCEL_", "_XCCEL"))}
        return subprocess.run(
            [str(script), *args], capture_output=True, text=True, env={**clean, **env}, cwd=tmp_path, timeout=60
        )

    # the shell named on the command line, not guessed from the process tree (a test may run under sh, make…)
    explicit = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1", "SHELL": "/bin/bash"}
    shown = xccel(["--show-completion", "bash"], **explicit)
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _xccel_completion xccel" in shown.stdout
    assert "_XCCEL_COMPLETE=complete_bash" in shown.stdout

    installed = xccel(["--install-completion", "bash"], HOME=str(tmp_path), **explicit)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / ".bash_completions" / "xccel.sh").is_file()
    assert ".bash_completions/xccel.sh" in (tmp_path / ".bashrc").read_text()

    # what bash asks when the user types `xccel ru<TAB>`
    completed = xccel([], _XCCEL_COMPLETE="complete_bash", COMP_WORDS="xccel ru", COMP_CWORD="1")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["run-all", "runs"]


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_help_summaries_are_never_cut(columns: int) -> None:
    result = run_xccel(["--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    listing = result.stdout.split("Commands:", 1)[1]
    assert "…" not in listing and "..." not in listing
    assert max(len(line) for line in listing.splitlines()) <= columns
    summaries: dict[str, list[str]] = {}
    current = ""
    for line in listing.splitlines():
        words = line.split()
        if words and words[0] in COMMANDS and line.startswith("  " + words[0]):
            current = words[0]
            summaries[current] = words[1:]
        elif words and current:
            summaries[current] += words
    assert set(summaries) == set(COMMANDS)
    assert all(" ".join(words).endswith(".") for words in summaries.values()), summaries  # whole sentences


def _json(args: list[str], url: str) -> Any:
    result = run_xccel([*args, "--json", "--database-url", url])
    assert result.exit_code in (0, 9), result.stderr
    return json.loads(result.stdout)


def _adds_up(run: dict[str, Any]) -> None:
    assert run["lines_read"] == sum(run[key] for key in COUNTS), run


def test_runs_and_status_counts_add_up_and_unchanged_names_the_loading_run(database_url: str, tmp_path: Path) -> None:
    first = random_events(300, seed=5, anonymous_share=0.25)
    body = dump(first) + dump(first[:7]) + b"not json\n" + b'{"id": 1}\n'  # duplicates and two rejects
    path = tmp_path / "events.json"
    path.write_bytes(body)
    loaded = _json(["run-all", "--source", str(path)], database_url)
    run = loaded["run"]
    assert run["status"] == "succeeded" and run["unchanged_since_run_id"] is None
    assert run["anonymous"] > 0 and run["duplicates"] == 7 and run["rejected"] == 2
    _adds_up(run)

    second = tmp_path / "more.json"  # half already loaded by run 1, plus new events
    second.write_bytes(dump(first[:150]) + dump([event(90_000 + i, 3, START) for i in range(5)]))
    again = _json(["run-all", "--source", str(second)], database_url)["run"]
    assert again["already_loaded"] > 0 and again["loaded"] == 5
    _adds_up(again)

    runs = _json(["runs"], database_url)
    assert [r["run_id"] for r in runs] == [2, 1]
    for row in runs:
        _adds_up(row)
        assert {key: row[key] for key in ("lines_read", *COUNTS)} == {
            key: (again if row["run_id"] == 2 else run)[key] for key in ("lines_read", *COUNTS)
        }
    status = _json(["status"], database_url)
    _adds_up(status["last_run"])
    _adds_up(status["last_success"])
    assert status["last_run"]["already_loaded"] == again["already_loaded"]

    # the first source again, twice: both unchanged runs name run 1, which loaded it, never each other
    for expected_run_id in (3, 4):
        same = run_xccel(["run-all", "--source", str(path), "--database-url", database_url])
        assert same.exit_code == 0, same.stderr
        assert same.stdout.startswith(f"source unchanged since run 1: nothing to do (run {expected_run_id};")
    unchanged = _json(["run-all", "--source", str(path)], database_url)
    assert unchanged["run"]["status"] == "unchanged" and unchanged["run"]["unchanged_since_run_id"] == 1

    # one shape, always: the same keys in `run` and a full `report` whether or not anything was read
    assert set(unchanged) == set(loaded) == {"run", "report"}
    assert set(unchanged["run"]) == set(loaded["run"])
    assert set(unchanged["report"]) == set(loaded["report"])
    assert unchanged["report"]["sessions"] == unchanged["run"]["sessions"] > 0
    assert unchanged["run"]["lines_read"] is None  # nothing was read: null, as in `runs`


def test_make_run_without_a_source_uses_the_example_dump_offline(database_url: str, tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed (Debian: apt-get install -y make)")
    venv = Path(sys.prefix)
    if not (venv / "bin" / "xccel").exists():
        pytest.skip(f"xccel is not installed in {venv}: `make run` needs the project's virtualenv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    dead_proxy = "http://127.0.0.1:9"  # nothing listens there: any attempt to reach the network fails at once
    env.update(
        XCCEL_DATABASE_URL=database_url,
        XCCEL_DATA_DIR=tempfile.mkdtemp(dir=tmp_path),
        XCCEL_RETRIES="0",
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        NO_PROXY="",
        no_proxy="",
    )
    # -o: the virtualenv counts as installed (no pip, no network), whatever the file dates say
    # a make that runs this suite (`make test ARGS=...`) hands its variables down in MAKEFLAGS: not to this one
    for inherited in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(inherited, None)
    command = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", "-o", f"{venv}/bin/xccel", "ARGS="]
    command.append("run")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "no source configured, so this runs on the example dump examples/events.ndjson.gz" in result.stderr
    assert "make run SOURCE=" in result.stderr and "XCCEL_SOURCE" in result.stderr
    assert "median_visits_before_order" in result.stdout  # the report is printed
    assert "examples/events.ndjson.gz" in result.stdout  # the summary names the source

    as_json = subprocess.run([*command, "ARGS=--json --full-refresh"], capture_output=True, text=True, env=env)
    assert as_json.returncode == 0, as_json.stderr
    figures = json.loads(as_json.stdout)  # stdout stays pure JSON: the hints go to stderr
    assert figures["run"]["source"].endswith("examples/events.ndjson.gz") and figures["report"]["sessions"] > 0

    # a configured source wins over the example, and a dead network fails as it should (exit 4)
    env["XCCEL_SOURCE"] = "https://storage.googleapis.com/xcc-de-assessment/events.json"
    configured = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert configured.returncode != 0
    assert "example dump" not in configured.stderr and "Error: " in configured.stderr


def on_a_terminal(args: list[str], env: dict[str, str], resume: Path, marker: str) -> tuple[str, bytes, int]:
    """Run xccel with stderr on a pty (a terminal) until marker shows on it, then let it go on (the resume file)
    and read the terminal to the end: (what the terminal got, stdout, exit code)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "xccel_cli", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and marker.encode() not in screen:
            if select.select([master], [], [], 1)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        time.sleep(0.5)  # a few more frames of the display
    finally:
        resume.touch()
        # keep reading the terminal until the run ends: a full pty would block the display, and the run
        while proc.poll() is None or select.select([master], [], [], 0.2)[0]:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        out, _ = proc.communicate(timeout=120)  # reads stdout to the end and closes it
        os.close(master)
    return screen.decode(errors="replace"), out, proc.returncode


def terminal_env(tmp_path: Path, pause_at: str, resume: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_")}
    env.update(
        XCCEL_DATA_DIR=str(tmp_path / "data"),
        XCCEL_TEST_PAUSE_AT=pause_at,
        XCCEL_TEST_RESUME_FILE=str(resume),
        COLUMNS="160",
        TERM="xterm-256color",
    )
    return pause_hook_environment(env)


def test_progress_over_http_takes_its_total_from_content_length(
    database_url: str, tmp_path: Path, http_server: Served
) -> None:
    """An HTTP source that says its Content-Length gets the same bar: total, percentage, time left."""
    body = dump(random_events(3000, seed=10))
    url = http_server.add("/events.json", body)
    resume = tmp_path / "resume"
    text, out, code = on_a_terminal(
        ["run-all", "--source", url, "--database-url", database_url],
        terminal_env(tmp_path, "sessionize", resume),
        resume,
        "sessionize: cutting events into sessions",
    )
    assert code == 0, text[-2000:]
    assert f"/{len(body) / 1000:.1f} kB" in text, text[-3000:]  # the total, from Content-Length
    assert "100%" in text and "3,000 lines" in text
    assert b"median_visits_before_order" in out


def test_progress_shows_total_percentage_time_left_and_each_stage(database_url: str, tmp_path: Path) -> None:
    """On a terminal (a pty here) run-all draws a bar with the file's size as total, then names the stage
    running; paused inside sessionize, the screen says so."""
    path = tmp_path / "events.json"
    path.write_bytes(dump(random_events(3000, seed=9)))
    resume = tmp_path / "resume"
    text, out, code = on_a_terminal(
        ["run-all", "--source", str(path), "--database-url", database_url],
        terminal_env(tmp_path, "sessionize", resume),
        resume,
        "sessionize: cutting events into sessions",
    )
    assert code == 0, text[-2000:]
    assert "sessionize: cutting events into sessions" in text
    stage_line = text.rsplit("sessionize: cutting events into sessions", 1)[1].split("\r")[0]
    assert "bytes" not in stage_line and "kB" not in stage_line  # a stage has no byte counts to show
    size_kb = f"{path.stat().st_size / 1000:.1f}"
    assert f"/{size_kb} kB" in text, text[-3000:]  # the total is known
    assert "100%" in text and "3,000 lines" in text
    assert re.search(r"\d+:\d\d:\d\d", text)  # time left
    assert b"median_visits_before_order" in out  # stdout is the report, untouched by the display

    # the stages run on their own show which one is working, too
    extracted = run_xccel(["extract", "--source", str(path), "--database-url", database_url])
    assert extracted.exit_code == 0, extracted.stderr
    for stage, marker in (("sessionize", "sessionize: cutting"), ("load", "load: publishing")):
        resume.unlink()
        text, out, code = on_a_terminal(
            [stage, "--full-refresh", "--database-url", database_url]
            if stage == "sessionize"
            else [stage, "--database-url", database_url],
            terminal_env(tmp_path, stage, resume),
            resume,
            marker,
        )
        assert code == 0, text[-2000:]
        assert marker in text, text[-2000:]
