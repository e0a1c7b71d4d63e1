"""Secrets in database URLs, connection strings and source URLs: hidden from everything xccel prints,
logs or stores.

Two layers. mask_url/mask_text recognise the shapes a secret takes (URL userinfo, password=…, secret
query parameters such as token= or X-Amz-Signature=) and replace the whole value. Shapes alone cannot
be enough: a password written unencoded may hold '@', '/', '?', '&' or spaces, and a parser then splits
it where it likes and quotes the pieces in its errors. So the URLs xccel was configured with are also
remembered (remember_url), and mask_password hides any four-character piece of their secrets wherever
it appears.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from urllib.parse import unquote, unquote_plus

MASK = "***"

# Query or keyword parameters whose value is a secret: exact names, and names containing one of the
# words (X-Amz-Signature, X-Goog-Credential, access_token, client_secret, db_password, ...).
SECRET_NAMES = frozenset({"sig", "key", "pwd", "auth", "apikey", "passwd", "awsaccesskeyid"})
SECRET_WORDS = ("password", "passwd", "token", "secret", "signature", "credential", "api_key", "apikey", "access_key")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_NAME = r"[A-Za-z0-9_.\-]+"
# a name=value pair after '?', '&', ';' or white space (or at the start); the value runs to the end of
# the text's token: an unencoded secret may hold '&', so nothing after its '=' can be trusted as a new
# parameter. A quoted value (libpq keyword strings) ends at its closing quote, or masks the rest.
_SECRET_NAME = (
    "(?:"
    + "|".join([rf"[A-Za-z0-9_.\-]*{word.replace('_', '[-_]')}[A-Za-z0-9_.\-]*" for word in SECRET_WORDS])
    + "|"
    + "|".join(sorted(SECRET_NAMES))
    + ")"
)
_VALUE = r"('(?:\\.|[^'\\])*'?|\"(?:\\.|[^\"\\])*\"?|\S*)"
_PARAMETER = re.compile(rf"(?:(?<=[?&;\s])|^)({_SECRET_NAME})(\s*=\s*){_VALUE}", re.IGNORECASE)
# a secret parameter's name and '=' in a URL (its value is everything after it)
_QUERY_SECRET = re.compile(rf"(?<=[?&;]){_SECRET_NAME}=", re.IGNORECASE)
# password=… glued to other text (PGPASSWORD=…, "xccel.db_password=…"): no boundary needed in front
_PASSWORD_ANYWHERE = re.compile(
    r"((?:password|passwd)\s*=\s*)('(?:\\.|[^'\\])*'?|\"(?:\\.|[^\"\\])*\"?|\S*)",
    re.IGNORECASE,
)
# URL userinfo in free text: from the user's ':' to the last '@' of the token (a password may hold '@')
_USERINFO = re.compile(r"(://[^:/@\s]*:)\S*@")
# what may follow a mask already in place: text masked twice keeps the ':' of "...password=***: reason"
_ALREADY_MASKED = re.compile(rf"{re.escape(MASK)}[:,;.)]?")

PIECE = 4  # the length of the pieces of a remembered secret that are hidden wherever they appear

_remembered: set[str] = set()
_remembered_lock = threading.Lock()
_pieces: frozenset[str] = frozenset()


def is_secret_name(name: str) -> bool:
    lowered = name.lower().replace("-", "_")
    return lowered in SECRET_NAMES or any(word in lowered for word in SECRET_WORDS)


def _mask_parameter(match: re.Match[str]) -> str:
    name, equals, value = match.group(1), match.group(2), match.group(3)
    if _ALREADY_MASKED.fullmatch(value):
        return match.group(0)
    return f"{name}{equals}{MASK}"


def _mask_password_anywhere(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    return key + value if _ALREADY_MASKED.fullmatch(value) else key + MASK


def mask_text(text: str) -> str:
    """Hide the secrets that have a recognisable shape in any text (idempotent)."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _PARAMETER.sub(_mask_parameter, text)
    return _PASSWORD_ANYWHERE.sub(_mask_password_anywhere, text)


