"""Turn fetched feed bytes into sanitised, deduplicated entries.

Plain functions, no Django.  feedparser does the format work (RSS 0.9x/1.0/2.0,
Atom, encoding detection, a lenient fallback parser for broken XML); this module
adds what a news store needs on top: a hostile-input guard in front of it (xml_guard.py),
stable dedup keys, sanitised HTML (sanitising.py), absolute http(s) links and sane dates.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import re
import xml.sax
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from pipeline.feeds.markup_limits import DEFAULT_LIMITS, MarkupLimits, RefusedMarkup, capped_field, check_markup
from pipeline.feeds.sanitising import CONTROL_CHARS, HtmlSanitiser, plain_text, truncate
from pipeline.feeds.xml_guard import HostileDocument, without_internal_dtd

__all__ = ["ParseError", "ParsedEntry", "ParsedFeed", "parse_feed"]

DEFAULT_MAX_ENTRIES = 1000
MAX_TITLE_CHARS = 500
MAX_GUID_CHARS = 500
MAX_AUTHOR_CHARS = 255
MAX_URL_CHARS = 2000

# Dates outside this window are feed bugs (the Unix epoch, year 2099 placeholders),
# not publication times; a little future slack tolerates skewed publisher clocks.
_EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
_FUTURE_SLACK = timedelta(days=2)

_ALLOWED_LINK_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class ParsedEntry:
    guid: str  # dedup key within the feed, at most MAX_GUID_CHARS
    url: str  # absolute http(s) URL of at most MAX_URL_CHARS, "" if none
    title: str  # plain text (escape it when rendering), at most MAX_TITLE_CHARS
    summary: str  # sanitised HTML
    content: str  # sanitised HTML of the full content when the feed has it, else ""
    author: str  # plain text, at most MAX_AUTHOR_CHARS
    published_at: datetime | None  # aware UTC; from published, else updated; None if absent or absurd


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    link: str
    entries: list[ParsedEntry]
    warning: str | None  # parser complaint when the document had errors but still yielded something


class ParseError(Exception):
    """Nothing usable in the document; the message is one readable line for operators."""


def parse_feed(
    content: bytes,
    *,
    base_url: str,
    content_type: str | None = None,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    limits: MarkupLimits = DEFAULT_LIMITS,
) -> ParsedFeed:
    """Parse an RSS/Atom document; raise ParseError when it yields nothing usable.

    ``base_url`` (the feed's URL) resolves relative links; ``content_type`` is the
    response header, which feedparser weighs when detecting the encoding.  Only
    the first ``max_entries`` entries are kept, in document order.  Markup nested deeper or
    carrying more attributes than ``limits`` allow is refused (ParseError) before it is parsed or
    sanitised; HTML fields are cut to ``limits.max_field_chars`` first.  The time this takes is not
    bounded here: the scraper runs it under a CPU budget (pipeline/feeds/budget.py).
    """
    if not content.lstrip(codecs.BOM_UTF8 + b" \t\r\n"):
        raise ParseError("empty response body")
    try:
        guarded = without_internal_dtd(content)
    except HostileDocument as exc:
        raise ParseError(str(exc)) from None
    stripped_dtd = guarded is not content  # the guard returns its input itself when it changed nothing
    try:
        check_markup(guarded, limits, "the document")
    except RefusedMarkup as exc:
        raise ParseError(str(exc)) from None

    # No Content-Location: feedparser would resolve relative guids against it (it treats
    # ids as URIs), so a feed whose URL changes would re-key every such entry.  Links
    # are resolved against base_url here instead; xml:base inside the document still
    # applies, since it moves with the document.
    headers = {"content-type": content_type} if content_type else {}
    # A file object, never bytes or str: given bytes that name a path, feedparser
    # would open() that local file, and given a URL string it would fetch it.
    # feedparser's own HTML sanitiser and URI resolver are off: nh3 does both below (sanitising.py),
    # and theirs, in pure Python, cost seconds per megabyte of escaped markup before any check ran.
    result = feedparser.parse(
        io.BytesIO(guarded), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
    )

    problem = result.get("bozo_exception") if result.get("bozo") else None
    version = result.get("version") or ""
    raw_entries = list(result.get("entries") or [])
    if not raw_entries:
        if not version and _looks_like_html(content, content_type):
            raise ParseError("not a feed: the document is HTML")
        if problem is not None and not _is_benign(problem):
            raise ParseError(_describe(problem))
        if not version:
            raise ParseError(_not_a_feed(content))

    feed_info = result.get("feed") or {}
    sanitiser = HtmlSanitiser(base_url)
    return ParsedFeed(
        title=plain_text(feed_info.get("title", ""), MAX_TITLE_CHARS),
        link=_absolute_http_url(feed_info.get("link"), base_url),
        entries=_assign_guids(
            [_entry(raw, n, base_url, sanitiser, limits) for n, raw in enumerate(raw_entries[:max_entries], 1)]
        ),
        warning=_warning(problem, stripped_dtd),
    )


# --- diagnosis ----------------------------------------------------------------------


def _warning(problem: Exception | None, stripped_dtd: bool) -> str | None:
    # A feed served as text/html (or with no Content-Type) is too common to be worth a warning.
    if problem is None or isinstance(problem, feedparser.NonXMLContentType):
        return None
    if stripped_dtd:
        # Say why entity references are now undefined, or the complaint looks like the feed's fault alone.
        return f"ignored the document's internal DTD (entity declarations); {_describe(problem)}"
    return _describe(problem)


def _is_benign(problem: Exception) -> bool:
    # Encoding guesses and an unusual Content-Type do not make the document unusable.
    return isinstance(problem, (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType))


def _describe(problem: Exception) -> str:
    if isinstance(problem, xml.sax.SAXParseException):
        text = f"malformed XML: {problem.getMessage()} at line {problem.getLineNumber()}, column {problem.getColumnNumber()}"
    elif isinstance(problem, feedparser.CharacterEncodingUnknown):
        text = f"unknown character encoding: {problem}"
    elif isinstance(problem, (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)):
        text = str(problem)
    else:
        text = f"{type(problem).__name__}: {problem}"
    return truncate(" ".join(text.split()), 500)


def _looks_like_html(content: bytes, content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in ("text/html", "application/xhtml+xml"):
        return True
    return re.search(rb"<!doctype\s+html|<html[\s>]", content[:4096], re.IGNORECASE) is not None


def _not_a_feed(content: bytes) -> str:
    root = re.search(rb"<([A-Za-z_][\w:.-]*)", content[:65536])
    if root is None:
        return "not a feed: no XML elements found"
    name = root.group(1).decode("ascii", "replace")[:60]
    return f"not a feed: the root element is <{name}>, not RSS or Atom"


# --- entries ------------------------------------------------------------------------


def _entry(raw: Any, number: int, base_url: str, sanitiser: HtmlSanitiser, limits: MarkupLimits) -> ParsedEntry:
    summary = _checked_html(raw.get("summary", ""), limits, f"entry {number}'s summary")
    content = HtmlSanitiser.best_content(raw.get("content") or [])
    content_html = _checked_html(content.get("value", ""), limits, f"entry {number}'s content")
    return ParsedEntry(
        guid=_clean_guid(raw.get("id")),
        url=_absolute_http_url(raw.get("link"), base_url),
        title=plain_text(raw.get("title", ""), MAX_TITLE_CHARS),
        summary=sanitiser.clean(summary, (raw.get("summary_detail") or {}).get("type")),
        content=sanitiser.clean(content_html, content.get("type")),
        author=plain_text(raw.get("author", ""), MAX_AUTHOR_CHARS),
        published_at=_date(raw.get("published_parsed")) or _date(raw.get("updated_parsed")),
    )


def _checked_html(value: Any, limits: MarkupLimits, where: str) -> str:
    """An HTML field cut to the field cap and checked for pathological shapes, before the sanitiser."""
    if not isinstance(value, str):
        return ""
    value = capped_field(value, limits)
    try:
        check_markup(value, limits, where)
    except RefusedMarkup as exc:
        raise ParseError(str(exc)) from None
    return value


def _assign_guids(entries: list[ParsedEntry]) -> list[ParsedEntry]:
    """Give every entry its dedup key and drop repeats of the same item.

    The key is the entry's guid/id, else its link.  A key shared by *different*
    items (a CMS that stamps the homepage URL as every guid) cannot tell them
    apart, so each such item is keyed by a hash of what it shows instead; copies
    of one item keep the plain key, so the key stays stable across fetches.
    """
    entries = [e for e in entries if e.url or e.title or e.summary or e.content]
    fingerprints = [_fingerprint(e) for e in entries]
    variants: dict[str, set[str]] = defaultdict(set)
    for entry, fingerprint in zip(entries, fingerprints, strict=True):
        if primary := entry.guid or entry.url:
            variants[primary].add(fingerprint)

    kept: list[ParsedEntry] = []
    seen: set[str] = set()
    for entry, fingerprint in zip(entries, fingerprints, strict=True):
        primary = entry.guid or entry.url
        key = primary if primary and len(variants[primary]) == 1 else fingerprint
        key = _bounded_guid(key)
        if key in seen:
            continue  # the same item listed twice
        seen.add(key)
        kept.append(replace(entry, guid=key))
    return kept


def _fingerprint(entry: ParsedEntry) -> str:
    published = entry.published_at.isoformat() if entry.published_at else ""
    parts = [entry.url, entry.title, published]
    if not entry.url and not entry.title:
        parts.append(entry.summary or entry.content)  # otherwise every bare item would look alike
    return "sha256:" + hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _clean_guid(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return CONTROL_CHARS.sub("", value).strip()


def _bounded_guid(key: str) -> str:
    if len(key) <= MAX_GUID_CHARS:
        return key
    # Truncating could merge two long guids that share a prefix; a hash cannot.
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _absolute_http_url(value: Any, base_url: str) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    try:
        absolute = urljoin(base_url, value.strip()) if base_url else value.strip()
        parts = urlsplit(absolute)
    except ValueError:
        return ""
    if parts.scheme.lower() not in _ALLOWED_LINK_SCHEMES or not parts.netloc:
        return ""  # javascript:, data:, mailto: and unresolvable relative links are not article URLs
    absolute = CONTROL_CHARS.sub("", absolute)
    return absolute if len(absolute) <= MAX_URL_CHARS else ""  # a cut URL would point somewhere else


def _date(parsed: Any) -> datetime | None:
    """feedparser's UTC struct_time as an aware datetime, or None when missing or implausible."""
    if not parsed:
        return None
    try:
        year, month, day, hour, minute, second = parsed[:6]
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None
    if when < _EARLIEST_DATE or when > datetime.now(UTC) + _FUTURE_SLACK:
        return None
    return when
