"""`make bench-spark`: `xccel run-all --engine spark` beside `--engine postgres` on the same dump.

For each dump (--path, or generated with /work/shared/tools/gen_events.py: the 1x size, and 10x with --x10):
runs the real command from a cold process, --repeat times per engine, each into a fresh database of one
private embedded PostgreSQL (or --database-url) and, for Spark, into a fresh warehouse. Measures wall time,
the peak memory of the whole process tree (xccel and the JVM it starts, sampled from /proc), the job's own
seconds, and events (lines) per second per core. Checks that both engines report the same figures.
With --cluster it also starts a standalone cluster (a master and two 1-core workers on 127.0.0.1); its
peak memory adds the master's, the workers' and their executors' to the driver's. Prints the CPU model
and the load average before each run (figures taken on a loaded machine are not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bench/bench.py, beside this file (run as a script, its folder is on the path): the dump, the server, the database
from bench import admin, make_dump, postgres, with_database
from xccel_cli.spark.cluster import standalone_cluster

DEFAULT_LINES = 667_961
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
FIGURES = (
    "median_visits_before_order",
    "median_session_duration_minutes_before_order",
    "median_total_minutes_before_order",
    "customers",
    "sessions",
    "events",
)


def fresh_database(admin_url: str, name: str) -> str:
    admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE template0')
    return with_database(admin_url, name)


def tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE_KB
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


@dataclass
class Run:
    wall: float
    peak_mb: float
    output: dict[str, Any] = field(default_factory=dict)


def xccel(args: list[str], extra_env: dict[str, str] | None = None, also: Sequence[int] = ()) -> Run:
    """One cold `xccel` process; its peak memory is that of its process tree and of the `also` trees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XCCEL_") and k != "DATABASE_URL"}
    env.update({"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, **(extra_env or {})})
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "xccel"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid) + sum(tree_rss_kb(pid) for pid in also))
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"spark bench: xccel failed ({proc.returncode}): {stderr.decode().strip()[-2000:]}")
    return Run(wall, peak / 1024, json.loads(stdout))


def machine() -> str:
    model = "unknown CPU"
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def bench(
    label: str,
    dump: Path,
    admin_url: str,
    repeat: int,
    engine_args: list[str],
    cores: int,
    also: Sequence[int] = (),
) -> dict[str, Any]:
    runs = []
    loads = []
    for attempt in range(repeat):
        loads.append(load_average())
        print(f"{label}: run {attempt + 1} of {repeat}, load average {loads[-1]}", file=sys.stderr, flush=True)
        url = fresh_database(admin_url, f"xccel_spark_bench_{attempt}")
        warehouse = Path(tempfile.mkdtemp(prefix="xccel-spark-bench-wh-"))
        try:
            args = ["run-all", "--source", str(dump), "--json", "--database-url", url, *engine_args]
            if "--engine" in engine_args:
                args += ["--warehouse", str(warehouse)]
            runs.append(xccel(args, also=also))
        finally:
            shutil.rmtree(warehouse, ignore_errors=True)
    walls = [r.wall for r in runs]
    wall = statistics.median(walls)
    lines = runs[0].output["run"]["lines_read"]
    stages = runs[0].output["run"]["stage_seconds"]
    return {
        "label": label,
        "lines": lines,
        "wall": wall,
        "min": min(walls),
        "max": max(walls),
        "peak_mb": max(r.peak_mb for r in runs),
        "stages": stages,
        "per_core": lines / wall / cores,
        "figures": {k: runs[0].output["report"][k] for k in FIGURES},
        "loads": loads,
    }


RUNS = ("postgres", "local", "cluster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, help="an event dump (default: generate one)")
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES)
    parser.add_argument("--x10", action="store_true", help="also a 10x dump")
    parser.add_argument("--x10-path", type=Path, help="the 10x dump (default: generate one)")
    parser.add_argument("--only-x10", action="store_true", help="the 10x dump only")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cluster", action="store_true", help="also a standalone cluster (master + 2 workers)")
    parser.add_argument(
        "--runs",
        default=None,
        help=f"comma-separated, from {', '.join(RUNS)} (default: postgres,local, and cluster with --cluster)",
    )
    parser.add_argument("--publish", choices=("all", "sessions"), default="all", help="the Spark runs' --publish")
    parser.add_argument("--database-url", help="an admin URL (default: a private embedded PostgreSQL)")
    args = parser.parse_args()
    chosen = args.runs.split(",") if args.runs else ["postgres", "local", *(["cluster"] if args.cluster else [])]
    unknown = set(chosen) - set(RUNS)
    if unknown:
        sys.exit(f"spark bench: unknown --runs {', '.join(sorted(unknown))}")
    workdir = Path(tempfile.mkdtemp(prefix="xccel-spark-bench-"))
    dump_dir = Path(tempfile.gettempdir()) / "xccel-spark-bench-dumps"
    dump_dir.mkdir(exist_ok=True)
    dumps = [] if args.only_x10 else [("1x", args.path or make_dump(args.lines, dump_dir))]
    if args.x10 or args.only_x10:
        dumps.append(("10x", args.x10_path or make_dump(args.lines * 10, dump_dir)))
    spark = ["--engine", "spark", "--publish", args.publish]
    results = []
    print(f"machine: {machine()}; load average at start {load_average()}", flush=True)
    try:
        with postgres(args.database_url) as admin_url:
            for size, dump in dumps:
                if "postgres" in chosen:
                    results.append(bench(f"{size} postgres", dump, admin_url, args.repeat, [], 2))
                if "local" in chosen:
                    local = [*spark, "--spark-master", "local[2]", "--spark-conf", "spark.driver.memory=2g"]
                    results.append(bench(f"{size} spark local[2]", dump, admin_url, args.repeat, local, 2))
                if "cluster" in chosen:
                    with standalone_cluster(workdir, worker_memory="2g") as running:
                        master, pids = running.master_url, running.pids
                        cluster = [*spark, "--spark-master", master, "--spark-conf", "spark.executor.memory=1g"]
                        label = f"{size} spark standalone 2x1"
                        results.append(bench(label, dump, admin_url, args.repeat, cluster, 2, also=pids))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{'run':28} {'lines':>11} {'wall s':>8} {'min':>7} {'max':>7} {'peak MB':>8} {'events/s/core':>14}")
    for r in results:
        print(
            f"{r['label']:28} {r['lines']:>11,} {r['wall']:>8.1f} {r['min']:>7.1f} {r['max']:>7.1f}"
            f" {r['peak_mb']:>8.0f} {r['per_core']:>14,.0f}"
        )
        print(f"{'':28} stages: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()))
        print(f"{'':28} load average before each run: " + "; ".join(r["loads"]))
        print(f"{'':28} figures: " + json.dumps(r["figures"], sort_keys=True))
    for size, _ in dumps:
        same = {r["label"]: r["figures"] for r in results if r["label"].startswith(size + " ")}
        if len(same) > 1:
            reference = next(iter(same.values()))
            print(f"{size}: same figures on every engine: {all(f == reference for f in same.values())}")


if __name__ == "__main__":
    main()
