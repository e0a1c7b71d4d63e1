"""Configuration: every XCCEL_* setting, resolved once per command into one Settings object.

The order is: command-line option, else the XCCEL_* environment variable, else .env (loaded into the
environment by the command's entry point without overriding it), else the default written here. The CLI
resolves the environment once, before any connection, and passes plain values down; no other module reads
an XCCEL_* variable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xccel_cli.errors import ConfigError, SourceError
from xccel_cli.secrets import MASK as MASK  # re-exported: the masking lives in xccel_cli.secrets
from xccel_cli.secrets import mask_password as mask_password
from xccel_cli.secrets import mask_url as mask_url
from xccel_cli.secrets import remember_url

# --- every default and range, each written once --------------------------------------------------------------

DEFAULT_SOURCE = "https://storage.googleapis.com/xcc-de-assessment/events.json"
DEFAULT_SCHEMA = "public"
DEFAULT_TIMEOUT_MINUTES = 30
MIN_TIMEOUT_MINUTES = 1
MAX_TIMEOUT_MINUTES = 240
MAX_SESSION_HOURS = 24 * 31
DEFAULT_MAX_REJECT_SHARE = 0.05
DEFAULT_RETRIES = 3
MAX_RETRIES = 20
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 3600.0
DEFAULT_HTTP_TIMEOUT_SECONDS = 60.0
MAX_HTTP_TIMEOUT_SECONDS = 3600.0  # beyond that a socket timeout overflows on some platforms; and nobody waits so long
DEFAULT_MAX_LINE_BYTES = 16 << 20
MIN_MAX_LINE_BYTES = 1 << 10
# The setting cannot go higher: a line this long always fits PostgreSQL's jsonb (whose strings and
# containers stop at 256 MiB, and whose binary form can be several times the text of small numbers).
MAX_MAX_LINE_BYTES = 32 << 20
DEFAULT_PUBLISH_WAIT_SECONDS = 60.0
MAX_PUBLISH_WAIT_SECONDS = 86400.0
ENGINES = ("postgres", "spark")
DEFAULT_ENGINE = "postgres"
PUBLISH_CHOICES = ("all", "sessions")  # --engine spark: "sessions" leaves tb_events in the warehouse
DEFAULT_PUBLISH = "all"


def check_source(source: str) -> None:
    """A source that cannot be a valid URL fails here, before any connection: it is never retried.

    The reasons are fixed texts: urllib's own messages may quote the netloc, password included.
    """
    shown = mask_url(source)
    try:
        parts = urlsplit(source)
        port = parts.port  # parsed lazily: a port out of range or not a number raises only here
    except ValueError as exc:
        reason = "the port must be a number from 1 to 65535" if "Port" in str(exc) else "its host cannot be parsed"
        raise SourceError(f"invalid source URL {shown}: {reason}") from None
    if parts.scheme.lower() not in ("http", "https"):
        return  # a path, or a scheme open_source refuses with its own message
    if not parts.hostname:
        raise SourceError(f"invalid source URL {shown}: it has no host")
    if port == 0:
        raise SourceError(f"invalid source URL {shown}: the port must be a number from 1 to 65535")


@dataclass(frozen=True)
class SessionRules:
    """How a customer's events are cut into sessions. Stored with every published result."""

    timeout_minutes: int = DEFAULT_TIMEOUT_MINUTES
    split_at_midnight: bool = False
    timezone: str = "UTC"
    split_on_referrer: bool = False
    # Applied after the other rules, inside the sessions they make: an event at least this many hours
    # after the start of its (possibly already cut) session starts a new one. None: no cap.
    max_session_hours: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = [f"new session after {self.timeout_minutes} min of inactivity"]
        if self.split_at_midnight:
            parts.append(f"at midnight ({self.timezone})")
        if self.split_on_referrer:
            parts.append("when the referrer changes")
        if self.max_session_hours is not None:
            parts.append(f"capped at {self.max_session_hours:g} h")
        return ", ".join(parts)


PRESETS: dict[str, SessionRules] = {
    "ga4": SessionRules(),
    "ga-universal": SessionRules(split_at_midnight=True, split_on_referrer=True),
}


