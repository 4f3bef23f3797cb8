"""Feeds, the articles scraped from them, and the topics articles are classified into."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Topic(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # One sentence; zero-shot classification compares article embeddings with its embedding.
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """A folder of feeds, as feed readers have them (OPML outlines); a feed is in at most one."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Feed(models.Model):
    class FullText(models.TextChoices):
        # Fetch an article's page when the feed's item carries less than ARTICLE_FULL_TEXT_MIN_CHARS of text.
        AUTO = "auto"
        ALWAYS = "always"
        NEVER = "never"

    # Fields a poll writes (record_success / record_failure). The scraper saves only these, leaving an
    # operator's concurrent edits alone; the admin shows those the operator may not edit as read-only.
    FETCH_STATE_FIELDS = [
        "url",
        "title",
        "site_url",
        "etag",
        "last_modified",
        "next_fetch_at",
        "last_fetched_at",
        "last_success_at",
        "last_error",
        "last_error_at",
        "error_count",
        "is_active",
        "disabled_reason",
    ]

    url = models.URLField(max_length=2000, unique=True)
    title = models.CharField(max_length=500, blank=True)
    site_url = models.URLField(max_length=2000, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)

    # Conditional GET validators from the last 200 response.
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)

    fetch_interval = models.PositiveIntegerField(
        default=settings.FEED_FETCH_INTERVAL_SECONDS, help_text="Seconds between polls when healthy."
    )
    next_fetch_at = models.DateTimeField(default=timezone.now)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    error_count = models.PositiveIntegerField(default=0, help_text="Consecutive failures.")
    created_at = models.DateTimeField(auto_now_add=True)

    full_text = models.CharField(
        max_length=8,
        choices=FullText.choices,
        default=FullText.AUTO,
        db_default=FullText.AUTO,
        help_text="Fetch each article's page for its whole text: auto = when the feed's item is short.",
    )
    # Some sites answer 403 to generic clients; empty = settings.ARTICLE_USER_AGENT.
    user_agent = models.CharField(max_length=300, blank=True, default="", db_default="")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="feeds")

    class Meta:
        ordering = ["id"]
        # Roles (articles/roles.py): the API's scrape action and the admin's "Scrape now" both check it.
        permissions = [("scrape_feed", "Can queue a scrape of a feed")]
        indexes = [
            # scrape_due_feeds: WHERE is_active AND next_fetch_at <= now
            models.Index(fields=["next_fetch_at"], condition=models.Q(is_active=True), name="feed_due_idx"),
        ]

    def __str__(self) -> str:
        return self.title or self.url

    def record_success(
        self,
        *,
        now: datetime,
        etag: str | None,
        last_modified: str | None,
        title: str | None = None,
        site_url: str | None = None,
        new_url: str | None = None,
    ) -> None:
        """Reset the error state and schedule the next poll; the caller saves."""
        self.last_fetched_at = now
        self.last_success_at = now
        self.error_count = 0
        self.last_error = ""
        self.next_fetch_at = now + timedelta(seconds=self.fetch_interval)
        if etag is not None:
            self.etag = etag[:500]
        if last_modified is not None:
            self.last_modified = last_modified[:100]
        if title:
            self.title = title[:500]
        if site_url:
            self.site_url = site_url[:2000]
        if new_url:
            self.url = new_url

    def record_failure(
        self, reason: str, *, now: datetime, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        """Record why the poll failed and back off: interval × 2^(failures-1), capped; the caller saves.

        A permanent failure (410 Gone) or too many consecutive failures disables the feed.
        """
        self.last_fetched_at = now
        self.last_error = reason[:2000]
        self.last_error_at = now
        self.error_count += 1
        backoff = min(self.fetch_interval * 2 ** (self.error_count - 1), settings.FEED_MAX_BACKOFF_SECONDS)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, settings.FEED_MAX_BACKOFF_SECONDS))
        self.next_fetch_at = now + timedelta(seconds=backoff)
        if permanent:
            self.disable(f"gone: {reason}")
        elif self.error_count >= settings.FEED_DISABLE_AFTER_FAILURES:
            self.disable(f"{self.error_count} consecutive failures, last: {reason}")

    def disable(self, reason: str) -> None:
        self.is_active = False
        self.disabled_reason = reason[:500]


