from __future__ import annotations

from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

import newsrec.api_schema  # noqa: F401 - describes the plain APIViews in the schema
from articles.api.ids import IdConverter
from articles.api.recommendations import InteractionView, RecommendationsView
from articles.api.similarity import SearchView, SimilarArticlesView
from articles.api.views import ArticleViewSet, CategoryViewSet, FeedViewSet, ProcessArticlesView, TopicViewSet
from articles.demo_feeds import serve_demo_feed
from newsrec.api_docs import OfflineRedocView
from newsrec.readiness import readyz
from pipeline.taskqueue.api import TaskViewSet
from pipeline.taskqueue.metrics import metrics_view

register_converter(IdConverter, "id")  # ASCII-digit ids (articles/api/ids.py)

router = DefaultRouter()
router.register("feeds", FeedViewSet)
router.register("articles", ArticleViewSet)
router.register("topics", TopicViewSet)
router.register("categories", CategoryViewSet)
router.register("tasks", TaskViewSet, basename="task")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and docker-compose: the process answers and Postgres is reachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/process-articles/", ProcessArticlesView.as_view(), name="process-articles"),
    path("api/articles/<id:pk>/similar/", SimilarArticlesView.as_view(), name="article-similar"),
    path("api/search/", SearchView.as_view(), name="search"),
    path("api/articles/<str:article_id>/interactions/", InteractionView.as_view(), name="article-interactions"),
    path("api/recommendations/", RecommendationsView.as_view(), name="recommendations"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),  # OpenAPI 3 (drf-spectacular)
    # Swagger UI and ReDoc over that schema, their scripts served from drf-spectacular-sidecar's static files.
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", OfflineRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/", include(router.urls)),
    path("demo/feeds/<str:filename>", serve_demo_feed, name="demo-feed"),
    path("healthz", healthz),
    path("readyz", readyz, name="readyz"),  # per component, 200 or 503 (newsrec/readiness.py)
    path("metrics", metrics_view, name="metrics"),  # Prometheus (pipeline/taskqueue/metrics.py)
    path("", include("articles.reader.urls")),  # the reader's pages: /, /latest/, /search/, /articles/<id>/
]