def _check_timezone(name: str, variable: str | None = None) -> None:
    from zoneinfo import available_timezones

    # the zone database's names: ZoneInfo alone also opens other files of the zone folder (localtime,
    # posixrules, posix/..., right/...), which PostgreSQL does not know as zones
    if name != "localtime" and name in available_timezones():
        return
    if variable:
        raise ConfigError(f"{variable} must be an IANA time zone name such as Europe/Amsterdam, got {name!r}")
    raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam")


@dataclass(frozen=True)
class Settings:
    """Every XCCEL_* setting of one command, resolved once from the environment by `resolve`.

    The comment beside each field names its variable. None means "not set" where the default depends on
    something else (the embedded server, the user's data directory, the rule preset, the Spark defaults).
    The methods taking an option give the command-line value precedence over the field.
    """

    database_url: str | None = None  # XCCEL_DATABASE_URL, else DATABASE_URL; None: the embedded server
    source: str = DEFAULT_SOURCE  # XCCEL_SOURCE: an http(s) URL, a file path or '-'
    schema: str = DEFAULT_SCHEMA  # XCCEL_SCHEMA
    data_dir: Path | None = None  # XCCEL_DATA_DIR: the embedded server's data; None: the user's data directory
    rules: str | None = None  # XCCEL_RULES: a preset of PRESETS; None: ga4
    session_timeout_minutes: int | None = None  # XCCEL_SESSION_TIMEOUT_MINUTES; None: the preset's
    split_at_midnight: bool | None = None  # XCCEL_SPLIT_AT_MIDNIGHT; None: the preset's
    timezone: str | None = None  # XCCEL_TIMEZONE; None: the preset's (UTC)
    split_on_referrer: bool | None = None  # XCCEL_SPLIT_ON_REFERRER; None: the preset's
    max_session_hours: float | None = None  # XCCEL_MAX_SESSION_HOURS; None: no cap
    max_reject_share: float = DEFAULT_MAX_REJECT_SHARE  # XCCEL_MAX_REJECT_SHARE
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES  # XCCEL_MAX_LINE_BYTES
    retries: int = DEFAULT_RETRIES  # XCCEL_RETRIES
    retry_backoff_seconds: float = DEFAULT_BACKOFF_SECONDS  # XCCEL_RETRY_BACKOFF_SECONDS
    http_timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS  # XCCEL_HTTP_TIMEOUT_SECONDS
    publish_wait_seconds: float = DEFAULT_PUBLISH_WAIT_SECONDS  # XCCEL_PUBLISH_WAIT_SECONDS
    metrics_file: Path | None = None  # XCCEL_METRICS_FILE; None: run-all writes no metrics file
    cors_origins: tuple[str, ...] = ()  # XCCEL_CORS_ORIGINS; empty: CORS off
    allowed_hosts: tuple[str, ...] = ()  # XCCEL_ALLOWED_HOSTS; empty: any Host header
    log_file: str | None = None  # XCCEL_LOG_FILE
    debug: bool = False  # XCCEL_DEBUG=1 (or true, yes, on): tracebacks, as --debug
    engine: str = DEFAULT_ENGINE  # XCCEL_ENGINE
    publish: str = DEFAULT_PUBLISH  # XCCEL_PUBLISH: what a Spark run publishes (PUBLISH_CHOICES)
    warehouse: str | None = None  # XCCEL_WAREHOUSE; None: 'warehouse' in the data directory
    spark_master: str | None = None  # XCCEL_SPARK_MASTER; None: the Spark engine's default
    spark_conf: tuple[str, ...] = field(default=())  # XCCEL_SPARK_CONF, KEY=VALUE pairs

    def database_url_for(self, option: str | None) -> str | None:
        """--database-url, else the configured URL; None means: use the embedded server."""
        if option is not None and not option.strip():
            # --database-url "$DB" with DB unset: the embedded server would take the run where nobody looks
            raise ConfigError(
                "the database URL is empty (--database-url ''): give a PostgreSQL URL, or leave the option out "
                "for XCCEL_DATABASE_URL or the embedded server"
            )
        url = option or self.database_url
        remember_url(url)  # its secrets are hidden from every message, log line and table from now on
        return url

    def source_for(self, option: str | None) -> str:
        """--source, else XCCEL_SOURCE (checked by resolve), else the public dump."""
        if option is None:
            return self.source
        remember_url(option)
        if not option.strip():
            raise ConfigError(f"the source is empty (--source {option!r}): give an http(s) URL, a file path or '-'")
        check_source(option)
        return option

    def reject_share_for(self, option: float | None) -> float:
        if option is None:
            return self.max_reject_share
        if not 0 <= option <= 1:  # also refuses nan, which Click accepts as a float
            raise ConfigError(f"the maximum reject share must be between 0 and 1, got {option}")
        return option

    def line_bytes_for(self, option: int | None) -> int:
        if option is None:
            return self.max_line_bytes
        if not MIN_MAX_LINE_BYTES <= option <= MAX_MAX_LINE_BYTES:
            raise ConfigError(f"the maximum line length must be {_LINE_BYTES_EXPECTED}, got {option}")
        return option

    def retries_for(self, option: int | None) -> int:
        return self.retries if option is None else option  # Click keeps the option within 0..MAX_RETRIES

    def cors_origins_for(self, options: list[str] | None) -> tuple[str, ...]:
        """--cors-origin (repeatable), else XCCEL_CORS_ORIGINS; none: CORS stays off."""
        return _origins(options, "--cors-origin") if options else self.cors_origins

    def allowed_hosts_for(self, options: list[str] | None) -> tuple[str, ...]:
        """--allowed-host (repeatable), else XCCEL_ALLOWED_HOSTS; none: serve answers any Host."""
        return _hosts(options, "--allowed-host") if options else self.allowed_hosts

    def metrics_file_for(self, option: str | None) -> Path | None:
        """--metrics-file, else XCCEL_METRICS_FILE: where run-all writes its figures for node_exporter."""
        return _metrics_path(option) if option else self.metrics_file

    def session_rules(
        self,
        preset: str | None = None,
        timeout_minutes: int | None = None,
        split_at_midnight: bool | None = None,
        timezone: str | None = None,
        split_on_referrer: bool | None = None,
        max_session_hours: float | None = None,
    ) -> SessionRules:
        """A preset (option, else XCCEL_RULES, else ga4), then each option or XCCEL_* rule setting on top of it.

        The environment's values were checked by resolve (and are reported under their variable's name); an
        option's (already typed by Click) keeps its plain description.
        """
        name = preset or self.rules or "ga4"
        if name not in PRESETS:
            raise ConfigError(f"unknown rule set {name!r}; choose one of: {', '.join(PRESETS)}")
        rules = PRESETS[name]
        if timeout_minutes is not None and not MIN_TIMEOUT_MINUTES <= timeout_minutes <= MAX_TIMEOUT_MINUTES:
            raise ConfigError(
                f"the session timeout must be between {MIN_TIMEOUT_MINUTES} and {MAX_TIMEOUT_MINUTES} minutes, "
                f"got {timeout_minutes}"
            )
        if max_session_hours is not None and not 0 < max_session_hours <= MAX_SESSION_HOURS:
            raise ConfigError(  # also refuses nan, which Click accepts as a float
                f"the maximum session length must be more than 0 and at most {MAX_SESSION_HOURS} hours, "
                f"got {max_session_hours:g}"
            )
        if timezone is not None:
            _check_timezone(timezone)
        chosen: dict[str, Any] = {
            "timeout_minutes": _first(timeout_minutes, self.session_timeout_minutes),
            "split_at_midnight": _first(split_at_midnight, self.split_at_midnight),
            "timezone": timezone or self.timezone,
            "split_on_referrer": _first(split_on_referrer, self.split_on_referrer),
            "max_session_hours": _first(max_session_hours, self.max_session_hours),
        }
        changes = {key: value for key, value in chosen.items() if value is not None}
        if changes.get("max_session_hours") is not None:
            changes["max_session_hours"] = float(changes["max_session_hours"])
        return replace(rules, **changes)


