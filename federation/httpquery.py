"""Query strings as HTTP clients send them.

aiohttp decodes percent-escapes that are not UTF-8 into U+FFFD, so `query=%FF%FE` would reach
a handler as two replacement characters (a term without words, which matches every record).
The SRU endpoint and the JSON API refuse such a parameter by name instead.
"""
from __future__ import annotations

from urllib.parse import unquote_to_bytes


def undecodable_parameter(raw_query: str) -> str | None:
    """The name of the first parameter of a raw query string whose name or value has
    percent-escapes that are not UTF-8, or None when every one decodes."""
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
            except UnicodeDecodeError:
                return unquote_to_bytes(name.replace("+", " ")).decode("utf-8", "replace")
    return None
