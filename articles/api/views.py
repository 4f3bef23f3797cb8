"""The REST API over feeds, articles and topics; work is queued and answered with 202 at once."""

from __future__ import annotations

from collections.abc import Callable

from django.urls import reverse
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from articles.api.filters import ArticleFilter
from articles.api.ids import ID_PATTERN
from articles.api.serializers import ArticleLabelSerializer, ArticleSerializer, FeedSerializer, TopicSerializer
from articles.models import Article, Feed, Topic
from pipeline.actors import process_pending_articles, request_retraining, scrape_feed
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.names import Origin
from pipeline.understanding.labelling import label_article


def queued_response(request: Request, task_id: str) -> Response:
    status_url = request.build_absolute_uri(reverse("task-detail", args=[task_id]))
    return Response(
        {"task_id": task_id, "status": "queued", "status_url": status_url},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": status_url},
    )


def unavailable_response(error: QueueUnavailable) -> Response:
    return Response({"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "30"})


def enqueue_or_503(request: Request, send: Callable[[], str]) -> Response:
    try:
        with queue_errors_as_unavailable():
            return queued_response(request, send())
    except QueueUnavailable as error:
        return unavailable_response(error)


class FeedViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Feed.objects.all()
    serializer_class = FeedSerializer
    lookup_value_regex = ID_PATTERN
    # Roles: operators (articles/roles.py, checked by articles/api/permissions.py).
    write_permissions = {"create": ["articles.add_feed"], "scrape": ["articles.scrape_feed"]}
    filterset_fields = ["is_active"]

    @action(detail=True, methods=["post"])
    def scrape(self, request: Request, pk: str | None = None) -> Response:
        feed = self.get_object()
        return enqueue_or_503(request, lambda: send_on_commit(scrape_feed, feed.pk, origin=Origin.API))


class ArticleViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Article.objects.select_related("topic")
    serializer_class = ArticleSerializer
    lookup_value_regex = ID_PATTERN
    write_permissions = {"partial_update": ["articles.change_article"]}  # a label, as in the admin
    filterset_class = ArticleFilter

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """PATCH {"topic": name or id}: a person's label (see pipeline.understanding.labelling)."""
        article = self.get_object()
        body = ArticleLabelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        article = label_article(article, body.validated_data["topic"])
        request_retraining()
        return Response(ArticleSerializer(article, context=self.get_serializer_context()).data)


class TopicViewSet(viewsets.ModelViewSet):
    queryset = Topic.objects.all()
    serializer_class = TopicSerializer
    lookup_value_regex = ID_PATTERN
    # Topics drive everyone's classification: operators only.
    write_permissions = {
        "create": ["articles.add_topic"],
        "update": ["articles.change_topic"],
        "partial_update": ["articles.change_topic"],
        "destroy": ["articles.delete_topic"],
    }


class ProcessArticlesView(APIView):
    """Queue processing of every pending article; answers with the sweep's task id."""

    write_permissions = {"post": ["articles.process_articles"]}

    def post(self, request: Request) -> Response:
        return enqueue_or_503(request, lambda: send_on_commit(process_pending_articles, origin=Origin.API))
