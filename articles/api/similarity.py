"""`GET /api/articles/{id}/similar/` and `GET /api/search/`: answers from the vector index.

Both are k-limited rather than paginated (k from 1 to 100, default 10): a ranking has no stable
"page 2" while new articles arrive.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from articles.models import Article
from pipeline.search.similarity import NotEmbedded, check_k, check_query, search_articles, similar_articles, summary


def _bad_request(error: ValueError) -> Response:
    return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)


class SimilarArticlesView(APIView):
    """Nearest articles to one article, without itself and its story; 409 until it has an embedding."""

    def get(self, request: Request, pk: int) -> Response:
        try:
            k = check_k(request.query_params.get("k"))
        except ValueError as error:
            return _bad_request(error)
        article = get_object_or_404(
            Article.objects.only("id", "status", "processing_error", "embedding", "story_id"), pk=pk
        )
        try:
            found = similar_articles(article, k)
        except NotEmbedded as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        results = [summary(scored) for scored in found]
        return Response({"article": article.pk, "k": k, "count": len(results), "results": results})


class SearchView(APIView):
    """Semantic search: the articles nearest in meaning to `q`."""

    def get(self, request: Request) -> Response:
        try:
            k = check_k(request.query_params.get("k"))
            query = check_query(request.query_params.get("q"))
        except ValueError as error:
            return _bad_request(error)
        results = [summary(scored) for scored in search_articles(query, k)]
        return Response({"q": query, "k": k, "count": len(results), "results": results})