def mask_url(url: str) -> str:
    """The URL as it may be shown: the user kept; the rest of the userinfo, and every secret query
    parameter with the rest of the URL after it, replaced by ***.

    Built from the text, not from a URL parser, and safe under every reading of an ambiguous URL: an
    unencoded password may hold '@', '/', ':', '?' or '&', so the userinfo is taken to end at the
    URL's last '@' and, separately, a secret parameter to run to the end; what either reading calls
    secret is hidden. Not a URL (a path, '-', a libpq keyword string): masked as text.
    """
    hidden = _hidden_in_url(url)
    if hidden is None:
        return mask_password(url)
    return mask_password(_render(url, hidden))


def _hidden_in_url(url: str) -> bytearray | None:
    """Which characters of a URL are secret (see mask_url); None when it is not a URL."""
    scheme_end = url.find("://")
    if scheme_end <= 0 or not _SCHEME.fullmatch(url[:scheme_end]):
        return None
    hidden = bytearray(len(url))
    start = scheme_end + 3
    at = url.rfind("@", start)
    colon = url.find(":", start, at) if at >= 0 else -1
    if colon >= 0:
        hidden[colon + 1 : at] = b"\x01" * (at - colon - 1)
    query = _QUERY_SECRET.search(url, start)
    if query is not None:
        hidden[query.end() :] = b"\x01" * (len(url) - query.end())
    return hidden


def _render(text: str, hidden: bytearray) -> str:
    """text with every run of hidden characters replaced by one MASK."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if hidden[i]:
            while i < len(text) and hidden[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# where a secret region may hold a parameter's name rather than the secret (an ambiguous URL)
_NAME_AND_EQUALS = re.compile(r"(?:^|[?&;\s])[A-Za-z_][A-Za-z0-9_.\-]*\s*=")


def remember_url(url: str | None) -> None:
    """Remember the secrets of a configured URL or connection string, to hide their pieces anywhere."""
    if not url:
        return
    hidden = _hidden_in_url(url)
    if hidden is not None:
        regions = [url[m.start() : m.end()] for m in re.finditer(b"\x01+", bytes(hidden))]
    else:
        regions = [m.group(m.lastindex or 0) for m in _PARAMETER.finditer(url)]
        regions += [m.group(2) for m in _PASSWORD_ANYWHERE.finditer(url)]
    values = set()
    for region in regions:
        for segment in _NAME_AND_EQUALS.split(region):
            unquoted = segment.strip("'\"")
            for form in (segment, unquote(segment), unquote_plus(segment), unquoted, re.sub(r"\\(.)", r"\1", unquoted)):
                if len(form) >= PIECE:
                    values.add(form)
    if values:
        with _remembered_lock:
            _remembered.update(values)
            _rebuild_pieces()


def forget_all() -> None:
    """Forget every remembered secret (for tests that run several configurations in one process)."""
    global _pieces
    with _remembered_lock:
        _remembered.clear()
        _pieces = frozenset()


def _rebuild_pieces() -> None:
    global _pieces
    _pieces = frozenset(value[i : i + PIECE] for value in _remembered for i in range(len(value) - PIECE + 1))


def _hide_pieces(text: str) -> str:
    pieces = _pieces
    if not pieces or len(text) < PIECE:
        return text
    hidden = bytearray(len(text))
    found = False
    for i in range(len(text) - PIECE + 1):
        if text[i : i + PIECE] in pieces:
            hidden[i : i + PIECE] = b"\x01" * PIECE
            found = True
    return _render(text, hidden) if found else text


def mask_password(text: str) -> str:
    """Hide passwords and other secrets in any text that may quote one: their recognisable shapes, and
    every piece of a remembered secret (idempotent)."""
    return _hide_pieces(mask_text(text))


# A slow, salted digest: it lets a later run tell apart two URLs that mask alike, and its stored value does not
# give away the secret it covers to a dictionary attack.
DIGEST_ITERATIONS = 100_000


def hidden_digest(url: str) -> str | None:
    """A digest of a URL that mask_url shortens (None when it hides nothing), to be stored beside the masked URL."""
    if mask_url(url) == url:
        return None
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", url.encode(), salt, DIGEST_ITERATIONS)
    return f"pbkdf2-sha256:{DIGEST_ITERATIONS}:{salt.hex()}:{digest.hex()}"


def same_hidden(url: str, stored: str | None) -> bool:
    """Whether url is the URL a stored hidden_digest was taken of (no digest: whether url hides nothing)."""
    if stored is None:
        return mask_url(url) == url
    try:
        _, iterations, salt, expected = stored.split(":")
        digest = hashlib.pbkdf2_hmac("sha256", url.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)
