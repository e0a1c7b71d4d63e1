"""One exception hierarchy for the core; the CLI maps each class to an exit code, here and only here."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1  # a bug: an exception that is not an XccelError
    USAGE = 2  # bad command line (Click's own code for usage errors)
    CONFIG = 3  # bad configuration value (option, environment, .env)
    SOURCE = 4  # the dump cannot be read: missing file, HTTP error, network failure
    DATABASE = 5  # PostgreSQL cannot be reached or refused an operation
    DATA = 6  # the dump was read but is not trustworthy: too many bad lines, truncated
    BUSY = 7  # another xccel run holds the pipeline lock
    STATE = 8  # a stage was run out of order (e.g. load before sessionize)
    LAST_RUN_FAILED = 9  # `xccel status`: the last run failed or was interrupted
    ENGINE = 10  # --engine spark: Spark could not start, or its job failed
    INTERRUPTED = 130  # Ctrl+C (128 + SIGINT, as shells report it)
    OUTPUT_CLOSED = 141  # standard output's reader went away (`| head`): 128 + SIGPIPE, as shells report it


class XccelError(Exception):
    """Base class: a failure explained in one line, safe to show to the user."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(XccelError):
    exit_code = ExitCode.CONFIG


class SourceError(XccelError):
    exit_code = ExitCode.SOURCE


class DatabaseError(XccelError):
    exit_code = ExitCode.DATABASE


class DataQualityError(XccelError):
    exit_code = ExitCode.DATA


class BusyError(XccelError):
    exit_code = ExitCode.BUSY


class StateError(XccelError):
    exit_code = ExitCode.STATE


class PublishWaitError(DatabaseError):
    """load waited as long as XCCEL_PUBLISH_WAIT_SECONDS allows for readers to let go of the tables."""


class Interrupted(XccelError):
    """Ctrl+C during a run; the message says whether the run's result was published."""

    exit_code = ExitCode.INTERRUPTED


class PackageError(XccelError):
    """The installed package is incomplete (a SQL file is missing): a bug or a broken install, not the database."""

    exit_code = ExitCode.INTERNAL


class EngineError(XccelError):
    exit_code = ExitCode.ENGINE
