"""Response header values read defensively: a malformed value is ignored (None), never an exception.

Servers send what they like. `str.isdigit()` is true for "¹" and "٣", which `int()` then refuses or
reads as another number; dates come in every format and out of every range; a charset may name no
codec at all. Each reader here takes the raw header value and returns a usable value or None, and
the fetcher decides what None means (no Retry-After: the feed's own backoff applies; no length: the
streaming cap applies; no charset: the parser detects the encoding from the document).
"""

from __future__ import annotations

import codecs
import email.utils
import re
from datetime import UTC, datetime

__all__ = ["ascii_int", "content_type", "declared_length", "retry_after_seconds", "validator"]

# A Retry-After beyond this is a server bug, not a plan: the feed's maximum backoff caps it anyway.
MAX_RETRY_AFTER_SECONDS = 366 * 24 * 3600
MAX_VALIDATOR_CHARS = 500  # Feed.etag's column
MAX_CONTENT_TYPE_CHARS = 200
_ASCII_DIGITS = re.compile(r"[0-9]{1,30}")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:+-]{1,40})""", re.IGNORECASE)


def ascii_int(value: str | None) -> int | None:
    """`value` (surrounding spaces allowed) as a non-negative integer if it is ASCII digits only."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if _ASCII_DIGITS.fullmatch(text) else None


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if unusable."""
    if not value or len(value) > 100:
        return None
    seconds = ascii_int(value)
    if seconds is not None:
        return float(min(seconds, MAX_RETRY_AFTER_SECONDS))
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    try:
        wait = (when - (now or datetime.now(UTC))).total_seconds()
    except OverflowError:
        return None
    return min(max(0.0, wait), float(MAX_RETRY_AFTER_SECONDS))


def declared_length(value: str | None) -> int | None:
    """Content-Length as an int; None when absent or malformed (the body is then capped as it streams)."""
    return ascii_int(value)


def validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth storing and sending back: printable ASCII, not absurdly long."""
    if not value or len(value) > MAX_VALIDATOR_CHARS or not (value.isascii() and value.isprintable()):
        return None
    return value


def content_type(value: str | None) -> str | None:
    """`type/subtype`, with `; charset=…` only when the charset names a text codec Python has.

    An unknown or malformed charset is dropped rather than passed on: the parser then reads the
    encoding from the document itself, which is what a browser does too.
    """
    if not value or len(value) > MAX_CONTENT_TYPE_CHARS:
        return None
    media = _MEDIA_TYPE.match(value.strip())
    if media is None:
        return None
    found = _CHARSET.search(value, media.end())
    if found is None:
        return media.group().lower()
    try:
        codec = codecs.lookup(found.group(1))
    except (LookupError, ValueError):
        return media.group().lower()
    if not getattr(codec, "_is_text_encoding", True):
        return media.group().lower()  # "hex", "rot13", "zlib": codecs, but not character encodings
    return f"{media.group().lower()}; charset={found.group(1)}"
