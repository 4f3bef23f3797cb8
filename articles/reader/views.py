"""The reader's pages. Each parses its input, asks listing.py or pipeline.search, and renders a template.

Like and dismiss are sent by reader.js to the API (POST /api/articles/{id}/interactions/), which then
re-fetches the For you list as an HTML fragment; `interact` is the same action for a browser without
JavaScript (a plain form post that redirects back).
"""

from __future__ import annotations

import nh3
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from articles.models import Article, Interaction, Topic
from articles.reader import listing
from articles.services import record_interaction
from pipeline.search.similarity import NotEmbedded, check_query, search_articles, similar_articles

SIMILAR_ON_ARTICLE = 5
SIMILAR_PAGE = 20
SEARCH_SIZE = 20
# Stored text was sanitised at ingestion (pipeline.feeds.sanitising); cleaned again here to a smaller
# set of tags, so a page never depends on what an older version of the scraper let through.
_ARTICLE_TAGS = {
    "a",
    "p",
    "br",
    "ul",
    "ol",
    "li",
    "blockquote",
    "em",
    "strong",
    "b",
    "i",
    "h2",
    "h3",
    "h4",
    "pre",
    "code",
}


def _user_id(request: HttpRequest) -> int:
    assert request.user.pk is not None  # every view here is behind login_required
    return int(request.user.pk)


@login_required
def for_you(request: HttpRequest) -> HttpResponse:
    return render(request, "reader/for_you.html", {"section": "for-you", "found": listing.for_you(_user_id(request))})


@login_required
def for_you_list(request: HttpRequest) -> HttpResponse:
    """The For you list alone: what reader.js swaps in after a like or a dismissal."""
    return render(request, "reader/_for_you_list.html", {"found": listing.for_you(_user_id(request))})


@login_required
def latest(request: HttpRequest) -> HttpResponse:
    topics = list(Topic.objects.all())
    chosen = next((t for t in topics if t.name == request.GET.get("topic")), None)
    return render(
        request,
        "reader/latest.html",
        {"section": "latest", "topics": topics, "topic": chosen, "articles": listing.latest(chosen)},
    )


@login_required
def search(request: HttpRequest) -> HttpResponse:
    query, error, results = request.GET.get("q", "").strip(), "", []
    if query:
        try:
            results = [scored.article for scored in search_articles(check_query(query), SEARCH_SIZE)]
        except ValueError as exc:
            error = str(exc)
    return render(request, "reader/search.html", {"section": "search", "q": query, "error": error, "articles": results})


def _similar(article: Article, k: int) -> tuple[list[Article], str]:
    try:
        return [scored.article for scored in similar_articles(article, k)], ""
    except NotEmbedded:
        return [], "Similar articles appear once this article has been processed."


@login_required
def article(request: HttpRequest, pk: int) -> HttpResponse:
    shown = get_object_or_404(Article.objects.select_related("feed", "topic"), pk=pk)
    similar, similar_note = _similar(shown, SIMILAR_ON_ARTICLE)
    body = nh3.clean(shown.content or shown.summary, tags=_ARTICLE_TAGS, link_rel="noopener noreferrer nofollow")
    return render(
        request,
        "reader/article.html",
        {
            "article": shown,
            "body": body,
            "similar": similar,
            "similar_note": similar_note,
            "sources": listing.story_sources(shown),
        },
    )


@login_required
def similar(request: HttpRequest, pk: int) -> HttpResponse:
    shown = get_object_or_404(Article.objects.select_related("feed", "topic"), pk=pk)
    articles, note = _similar(shown, SIMILAR_PAGE)
    return render(request, "reader/similar.html", {"article": shown, "articles": articles, "note": note})


@login_required
@require_POST
def interact(request: HttpRequest, pk: int) -> HttpResponse:
    """Like or dismiss without JavaScript: record it and go back where the person was."""
    shown = get_object_or_404(Article, pk=pk)
    kind = request.POST.get("kind")
    if kind in (Interaction.Kind.LIKE, Interaction.Kind.DISMISS):
        record_interaction(_user_id(request), shown, kind)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = reverse("reader:for-you")
    return HttpResponseRedirect(back)
