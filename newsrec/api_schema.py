"""OpenAPI descriptions of the API views that are plain APIViews (no serializer to read them from).

drf-spectacular cannot guess their parameters, so without these the schema at /api/schema/ would
list them without their query parameters or bodies, `manage.py check --deploy` would warn, and the
schema fuzzer (tests/test_schema_fuzz.py) would never send them a `q` or a `k`. Each extension
subclasses the view only for schema generation (drf-spectacular's OpenApiViewExtension, meant for
views described from outside): requests are still served by the views as written. Loaded by
newsrec/urls.py, next to the schema view. Keep the parameters here in step with the views.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers

from articles.api.recommendations import InteractionSerializer
from pipeline.search.limits import DEFAULT_K, MAX_K

K = OpenApiParameter(
    "k", OpenApiTypes.INT, required=False, description=f"how many results, 1 to {MAX_K} (default {DEFAULT_K})"
)
QUEUED = inline_serializer(
    "TaskQueued",
    {"task_id": serializers.CharField(), "status": serializers.CharField(), "status_url": serializers.URLField()},
)
UNAVAILABLE = inline_serializer("Unavailable", {"detail": serializers.CharField()})
RANKED = inline_serializer(
    "RankedArticles",
    {"count": serializers.IntegerField(), "results": serializers.ListField(child=serializers.DictField())},
)


class SearchViewSchema(OpenApiViewExtension):
    target_class = "articles.api.similarity.SearchView"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            @extend_schema(
                parameters=[
                    OpenApiParameter("q", OpenApiTypes.STR, required=True, description="search text, 1-500 chars"),
                    K,
                ],
                responses={200: RANKED, 400: UNAVAILABLE},
            )
            def get(self, request, *args, **kwargs):
                return super().get(request, *args, **kwargs)

        return Described


class SimilarArticlesViewSchema(OpenApiViewExtension):
    target_class = "articles.api.similarity.SimilarArticlesView"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            @extend_schema(parameters=[K], responses={200: RANKED, 404: UNAVAILABLE, 409: UNAVAILABLE})
            def get(self, request, *args, **kwargs):
                return super().get(request, *args, **kwargs)

        return Described


class RecommendationsViewSchema(OpenApiViewExtension):
    target_class = "articles.api.recommendations.RecommendationsView"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            @extend_schema(parameters=[K], responses={200: RANKED})
            def get(self, request, *args, **kwargs):
                return super().get(request, *args, **kwargs)

        return Described


class InteractionViewSchema(OpenApiViewExtension):
    target_class = "articles.api.recommendations.InteractionView"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            @extend_schema(
                request=InteractionSerializer, responses={200: InteractionSerializer, 201: InteractionSerializer}
            )
            def post(self, request, *args, **kwargs):
                return super().post(request, *args, **kwargs)

        return Described


class ProcessArticlesViewSchema(OpenApiViewExtension):
    target_class = "articles.api.views.ProcessArticlesView"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            @extend_schema(request=None, responses={202: QUEUED, 503: UNAVAILABLE})
            def post(self, request, *args, **kwargs):
                return super().post(request, *args, **kwargs)

        return Described


class FeedViewSetSchema(OpenApiViewExtension):
    target_class = "articles.api.views.FeedViewSet"

    def view_replacement(self):
        base: Any = self.target_class  # the view class (drf-spectacular imports the dotted path)

        class Described(base):
            pass

        # The scrape action takes no body (the schema would otherwise offer the feed serializer).
        return extend_schema_view(scrape=extend_schema(request=None, responses={202: QUEUED, 503: UNAVAILABLE}))(
            Described
        )
