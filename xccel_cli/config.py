"""Configuration: command-line value, else XCCEL_* environment (or .env), else a default."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from xccel_cli.errors import ConfigError, SourceError
from xccel_cli.secrets import MASK as MASK  # re-exported: the masking lives in xccel_cli.secrets
from xccel_cli.secrets import mask_password as mask_password
from xccel_cli.secrets import mask_url as mask_url
from xccel_cli.secrets import remember_url

DEFAULT_SOURCE = "https://storage.googleapis.com/xcc-de-assessment/events.json"
DEFAULT_TIMEOUT_MINUTES = 30
DEFAULT_MAX_REJECT_SHARE = 0.05
DEFAULT_SCHEMA = "public"
MAX_SESSION_HOURS = 24 * 31


def env(name: str) -> str | None:
    """An environment value, treating an empty string as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def database_url(option: str | None) -> str | None:
    """--database-url, else XCCEL_DATABASE_URL, else DATABASE_URL; None means: use the embedded server."""
    url = option or env("XCCEL_DATABASE_URL") or env("DATABASE_URL")
    remember_url(url)  # its secrets are hidden from every message, log line and table from now on
    return url


def source(option: str | None) -> str:
    """--source, else XCCEL_SOURCE, else the public dump; checked at once (see check_source).

    Unlike the other settings, an empty value is an error rather than "unset": an empty --source or
    XCCEL_SOURCE is a mistake (an unset shell variable, a .env template), and falling back to the public
    dump would load data nobody asked for.
    """
    if option is not None:
        value, origin = option, f"--source {option!r}"
    elif (raw := os.environ.get("XCCEL_SOURCE")) is not None:
        value, origin = raw, "XCCEL_SOURCE is set but empty; unset it for the default dump"
    else:
        return DEFAULT_SOURCE
    remember_url(value)
    if not value.strip():
        raise ConfigError(f"the source is empty ({origin}): give an http(s) URL, a file path or '-'")
    check_source(value)
    return value


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


def schema(option: str | None = None) -> str:
    name = option or env("XCCEL_SCHEMA") or DEFAULT_SCHEMA
    if len(name) > 63 or "\x00" in name:
        origin = "XCCEL_SCHEMA" if not option else "the schema name"
        raise ConfigError(f"{origin} must be at most 63 characters (and no NUL), got {name!r}")
    return name


def env_number(name: str, kind: type, valid: Callable[[Any], bool], expected: str) -> Any:
    """The XCCEL_* setting `name` as an int or a finite float, None when unset.

    Anything else, unparsable or out of range, is one ConfigError naming the variable and quoting the
    value as written: "XCCEL_X must be <expected>, got 'abc'".
    """
    raw = env(name)
    if raw is None:
        return None
    try:
        value = kind(raw.strip())
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not valid(value):
        raise ConfigError(f"{name} must be {expected}, got {raw!r}")
    return value


