"""What a user did with articles (interactions) and what they might read next (recommendations)."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from articles.api.ids import parse_id
from articles.models import Article, Interaction
from articles.services import record_interaction
from pipeline.search.limits import check_k
from pipeline.search.recommending import recommend


class InteractionSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(
        choices=Interaction.Kind.choices,
        error_messages={"invalid_choice": f"{{input}} is not a kind; use one of {', '.join(Interaction.Kind.values)}"},
    )

    class Meta:
        model = Interaction
        fields = ["article", "kind", "created_at"]
        read_only_fields = ["article", "created_at"]


class RecommendedArticleSerializer(serializers.ModelSerializer):
    topic = serializers.SlugRelatedField(slug_field="name", read_only=True)
    score = serializers.FloatField(read_only=True)
    reason = serializers.CharField(read_only=True)

    class Meta:
        model = Article
        fields = ["id", "feed", "url", "title", "summary", "published_at", "topic", "story_id", "score", "reason"]
        read_only_fields = fields


def _article_or_404(article_id: str) -> Article:
    # The id checked here rather than by the URL converter, so a bad one gets the API's JSON 404.
    pk = parse_id(article_id)
    if pk is None:
        raise NotFound(f"no article {article_id[:50]!r}")
    article = Article.objects.filter(pk=pk).first()
    if article is None:
        raise NotFound(f"no article {article_id}")
    return article


class InteractionView(APIView):
    """POST {"kind": "read" | "like" | "dismiss"}: 201 when recorded, 200 when it already was."""

    write_permissions = {"post": ["articles.add_interaction"]}  # readers (articles/roles.py)

    def post(self, request: Request, article_id: str) -> Response:
        article = _article_or_404(article_id)
        body = InteractionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        interaction, created = record_interaction(request.user.pk, article, body.validated_data["kind"])
        return Response(
            InteractionSerializer(interaction).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


def parse_k(raw: str | None) -> int:
    try:
        return check_k(raw)
    except ValueError as error:
        raise ValidationError({"k": [str(error)]}) from None


class RecommendationsView(APIView):
    """GET ?k=: the user's personal list (cold start: fresh articles across topics)."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        k = parse_k(request.query_params.get("k"))
        found = recommend(request.user.pk, k)
        articles = Article.objects.select_related("topic").in_bulk([item.article_id for item in found.items])
        results = []
        for item in found.items:
            article = articles.get(item.article_id)
            if article is not None:  # deleted since it was scored
                article.score, article.reason = item.score, item.reason
                results.append(article)
        return Response(
            {
                "strategy": found.strategy,
                "count": len(results),
                "results": RecommendedArticleSerializer(results, many=True).data,
            }
        )
