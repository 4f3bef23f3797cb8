"""Feed discovery: a website's address leads to its feed (local web site, real fetcher)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from articles.models import Feed
from pipeline.feeds.discovery import alternate_links
from tests.conftest import rss
from tests.support.page_server import PageServer, page_server

pytestmark = pytest.mark.django_db

FEED = rss([("a-1", "Tram line approved", "The council voted.")], title="Riverside Post")
HOME = """<!DOCTYPE html><html><head><title>Riverside Post</title>
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="application/rss+xml" title="All news" href="/feeds/all.xml">
{extra}</head><body><h1>Riverside Post</h1></body></html>"""


@pytest.fixture
def site() -> Iterator[PageServer]:
    with page_server() as server:
        server.serve("/feeds/all.xml", FEED, content_type="application/rss+xml")
        yield server


def test_alternate_links_are_read_resolved_and_filtered() -> None:
    html = HOME.format(
        extra='<link rel="alternate" type="application/atom+xml" href="https://other.example.org/atom">'
        '<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">'
        '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
    )
    assert alternate_links(html, "https://news.example.org/") == [
        ("https://news.example.org/feeds/all.xml", "All news"),
        ("https://other.example.org/atom", ""),
    ]


def test_posting_a_website_stores_the_feed_it_links_to(site: PageServer, operator_api) -> None:  # type: ignore[no-untyped-def]
    home = site.serve("/", HOME.format(extra="").encode())
    response = operator_api.post("/api/feeds/", {"url": home, "discover": True}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["url"] == site.url("/feeds/all.xml")
    assert response.json()["title"] == "Riverside Post"
    assert "discover" not in response.json()


def test_a_feed_url_is_taken_as_it_is(site: PageServer, operator_api) -> None:  # type: ignore[no-untyped-def]
    response = operator_api.post("/api/feeds/", {"url": site.url("/feeds/all.xml"), "discover": True}, format="json")
    assert response.status_code == 201 and response.json()["url"] == site.url("/feeds/all.xml")


def test_several_feeds_are_listed_and_none_stored(site: PageServer, operator_api) -> None:  # type: ignore[no-untyped-def]
    site.serve("/feeds/sport.xml", rss([("s", "Cup", "A win.")], title="Sport"), content_type="application/rss+xml")
    extra = '<link rel="alternate" type="application/rss+xml" title="Sport" href="/feeds/sport.xml">'
    home = site.serve("/", HOME.format(extra=extra).encode())
    response = operator_api.post("/api/feeds/", {"url": home, "discover": True}, format="json")
    assert response.status_code == 400
    assert response.json()["candidates"] == [
        {"url": site.url("/feeds/all.xml"), "title": "Riverside Post"},
        {"url": site.url("/feeds/sport.xml"), "title": "Sport"},
    ]
    assert not Feed.objects.exists()


def test_common_paths_are_tried_when_the_page_names_no_feed(site: PageServer, operator_api) -> None:  # type: ignore[no-untyped-def]
    site.serve("/rss.xml", FEED, content_type="application/rss+xml")
    home = site.serve("/", b"<html><head><title>Blog</title></head><body>Hello</body></html>")
    response = operator_api.post("/api/feeds/", {"url": home, "discover": True}, format="json")
    assert response.status_code == 201 and response.json()["url"] == site.url("/rss.xml")


def test_no_feed_is_a_400_naming_what_was_tried(site: PageServer, operator_api) -> None:  # type: ignore[no-untyped-def]
    home = site.serve("/blog/", b"<html><head><title>Blog</title></head><body>Hello</body></html>")
    response = operator_api.post("/api/feeds/", {"url": home, "discover": True}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == f"no feed found at {home} or the common feed paths"
    assert body["tried"][0] == home and site.url("/feed") in body["tried"] and site.url("/atom.xml") in body["tried"]
    assert not Feed.objects.exists()

    pdf = site.serve("/doc.pdf", b"%PDF-1.7", content_type="application/pdf")
    response = operator_api.post("/api/feeds/", {"url": pdf, "discover": True}, format="json")
    assert response.status_code == 400 and "neither a feed nor a web page" in response.json()["detail"]


def test_addfeed_discovers_too(site: PageServer, capsys, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    home = site.serve("/", HOME.format(extra="").encode())
    call_command("addfeed", home, "--discover", "--no-scrape")
    assert Feed.objects.get().url == site.url("/feeds/all.xml")
    with pytest.raises(CommandError, match="no feed found"):
        call_command("addfeed", site.serve("/empty", b"<html><body>x</body></html>"), "--discover", "--no-scrape")
