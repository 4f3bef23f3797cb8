"""The API holds against anonymous writes, abuse, hostile input and hostile feed text.

The walks below go over every operation of the project's own OpenAPI schema, so endpoints added
later are checked too: writes need a user, lists are paginated, required fields missing give a 400
naming them, and no hostile query string or path value causes a 500.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from articles.models import Article, Category, Feed, Interaction, Topic
from tests.conftest import rss
from tests.support.cache import clear_cache_entries

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
UNSAFE = {"post", "put", "patch", "delete"}


def api_schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(methods: set[str] | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in api_schema()["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"} and (methods is None or method in methods):
                yield path, method, operation


@pytest.fixture
def world(transactional_db, broker):  # type: ignore[no-untyped-def]
    feed = Feed.objects.create(url="https://example.org/rss", title="feed")
    topic = Topic.objects.create(name="politics", description="governments")
    article = Article.objects.create(feed=feed, guid="g1", title="t", topic=topic)
    category = Category.objects.create(name="world")
    return {
        "categories": category.pk,
        "feeds": feed.pk,
        "articles": article.pk,
        "topics": topic.pk,
        "tasks": "00000000-0000-0000-0000-000000000001",
    }


def fill(path: str, ids: dict[str, Any]) -> str:
    """The path with its {parameters} replaced by the id of an existing row of that collection."""
    collection = path.split("/")[2]
    return re.sub(r"\{[^}]+\}", str(ids.get(collection, 1)), path)


@pytest.fixture
def admin_api(transactional_db) -> APIClient:  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_superuser("boss", password="boss-password-1")
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- Authentication ---


def test_every_write_needs_a_user(api, world):
    writes = list(operations(UNSAFE))
    assert len(writes) >= 5  # the walk found the API
    before = (Feed.objects.count(), Topic.objects.count(), Article.objects.count(), Interaction.objects.count())
    for path, method, _ in writes:
        response = getattr(api, method)(fill(path, world), {}, format="json")
        assert response.status_code in (401, 403), (method, path, response.status_code)
    after = (Feed.objects.count(), Topic.objects.count(), Article.objects.count(), Interaction.objects.count())
    assert after == before


def test_reads_need_a_user_when_public_reads_are_off():
    """API_PUBLIC_READS=0 is read at start-up (DRF binds permission classes then): a fresh process."""
    db = connection.settings_dict
    reads = sorted({fill(path, {}) for path, _, _ in operations({"get"}) if "{" not in path})
    code = (
        "import django, json\ndjango.setup()\nfrom django.test import Client\n"
        f"print(json.dumps({{p: Client(SERVER_NAME='localhost').get(p).status_code for p in {reads!r}}}))\n"
    )
    env = {
        **os.environ,
        "API_PUBLIC_READS": "0",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    open_reads = {path: status for path, status in statuses.items() if status not in (401, 403)}
    assert open_reads == {}


# --- Pagination ---


def test_no_endpoint_returns_an_unbounded_list():
    for path, method, operation in operations({"get"}):
        for status, response in operation.get("responses", {}).items():
            for media in response.get("content", {}).values():
                assert media.get("schema", {}).get("type") != "array", f"{method} {path} {status} is an unpaged list"


def test_collections_are_paginated(api, world):
    Topic.objects.bulk_create([Topic(name=f"topic {i}") for i in range(60)])
    collections = [path for path, _, op in operations({"get"}) if op["operationId"].endswith("_list")]
    assert "/api/topics/" in collections and "/api/articles/" in collections
    for path in collections:
        body = api.get(path).json()
        assert {"count", "next", "previous", "results"} <= set(body), path
    page = api.get("/api/topics/").json()
    assert page["count"] == 61 and len(page["results"]) == 50 and page["next"]
    beyond = api.get("/api/topics/?page=99")
    assert beyond.status_code == 404 and beyond.json()["detail"]


# --- Validation ---


def _required_fields(operation: dict[str, Any], components: dict[str, Any]) -> list[str]:
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return list(schema.get("required", []))


def test_missing_or_mistyped_fields_are_a_400_naming_them(admin_api, world):
    components = api_schema()["components"]["schemas"]
    checked = 0
    for path, method, operation in operations({"post", "put"}):
        required = _required_fields(operation, components)
        if not required:
            continue
        url = fill(path, world)
        missing = getattr(admin_api, method)(url, {}, format="json")
        assert missing.status_code == 400, (method, path, missing.status_code)
        assert set(required) <= set(missing.json()), (method, path, missing.json())
        mistyped = getattr(admin_api, method)(
            url, {field: {"not": ["a", "value"]} for field in required}, format="json"
        )
        assert mistyped.status_code == 400 and set(mistyped.json()) & set(required), (method, path, mistyped.json())
        checked += 1
    assert checked >= 3


def test_a_body_that_is_not_json_is_a_400(admin_api, world):
    response = admin_api.post("/api/feeds/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


HOSTILE = [
    "\x00",
    "-1",
    "0",
    "99999999999999999999",
    "1e309",
    "NaN",
    "<script>alert(1)</script>",
    "%",
    "x" * 5000,
    "9999-12-31T23:59:59+23:59",
    "0001-01-01T00:00:00+01:00",
    "[]",
    "true",
    "\u202e",
]
EXTRA_PARAMETERS = ["q", "k", "page", "since", "feed", "topic", "status", "processed", "search", "ordering"]


def test_hostile_query_strings_and_path_values_never_cause_a_500(admin_api, world):
    requests = 0
    for path, _, operation in operations({"get"}):
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"} | set(EXTRA_PARAMETERS)
        url = fill(path, world)
        for name in sorted(names):
            for value in HOSTILE:
                response = admin_api.get(url, {name: value})
                assert response.status_code < 500, (url, name, value[:20], response.status_code)
                requests += 1
        if "{" in path:
            for value in ["99999999999999999999", "-1", "abc", "%00", "1.5"]:
                hostile_path = re.sub(r"\{[^}]+\}", value, path)
                response = admin_api.get(hostile_path)
                assert response.status_code < 500, (hostile_path, response.status_code)
    assert requests > 500


# --- Throttling ---


@pytest.fixture
def low_rates() -> Iterator[None]:
    with override_settings(API_THROTTLE_RATES={"writes": "3/minute", "search": "2/minute"}):
        clear_cache_entries()
        yield
    clear_cache_entries()


def test_writes_are_throttled_per_user(operator_api, admin_api, low_rates, world):
    for i in range(3):
        assert operator_api.post("/api/topics/", {"name": f"t{i}"}, format="json").status_code == 201
    throttled = operator_api.post("/api/topics/", {"name": "t3"}, format="json")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0 and "throttled" in throttled.json()["detail"].lower()
    assert admin_api.post("/api/topics/", {"name": "other user"}, format="json").status_code == 201
    # Reads are not throttled.
    assert all(operator_api.get("/api/topics/").status_code == 200 for _ in range(10))


def test_searches_are_throttled_and_plain_reads_are_not(api, low_rates, world):
    statuses = [api.get("/api/search/", {"q": "elections"}).status_code for _ in range(3)]
    assert statuses[:2] != [429, 429] and statuses[2] == 429
    assert api.get("/api/articles/").status_code == 200


def test_throttling_lets_writes_through_when_its_cache_is_unreachable(operator_api, low_rates, world):
    dead = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with override_settings(CACHES=dead):
        assert operator_api.post("/api/topics/", {"name": "still works"}, format="json").status_code == 201


def test_throttle_counters_are_stored_as_json_not_pickle(operator_api, low_rates, world):
    operator_api.post("/api/topics/", {"name": "counted"}, format="json")
    client = cache._cache.get_client()  # the Redis client behind Django's cache
    keys = [key for key in client.scan_iter("*throttle_writes*")]
    assert keys
    assert isinstance(json.loads(client.get(keys[0])), list)


# --- Feed text in HTML views ---

# Escaped three times in the XML: the parser's two unescape-and-strip passes leave `<script>` as the
# title's text, which is exactly what every HTML view must then escape.
HOSTILE_TITLE = "&amp;amp;lt;script&amp;amp;gt;alert(1)&amp;amp;lt;/script&amp;amp;gt; Budget"


def test_feed_text_is_escaped_in_the_admin_and_the_browsable_api(feed_server, world):
    from pipeline.feeds.scraping import scrape_feed

    url = feed_server.serve("/evil.xml", rss([("e-1", HOSTILE_TITLE, "<b>bold</b> text")], title=HOSTILE_TITLE))
    feed = Feed.objects.create(url=url)
    assert scrape_feed(feed.pk).status == "ok"
    article = Article.objects.get(feed=feed)
    feed.refresh_from_db()
    assert article.title == feed.title == "<script>alert(1)</script> Budget"  # text, escaped on the way out

    boss = get_user_model().objects.create_superuser("admin", password="admin-password-1")
    browser = APIClient()
    browser.force_login(boss)
    pages = [
        "/admin/articles/article/",
        f"/admin/articles/article/{article.pk}/change/",
        "/admin/articles/feed/",
        f"/admin/articles/feed/{feed.pk}/change/",
        "/api/articles/",
        f"/api/articles/{article.pk}/",
        "/api/feeds/",
    ]
    for page in pages:
        response = browser.get(page, HTTP_ACCEPT="text/html")
        html = response.content.decode()
        assert response.status_code == 200 and "text/html" in response["Content-Type"], page
        assert "<script>alert" not in html, page
        assert "&lt;script&gt;alert" in html, page
