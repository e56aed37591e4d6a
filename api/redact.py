"""Credentials out of anything printed: the one place URLs and their secrets are masked.

A database URL can carry a password as userinfo (``postgresql://u:pw@host/db``)
or as a query parameter (``?password=pw``, ``?sslpassword=pw``), under any
scheme, including ones kaq refuses (``mysql://u:pw@host``), and passwords are
not always percent-encoded (``u:p@ss/w?rd@host``). Every log line, start-up
message and error text that shows a URL, or an exception message that may quote
one, goes through `redact_url` or `scrub` first. When in doubt they mask more,
never less: a log line that hides a host name is a nuisance, one that shows a
password is an incident.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MASK = "***"

# Query parameter names that hold a secret: libpq's password and sslpassword, and the
# usual spellings of other drivers (passwd, pwd, secret, token, api_key, auth, ...).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)


# Never part of a well-formed userinfo: seeing one there means the "@" is somewhere else.
_NOT_USERINFO = re.compile(r"[/?#@]")


def _split(url: str) -> tuple[str, str, str, str]:
    """(scheme and `://`, the userinfo as shown, its secret part, the rest after it)."""
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    if not sep:
        rest = url
    # The last "@" ends the userinfo, so an unencoded "@", "/", "?" or "#" in a
    # password stays inside the masked part.
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return prefix, "", "", rest
    user, colon, password = userinfo.partition(":")
    if colon:
        if _NOT_USERINFO.search(user):  # that "@" was in a path or query: mask it all
            return prefix, f"{MASK}@", userinfo, after
        return prefix, f"{user}:{MASK}@", password, after
    if _NOT_USERINFO.search(userinfo):  # no userinfo at all: an "@" in a path or query
        return prefix, "", "", rest
    return prefix, f"{userinfo}@", "", after


def _is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(unquote(name)))


def _params(query: str) -> list[str]:
    return re.split(r"([&;])", query)


def redact_url(url: str) -> str:
    """`url` with its password and secret query parameters replaced by `***`; never raises.

    >>> redact_url("postgresql://kaq:s3cret@db:5432/kaq?sslpassword=x&sslmode=require")
    'postgresql://kaq:***@db:5432/kaq?sslpassword=***&sslmode=require'
    """
    prefix, userinfo, _secret, rest = _split(url)
    location, q, query = rest.partition("?")
    if not q:
        return prefix + userinfo + location
    shown = []
    for param in _params(query):
        name, eq, _value = param.partition("=")
        shown.append(f"{name}={MASK}" if eq and _is_secret(name) else param)
    return prefix + userinfo + location + "?" + "".join(shown)


def secrets_in(url: str) -> list[str]:
    """The secret values `url` carries, as written, decoded and encoded, longest first."""
    _prefix, _userinfo, secret, rest = _split(url)
    found = {secret}
    for param in _params(rest.partition("?")[2]):
        name, eq, value = param.partition("=")
        if eq and _is_secret(name):
            found.add(value)
    found |= {unquote(s) for s in found}
    found |= {quote(s, safe=safe) for s in found for safe in ("", "/")}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (a log line, an exception message) with `url` and each of its secrets masked."""
    text = text.replace(url, redact_url(url))
    for secret in secrets_in(url):
        text = text.replace(secret, MASK)
    return text


__all__ = ["MASK", "redact_url", "scrub", "secrets_in"]
