from __future__ import annotations

from rest_framework import serializers

from articles.api.ids import parse_id
from articles.models import Article, Category, Feed, Topic
from articles.services import normalise_feed_url


class FeedSerializer(serializers.ModelSerializer):
    # Creation only: fetch the URL first and, when it is a web page, find its feed (pipeline/feeds/discovery.py).
    category = serializers.SlugRelatedField(
        slug_field="name", queryset=Category.objects.all(), allow_null=True, required=False
    )
    discover = serializers.BooleanField(
        write_only=True, required=False, default=False, help_text="the URL may be a website: find its feed"
    )

    class Meta:
        model = Feed
        fields = [
            "id",
            "url",
            "title",
            "site_url",
            "is_active",
            "disabled_reason",
            "fetch_interval",
            "next_fetch_at",
            "last_fetched_at",
            "last_success_at",
            "last_error",
            "error_count",
            "created_at",
            "full_text",
            "user_agent",
            "category",
            "discover",
        ]
        read_only_fields = [
            "site_url",
            "is_active",
            "disabled_reason",
            "next_fetch_at",
            "last_fetched_at",
            "last_success_at",
            "last_error",
            "error_count",
            "created_at",
        ]

    def validate_url(self, value: str) -> str:
        return normalise_feed_url(value)

    def create(self, validated_data: dict) -> Feed:
        validated_data.pop("discover", None)
        return super().create(validated_data)

    def update(self, instance: Feed, validated_data: dict) -> Feed:
        validated_data.pop("discover", None)
        return super().update(instance, validated_data)


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "created_at"]
        read_only_fields = ["created_at"]


class TopicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Topic
        fields = ["id", "name", "description", "created_at"]
        read_only_fields = ["created_at"]


class ArticleSerializer(serializers.ModelSerializer):
    topic: serializers.SlugRelatedField[Topic] = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Article
        fields = [
            "id",
            "feed",
            "guid",
            "url",
            "title",
            "summary",
            "content",
            "author",
            "published_at",
            "fetched_at",
            "status",
            "processing_error",
            "processed_at",
            "topic",
            "topic_confidence",
            "classified_by",
            "story_id",
            "page_status",
            "page_error",
            "page_fetched_at",
            "body",
            "language",
            "image_url",
        ]
        read_only_fields = fields


class ArticleLabelSerializer(serializers.Serializer):
    """PATCH body of an article: only its topic, by name or id (a person's label)."""

    topic = serializers.JSONField(help_text="the topic's name or id")

    def to_internal_value(self, data: object) -> dict[str, object]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {"topic"})
            if unknown:
                message = "only an article's topic can be changed"
                raise serializers.ValidationError({name: [message] for name in unknown})
        return super().to_internal_value(data)

    def validate_topic(self, value: object) -> Topic:
        if isinstance(value, str) and value.strip():
            found = Topic.objects.filter(name=value.strip()).first()
            if found is None and (topic_id := parse_id(value)) is not None:
                found = Topic.objects.filter(pk=topic_id).first()
        elif isinstance(value, int) and not isinstance(value, bool):
            # Postgres refuses a number past bigint; no topic has one.
            found = Topic.objects.filter(pk=value).first() if 0 < value < 2**63 else None
        else:
            raise serializers.ValidationError("give a topic name or id")
        if found is None:
            raise serializers.ValidationError(f"no topic named or numbered {value!r}")
        return found


class TaskQueuedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField()
    status_url = serializers.CharField()
