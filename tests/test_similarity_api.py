"""GET /api/articles/{id}/similar/, GET /api/search/ and the `similar`, `search`, `rebuild_index` commands."""

from __future__ import annotations

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.search import vector_index
from pipeline.understanding.embedding import EMBEDDING_DIM, article_text, embed_texts, vector_to_bytes


def basis(n: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((EMBEDDING_DIM, n)))
    return q.T.astype(np.float32)


E = basis(12)


def at_cosine(base: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)


@pytest.fixture
def source(db) -> Feed:  # type: ignore[no-untyped-def]
    return Feed.objects.create(url="https://example.invalid/similar.xml", title="Similar feed")


def add(feed: Feed, title: str, vector: np.ndarray | None, **fields) -> Article:  # type: ignore[no-untyped-def]
    processed = vector is not None
    return Article.objects.create(
        feed=feed,
        guid=title,
        title=title,
        url=f"https://example.invalid/{title.replace(' ', '-')}",
        status=Article.Status.PROCESSED if processed else Article.Status.PENDING,
        processed_at=timezone.now() if processed else None,
        embedding=vector_to_bytes(vector) if processed else None,
        **fields,
    )


@pytest.fixture
def neighbourhood(source, fresh_vector_index) -> dict[str, Article]:
    """A query article, a near-copy of it (0.95), a same-story article (0.85, story set) and neighbours."""
    query = add(source, "query", E[0])
    articles = {
        "query": query,
        "copy": add(source, "copy", at_cosine(E[0], E[1], 0.95)),
        "story": add(source, "story", at_cosine(E[0], E[2], 0.85)),
        "near": add(source, "near", at_cosine(E[0], E[3], 0.7)),
        "middle": add(source, "middle", at_cosine(E[0], E[4], 0.5)),
        "far": add(source, "far", at_cosine(E[0], E[5], 0.3)),
    }
    Article.objects.filter(pk__in=[query.pk, articles["story"].pk]).update(story_id=query.pk)
    articles["query"].refresh_from_db()
    return articles


def test_similar_leaves_out_itself_its_copies_and_its_story(api, neighbourhood) -> None:
    response = api.get(f"/api/articles/{neighbourhood['query'].pk}/similar/?k=10")
    assert response.status_code == 200
    body = response.json()
    assert [row["title"] for row in body["results"]] == ["near", "middle", "far"]
    first = body["results"][0]
    assert first["score"] == pytest.approx(0.7, abs=1e-3)
    assert set(first) >= {"id", "title", "url", "feed", "published_at", "topic", "score"}
    assert body["count"] == 3 and body["article"] == neighbourhood["query"].pk


