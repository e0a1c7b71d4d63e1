"""Small event dumps for tests, written the way the real dump is (one JSON object per line)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

START = datetime(2026, 3, 1, 8, 0, 0)


def event(event_id: int, customer: int | None, at: datetime, kind: str = "page_view", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"customer-id": customer, "timestamp": at.isoformat(), "page": "https://shop/p", **extra}
    return {"id": event_id, "type": kind, "event": body}


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode() + b"\n"


def dump(records: list[dict[str, Any]]) -> bytes:
    return b"".join(line(r) for r in records)


def random_events(
    count: int, *, customers: int = 20, seed: int = 0, first_id: int = 1, anonymous_share: float = 0.2
) -> list[dict[str, Any]]:
    """Events over a few days with gaps around the 30-minute mark, orders, anonymous visitors."""
    rng = random.Random(seed)
    records = []
    for offset in range(count):
        customer = None if rng.random() < anonymous_share else rng.randrange(1, customers + 1)
        at = START + timedelta(
            minutes=rng.choice([0, 5, 29, 30, 31, 90, 600]) * rng.randrange(0, 12), seconds=rng.randrange(0, 60)
        )
        kind = "placed_order" if rng.random() < 0.08 else "page_view"
        records.append(event(first_id + offset, customer, at, kind))
    return records
