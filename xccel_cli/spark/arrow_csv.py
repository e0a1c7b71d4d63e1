"""Executor side of the publication: Arrow batches turned into COPY-ready CSV chunks.

Kept apart from engine.py so that executors import only pyarrow here (not psycopg or the rest of xccel).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CHUNK_SCHEMA = "chunk binary"


def csv_chunks(batches: Iterator[Any]) -> Iterator[Any]:
    """mapInArrow: each batch as one CSV chunk (no header) that PostgreSQL's COPY ... (FORMAT csv) reads.

    Arrow's CSV writer quotes every string, so an empty string stays "" while a null is an empty field
    (COPY's CSV null); doubles are written in their shortest round-trip form and timestamps as UTC with a Z,
    so the published values are the Parquet values, bit for bit.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    schema = pa.schema([pa.field("chunk", pa.binary())])
    for batch in batches:
        if batch.num_rows == 0:
            continue
        sink = pa.BufferOutputStream()
        pacsv.write_csv(batch, sink, options)
        yield pa.RecordBatch.from_arrays([pa.array([sink.getvalue().to_pybytes()], pa.binary())], schema=schema)
