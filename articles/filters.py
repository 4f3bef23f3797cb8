from __future__ import annotations

import django_filters

from articles.models import Article


class ArticleFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="published_at", lookup_expr="gte")
    processed = django_filters.BooleanFilter(method="filter_processed")
    topic = django_filters.CharFilter(field_name="topic__name")

    class Meta:
        model = Article
        fields = ["feed", "status", "since", "processed", "topic"]

    def filter_processed(self, queryset, name, value):  # type: ignore[no-untyped-def]
        if value:
            return queryset.filter(status=Article.Status.PROCESSED)
        return queryset.exclude(status=Article.Status.PROCESSED)
