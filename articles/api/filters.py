from __future__ import annotations

from datetime import UTC, datetime

import django_filters

from articles.models import Article
from pipeline.search.stories import collapse_stories


class UTCIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 time turned into UTC here: Postgres refuses offsets past ±15:59 (a 500 otherwise)."""

    def strptime(self, value: str, format: str) -> datetime:  # noqa: A002 - Django's signature
        parsed = super().strptime(value, format)
        try:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed
        except OverflowError:
            raise ValueError(f"{value!r} is out of range") from None


class UTCIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class ArticleFilter(django_filters.FilterSet):
    since = UTCIsoDateTimeFilter(field_name="published_at", lookup_expr="gte")
    processed = django_filters.BooleanFilter(method="filter_processed")
    topic = django_filters.CharFilter(field_name="topic__name")
    # Applied last, in filter_queryset, so the story's representative is chosen among the filtered rows.
    collapse_stories = django_filters.BooleanFilter(method="filter_nothing", label="One article per story")

    class Meta:
        model = Article
        fields = ["feed", "status", "since", "processed", "topic"]

    def filter_processed(self, queryset, name, value):
        if value:
            return queryset.filter(status=Article.Status.PROCESSED)
        return queryset.exclude(status=Article.Status.PROCESSED)

    def filter_nothing(self, queryset, name, value):
        return queryset

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.form.cleaned_data.get("collapse_stories"):
            queryset = collapse_stories(queryset)
        return queryset
