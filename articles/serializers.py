from __future__ import annotations

from rest_framework import serializers

from articles.models import Article, Feed, Topic
from articles.services import normalise_feed_url


class FeedSerializer(serializers.ModelSerializer):
    class Meta:
        model = Feed
        fields = [
            "id", "url", "title", "site_url", "is_active", "disabled_reason", "fetch_interval",
            "next_fetch_at", "last_fetched_at", "last_success_at", "last_error", "error_count", "created_at",
        ]
        read_only_fields = [
            "site_url", "is_active", "disabled_reason", "next_fetch_at", "last_fetched_at",
            "last_success_at", "last_error", "error_count", "created_at",
        ]

    def validate_url(self, value: str) -> str:
        return normalise_feed_url(value)


class TopicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Topic
        fields = ["id", "name", "description", "created_at"]
        read_only_fields = ["created_at"]


class ArticleSerializer(serializers.ModelSerializer):
    topic = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Article
        fields = [
            "id", "feed", "guid", "url", "title", "summary", "content", "author", "published_at", "fetched_at",
            "status", "processing_error", "processed_at", "topic", "topic_confidence", "classified_by",
        ]
        read_only_fields = fields


class TaskQueuedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    status = serializers.CharField()
    status_url = serializers.CharField()
