"""What a user did with articles (interactions) and what they might read next (recommendations)."""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from articles.api.ids import parse_id
from articles.models import Article, Interaction, Topic
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
    """An article with why it was recommended; the scores come in the context as `scored` (by article id)."""

    topic: serializers.SlugRelatedField[Topic] = serializers.SlugRelatedField(slug_field="name", read_only=True)
    score = serializers.SerializerMethodField()
    reason = serializers.SerializerMethodField()

    def get_score(self, article: Article) -> float:
        return float(self.context["scored"][article.pk].score)

    def get_reason(self, article: Article) -> str:
        return str(self.context["scored"][article.pk].reason)

    class Meta:
        model = Article
        fields = ["id", "feed", "url", "title", "summary", "published_at", "topic", "story_id", "score", "reason"]
        read_only_fields = fields


def signed_in_user_id(request: Request) -> int:
    # The permission classes let only signed-in users this far; an anonymous user has no id.
    if request.user.pk is None:
        raise NotAuthenticated()
    return int(request.user.pk)


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
        interaction, created = record_interaction(signed_in_user_id(request), article, body.validated_data["kind"])
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
        found = recommend(signed_in_user_id(request), k)
        scored = {item.article_id: item for item in found.items}
        articles = Article.objects.select_related("topic").in_bulk(list(scored))
        # In the recommender's order; an article deleted since it was scored is left out.
        results = [articles[item.article_id] for item in found.items if item.article_id in articles]
        return Response(
            {
                "strategy": found.strategy,
                "count": len(results),
                "results": RecommendedArticleSerializer(results, many=True, context={"scored": scored}).data,
            }
        )
