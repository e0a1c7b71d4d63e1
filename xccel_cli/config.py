"""Configuration: command-line value, else XCCEL_* environment (or .env), else a default."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from xccel_cli.errors import ConfigError

DEFAULT_SOURCE = "https://storage.googleapis.com/xcc-de-assessment/events.json"
DEFAULT_TIMEOUT_MINUTES = 30
DEFAULT_MAX_REJECT_SHARE = 0.05
DEFAULT_SCHEMA = "public"


def env(name: str) -> str | None:
    """An environment value, treating an empty string as unset."""
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def database_url(option: str | None) -> str | None:
    """--database-url, else XCCEL_DATABASE_URL, else DATABASE_URL; None means: use the embedded server."""
    return option or env("XCCEL_DATABASE_URL") or env("DATABASE_URL")


def source(option: str | None) -> str:
    return option or env("XCCEL_SOURCE") or DEFAULT_SOURCE


def schema(option: str | None = None) -> str:
    name = option or env("XCCEL_SCHEMA") or DEFAULT_SCHEMA
    if len(name) > 63 or "\x00" in name:
        raise ConfigError(f"invalid schema name {name!r}: at most 63 characters")
    return name


def number(value: Any, name: str, kind: type = float) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {'whole ' if kind is int else ''}number, got {value!r}") from None


def max_reject_share(option: float | None) -> float:
    raw = option if option is not None else env("XCCEL_MAX_REJECT_SHARE")
    share = DEFAULT_MAX_REJECT_SHARE if raw is None else number(raw, "the maximum reject share")
    if not 0 <= share <= 1:
        raise ConfigError(f"the maximum reject share must be between 0 and 1, got {share}")
    return share


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
    """A preset (default ga4), then each explicit option or XCCEL_* setting on top of it."""
    preset = preset or env("XCCEL_RULES") or "ga4"
    if preset not in PRESETS:
        raise ConfigError(f"unknown rule set {preset!r}; choose one of: {', '.join(PRESETS)}")
    rules = PRESETS[preset]
    minutes = timeout_minutes if timeout_minutes is not None else env("XCCEL_SESSION_TIMEOUT_MINUTES")
    if minutes is not None:
        minutes = number(minutes, "the session timeout (minutes)", int)
        if not 1 <= minutes <= 240:
            raise ConfigError(f"the session timeout must be between 1 and 240 minutes, got {minutes}")
        rules = replace(rules, timeout_minutes=minutes)
    midnight = _flag(split_at_midnight, "XCCEL_SPLIT_AT_MIDNIGHT")
    if midnight is not None:
        rules = replace(rules, split_at_midnight=midnight)
    zone = timezone or env("XCCEL_TIMEZONE")
    if zone is not None:
        _check_timezone(zone)
        rules = replace(rules, timezone=zone)
    referrer = _flag(split_on_referrer, "XCCEL_SPLIT_ON_REFERRER")
    if referrer is not None:
        rules = replace(rules, split_on_referrer=referrer)
    hours = max_session_hours if max_session_hours is not None else env("XCCEL_MAX_SESSION_HOURS")
    if hours is not None:
        hours = number(hours, "the maximum session length (hours)")
        if not 0 < hours <= 24 * 31:
            raise ConfigError(f"the maximum session length must be more than 0 and at most 744 hours, got {hours:g}")
        rules = replace(rules, max_session_hours=hours)
    return rules


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {name!r}: use an IANA name such as Europe/Amsterdam") from None


MASK = "***"
# URL userinfo: everything from the user's ':' to the last '@' before the path (a password may hold '@')
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^/\s]*@")
# password=... in a URL query (ends at '&': a literal '&' cannot be part of a query value) or in a libpq
# keyword string (ends at white space, or is a single-quoted value with backslash escapes; an unclosed
# quote masks the rest of the text). No word boundary in front: PGPASSWORD=, db_password= are masked too.
_PASSWORD_KEYWORD = re.compile(
    r"((?<=[?&])password=)([^&\s]*)"
    r"|(password\s*=\s*)('(?:\\.|[^'\\])*'?|\"(?:\\.|[^\"\\])*\"?|\S*)",
    re.IGNORECASE,
)
# what may follow a mask already in place: text masked twice (a masked URL quoted in an error message
# that is masked again) keeps the ':' of "...password=***: reason" instead of taking it for the password
_ALREADY_MASKED = re.compile(rf"{re.escape(MASK)}[:,;.)]?")


def _mask_keyword(match: re.Match[str]) -> str:
    key = match.group(1) or match.group(3)
    value = match.group(2) if match.group(1) else match.group(4)
    if _ALREADY_MASKED.fullmatch(value):
        return key + value
    return key + MASK


def mask_password(text: str) -> str:
    """Hide passwords in a connection string or any text that may quote one (idempotent)."""
    text = _PASSWORD_IN_URL.sub(rf"\1{MASK}@", text)
    return _PASSWORD_KEYWORD.sub(_mask_keyword, text)


def mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_password(url)
    if parts.password is None:
        return mask_password(url)
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    masked = urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[-1]}"))
    return mask_password(masked)
