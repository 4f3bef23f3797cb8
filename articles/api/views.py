"""The REST API over feeds, articles and topics; work is queued and answered with 202 at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.urls import reverse
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from articles.api.filters import ArticleFilter
from articles.api.ids import ID_PATTERN
from articles.api.serializers import (
    ArticleLabelSerializer,
    ArticleSerializer,
    CategorySerializer,
    FeedSerializer,
    TopicSerializer,
)
from articles.models import Article, Category, Feed, Topic
from articles.services import requeue_for_processing
from pipeline.actors import process_articles, process_pending_articles, request_retraining, scrape_article, scrape_feed
from pipeline.feeds import opml
from pipeline.feeds.article_pages import request_page_fetch
from pipeline.feeds.discovery import DiscoveryError, find_feeds
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


class OpmlParser(BaseParser):
    """A raw OPML body (the file itself, not a form): handed over as bytes, read by pipeline/feeds/opml.py."""

    media_type = "*/*"

    # DRF hands request.data whatever a parser returns; the stubs expect a mapping.
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> bytes:  # type: ignore[override]
        # One byte over the limit is enough to refuse the file; the rest is never read.
        return stream.read(settings.OPML_MAX_BYTES + 1) if stream is not None else b""


class FeedViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = Feed.objects.select_related("category")
    serializer_class = FeedSerializer
    lookup_value_regex = ID_PATTERN
    # Roles: operators (articles/roles.py, checked by articles/api/permissions.py).
    write_permissions = {
        "create": ["articles.add_feed"],
        "import_opml": ["articles.add_feed"],
        "partial_update": ["articles.change_feed"],
        "scrape": ["articles.scrape_feed"],
    }
    filterset_fields = ["is_active", "category", "category__name", "full_text"]
    http_method_names = ["get", "post", "patch", "head", "options"]  # PATCH changes settings; no PUT

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """POST {"url", "discover": true}: the URL may be a website; its feed is found and stored instead.

        400 names what was tried when there is no feed, and lists the candidates when there are several.
        """
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not body.validated_data.get("discover"):
            return super().create(request, *args, **kwargs)
        try:
            found = find_feeds(body.validated_data["url"])
        except DiscoveryError as error:
            return Response({"detail": error.reason, "tried": error.tried}, status=status.HTTP_400_BAD_REQUEST)
        if len(found) > 1:
            return Response(
                {
                    "detail": "several feeds found: post the one to add",
                    "candidates": [{"url": feed.url, "title": feed.title} for feed in found],
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        data = {**body.validated_data, "url": found[0].url, "discover": False}
        data.setdefault("title", found[0].title)
        feed_body = self.get_serializer(data={k: v for k, v in data.items() if v is not None})
        feed_body.is_valid(raise_exception=True)
        self.perform_create(feed_body)
        return Response(feed_body.data, status=status.HTTP_201_CREATED)

    @action(
        detail=False,
        methods=["post"],
        url_path="import-opml",
        url_name="import-opml",
        parser_classes=[MultiPartParser, FormParser, OpmlParser],
    )
    def import_opml(self, request: Request) -> Response:
        """An OPML file (multipart field "file", or the raw XML as the body): all its feeds or none."""
        upload = request.FILES.get("file") if hasattr(request, "FILES") else None
        if upload is not None:
            content = upload.read(settings.OPML_MAX_BYTES + 1)
        elif isinstance(request.data, bytes):
            content = request.data
        else:
            return Response({"detail": "send the OPML file as the body or as the multipart field 'file'"}, status=400)
        try:
            result = opml.import_opml(content, max_bytes=settings.OPML_MAX_BYTES)
        except opml.OpmlError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(result.as_dict(), status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)

    @action(detail=False, methods=["get"], url_path="export-opml", url_name="export-opml")
    def export_opml(self, request: Request) -> HttpResponse:
        response = HttpResponse(opml.export_opml(), content_type="text/x-opml; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="newsrec-feeds.opml"'
        return response

    @action(detail=True, methods=["post"])
    def scrape(self, request: Request, pk: str | None = None) -> Response:
        feed = self.get_object()
        return enqueue_or_503(request, lambda: send_on_commit(scrape_feed, feed.pk, origin=Origin.API))


class ArticleViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Article.objects.select_related("topic")
    serializer_class = ArticleSerializer
    lookup_value_regex = ID_PATTERN
    write_permissions = {
        "partial_update": ["articles.change_article"],  # a label, as in the admin
        "scrape_page": ["articles.scrape_feed"],
        "reprocess": ["articles.process_articles"],
    }
    filterset_class = ArticleFilter

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """PATCH {"topic": name or id}: a person's label (see pipeline.understanding.labelling)."""
        article = self.get_object()
        body = ArticleLabelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        article = label_article(article, body.validated_data["topic"])
        request_retraining()
        return Response(ArticleSerializer(article, context=self.get_serializer_context()).data)

    @action(detail=True, methods=["post"], url_path="scrape", url_name="scrape")
    def scrape_page(self, request: Request, pk: str | None = None) -> Response:
        """Fetch the article's page again (whatever its feed's full_text says); it is then processed again."""
        article = self.get_object()
        if not article.url:
            return Response({"detail": "the article has no link to fetch"}, status=status.HTTP_400_BAD_REQUEST)

        def send() -> str:
            request_page_fetch(article)
            return send_on_commit(scrape_article, article.pk, origin=Origin.API)

        return enqueue_or_503(request, send)

    @action(detail=True, methods=["post"], url_path="process", url_name="process")
    def reprocess(self, request: Request, pk: str | None = None) -> Response:
        """Embed and classify the article again from the text it has now (a person's label is kept)."""
        article = self.get_object()

        def send() -> str:
            requeue_for_processing(article)
            return send_on_commit(process_articles, [article.pk], origin=Origin.API)

        return enqueue_or_503(request, send)


class CategoryViewSet(viewsets.ModelViewSet):
    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    lookup_value_regex = ID_PATTERN
    write_permissions = {
        "create": ["articles.add_category"],
        "update": ["articles.change_category"],
        "partial_update": ["articles.change_category"],
        "destroy": ["articles.delete_category"],
    }


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
