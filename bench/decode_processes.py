"""Decoding on both cores: extract's COPY with its lines decoded in worker processes, against one process.

Issue 13 asks whether decoding on both cores would bring run-all closer to the decode floor. This measures it
on its own, with a simplified extract that does the same work in every mode and differs only in where the
decoding runs: the file is cut into blocks of whole lines; each block's lines are decoded with xccel's typed
decoder and its kept lines (those with a customer-id) turned into binary COPY rows, in this process
(--processes 0) or in N forked workers (--processes N, blocks handed out in order, results taken back in
order); the parent then checks every id against a bitmap (the first line read wins, so that must stay in one
place and in order) and sends the rows into a scratch table with a jsonb payload, as extract does.

    python bench/decode_processes.py --path events.ndjson --database-url postgresql://... --pairs 6

alternates whole processes of --processes 0 and --processes 2 (and 1) and prints each one's median wall
time and the median of the paired ratios. With --inner N it is one such process, printing what it loaded.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

BLOCK_BYTES = 1 << 20
SCRATCH = "xccel_decode_processes_scratch"


def blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines."""
    carry = b""
    with path.open("rb") as handle:
        while chunk := handle.read(BLOCK_BYTES):
            cut = chunk.rfind(b"\n")
            if cut < 0:
                carry += chunk
                continue
            yield carry + chunk[:cut]
            carry = chunk[cut + 1 :]
    if carry:
        yield carry


def decode_block(block: bytes) -> tuple[bytes, bytes]:
    """Every decoded line's id (for the parent's bitmap), and the binary COPY rows of the lines kept."""
    from xccel_cli import extract
    from xccel_cli.lines import decode_line

    pack = struct.Struct(">iqiqiqi1s").pack
    run_cell = struct.pack(">iq", 8, 1)
    ids = array("q")
    rows: list[bytes] = []
    for line in block.split(b"\n"):
        try:
            record = decode_line(line)
        except Exception:  # noqa: BLE001 (the bench keeps only well-formed lines; extract judges the rest)
            continue
        ids.append(record.id)
        event = record.event
        if event.customer_id is None:
            continue
        stamp = event.timestamp
        micros = (stamp - (extract.PG_EPOCH_NAIVE if stamp.tzinfo is None else extract.PG_EPOCH)) // extract.MICROSECOND
        kind = record.type.encode()
        prefix = struct.pack(">hi", extract.COPY_FIELDS, len(kind)) + kind + run_cell
        numbers = pack(8, record.id, 8, event.customer_id, 8, micros, len(line) + 1, extract.JSONB_VERSION)
        rows.extend((prefix, numbers, line))
    return ids.tobytes(), b"".join(rows)


def inner(path: Path, database_url: str, processes: int) -> str:
    """One run: the scratch table loaded with the file's kept lines; says how many, and how many duplicates."""
    import psycopg

    from xccel_cli import extract

    results: Iterable[tuple[bytes, bytes]]
    pool = multiprocessing.get_context("fork").Pool(processes) if processes else None
    # forked before the connection exists, so no worker holds a copy of it
    results = pool.imap(decode_block, blocks(path), chunksize=1) if pool else map(decode_block, blocks(path))
    seen = bytearray(1 << 17)
    duplicates = 0
    try:
        with psycopg.connect(database_url) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
            conn.execute(
                f"CREATE TABLE {SCRATCH} (event_type text, run_id bigint, event_id bigint, customer_id bigint,"
                f' "timestamp" timestamptz, payload jsonb)'
            )
            target = f"COPY {SCRATCH} {extract.COLUMNS} FROM STDIN WITH (FORMAT binary)"
            with conn.cursor() as cur, cur.copy(target, writer=extract.BoundedQueuedWriter(cur)) as copy:
                copy.write(extract.COPY_BINARY_HEADER)
                for ids, rows in results:
                    for event_id in array("q", ids):
                        index, mask = event_id >> 3, 1 << (event_id & 7)
                        if index >= len(seen):
                            seen.extend(bytes(index + 1 - len(seen)))
                        if seen[index] & mask:
                            duplicates += 1
                        seen[index] |= mask
                    copy.write(rows)
                copy.write(extract.COPY_BINARY_TRAILER)
            (loaded,) = conn.execute(f"SELECT count(*) FROM {SCRATCH}").fetchone() or (0,)
            conn.execute(f"DROP TABLE {SCRATCH}")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    # duplicates are counted, not cut out of the rows: the bench's dumps have none, and the count says so
    return f"loaded {loaded} duplicates {duplicates}"


def timed(path: Path, database_url: str, processes: int) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--inner", str(processes), "--path", str(path), "--database-url", database_url],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    print(f"  --processes {processes}: {wall:6.2f} s  {done.stdout.strip()}", flush=True)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, required=True, help="an NDJSON dump")
    parser.add_argument("--database-url", required=True, help="a database the scratch table may be made in")
    parser.add_argument("--pairs", type=int, default=6, help="alternated rounds of every mode")
    parser.add_argument("--modes", default="2,1", help="worker processes per mode, beside 0 (this process)")
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        print(inner(args.path, args.database_url, args.inner))
        return
    modes = [0, *(int(mode) for mode in args.modes.split(",") if int(mode))]
    walls: dict[int, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.pairs):
        for mode in modes:
            walls[mode].append(timed(args.path, args.database_url, mode))
    print("whole process, median wall and the median of the ratios to --processes 0 paired by round:")
    for mode in modes:
        ratio = statistics.median(w / b for w, b in zip(walls[mode], walls[0], strict=True))
        print(f"  --processes {mode}: {statistics.median(walls[mode]):6.2f} s  {ratio:.2f}x")


if __name__ == "__main__":
    main()