def _first(option: Any, configured: Any) -> Any:
    return option if option is not None else configured


_LINE_BYTES_EXPECTED = f"a whole number of bytes from {MIN_MAX_LINE_BYTES:,} to {MAX_MAX_LINE_BYTES:,}"


def resolve(environ: Mapping[str, str]) -> Settings:
    """Every XCCEL_* setting read from `environ` (the environment, .env already loaded into it) and checked.

    A bad value is one ConfigError naming its variable and quoting the value as written, raised here, before
    any command connects to anything.
    """

    def get(name: str) -> str | None:
        value = environ.get(name)
        return value if value not in (None, "") else None

    def number(name: str, kind: type, valid: Callable[[Any], bool], expected: str) -> Any:
        raw = get(name)
        if raw is None:
            return None
        try:
            value = kind(raw.strip())
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)) or not valid(value):
            raise ConfigError(f"{name} must be {expected}, got {raw!r}")
        return value

    def flag(name: str) -> bool | None:
        raw = get(name)
        if raw is None:
            return None
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")

    def default(value: Any, fallback: Any) -> Any:
        return fallback if value is None else value

    if (raw_url := environ.get("XCCEL_DATABASE_URL")) is not None and not raw_url.strip():
        # as for XCCEL_SOURCE: set but empty is a mistake, and the embedded server would hide where the run went
        raise ConfigError(
            "the database URL is empty (XCCEL_DATABASE_URL is set but empty; unset it for DATABASE_URL or the "
            "embedded server)"
        )
    database_url = get("XCCEL_DATABASE_URL") or get("DATABASE_URL")
    remember_url(database_url)  # its secrets are hidden from every message, log line and table from now on

    schema = get("XCCEL_SCHEMA") or DEFAULT_SCHEMA
    if len(schema) > 63 or "\x00" in schema:
        raise ConfigError(f"XCCEL_SCHEMA must be at most 63 characters (and no NUL), got {schema!r}")

    rules = get("XCCEL_RULES")
    if rules is not None and rules not in PRESETS:
        raise ConfigError(f"XCCEL_RULES must be one of: {', '.join(PRESETS)}, got {rules!r}")
    timeout_minutes = number(
        "XCCEL_SESSION_TIMEOUT_MINUTES",
        int,
        lambda v: MIN_TIMEOUT_MINUTES <= v <= MAX_TIMEOUT_MINUTES,
        f"a whole number of minutes from {MIN_TIMEOUT_MINUTES} to {MAX_TIMEOUT_MINUTES}",
    )
    split_at_midnight = flag("XCCEL_SPLIT_AT_MIDNIGHT")
    timezone = get("XCCEL_TIMEZONE")
    if timezone is not None:
        _check_timezone(timezone, "XCCEL_TIMEZONE")
    split_on_referrer = flag("XCCEL_SPLIT_ON_REFERRER")
    max_session_hours = number(
        "XCCEL_MAX_SESSION_HOURS",
        float,
        lambda v: 0 < v <= MAX_SESSION_HOURS,
        f"a number of hours more than 0 and at most {MAX_SESSION_HOURS}",
    )

    # two messages for the retries, the first one pinned by tests/test_cli.py: "must be a whole number, got 'lots'"
    retries = number("XCCEL_RETRIES", int, lambda v: True, "a whole number")
    if retries is not None and not 0 <= retries <= MAX_RETRIES:
        raise ConfigError(f"XCCEL_RETRIES must be between 0 and {MAX_RETRIES}, got {retries}")

    engine = (get("XCCEL_ENGINE") or DEFAULT_ENGINE).strip().lower()
    if engine not in ENGINES:
        raise ConfigError(f"XCCEL_ENGINE must be {' or '.join(ENGINES)}, got {engine!r}")
    publish = (get("XCCEL_PUBLISH") or DEFAULT_PUBLISH).strip().lower()
    if publish not in PUBLISH_CHOICES:
        raise ConfigError(f"XCCEL_PUBLISH must be {' or '.join(PUBLISH_CHOICES)}, got {publish!r}")

    data_dir = get("XCCEL_DATA_DIR")
    metrics_file = get("XCCEL_METRICS_FILE")
    return Settings(
        database_url=database_url,
        source=_configured_source(environ.get("XCCEL_SOURCE")),
        schema=schema,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        rules=rules,
        session_timeout_minutes=timeout_minutes,
        split_at_midnight=split_at_midnight,
        timezone=timezone,
        split_on_referrer=split_on_referrer,
        max_session_hours=None if max_session_hours is None else float(max_session_hours),
        max_reject_share=float(
            default(
                number("XCCEL_MAX_REJECT_SHARE", float, lambda v: 0 <= v <= 1, "a number from 0 to 1"),
                DEFAULT_MAX_REJECT_SHARE,
            )
        ),
        max_line_bytes=int(
            default(
                number(
                    "XCCEL_MAX_LINE_BYTES",
                    int,
                    lambda v: MIN_MAX_LINE_BYTES <= v <= MAX_MAX_LINE_BYTES,
                    _LINE_BYTES_EXPECTED,
                ),
                DEFAULT_MAX_LINE_BYTES,
            )
        ),
        retries=int(default(retries, DEFAULT_RETRIES)),
        retry_backoff_seconds=float(
            default(
                number(
                    "XCCEL_RETRY_BACKOFF_SECONDS",
                    float,
                    lambda v: 0 <= v <= MAX_BACKOFF_SECONDS,
                    f"a number of seconds from 0 to {MAX_BACKOFF_SECONDS:g}",
                ),
                DEFAULT_BACKOFF_SECONDS,
            )
        ),
        http_timeout_seconds=float(
            default(
                number(
                    "XCCEL_HTTP_TIMEOUT_SECONDS",
                    float,
                    lambda v: 0 < v <= MAX_HTTP_TIMEOUT_SECONDS,
                    f"a number of seconds more than 0 and at most {MAX_HTTP_TIMEOUT_SECONDS:g}",
                ),
                DEFAULT_HTTP_TIMEOUT_SECONDS,
            )
        ),
        publish_wait_seconds=float(
            default(
                number(
                    "XCCEL_PUBLISH_WAIT_SECONDS",
                    float,
                    lambda v: 0 <= v <= MAX_PUBLISH_WAIT_SECONDS,
                    f"a number of seconds from 0 to {MAX_PUBLISH_WAIT_SECONDS:g}",
                ),
                DEFAULT_PUBLISH_WAIT_SECONDS,
            )
        ),
        metrics_file=_metrics_path(metrics_file) if metrics_file else None,
        cors_origins=_origins(re.split(r"[,\s]+", get("XCCEL_CORS_ORIGINS") or ""), "XCCEL_CORS_ORIGINS"),
        allowed_hosts=_hosts(re.split(r"[,\s]+", get("XCCEL_ALLOWED_HOSTS") or ""), "XCCEL_ALLOWED_HOSTS"),
        log_file=get("XCCEL_LOG_FILE"),
        debug=bool(flag("XCCEL_DEBUG")),
        engine=engine,
        publish=publish,
        warehouse=get("XCCEL_WAREHOUSE"),
        spark_master=get("XCCEL_SPARK_MASTER"),
        spark_conf=tuple((get("XCCEL_SPARK_CONF") or "").split()),
    )


