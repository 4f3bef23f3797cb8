"""An article's own page: whether to fetch it, fetching it safely and politely, and storing what it says.

Most feeds carry a title and a sentence or two; the page carries the article. Whether a feed's
articles are fetched is the feed's `full_text` setting (auto: when the item's own text is shorter
than ARTICLE_FULL_TEXT_MIN_CHARS). The page goes through the feed fetcher (SSRF guard on every hop,
size cap, timeouts, limited redirects, http/https only), robots.txt is asked first, and trafilatura
extracts the text in a child process under a CPU and wall-clock budget (pipeline/feeds/budget.py).

Whatever goes wrong, the article keeps its feed text: a failure for good is recorded on the article
(`page_status` failed or disallowed, `page_error`) and the article is processed from the feed's text.
Only failures a later attempt may cure (network, timeouts, 429, 5xx, robots.txt unreachable) come
back as "retry"; the caller decides whether attempts remain (see pipeline.actors.scrape_article).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.feeds.budget import BudgetExceeded, WorkCrashed, run_with_budget
from pipeline.feeds.fetching import FetchError, fetch_feed
from pipeline.feeds.page_extraction import ExtractedPage, PageRejected, extract_page
from pipeline.feeds.robots import RobotsCache, RobotsUnavailable

__all__ = ["PageOutcome", "article_host", "fetch_article_page", "queue_page_fetches", "request_page_fetch"]

HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
# Statuses a later attempt may get past; any other HTTP error is the page's answer for good.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_TAG = re.compile(r"<[^>]*>")
# Extracted text shorter than this is a paywall's or a cookie wall's stub, not an article (the shortest
# BBC article has ~500 characters); so is a page that says no more than the feed did.
MIN_PAGE_CHARS = 200

ROBOTS = RobotsCache(ttl_seconds=settings.ROBOTS_CACHE_SECONDS)

# Called around the requests to one host: the politeness gate (pipeline/taskqueue/politeness.py), passed
# in by the actor because this package knows nothing of Redis plumbing. It raises to put the work off.
HostGate = Callable[[str], AbstractContextManager[object]]


@dataclass
class PageOutcome:
    article_id: int
    # fetched / failed / disallowed (recorded on the article), retry (nothing recorded: try again),
    # skipped (the article is gone or no longer waiting for its page)
    status: str
    error: str = ""
    retry_after: float | None = None
    chars: int = 0
    host: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def visible_length(text: str) -> int:
    """Characters of text in an HTML fragment, near enough to decide whether a feed item is a snippet."""
    return len(" ".join(html.unescape(_TAG.sub(" ", text or "")).split()))


def wants_page(feed: Feed, article: Article) -> bool:
    if not article.url or feed.full_text == Feed.FullText.NEVER:
        return False
    if feed.full_text == Feed.FullText.ALWAYS:
        return True
    feed_text = max(visible_length(article.summary), visible_length(article.content))
    return feed_text < settings.ARTICLE_FULL_TEXT_MIN_CHARS


def queue_page_fetches(article_ids: Sequence[int], *, now: datetime | None = None) -> list[int]:
    """Of a scrape's new articles, mark those whose page should be fetched as waiting for it (processing
    leaves them alone meanwhile); returns their ids, for the caller to queue the fetches."""
    now = now or timezone.now()
    articles = Article.objects.filter(pk__in=list(article_ids), page_status="").select_related("feed")
    wanted = [
        a.pk for a in articles.only("id", "url", "summary", "content", "feed__full_text") if wants_page(a.feed, a)
    ]
    Article.objects.filter(pk__in=wanted, page_status="").update(
        page_status=Article.PageStatus.QUEUED, page_requested_at=now, page_error=""
    )
    return sorted(wanted)


def request_page_fetch(article: Article, *, now: datetime | None = None) -> None:
    """Ask for the article's page again (an operator's re-fetch), whatever its feed setting says."""
    Article.objects.filter(pk=article.pk).update(
        page_status=Article.PageStatus.QUEUED, page_requested_at=now or timezone.now(), page_error=""
    )


def article_host(url: str) -> str:
    """The host politeness counts requests against: lower-case name (or IP) and port."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host.lower()}:{port}" if parsed.host else ""


def _transient(error: FetchError) -> bool:
    if error.status is not None:
        return error.status in _TRANSIENT_STATUSES
    # No HTTP answer: a network failure or timeout, unless the fetcher refused the URL itself.
    return not error.reason.startswith(("refused", "invalid URL"))