class FeedFetch(models.Model):
    """One poll of a feed, for the admin's feed page: what came back and what it brought.

    Only the newest few per feed are kept (pipeline/feeds/fetch_log.py): this is a window on recent
    behaviour, not an archive.
    """

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="fetches")
    started_at = models.DateTimeField()
    status = models.CharField(max_length=16)  # ScrapeOutcome.status: ok, not_modified, error, skipped
    bytes = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)
    entries = models.PositiveIntegerField(default=0)
    new_articles = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # the feed page and the trimming: WHERE feed_id = … ORDER BY started_at DESC
            models.Index(fields=["feed", "-started_at"], name="feedfetch_feed_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.feed_id} {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"


class Article(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        FAILED = "failed"

    class PageStatus(models.TextChoices):
        """Where the article's own page stands (pipeline/feeds/article_pages.py)."""

        NOT_FETCHED = "", "not fetched"  # the feed's text is used (feed setting, or long enough)
        QUEUED = "queued"  # processing waits for the fetch (see services.claim_pending_articles)
        FETCHED = "fetched"  # `body` holds the page's extracted text
        FAILED = "failed"  # failed for good: processed from the feed's text, `page_error` says why
        DISALLOWED = "disallowed"  # robots.txt forbids it: never fetched, never retried

    class ClassifiedBy(models.TextChoices):
        ZERO_SHOT = "zero_shot"
        SUPERVISED = "supervised"
        HUMAN = "human"

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="articles")
    # Dedup key within the feed (guid, else link, else a hash): the unique constraint below is what
    # makes a re-delivered scrape message store nothing twice.
    guid = models.CharField(max_length=500)
    url = models.URLField(max_length=2000, blank=True)
    title = models.CharField(max_length=500, blank=True)
    summary = models.TextField(blank=True)
    content = models.TextField(blank=True)
    author = models.CharField(max_length=300, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(auto_now_add=True)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    processing_error = models.TextField(blank=True)
    # When the article was last handed to the processing queue (see services.claim_pending_articles).
    queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Which processing run holds the article while its embedding is computed (no transaction is open
    # meanwhile; see pipeline.understanding.processing), and since when: "" when none.
    claimed_by = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    processed_at = models.DateTimeField(null=True, blank=True)
    topic = models.ForeignKey(Topic, null=True, blank=True, on_delete=models.SET_NULL, related_name="articles")
    topic_confidence = models.FloatField(null=True, blank=True)
    classified_by = models.CharField(max_length=16, choices=ClassifiedBy.choices, blank=True)
    # float32 little-endian vector; Postgres is the source of truth, the vector index is derived.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    # Near-duplicates across feeds (the same story) share a story id: the id of the story's first article.
    story_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    # The article's own page (scrape_article): its main text and metadata, extracted with trafilatura.
    page_status = models.CharField(
        max_length=16, choices=PageStatus.choices, blank=True, default="", db_default="", editable=False
    )
    page_error = models.TextField(blank=True, default="", db_default="", editable=False)
    # When the fetch was asked for: a fetch still queued long after this was lost (services.PAGE_FETCH_WAIT).
    page_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    page_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)
    body = models.TextField(blank=True, default="", db_default="", editable=False)
    language = models.CharField(max_length=35, blank=True, default="", db_default="", editable=False)
    image_url = models.URLField(max_length=2000, blank=True, default="", db_default="", editable=False)

    class Meta:
        ordering = ["-published_at", "-id"]
        # Roles (articles/roles.py): POST /api/process-articles/ checks it.
        permissions = [("process_articles", "Can queue processing of pending articles")]
        constraints = [
            models.UniqueConstraint(fields=["feed", "guid"], name="article_unique_guid_per_feed"),
        ]
        indexes = [
            # process_pending_articles: WHERE status = 'pending' ORDER BY id
            models.Index(fields=["id"], condition=models.Q(status="pending"), name="article_pending_idx"),
            # article list: ORDER BY published_at DESC, filtered by feed
            models.Index(fields=["feed", "-published_at"], name="article_feed_published_idx"),
            models.Index(fields=["-published_at", "-id"], name="article_published_idx"),
            # vector index catch-up: WHERE processed_at > <index built at> (rows embedded since)
            models.Index(fields=["processed_at"], name="article_processed_at_idx"),
        ]

    def __str__(self) -> str:
        return self.title or self.url or self.guid


class Interaction(models.Model):
    """What a user did with an article; the recommender learns from these."""

    class Kind(models.TextChoices):
        READ = "read"
        LIKE = "like"
        DISMISS = "dismiss"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="interactions")
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="interactions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "article", "kind"], name="interaction_unique_kind"),
        ]
        indexes = [
            # recommendations: the user's recent history, WHERE user_id = … ORDER BY created_at DESC
            models.Index(fields=["user", "-created_at"], name="interaction_user_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind} {self.article_id}"


class TopicClassifier(models.Model):
    """A trained supervised topic model, stored as JSON (no pickle) so any process on any machine can load it.

    The newest active row is the one processing uses; without one, topics are zero-shot. A row is made
    active only when cross-validation on the labels says it beats zero-shot (`decision`); a row that
    lost is kept, inactive, so the admin can show why zero-shot is still in force.
    """

    class Decision(models.TextChoices):
        SUPERVISED = "supervised", "supervised takes over"
        ZERO_SHOT = "zero_shot", "zero-shot stays"

    params = models.JSONField(help_text="pipeline.understanding.classification.LinearTopicModel.to_dict()")
    label_counts = models.JSONField(default=dict, help_text="labelled articles per topic at training time")
    # sha256 of the (article, topic) labels trained on: retraining on the same labels is skipped.
    labels_digest = models.CharField(max_length=64, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    trained_at = models.DateTimeField(default=timezone.now)
    # Cross-validated on the labels (pipeline.understanding.cross_validation), both on the same folds;
    # empty on rows trained before the rule existed.
    supervised_cv_accuracy = models.FloatField(null=True, blank=True)
    zero_shot_cv_accuracy = models.FloatField(null=True, blank=True)
    cv_folds = models.PositiveSmallIntegerField(null=True, blank=True)
    # Rows trained before cross-validation were adopted by label count alone: supervised.
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.SUPERVISED)
    decision_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-trained_at"]
        get_latest_by = "trained_at"

    def __str__(self) -> str:
        return f"topic classifier {self.trained_at:%Y-%m-%d %H:%M}"
