"""Finding the feed of a website: what people paste is often the site's address, not its feed's.

The URL is fetched through the feed fetcher (SSRF guard, size cap, timeouts). A feed is taken as is;
a web page is searched for `<link rel="alternate" type="application/rss+xml|atom+xml">` and, when it
names none, a few paths where sites commonly keep their feed are tried. Every candidate is fetched
and parsed before it is offered, and a search that finds nothing says what it tried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings

from pipeline.feeds.fetching import FetchError, FetchResult, fetch_feed
from pipeline.feeds.page_extraction import decode_html, is_html
from pipeline.feeds.parsing import ParseError, parse_feed

__all__ = ["DiscoveryError", "FoundFeed", "discover_feeds", "find_feeds"]

_FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml"})
# Where blogs and news sites keep their feed when the page does not say (WordPress, Ghost, Hugo, …).
COMMON_PATHS = ("/feed", "/rss", "/feed.xml", "/rss.xml", "/atom.xml", "/index.xml")
# Each candidate costs a request: a page linking dozens of feeds gets its first few checked.
MAX_CANDIDATES = 8
# The <head> is where the links are; a page's first 512 KiB hold it.
_MAX_PAGE_CHARS = 512 * 1024


@dataclass(frozen=True)
class FoundFeed:
    url: str
    title: str


class DiscoveryError(Exception):
    """No feed at or behind the URL; `tried` lists every URL fetched."""

    def __init__(self, reason: str, tried: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tried = tried


class _AlternateLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (href, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "link":
            return
        values = {name.lower(): (value or "") for name, value in attrs}
        rels = values.get("rel", "").lower().split()
        media_type = values.get("type", "").split(";")[0].strip().lower()
        if "alternate" in rels and media_type in _FEED_TYPES and values.get("href", "").strip():
            self.links.append((values["href"].strip(), values.get("title", "").strip()))


def alternate_links(html: str, base_url: str) -> list[tuple[str, str]]:
    """(absolute http(s) URL, title) of the feeds a page links to, in page order, without repeats."""
    parser = _AlternateLinks()
    parser.feed(html[:_MAX_PAGE_CHARS])
    parser.close()
    found: dict[str, str] = {}
    for href, title in parser.links:
        url = urljoin(base_url, href)
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            found[url] = title
    return list(found.items())


@dataclass
class _Search:
    fetch: Callable[..., FetchResult]
    options: dict[str, Any]
    tried: list[str] = field(default_factory=list)

    def get(self, url: str) -> FetchResult:
        self.tried.append(url)
        return self.fetch(url, **self.options)

    def as_feed(self, url: str, title: str = "") -> FoundFeed | None:
        try:
            fetched = self.get(url)
            parsed = parse_feed(fetched.content, base_url=fetched.url, content_type=fetched.content_type)
        except (FetchError, ParseError):
            return None
        return FoundFeed(fetched.url, parsed.title or title)


def discover_feeds(
    url: str, *, fetch: Callable[..., FetchResult] = fetch_feed, **fetch_options: Any
) -> list[FoundFeed]:
    """The feed at `url`, or the feeds the page at `url` leads to (at least one); raises DiscoveryError.

    `fetch_options` go to fetch_feed (allowed_private_hosts, timeouts, max_bytes, user_agent).
    """
    search = _Search(fetch, fetch_options)
    try:
        fetched = search.get(url)
    except FetchError as error:
        raise DiscoveryError(f"cannot fetch {url}: {error.reason}", search.tried) from None
    try:
        parsed = parse_feed(fetched.content, base_url=fetched.url, content_type=fetched.content_type)
        return [FoundFeed(fetched.url, parsed.title)]
    except ParseError as error:
        if not is_html(fetched.content, fetched.content_type):
            raise DiscoveryError(f"{url} is neither a feed nor a web page ({error})", search.tried) from None

    html, _ = decode_html(fetched.content, fetched.content_type)
    linked = alternate_links(html, fetched.url)
    candidates = linked or [(urljoin(fetched.url, path), "") for path in COMMON_PATHS]
    found = [feed for feed in (search.as_feed(u, t) for u, t in candidates[:MAX_CANDIDATES]) if feed]
    if not found:
        where = "the feeds the page links to" if linked else "the common feed paths"
        raise DiscoveryError(f"no feed found at {url} or {where}", search.tried)
    unique: dict[str, FoundFeed] = {}
    for feed in found:  # two links may lead (through redirects) to one feed
        unique.setdefault(feed.url, feed)
    return list(unique.values())


def find_feeds(url: str) -> list[FoundFeed]:
    """discover_feeds with the fetch limits of feed polls (settings FEED_*)."""
    return discover_feeds(
        url,
        allowed_private_hosts=settings.FEED_ALLOWED_PRIVATE_HOSTS,
        connect_timeout=settings.FEED_CONNECT_TIMEOUT_SECONDS,
        # Someone is waiting for the answer: a site that takes longer is reported, not waited for.
        total_timeout=min(settings.FEED_TOTAL_TIMEOUT_SECONDS, 15),
        max_bytes=settings.FEED_MAX_BYTES,
    )