def _configured_source(raw: str | None) -> str:
    """XCCEL_SOURCE, else the public dump; checked at once (see check_source).

    Unlike the other settings, an empty value is an error rather than "unset": an empty XCCEL_SOURCE is a
    mistake (an unset shell variable, a .env template), and falling back to the public dump would load data
    nobody asked for.
    """
    if raw is None:
        return DEFAULT_SOURCE
    remember_url(raw)
    if not raw.strip():
        raise ConfigError(
            "the source is empty (XCCEL_SOURCE is set but empty; unset it for the default dump): "
            "give an http(s) URL, a file path or '-'"
        )
    check_source(raw)
    return raw


def _origins(raw: list[str], where: str) -> tuple[str, ...]:
    """Origins as a browser sends them in the Origin header: scheme://host[:port] (no path, no slash), in lower
    case as a browser writes them (scheme and host are case-insensitive; a configured https://Shop.example
    never matched)."""
    origins = tuple(dict.fromkeys(origin.strip().lower() for origin in raw if origin.strip()))
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(f"{where} must be origins like https://example.com (no path), got {origin[:200]!r}")
    return origins


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _hosts(raw: list[str], where: str) -> tuple[str, ...]:
    """Host names as the Host header carries them without their port (example.com, 127.0.0.1, [::1]), or
    *.example.com for every subdomain of example.com; lower-case, as host names are case-insensitive."""
    hosts = tuple(dict.fromkeys(host.strip().lower() for host in raw if host.strip()))
    for host in hosts:
        if not _ALLOWED_HOST.fullmatch(host):
            raise ConfigError(
                f"{where} must be host names like example.com or *.example.com (no scheme, port or path), "
                f"got {host[:200]!r}"
            )
    return hosts


_ALLOWED_HOST = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]")


def _metrics_path(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.parent.is_dir():
        raise ConfigError(f"the metrics file's directory does not exist: {path.parent}")
    if path.is_dir():  # found now, not after the run has published
        raise ConfigError(f"the metrics file is a directory: {path}")
    return path
