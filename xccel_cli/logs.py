"""One logging setup for every command, `serve` included.

Everything logs under the `xccel_cli` logger (module names) and uvicorn under its own names; both go to
the same handlers: stderr (warnings by default, more with -v, nothing but errors with --quiet) and, with
--log-file, a file of timestamped lines. Every line is one line, with passwords masked.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from xccel_cli.config import mask_password
from xccel_cli.errors import ConfigError

ROOT_LOGGER = "xccel_cli"
# uvicorn's loggers: the server's own messages and, with --access-log, one line per request
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
STDERR_FORMAT = "xccel: %(message)s"
FILE_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class OneLineFormatter(logging.Formatter):
    """Masks passwords and puts a traceback's last line in place of the traceback (unless --debug)."""

    def __init__(self, fmt: str, *, tracebacks: bool = False) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return mask_password(super().format(record))
        exc_info = record.exc_info
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        text = super().format(record)
        if exc_info and exc_info[1] is not None:
            text = f"{text} ({_describe(exc_info[1])})"
        return mask_password(" | ".join(line for line in text.splitlines() if line.strip()))


class NotFileOnly(logging.Filter):
    """Records marked file_only (a failure the CLI already printed) stay out of stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


@dataclass
class LogSettings:
    verbose: int = 0
    quiet: bool = False
    log_file: str | None = None
    debug: bool = False


_handlers: list[logging.Handler] = []
_stderr: logging.StreamHandler | None = None
_settings = LogSettings()


def _stderr_level(settings: LogSettings, floor: int = logging.WARNING) -> int:
    if settings.quiet:
        return logging.ERROR + 1  # errors are printed once, by the CLI
    return logging.DEBUG if settings.verbose > 1 else logging.INFO if settings.verbose else floor


def configure(verbose: int = 0, quiet: bool = False, log_file: str | None = None, debug: bool = False) -> None:
    """Set up the handlers; calling it again replaces them (idempotent, for in-process test runs)."""
    global _stderr, _settings
    _settings = LogSettings(verbose, quiet, log_file, debug)
    for name in (ROOT_LOGGER, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        for handler in _handlers:
            logger.removeHandler(handler)
    for handler in _handlers:
        handler.close()
    _handlers.clear()

    _stderr = logging.StreamHandler(sys.stderr)
    _stderr.setLevel(_stderr_level(_settings))
    _stderr.addFilter(NotFileOnly())
    _stderr.setFormatter(OneLineFormatter(STDERR_FORMAT, tracebacks=debug))
    _handlers.append(_stderr)
    level = _stderr.level
    if log_file:
        try:
            file_handler = logging.FileHandler(os.path.expanduser(log_file), encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot open the log file {log_file}: {exc.strerror or exc}") from None
        file_handler.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        file_handler.setFormatter(OneLineFormatter(FILE_FORMAT, tracebacks=debug))
        _handlers.append(file_handler)
        level = min(level, file_handler.level)

    for name in (ROOT_LOGGER, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(level)
        for handler in _handlers:
            logger.addHandler(handler)
    # uvicorn.error and uvicorn.access are children of uvicorn: one handler set each, not two
    for name in SERVER_LOGGERS[1:]:
        logging.getLogger(name).propagate = False
    logging.getLogger("psycopg").setLevel(logging.WARNING)


def close() -> None:
    """Remove and close the handlers configure() added (a command ends: its log file is released)."""
    for name in (ROOT_LOGGER, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        for handler in _handlers:
            logger.removeHandler(handler)
    for handler in _handlers:
        if handler is not _stderr:  # stderr is the process's; only the handler goes
            handler.close()
    _handlers.clear()


def serving() -> None:
    """A server's progress (its address, outages and recoveries) is its output: stderr shows INFO
    unless --quiet or -vv asked otherwise."""
    if _stderr is None:
        configure()
    assert _stderr is not None
    _stderr.setLevel(_stderr_level(_settings, floor=logging.INFO))
    for name in (ROOT_LOGGER, *SERVER_LOGGERS):
        logger = logging.getLogger(name)
        logger.setLevel(min(logger.level, _stderr.level))