def test_answers_read_neither_embeddings_nor_page_text_of_their_results(api, neighbourhood) -> None:
    """The k results are read without the columns no answer shows (an embedding is 1.5 kB, a fetched
    page tens of kB), and what the answer does show needs no query per result."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Article.objects.filter(pk=neighbourhood["near"].pk).update(body="page text " * 2000, content="<p>x</p>")
    url = f"/api/articles/{neighbourhood['query'].pk}/similar/?k=10"
    api.get(url)  # the index catches up on the first request
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url)
    assert [row["title"] for row in response.json()["results"]] == ["near", "middle", "far"]
    [results] = [q["sql"] for q in queries if "INNER JOIN" in q["sql"] and '"articles_feed"' in q["sql"]]
    for column in ("embedding", "body", "content"):
        assert f'"articles_article"."{column}"' not in results
    assert len(queries) <= 8, [q["sql"][:120] for q in queries]


def test_similar_is_limited_to_k(api, neighbourhood) -> None:
    response = api.get(f"/api/articles/{neighbourhood['query'].pk}/similar/?k=1")
    assert [row["title"] for row in response.json()["results"]] == ["near"]


def test_similar_leaves_out_deleted_articles(api, neighbourhood) -> None:
    api.get(f"/api/articles/{neighbourhood['query'].pk}/similar/")  # the index now holds "near"
    neighbourhood["near"].delete()
    response = api.get(f"/api/articles/{neighbourhood['query'].pk}/similar/")
    assert [row["title"] for row in response.json()["results"]] == ["middle", "far"]


def test_unknown_article_is_404(api, neighbourhood) -> None:
    assert api.get("/api/articles/987654321/similar/").status_code == 404


@pytest.mark.parametrize("k", ["0", "101", "-3", "ten", "1.5"])
def test_k_out_of_range_is_400_with_a_reason(api, neighbourhood, k) -> None:
    response = api.get(f"/api/articles/{neighbourhood['query'].pk}/similar/?k={k}")
    assert response.status_code == 400
    assert "k must" in response.json()["detail"]


def test_article_without_embedding_is_409_with_a_reason(api, source, fresh_vector_index) -> None:
    pending = add(source, "pending", None)
    response = api.get(f"/api/articles/{pending.pk}/similar/")
    assert response.status_code == 409
    assert "no embedding" in response.json()["detail"] and "pending" in response.json()["detail"]


@pytest.mark.parametrize("query", ["", "   ", "x" * 501])
def test_empty_or_overlong_search_is_400(api, query) -> None:
    response = api.get("/api/search/", {"q": query})
    assert response.status_code == 400
    assert "q " in response.json()["detail"]


def test_search_k_is_checked(api) -> None:
    response = api.get("/api/search/", {"q": "football", "k": "500"})
    assert response.status_code == 400 and "k must" in response.json()["detail"]


NEWS = {
    "Striker scores twice as United win the derby": "The forward's late goals sealed a 2-1 league win.",
    "Central bank raises interest rates again": "Borrowing costs rise by a quarter point to fight inflation.",
    "New smartphone chip doubles battery life": "The processor maker says its design uses half the power.",
    "Parliament passes the budget after long debate": "Lawmakers approved the spending plan by 12 votes.",
    "Film festival opens with a documentary premiere": "Directors and actors gathered for the opening night.",
}


@pytest.fixture
def real_news(source, fresh_vector_index) -> dict[str, Article]:
    """A few articles embedded by the real model, as processing would embed them."""
    vectors = embed_texts([article_text(title, summary, "") for title, summary in NEWS.items()])
    return {
        title: add(source, title, vector, summary=summary) for (title, summary), vector in zip(NEWS.items(), vectors)
    }


def test_search_finds_the_obvious_article(api, real_news) -> None:
    response = api.get("/api/search/", {"q": "football match result", "k": "3"})
    assert response.status_code == 200
    body = response.json()
    assert body["results"][0]["title"] == "Striker scores twice as United win the derby"
    assert len(body["results"]) == 3
    scores = [row["score"] for row in body["results"]]
    assert scores == sorted(scores, reverse=True)
    response = api.get("/api/search/", {"q": "mortgage rates and inflation"})
    assert response.json()["results"][0]["title"] == "Central bank raises interest rates again"


def test_commands_mirror_the_api(real_news) -> None:
    out = StringIO()
    call_command("search", "new phone processor", "--k", "2", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "New smartphone chip doubles battery life" in lines[0]

    striker = real_news["Striker scores twice as United win the derby"]
    out = StringIO()
    call_command("similar", str(striker.pk), "--k", "4", "--json", stdout=out)
    assert striker.pk not in {row["id"] for row in json.loads(out.getvalue())}

    with pytest.raises(CommandError, match="no article"):
        call_command("similar", "987654321")
    with pytest.raises(CommandError, match="k must"):
        call_command("search", "anything", "--k", "0")


def test_rebuild_index_command_writes_the_cache(real_news, fresh_vector_index) -> None:
    out = StringIO()
    call_command("rebuild_index", "--no-progress", stdout=out)
    assert "indexed 5 articles (exact)" in out.getvalue()
    assert sorted(vector_index.load(fresh_vector_index).ids()) == sorted(a.pk for a in real_news.values())
