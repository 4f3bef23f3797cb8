"""The reader's pages (articles/reader) through Django's test client, on the real database and vector index.

Articles carry made-up embeddings (one direction per topic plus noise), so no page here runs the model
except search, which must.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from articles.models import Article, Feed, Interaction, Topic
from pipeline.search.vector_index import get_index
from pipeline.understanding.embedding import EMBEDDING_DIM, embed_texts, vector_to_bytes

pytestmark = pytest.mark.django_db


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class Shelf:
    """Two feeds, two topics and processed articles with known vectors."""

    def __init__(self) -> None:
        self.feeds = [
            Feed.objects.create(url="https://one.example.invalid/feed.xml", title="Morning Post"),
            Feed.objects.create(url="https://two.example.invalid/feed.xml", title="Evening Herald"),
        ]
        self.topics = {name: Topic.objects.create(name=name) for name in ("sport", "business")}
        self.rng = np.random.default_rng(3)
        self.directions = {name: self.rng.standard_normal(EMBEDDING_DIM) for name in self.topics}
        self.count = 0

    def article(self, topic: str, *, feed: int = 0, story: int | None = None, **fields) -> Article:
        self.count += 1
        vector = unit(unit(self.directions[topic]) + 1.5 * unit(self.rng.standard_normal(EMBEDDING_DIM)))
        defaults = {
            "title": f"{topic} headline {self.count}",
            "summary": f"<p>What happened in {topic}, <b>number {self.count}</b>.</p>",
            "url": f"https://one.example.invalid/{self.count}",
            "status": Article.Status.PROCESSED,
            "processed_at": timezone.now(),
            "published_at": timezone.now() - timedelta(hours=self.count),
            "topic": self.topics[topic],
            "embedding": vector_to_bytes(vector),
        }
        created = Article.objects.create(feed=self.feeds[feed], guid=f"g{self.count}", **(defaults | fields))
        Article.objects.filter(pk=created.pk).update(story_id=story or created.pk)
        created.refresh_from_db()
        return created


@pytest.fixture
def shelf(db, fresh_vector_index) -> Shelf:  # type: ignore[no-untyped-def]
    return Shelf()


@pytest.fixture
def reader(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def listed_ids(html: str) -> list[int]:
    return [int(part.split('"', 1)[0]) for part in html.split('data-article="')[1:]]


def test_pages_ask_to_sign_in_first(client) -> None:  # type: ignore[no-untyped-def]
    for name, args in (("for-you", []), ("latest", []), ("search", []), ("article", [1])):
        response = client.get(reverse(f"reader:{name}", args=args))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("reader:login") + "?next=")


def test_signing_in_leads_to_for_you(client, user) -> None:  # type: ignore[no-untyped-def]
    page = client.get(reverse("reader:login"))
    assert b'<label for="id_username">' in page.content
    response = client.post(reverse("reader:login"), {"username": "reader", "password": "reader-password-1"})
    assert response.status_code == 302 and response["Location"] == reverse("reader:for-you")
    wrong = client.post(reverse("reader:login"), {"username": "reader", "password": "nope"})
    assert b"did not match" in wrong.content


def test_for_you_shows_title_feed_topic_age_and_a_one_line_summary(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    first = shelf.article("sport")
    page = reader.get(reverse("reader:for-you")).content.decode()
    assert first.title in page
    assert "Morning Post" in page and '<span class="topic">sport</span>' in page
    assert "ago</time>" in page
    assert "What happened in sport, number 1." in page  # markup stripped from the summary
    assert f'data-interaction="/api/articles/{first.pk}/interactions/"' in page


def test_for_you_costs_the_same_queries_for_5_or_20_articles(shelf, reader, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        shelf.article("sport" if i % 2 else "business", feed=i % 2)
    reader.get(reverse("reader:for-you"))
    get_index()  # loaded once per process, outside the counted requests (a cold start needs no index)
    Interaction.objects.create(user_id=reader.session["_auth_user_id"], article=Article.objects.first(), kind="like")
    with django_assert_max_num_queries(11):
        small = reader.get(reverse("reader:for-you"))
    for i in range(20):
        shelf.article("sport" if i % 2 else "business", feed=i % 2)
    with django_assert_max_num_queries(11):
        large = reader.get(reverse("reader:for-you"))
    assert len(listed_ids(large.content.decode())) > len(listed_ids(small.content.decode()))


def test_latest_shows_one_article_per_story_with_its_other_sources(
    shelf, reader, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    lead = shelf.article("business", title="Rates rise")
    shelf.article("business", feed=1, story=lead.pk, title="Central bank raises rates")
    shelf.article("business", feed=1, story=lead.pk, title="Rates up again")
    alone = shelf.article("sport", title="Cup final tonight")
    with django_assert_max_num_queries(4):
        page = reader.get(reverse("reader:latest")).content.decode()
    assert listed_ids(page) == [lead.pk, alone.pk]
    assert "2 more sources" in page
    only_sport = reader.get(reverse("reader:latest"), {"topic": "sport"}).content.decode()
    assert listed_ids(only_sport) == [alone.pk]
    assert '<a href="?topic=sport" aria-current="page">sport</a>' in only_sport


def test_liking_through_the_api_changes_the_list_and_dismissing_removes_the_article(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    for i in range(6):
        shelf.article("sport" if i % 2 else "business")
    before = listed_ids(reader.get(reverse("reader:for-you-list")).content.decode())
    liked, dismissed = before[0], before[1]
    assert (
        reader.post(
            f"/api/articles/{liked}/interactions/", {"kind": "like"}, content_type="application/json"
        ).status_code
        == 201
    )
    after_like = listed_ids(reader.get(reverse("reader:for-you-list")).content.decode())
    assert liked not in after_like and after_like != before
    # Without JavaScript: the form posts to the reader, which records it and goes back.
    back = reader.post(reverse("reader:interact", args=[dismissed]), {"kind": "dismiss", "next": "/latest/"})
    assert back["Location"] == "/latest/"
    assert dismissed not in listed_ids(reader.get(reverse("reader:for-you-list")).content.decode())
    assert Interaction.objects.filter(article_id=dismissed, kind="dismiss").exists()


def test_the_no_javascript_form_never_redirects_off_site(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    article = shelf.article("sport")
    response = reader.post(
        reverse("reader:interact", args=[article.pk]), {"kind": "like", "next": "https://evil.example.invalid/"}
    )
    assert response["Location"] == reverse("reader:for-you")


def test_article_page_sanitises_text_and_lists_similar_and_other_sources(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    shown = shelf.article(
        "sport",
        content='<p onclick="steal()">Full <em>text</em></p><script>alert(1)</script><a href="javascript:x()">x</a>',
    )
    other_source = shelf.article("sport", feed=1, story=shown.pk, title="The same match, elsewhere")
    for _ in range(4):
        shelf.article("sport")
    page = reader.get(reverse("reader:article", args=[shown.pk])).content.decode()
    assert "<p>Full <em>text</em></p>" in page
    assert "<script>alert" not in page and "onclick" not in page and "javascript:" not in page
    assert f'href="{shown.url}"' in page
    sources = page.split('id="sources"')[1]
    assert other_source.title in sources
    similar = page.split('id="similar"')[1].split('id="sources"')[0]
    assert "sport headline" in similar and other_source.title not in similar  # its own story is not "similar"


def test_an_unprocessed_article_says_similar_comes_later(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    pending = shelf.article("sport", status=Article.Status.PENDING, embedding=None)
    page = reader.get(reverse("reader:article", args=[pending.pk])).content.decode()
    assert "appear once this article has been processed" in page
    assert reader.get(reverse("reader:similar", args=[pending.pk])).status_code == 200


def test_search_finds_by_meaning_and_explains_bad_input(shelf, reader) -> None:  # type: ignore[no-untyped-def]
    [match] = embed_texts(["The striker scored twice in the cup final"])
    near = shelf.article("sport", title="Cup final report", embedding=vector_to_bytes(match))
    shelf.article("business", title="Quarterly profits")
    page = reader.get(reverse("reader:search"), {"q": "football match goals"}).content.decode()
    assert listed_ids(page)[0] == near.pk
    too_long = reader.get(reverse("reader:search"), {"q": "x" * 501}).content.decode()
    assert 'role="alert"' in too_long and "at most 500" in too_long
