"""xccel: sessionize webshop clickstream dumps in PostgreSQL and report time-to-first-order metrics."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`__version__` comes from the installed package's metadata (pyproject.toml is the one place it is
    written), read on first use so that commands that never ask do not pay for the lookup."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xccel")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
