"""Notification URLs as they may appear in a log: without their secrets.

Apprise URLs carry passwords, tokens and topics (an ntfy topic is its own password), in the
user part, the host (a Telegram bot token), the path and the query; Apprise's own privacy mode
hides some of them and not others (it keeps an ntfy topic). So a log names a URL by its scheme
and its host as Apprise masks it, and nothing after; and a failure's text has every part of
the URL taken out before it is written.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit


def mask(url: str) -> str:
    """`scheme://host/…`: enough to tell two targets apart, nothing to log in with."""
    shown = url
    try:
        import apprise

        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is not None:
            shown = plugin.url(privacy=True)
    except Exception:  # noqa: S110 - masking must never fail a send; fall back to our own
        pass
    try:
        parts = urlsplit(shown)
        netloc = parts.netloc
    except ValueError:
        return "<a notification URL>"
    if "@" in netloc:  # whatever Apprise left of user:password
        netloc = "…@" + netloc.rsplit("@", 1)[1]
    rest = "/…" if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{netloc}{rest}"


def secrets_of(url: str) -> list[str]:
    """Every piece of `url` that could be a secret, longest first (so a part is not left
    half-replaced by a shorter one inside it)."""
    found: set[str] = set()
    try:
        parts = urlsplit(url)
        pieces = [parts.username, parts.password, parts.hostname, parts.netloc]
        pieces += re.split(r"[/,]", parts.path)
        pieces += [value for _, value in parse_qsl(parts.query)]
    except ValueError:
        pieces = [url]
    for piece in pieces:
        if piece and len(piece) >= 3:
            found.add(piece)
            found.add(unquote(piece))
    return sorted(found, key=len, reverse=True)


def redact(text: str, urls: list[str]) -> str:
    """`text` (an error from a library, a log line) with every part of `urls` replaced."""
    for url in urls:
        for secret in [url, *secrets_of(url)]:
            text = text.replace(secret, "****")
    return text