def fetch_article_page(article_id: int, *, gate: HostGate, final_attempt: bool = True) -> PageOutcome:
    """Fetch, extract and store one article's page; failures are recorded on the article, never raised.

    With `final_attempt` False, a failure a later attempt may cure records nothing and returns "retry".
    """
    article = Article.objects.select_related("feed").filter(pk=article_id).first()
    if article is None:
        return PageOutcome(article_id, "skipped", error="article no longer exists")
    if article.page_status != Article.PageStatus.QUEUED:
        return PageOutcome(article_id, "skipped", error="not waiting for its page")
    host = article_host(article.url)
    if not host:
        return _record_failure(article, f"no fetchable link: {article.url[:200]!r}", host)
    user_agent = article.feed.user_agent or settings.ARTICLE_USER_AGENT
    fetch_options = {
        "allowed_private_hosts": settings.FEED_ALLOWED_PRIVATE_HOSTS,
        "connect_timeout": settings.ARTICLE_CONNECT_TIMEOUT_SECONDS,
        "total_timeout": settings.ARTICLE_TOTAL_TIMEOUT_SECONDS,
    }
    try:
        with gate(host):
            allowed = ROBOTS.can_fetch(article.url, user_agent, **fetch_options)  # type: ignore[arg-type]
            if allowed:
                fetched = fetch_feed(
                    article.url,
                    user_agent=user_agent,
                    accept=HTML_ACCEPT,
                    max_bytes=settings.ARTICLE_MAX_BYTES,
                    **fetch_options,  # type: ignore[arg-type]
                )
    except RobotsUnavailable as error:
        if not final_attempt:
            return PageOutcome(article_id, "retry", error=str(error), host=host)
        return _record_failure(article, str(error), host)
    except FetchError as error:
        if _transient(error) and not final_attempt:
            return PageOutcome(article_id, "retry", error=error.reason, retry_after=error.retry_after, host=host)
        outcome = _record_failure(article, error.reason, host)
        outcome.retry_after = error.retry_after
        return outcome
    if not allowed:
        Article.objects.filter(pk=article.pk, page_status=Article.PageStatus.QUEUED).update(
            page_status=Article.PageStatus.DISALLOWED, page_error="robots.txt disallows this page"
        )
        return PageOutcome(article_id, "disallowed", error="robots.txt disallows this page", host=host)

    try:
        page = run_with_budget(extract_page, fetched.content, fetched.url, fetched.content_type)
    except PageRejected as error:
        return _record_failure(article, str(error), host)
    except (BudgetExceeded, WorkCrashed, MemoryError) as error:
        return _record_failure(article, f"extraction failed: {error or type(error).__name__}", host)
    feed_text = max(visible_length(article.summary), visible_length(article.content))
    if len(page.text) <= max(feed_text, MIN_PAGE_CHARS - 1):
        return _record_failure(
            article,
            f"page text too short ({len(page.text)} characters, the feed's has {feed_text}): a paywall or a teaser",
            host,
        )
    stored = _store_page(article, page)
    return PageOutcome(article_id, "fetched" if stored else "skipped", chars=len(page.text), host=host)


def _record_failure(article: Article, reason: str, host: str) -> PageOutcome:
    Article.objects.filter(pk=article.pk, page_status=Article.PageStatus.QUEUED).update(
        page_status=Article.PageStatus.FAILED, page_error=reason[:2000], page_fetched_at=timezone.now()
    )
    return PageOutcome(article.pk, "failed", error=reason, host=host)


def _page_date(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def _store_page(article: Article, page: ExtractedPage) -> bool:
    """Store the page's text and metadata and hand the article (back) to processing, with its new text.

    Conditional on the article still waiting for its page, so a re-delivered message stores nothing twice.
    What the feed said (author, date) wins over the page's metadata; a person's topic label is kept
    by processing (pipeline/understanding/processing.py).
    """
    image_url = page.image_url if page.image_url.startswith(("http://", "https://")) else ""
    with transaction.atomic():
        updated = Article.objects.filter(pk=article.pk, page_status=Article.PageStatus.QUEUED).update(
            page_status=Article.PageStatus.FETCHED,
            page_error="",
            page_fetched_at=timezone.now(),
            body=page.text.replace("\x00", ""),
            language=page.language,
            image_url=image_url[:2000],
            author=article.author or page.author[:300],
            published_at=article.published_at or _page_date(page.date),
            # Processed again from the new text: pending, no queue claim, no processing claim.
            status=Article.Status.PENDING,
            queued_at=None,
            claimed_by="",
        )
    return bool(updated)
