"""A Spark standalone cluster on 127.0.0.1 (a master and 1-core workers, started with pyspark's spark-class),
for trying `--engine spark --spark-master spark://...` on one machine: the cluster test and `make bench-spark`
start theirs here. Needs the spark extra and Java."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# how often the master's status page is asked whether every worker has registered
POLL_SECONDS = 1.0


class ClusterStartError(RuntimeError):
    """The workers did not register with the master in time; the message ends with the cluster log's tail."""


@dataclass(frozen=True)
class StandaloneCluster:
    master_url: str
    pids: list[int]  # the master's and the workers' (the executors a run starts are the workers' children)
    log: Path  # the master's and the workers' output
    work_dir: Path  # SPARK_WORKER_DIR: each executor's stdout and stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive_workers(ui_port: int) -> int:
    """How many workers the master counts as alive (its status page's JSON); 0 while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as answer:
            return int(json.load(answer).get("aliveworkers", 0))
    except OSError:
        return 0


@contextmanager
def standalone_cluster(
    directory: Path, workers: int = 2, worker_memory: str = "1g", start_timeout_seconds: float = 300
) -> Iterator[StandaloneCluster]:
    """A master and `workers` 1-core workers with `worker_memory` each, their log and work folders in
    `directory`; yields once every worker has registered, and stops them all on the way out."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    spark_class = str(spark_home / "bin" / "spark-class")
    work_dir = directory / "work"
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(directory / "logs"),
        "SPARK_WORKER_DIR": str(work_dir),
        "PYSPARK_PYTHON": sys.executable,
    }
    port, ui_port = free_port(), free_port()
    log_path = directory / "cluster.log"
    commands = [[MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)]]
    worker = [WORKER_CLASS, "--host", "127.0.0.1", "--cores", "1", "--memory", worker_memory]
    commands += [[*worker, "--webui-port", str(free_port()), f"spark://127.0.0.1:{port}"] for _ in range(workers)]
    processes: list[subprocess.Popen[bytes]] = []
    with log_path.open("wb") as log:
        try:
            for command in commands:
                processes.append(
                    subprocess.Popen([spark_class, *command], env=env, stdout=log, stderr=subprocess.STDOUT)
                )
            deadline = time.monotonic() + start_timeout_seconds
            while alive_workers(ui_port) < workers:
                if time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise ClusterStartError(
                        f"{workers} workers did not register within {start_timeout_seconds:g} s:\n{tail}"
                    )
                time.sleep(POLL_SECONDS)
            yield StandaloneCluster(f"spark://127.0.0.1:{port}", [p.pid for p in processes], log_path, work_dir)
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
