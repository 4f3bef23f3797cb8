"""The admin's feed page: its last fetches and the articles whose page fetch failed, with the reason."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from articles.models import Article, Feed, FeedFetch
from pipeline import actors
from pipeline.feeds.fetch_log import KEEP_PER_FEED

pytestmark = pytest.mark.django_db


def test_feed_page_shows_recent_fetches_and_failed_pages(client, feed, feed_server, broker) -> None:  # type: ignore[no-untyped-def]
    Feed.objects.filter(pk=feed.pk).update(full_text=Feed.FullText.NEVER)
    actors.scrape_feed(feed.pk, chain=False)
    feed_server.routes["/news.xml"].status = 500
    Feed.objects.filter(pk=feed.pk).update(etag="")
    actors.scrape_feed(feed.pk, chain=False)
    fetches = list(FeedFetch.objects.filter(feed=feed))
    assert [(f.status, f.new_articles) for f in fetches] == [("error", 0), ("ok", 2)]
    assert fetches[1].bytes > 0 and fetches[1].entries == 2 and "HTTP 500" in fetches[0].error

    Article.objects.filter(feed=feed, guid="a-1").update(
        page_status=Article.PageStatus.FAILED, page_error="not HTML (Content-Type: application/pdf)"
    )
    client.force_login(get_user_model().objects.create_superuser("admin", password="admin-password-1"))
    page = client.get(f"/admin/articles/feed/{feed.pk}/change/").content.decode()
    assert "Last fetches" in page and "HTTP 500 Internal Server Error" in page
    assert "not HTML (Content-Type: application/pdf)" in page and "Budget vote passes" in page


def test_only_the_newest_fetches_are_kept(feed, broker) -> None:  # type: ignore[no-untyped-def]
    Feed.objects.filter(pk=feed.pk).update(full_text=Feed.FullText.NEVER)
    for _ in range(KEEP_PER_FEED + 3):
        actors.scrape_feed(feed.pk, chain=False)
    assert FeedFetch.objects.filter(feed=feed).count() == KEEP_PER_FEED
