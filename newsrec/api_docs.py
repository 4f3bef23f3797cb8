"""What /api/docs/ and /api/redoc/ tell about each endpoint beyond what drf-spectacular reads from the code:
a description, the error responses every client meets, and an example of a successful answer.

Applied to the generated schema as a drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS), so one
table here describes every operation and the views stay as written; tests/test_api_docs.py fails when an
operation in the schema has no entry here. Error bodies are DRF's: {"detail": "..."} for most errors and
{"<field>": ["..."]} for a body or query parameter that does not validate.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView

ERROR = {"$ref": "#/components/schemas/Error"}
FIELD_ERRORS = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}

ERRORS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "400": ("Invalid input: which field, and why.", FIELD_ERRORS, {"k": ["k must be from 1 to 100, not 500"]}),
    "401": (
        "No credentials were given (token clients).",
        ERROR,
        {"detail": "Authentication credentials were not provided."},
    ),
    "403": ("Not signed in, or not allowed.", ERROR, {"detail": "Authentication credentials were not provided."}),
    "404": ("No such object.", ERROR, {"detail": "No Article matches the given query."}),
    "409": (
        "Not possible in the object's current state.",
        ERROR,
        {"detail": "article 7 has no embedding (pending: it has not been processed yet)"},
    ),
    "429": (
        "Too many requests: retry after the Retry-After header's seconds.",
        ERROR,
        {"detail": "Request was throttled. Expected available in 12 seconds."},
    ),
    "503": (
        "Postgres or Redis unreachable: retry after the Retry-After header's seconds.",
        ERROR,
        {"detail": "the task queue is unavailable (ConnectionError); try again shortly"},
    ),
}

ARTICLE = {
    "id": 42,
    "feed": 3,
    "guid": "https://news.example.org/2026/11/harbour-city-win",
    "url": "https://news.example.org/2026/11/harbour-city-win",
    "title": "Harbour City stun league leaders with stoppage-time winner",
    "summary": "Harbour City ended Northbridge United's unbeaten run with a 2-1 win.",
    "content": "<p>Harbour City ended Northbridge United's unbeaten run…</p>",
    "author": "Callum Reid",
    "published_at": "2026-11-01T17:05:00Z",
    "fetched_at": "2026-11-01T17:10:02Z",
    "status": "processed",
    "processing_error": "",
    "processed_at": "2026-11-01T17:10:05Z",
    "topic": "sport",
    "topic_confidence": 0.61,
    "classified_by": "zero_shot",
    "story_id": 42,
}
FEED = {
    "id": 3,
    "url": "https://news.example.org/sport.atom",
    "title": "Sports Desk",
    "site_url": "https://news.example.org/",
    "is_active": True,
    "disabled_reason": "",
    "fetch_interval": 600,
    "next_fetch_at": "2026-11-01T17:20:02Z",
    "last_fetched_at": "2026-11-01T17:10:02Z",
    "last_success_at": "2026-11-01T17:10:02Z",
    "last_error": "",
    "error_count": 0,
    "created_at": "2026-10-30T09:00:00Z",
}
TOPIC = {
    "id": 5,
    "name": "sport",
    "description": "Sport: matches, athletes, clubs and competitions.",
    "created_at": "2026-10-30T09:00:00Z",
}
RANKED = {
    "id": 57,
    "title": "Westvale sack manager after six straight defeats",
    "url": "https://news.example.org/2026/11/westvale-manager",
    "feed": 3,
    "feed_title": "Sports Desk",
    "published_at": "2026-10-31T08:00:00Z",
    "topic": "sport",
    "story_id": 57,
    "score": 0.6312,
}
QUEUED = {
    "task_id": "0e777df6-1081-4af2-8a13-aa035c5e5c2e",
    "status": "queued",
    "status_url": "https://newsrec.example.org/api/tasks/0e777df6-1081-4af2-8a13-aa035c5e5c2e/",
}
TASK = {
    "task_id": "0e777df6-1081-4af2-8a13-aa035c5e5c2e",
    "status": "succeeded",
    "state": "succeeded",
    "actor_name": "scrape_feed",
    "queue_name": "scraping",
    "args": [3],
    "kwargs": {},
    "attempt": 1,
    "origin": "api",
    "enqueued_at": "2026-11-01T17:10:01Z",
    "started_at": "2026-11-01T17:10:01Z",
    "finished_at": "2026-11-01T17:10:02Z",
    "duration_seconds": 0.41,
    "worker": "web-1:812",
    "result": {
        "status": "ok",
        "entries": 9,
        "new_article_ids": [41, 42],
        "follow_up_task_ids": ["a901752f-b777-451e-8f5a-fcf01d11b992"],
    },
    "error_type": "",
    "error_message": "",
    "retry_of": "",
}


CATEGORY = {"id": 2, "name": "World", "created_at": "2026-11-01T09:00:00Z"}
OPML_IMPORT = {
    "created": [{"id": 5, "url": "https://news.example.org/world.xml", "title": "World", "category": "World"}],
    "already_present": ["https://news.example.org/rss.xml"],
    "categories_created": ["World"],
}


def page(item: dict[str, Any]) -> dict[str, Any]:
    return {"count": 1, "next": None, "previous": None, "results": [item]}


WRITE = ["400", "403", "429"]
# (method, path) -> (description, error codes, example of the success answer)
OPERATIONS: dict[tuple[str, str], tuple[str, list[str], Any]] = {
    ("get", "/api/articles/"): (
        "Articles, newest first, 50 a page. Filter by feed, status, processed, topic (name) and since (ISO time); collapse_stories=true keeps one article per story.",
        ["400", "403"],
        page(ARTICLE),
    ),
    ("get", "/api/articles/{id}/"): (
        "One article with its stored (sanitised) text, topic and story.",
        ["403", "404"],
        ARTICLE,
    ),
    ("patch", "/api/articles/{id}/"): (
        "Label the article with a topic, by name or id: a person's label, which also queues a retraining of the topic model.",
        ["400", "403", "404", "429"],
        ARTICLE | {"classified_by": "human", "topic_confidence": 1.0},
    ),
    ("post", "/api/articles/{article_id}/interactions/"): (
        "Record that the signed-in user read, liked or dismissed the article: 201 the first time, 200 when it already was. A like removes an earlier dismissal and the other way round.",
        ["400", "403", "404", "429"],
        {"article": 42, "kind": "like", "created_at": "2026-11-01T18:00:00Z"},
    ),
    ("get", "/api/articles/{id}/similar/"): (
        "The k articles nearest in meaning to this one, leaving out its own story and near-copies; 409 until the article has been processed.",
        ["400", "403", "404", "409"],
        {"article": 42, "k": 10, "count": 1, "results": [RANKED]},
    ),
    ("get", "/api/search/"): (
        "Semantic search: the k processed articles nearest in meaning to q (not a keyword match).",
        ["400", "403", "429"],
        {"q": "football transfer news", "k": 10, "count": 1, "results": [RANKED]},
    ),
    ("get", "/api/recommendations/"): (
        "The signed-in user's personal list from their reads, likes and dismissals; fresh articles across topics while they have none (strategy cold_start).",
        ["400", "403"],
        {
            "strategy": "personal",
            "count": 1,
            "results": [
                {
                    "id": 57,
                    "feed": 3,
                    "url": RANKED["url"],
                    "title": RANKED["title"],
                    "summary": "Westvale have sacked their manager…",
                    "published_at": "2026-10-31T08:00:00Z",
                    "topic": "sport",
                    "story_id": 57,
                    "score": 0.7104,
                    "reason": "interest",
                }
            ],
        },
    ),
    ("get", "/api/feeds/"): (
        "Feeds with their polling state (next poll, last success, consecutive errors, why disabled).",
        ["400", "403"],
        page(FEED),
    ),
    ("post", "/api/feeds/"): (
        "Add a feed by its http(s) URL; it is polled at once by the next scrape-due-feeds run.",
        WRITE,
        FEED,
    ),
    ("get", "/api/feeds/{id}/"): ("One feed and its polling state.", ["403", "404"], FEED),
    ("post", "/api/feeds/{id}/scrape/"): (
        "Queue a scrape of this feed now; follow the task at status_url (also in the Location header).",
        ["403", "404", "429", "503"],
        QUEUED,
    ),
    ("patch", "/api/feeds/{id}/"): (
        "Change a feed's settings: title, is_active, category, full_text (auto, always, never), user_agent.",
        [*WRITE, "404"],
        FEED,
    ),
    ("post", "/api/feeds/import-opml/"): (
        "Import an OPML file (the raw XML as the body, or the multipart field 'file'): all its feeds or none; "
        "outline folders become categories; feeds already present are listed, not duplicated.",
        WRITE,
        OPML_IMPORT,
    ),
    ("get", "/api/feeds/export-opml/"): (
        "Every feed as an OPML file (text/x-opml), grouped by category.",
        ["403"],
        '<?xml version="1.0" encoding="utf-8"?><opml version="2.0"><head><title>newsrec feeds</title></head>'
        '<body><outline text="World"><outline type="rss" text="World" xmlUrl="https://news.example.org/world.xml"/>'
        "</outline></body></opml>",
    ),
    ("post", "/api/articles/{id}/scrape/"): (
        "Queue a fetch of this article's page (whatever its feed's full_text says); it is processed again after.",
        ["400", "403", "404", "429", "503"],
        QUEUED,
    ),
    ("post", "/api/articles/{id}/process/"): (
        "Queue embedding and classifying this article again from the text it has now (a person's label is kept).",
        ["403", "404", "429", "503"],
        QUEUED,
    ),
    ("get", "/api/categories/"): ("Feed categories (OPML folders).", ["403"], page(CATEGORY)),
    ("post", "/api/categories/"): ("Add a feed category.", WRITE, CATEGORY),
    ("get", "/api/categories/{id}/"): ("One feed category.", ["403", "404"], CATEGORY),
    ("put", "/api/categories/{id}/"): ("Rename a feed category.", [*WRITE, "404"], CATEGORY),
    ("patch", "/api/categories/{id}/"): ("Rename a feed category.", [*WRITE, "404"], CATEGORY),
    ("delete", "/api/categories/{id}/"): ("Delete a feed category; its feeds keep no category.", ["403", "404"], None),
    ("post", "/api/process-articles/"): (
        "Queue processing (embedding, topic, story) of every pending article; follow the task at status_url.",
        ["403", "429", "503"],
        QUEUED,
    ),
    ("get", "/api/topics/"): ("The topics articles are classified into.", ["403"], page(TOPIC)),
    ("post", "/api/topics/"): (
        "Add a topic; its description is what zero-shot classification compares articles with.",
        WRITE,
        TOPIC,
    ),
    ("get", "/api/topics/{id}/"): ("One topic.", ["403", "404"], TOPIC),
    ("put", "/api/topics/{id}/"): ("Replace a topic's name and description.", [*WRITE, "404"], TOPIC),
    ("patch", "/api/topics/{id}/"): ("Change a topic's name or description.", [*WRITE, "404"], TOPIC),
    ("delete", "/api/topics/{id}/"): (
        "Delete a topic; its articles keep no topic until processed or labelled again.",
        ["403", "404", "429"],
        None,
    ),
    ("get", "/api/tasks/"): (
        "Task records, newest first: filter by status, actor, queue, origin and time; search inside arguments.",
        ["400", "403"],
        page(TASK),
    ),
    ("get", "/api/tasks/{task_id}/"): (
        "One task by id: status, timings, worker, result or error.",
        ["403", "404"],
        TASK,
    ),
    ("post", "/api/tasks/{task_id}/retry/"): (
        "Send a finished task again with the same arguments (operators only); 409 while it is still queued or running.",
        ["403", "404", "409", "429", "503"],
        QUEUED,
    ),
}


def describe_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add OPERATIONS' descriptions, errors and examples to the schema."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = {
        "type": "object",
        "properties": {"detail": {"type": "string"}},
        "required": ["detail"],
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            entry = OPERATIONS.get((method, path))
            if entry is None:
                continue
            description, errors, example = entry
            operation["description"] = description
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                content = response.get("content", {}).get("application/json")
                if status.startswith("2") and content is not None and example is not None:
                    content["examples"] = {"example": {"value": example}}
            for status in errors:
                meaning, schema, sample = ERRORS[status]
                if status == "400" and "content" in responses.get(status, {}):
                    sample = {"detail": "k must be from 1 to 100, not 500"}  # a view that answers {"detail"}
                response = responses.setdefault(status, {"description": meaning})
                response["description"] = response.get("description") or meaning
                response.setdefault("content", {"application/json": {"schema": schema}})
                response["content"].setdefault("application/json", {"schema": schema})["examples"] = {
                    "example": {"value": sample}
                }
    return result


class OfflineRedocView(SpectacularRedocView):
    """ReDoc from the sidecar's files, with nothing fetched from another host: the template drops the
    Google Fonts links, and this policy stops the browser loading Redocly's logo from its CDN (ReDoc has
    no option to leave it out; the image hides itself when it cannot load)."""

    template_name = "api_docs/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = "img-src 'self' data:; font-src 'self' data:"
        return response