def max_reject_share(option: float | None) -> float:
    if option is None:
        share = env_number("XCCEL_MAX_REJECT_SHARE", float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
        return DEFAULT_MAX_REJECT_SHARE if share is None else float(share)
    if not 0 <= option <= 1:  # also refuses nan, which Click accepts as a float
        raise ConfigError(f"the maximum reject share must be between 0 and 1, got {option}")
    return option


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


def _flag(option: bool | None, name: str) -> bool | None:
    if option is not None:
        return option
    raw = env(name)
    if raw is None:
        return None
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def session_rules(
    preset: str | None = None,
    timeout_minutes: int | None = None,
    split_at_midnight: bool | None = None,
    timezone: str | None = None,
    split_on_referrer: bool | None = None,
    max_session_hours: float | None = None,
) -> SessionRules:
    """A preset (default ga4), then each explicit option or XCCEL_* setting on top of it.

    A bad value from the environment (or .env) is reported under its variable's name; one from an
    option (already typed by Click) keeps its plain description.
    """
    if preset is None and (preset := env("XCCEL_RULES")) is not None and preset not in PRESETS:
        raise ConfigError(f"XCCEL_RULES must be one of: {', '.join(PRESETS)}, got {preset!r}")
    preset = preset or "ga4"
    if preset not in PRESETS:
        raise ConfigError(f"unknown rule set {preset!r}; choose one of: {', '.join(PRESETS)}")
    rules = PRESETS[preset]
    minutes = timeout_minutes
    if minutes is None:
        minutes = env_number(
            "XCCEL_SESSION_TIMEOUT_MINUTES", int, lambda v: 1 <= v <= 240, "a whole number of minutes from 1 to 240"
        )
    elif not 1 <= minutes <= 240:
        raise ConfigError(f"the session timeout must be between 1 and 240 minutes, got {minutes}")
    if minutes is not None:
        rules = replace(rules, timeout_minutes=minutes)
    midnight = _flag(split_at_midnight, "XCCEL_SPLIT_AT_MIDNIGHT")
    if midnight is not None:
        rules = replace(rules, split_at_midnight=midnight)
    zone = timezone or env("XCCEL_TIMEZONE")
    if zone is not None:
        _check_timezone(zone, "XCCEL_TIMEZONE" if not timezone else None)
        rules = replace(rules, timezone=zone)
    referrer = _flag(split_on_referrer, "XCCEL_SPLIT_ON_REFERRER")
    if referrer is not None:
        rules = replace(rules, split_on_referrer=referrer)
    hours = max_session_hours
    if hours is None:
        hours = env_number(
            "XCCEL_MAX_SESSION_HOURS",
            float,
            lambda v: 0 < v <= MAX_SESSION_HOURS,
            f"a number of hours more than 0 and at most {MAX_SESSION_HOURS}",
        )
    elif not 0 < hours <= MAX_SESSION_HOURS:  # also refuses nan, which Click accepts as a float
        raise ConfigError(
            f"the maximum session length must be more than 0 and at most {MAX_SESSION_HOURS} hours, got {hours:g}"
        )
    if hours is not None:
        rules = replace(rules, max_session_hours=float(hours))
    return rules


def _check_timezone(name: str, variable: str | None = None) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if variable:
            raise ConfigError(
                f"{variable} must be an IANA time zone name such as Europe/Amsterdam, got {name!r}"
            ) from None
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam") from None


def cors_origins(options: list[str] | None) -> tuple[str, ...]:
    """--cors-origin (repeatable), else XCCEL_CORS_ORIGINS (comma or space separated); none: CORS stays off.

    An origin is scheme://host[:port], as a browser sends it in the Origin header (no path, no slash).
    """
    raw = list(options or []) or re.split(r"[,\s]+", env("XCCEL_CORS_ORIGINS") or "")
    origins = tuple(dict.fromkeys(origin.strip() for origin in raw if origin.strip()))
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            where = "--cors-origin" if options else "XCCEL_CORS_ORIGINS"
            raise ConfigError(f"{where} must be origins like https://example.com (no path), got {origin[:200]!r}")
    return origins


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def allowed_hosts(options: list[str] | None) -> tuple[str, ...]:
    """--allowed-host (repeatable), else XCCEL_ALLOWED_HOSTS (comma or space separated); none: any Host.

    A name is a host as the Host header carries it without its port (example.com, 127.0.0.1, [::1]),
    or *.example.com for every subdomain of example.com. Kept lower-case: host names are case-insensitive.
    """
    raw = list(options or []) or re.split(r"[,\s]+", env("XCCEL_ALLOWED_HOSTS") or "")
    hosts = tuple(dict.fromkeys(host.strip().lower() for host in raw if host.strip()))
    for host in hosts:
        if not _ALLOWED_HOST.fullmatch(host):
            where = "--allowed-host" if options else "XCCEL_ALLOWED_HOSTS"
            raise ConfigError(
                f"{where} must be host names like example.com or *.example.com (no scheme, port or path), "
                f"got {host[:200]!r}"
            )
    return hosts


_ALLOWED_HOST = re.compile(r"(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*\.?|\[[0-9a-f:.]+\]")


def metrics_file(option: str | None) -> Path | None:
    """--metrics-file, else XCCEL_METRICS_FILE: where run-all writes its figures for node_exporter."""
    raw = option or env("XCCEL_METRICS_FILE")
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.parent.is_dir():
        raise ConfigError(f"the metrics file's directory does not exist: {path.parent}")
    return path
