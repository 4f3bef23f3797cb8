"""Operators' view of feeds, articles and topics. What came from a feed is read-only here; Django's
admin escapes every value it renders, so feed text shows as text."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from articles.models import Article, Category, Feed, Topic, TopicClassifier
from pipeline.actors import request_retraining, scrape_article, scrape_feed
from pipeline.feeds.article_pages import request_page_fetch
from pipeline.feeds.fetch_log import KEEP_PER_FEED
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.names import Origin
from pipeline.understanding.labelling import label_article
from pipeline.understanding.training import topic_model_status


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name", "description"]


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    list_display = ["__str__", "url", "is_active", "last_success_at", "error_count", "last_error", "disabled_reason"]
    list_filter = ["is_active", "category", "full_text"]
    search_fields = ["url", "title"]
    # What polls write, except what an operator may set: the URL, the title, and is_active (re-enable).
    readonly_fields = [f for f in Feed.FETCH_STATE_FIELDS if f not in {"url", "title", "is_active"}] + [
        "created_at",
        "recent_fetches",
        "failed_article_pages",
    ]
    actions = ["scrape_now"]

    @admin.display(description="Last fetches")
    def recent_fetches(self, feed: Feed) -> str:
        fetches = feed.fetches.all()[:KEEP_PER_FEED] if feed.pk else []
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                    f.status,
                    filesizeformat(f.bytes),
                    f.duration_ms,
                    f.entries,
                    f.new_articles,
                    f.error,
                )
                for f in fetches
            ),
        )
        if not rows:
            return "none yet"
        head = (
            "<tr><th>time</th><th>status</th><th>bytes</th><th>took</th><th>items</th><th>new</th><th>error</th></tr>"
        )
        return format_html("<table>{}{}</table>", mark_safe(head), rows)  # noqa: S308 - a constant

    @admin.display(description="Articles whose page fetch failed (latest 20)")
    def failed_article_pages(self, feed: Feed) -> str:
        failed = (
            feed.articles.filter(page_status__in=[Article.PageStatus.FAILED, Article.PageStatus.DISALLOWED])
            .order_by("-page_fetched_at", "-id")
            .only("id", "title", "url", "page_status", "page_error")[:20]
            if feed.pk
            else []
        )
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (reverse("admin:articles_article_change", args=[a.pk]), a.title or a.url, a.page_status, a.page_error)
                for a in failed
            ),
        )
        return format_html("<table>{}</table>", rows) if rows else "none"

    # The permission the API's scrape action needs too (articles/roles.py).
    def has_scrape_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("articles.scrape_feed")

    @admin.action(description="Scrape the selected feeds now", permissions=["scrape"])
    def scrape_now(self, request: HttpRequest, queryset: QuerySet[Feed]) -> None:
        try:
            with queue_errors_as_unavailable():
                task_ids = [send_on_commit(scrape_feed, feed.pk, origin=Origin.ADMIN) for feed in queryset]
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"Queued {len(task_ids)} scrape(s).", messages.SUCCESS)


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "feed", "published_at", "status", "topic", "topic_confidence", "classified_by"]
    list_filter = ["status", "page_status", "topic", "classified_by", "feed"]
    search_fields = ["title", "url", "guid"]
    date_hierarchy = "published_at"
    list_select_related = ["feed", "topic"]
    raw_id_fields = ["feed"]
    # Everything a feed or the pipeline wrote; people may set the topic (a label).
    readonly_fields = [
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
        "topic_confidence",
        "classified_by",
        "page_status",
        "page_error",
        "page_requested_at",
        "page_fetched_at",
        "language",
        "image_url",
        "body",
    ]

    actions = ["confirm_topics", "fetch_pages"]

    # The permission the API's article scrape action needs too (articles/roles.py).
    def has_scrape_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("articles.scrape_feed")

    @admin.action(
        description="Fetch the selected articles' pages again (then process them again)", permissions=["scrape"]
    )
    def fetch_pages(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        try:
            with queue_errors_as_unavailable():
                task_ids = []
                for article in queryset.exclude(url=""):
                    request_page_fetch(article)
                    task_ids.append(send_on_commit(scrape_article, article.pk, origin=Origin.ADMIN))
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"Queued {len(task_ids)} page fetch(es).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Article, form: Any, change: bool) -> None:
        # Only the topic is editable, so saving states the topic: a label (pipeline.understanding.labelling),
        # also when it confirms a classifier's topic. Written as a targeted update so the
        # pipeline's concurrent writes to the row are not overwritten.
        if not change:
            super().save_model(request, obj, form, change)
        elif "topic" in form.changed_data or (obj.topic_id and obj.classified_by != Article.ClassifiedBy.HUMAN):
            label_article(obj, obj.topic)
            request_retraining()

    @admin.action(description="Confirm the selected articles' topics as labels", permissions=["change"])
    def confirm_topics(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        confirmed = 0
        labelled_by_classifier = queryset.filter(topic__isnull=False).exclude(classified_by=Article.ClassifiedBy.HUMAN)
        for article in labelled_by_classifier.select_related("topic"):
            label_article(article, article.topic)
            confirmed += 1
        if confirmed:
            request_retraining()
        self.message_user(request, f"Confirmed {confirmed} topic(s) as labels.", messages.SUCCESS)


@admin.register(TopicClassifier)
class TopicClassifierAdmin(admin.ModelAdmin):
    """Every trained classifier with both cross-validated accuracies and the decision; the page's header
    says which model is in force and why. Written by training only: read-only here."""

    list_display = (
        "trained_at",
        "is_active",
        "decision",
        "supervised_cv_accuracy",
        "zero_shot_cv_accuracy",
        "cv_folds",
        "labels",
        "decision_reason",
    )
    list_filter = ["is_active", "decision"]
    fields = (*list_display, "label_counts")
    readonly_fields = fields

    @admin.display(description="labels")
    def labels(self, obj: TopicClassifier) -> int:
        return sum(obj.label_counts.values())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TopicClassifier | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        return super().changelist_view(request, {**(extra_context or {}), "status": topic_model_status()})
