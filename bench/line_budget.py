"""Instructions per line: extract's loop against the decode floor, counted by valgrind's callgrind.

`make bench` times whole runs, and on a shared 2-core machine its seconds move with the hour. Instruction
counts do not: the same program on the same input executes the same instructions, busy machine or quiet. This
counts three programs over the first --lines lines of a dump, each in its own process under callgrind:

  baseline  the imports and the reading of the file, nothing else;
  floor     bench.py's decode floor: every line split off and decoded with xccel's typed msgspec decoder;
  extract   extract's own loop (xccel_cli.extract._stream) over the same chunks, its COPY rows thrown away:
            line cutting, decoding, the cheap checks, deduplication and the binary COPY rows.

and prints each one's instructions per line above the baseline, extract's ratio to the floor, and where
extract's instructions go. What it cannot say: what runs beside the loop (PostgreSQL parsing the rows, the
COPY thread), since callgrind runs one thread at a time; `make bench` measures that, in seconds.

    python bench/line_budget.py --path events.ndjson --lines 100000
"""

from __future__ import annotations

import argparse
import gzip
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

MODES = ("baseline", "floor", "extract")
HERE = Path(__file__).resolve().parent


def chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def inner(mode: str, path: Path) -> str:
    """One of the three programs (run under callgrind by count()); says what it did, for its test."""
    from bench import decode_every_line  # bench/bench.py, beside this file: the floor that make bench times
    from xccel_cli import extract

    if mode == "floor":
        return f"decoded {decode_every_line(path)}"
    if mode == "extract":
        result = extract.ExtractResult(source=str(path))
        reader = extract.LineReader(result, extract.Rejects(1), 1 << 24, 1.0)
        extract._stream(chunks(path), lambda rows: None, reader, 1, False, None)
        return f"read {result.lines_read} kept {result.logged_in} dropped {result.anonymous}"
    size = 0
    for chunk in chunks(path):
        size += len(chunk)
    return f"bytes {size}"


def count(mode: str, path: Path, out: Path) -> tuple[int, dict[str, int]]:
    """(instructions, instructions by function) of one program."""
    profile = out / f"callgrind.{mode}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", sys.executable, __file__]
        + ["--inner", mode, "--path", str(path)],
        check=True,
        capture_output=True,
    )
    annotated = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(profile)], check=True, capture_output=True, text=True
    ).stdout
    total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", annotated)[1].replace(",", ""))  # type: ignore[index]
    functions: dict[str, int] = {}
    for match in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+(\S+)", annotated.split("file:function", 1)[1], re.M):
        name = match[2].rsplit(":", 1)[-1]
        functions[name] = functions.get(name, 0) + int(match[1].replace(",", ""))
    return total, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, required=True, help="an NDJSON dump (.gz works)")
    parser.add_argument("--lines", type=int, default=100_000, help="count over this many first lines")
    parser.add_argument("--inner", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(inner(args.inner, args.path))
        return
    if shutil.which("valgrind") is None:
        sys.exit("line_budget: valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="xccel-budget-") as folder:
        out = Path(folder)
        sample = out / "sample.ndjson"
        lines = 0
        with args.path.open("rb") as head:
            opener = gzip.open if head.read(2) == b"\x1f\x8b" else open
        with opener(args.path, "rb") as source, sample.open("wb") as target:
            for line in source:
                if lines == args.lines:
                    break
                target.write(line)
                lines += 1
        counted = {mode: count(mode, sample, out) for mode in MODES}
    base_total, base_functions = counted["baseline"]
    above = {mode: counted[mode][0] - base_total for mode in MODES}
    print(f"{lines:,} lines of {args.path.name}; instructions above the baseline (imports and reading the file)")
    for mode in ("floor", "extract"):
        print(f"  {mode:8} {above[mode]:>15,}  {above[mode] / lines:>8,.0f} per line")
    print(f"  extract / floor: {above['extract'] / above['floor']:.2f}")
    print("  where extract's go (per line, above the baseline):")
    functions = counted["extract"][1]
    extra = {name: n - base_functions.get(name, 0) for name, n in functions.items()}
    for name, n in sorted(extra.items(), key=lambda item: -item[1])[:10]:
        print(f"    {n / lines:>8,.0f}  {name}")


if __name__ == "__main__":
    main()
