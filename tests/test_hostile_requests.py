"""Request input the schema fuzzer does not generate: Unicode digits where ids and numbers go, and
JSON bodies nested deep or grown large. Walked over every operation of the OpenAPI schema, so an
endpoint added later is covered too; none may answer 5xx, and the refusals are 400s or 404s."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from articles.api.ids import parse_id
from articles.models import Article, Category, Feed, Interaction, Topic
from newsrec.api_parsers import json_depth
from tests.test_api_hardening import api_schema, operations

UNICODE_DIGITS = ["¹", "٣", "１", "𝟗", "1¹", "⁴²"]  # superscript, Arabic-Indic, fullwidth, mathematical
WRITES = {"post", "put", "patch", "delete"}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("12", 12), (" 7 ", 7), ("0", None), ("-1", None), ("1.0", None), ("9" * 19, None), (12, None)]
    + [(digits, None) for digits in UNICODE_DIGITS],
)
def test_parse_id_takes_ascii_digits_only(value, parsed):
    assert parse_id(value) == parsed


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "\\"[[["]', 1),  # brackets inside strings, escaped quotes
        (b'"\\\\" [[]]', 2),  # an escaped backslash ends before the quote
        (b"[" * 2000, 2000),
        (b"42", 0),
    ],
)
def test_json_depth(text, depth):
    assert json_depth(text) == depth


@pytest.fixture
def world(db, broker):  # type: ignore[no-untyped-def]
    feed = Feed.objects.create(url="https://example.org/rss", title="feed")
    topic = Topic.objects.create(name="politics", description="governments")
    article = Article.objects.create(feed=feed, guid="g1", title="t", topic=topic)
    category = Category.objects.create(name="world")
    return {"feed": feed, "topic": topic, "article": article, "category": category}


@pytest.fixture
def admin_api(db) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_superuser("boss", password="boss-password-1"))
    return client


def test_unicode_digits_in_any_path_parameter_are_not_found(admin_api, world):
    checked = 0
    for path, method, _ in operations():
        if "{" not in path:
            continue
        for digits in UNICODE_DIGITS:
            url = re.sub(r"\{[^}]+\}", digits, path)
            response = getattr(admin_api, method)(url, {}, format="json")
            assert response.status_code == 404, (method, url, response.status_code)
            checked += 1
    assert checked >= 8 * len(UNICODE_DIGITS)
    assert not Interaction.objects.exists()


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_for_k_are_a_400(admin_api, world, digits):
    article = world["article"].pk
    for url in ("/api/search/?q=budget&k=", f"/api/articles/{article}/similar/?k=", "/api/recommendations/?k="):
        response = admin_api.get(url + digits)
        assert response.status_code == 400 and "k" in json.dumps(response.json()), (url, response.status_code)


@pytest.mark.parametrize("topic", [*UNICODE_DIGITS, "9" * 30, 2**70, -1])
def test_a_topic_label_in_unicode_digits_or_out_of_range_is_a_400(admin_api, world, topic):
    response = admin_api.patch(f"/api/articles/{world['article'].pk}/", {"topic": topic}, format="json")
    assert response.status_code == 400 and "topic" in response.json()
    world["article"].refresh_from_db()
    assert world["article"].topic == world["topic"]


def test_a_label_by_ascii_id_still_works(admin_api, world):
    other = Topic.objects.create(name="sport")
    response = admin_api.patch(f"/api/articles/{world['article'].pk}/", {"topic": str(other.pk)}, format="json")
    assert response.status_code == 200 and response.json()["topic"] == "sport"


def _write_urls(world) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    ids = {
        "feeds": world["feed"].pk,
        "articles": world["article"].pk,
        "topics": world["topic"].pk,
        "categories": world["category"].pk,
    }
    urls = []
    for path, method, operation in operations(WRITES):
        if method == "delete" or "application/json" not in operation.get("requestBody", {}).get("content", {}):
            continue  # no body, or not JSON (OPML import takes XML: tests/test_opml.py tries its limits)
        urls.append((method, re.sub(r"\{[^}]+\}", str(ids.get(path.split("/")[2], 1)), path)))
    return urls


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * 2048, "JSON nested deeper than 32 levels"),
        ('{"topic": ' + "[" * 1000 + "]" * 1000 + "}", "JSON nested deeper than 32 levels"),
        ('{"name": "' + "x" * (1024 * 1024) + '"}', "JSON body larger than 1048576 bytes"),
    ],
)
def test_deep_or_large_json_bodies_are_a_400_at_every_endpoint_that_takes_one(admin_api, world, body, reason):
    urls = _write_urls(world)
    assert len(urls) >= 5  # the walk found the API
    for method, url in urls:
        response = getattr(admin_api, method)(url, body, content_type="application/json")
        assert response.status_code == 400, (method, url, response.status_code)
        assert response.json() == {"detail": reason}


def test_json_within_the_limits_is_read(admin_api, world):
    nested = {"a": 1}
    for _ in range(29):
        nested = {"a": nested}  # 30 levels in all
    response = admin_api.post("/api/topics/", {"name": "deep but fine", "description": json.dumps(nested)})
    assert response.status_code == 201
    assert (
        admin_api.post("/api/topics/", json.dumps({"name": "also fine"}), content_type="application/json").status_code
        == 201
    )


def test_json_constants_that_are_not_json_are_a_400(admin_api, world):
    response = admin_api.post("/api/topics/", '{"name": NaN}', content_type="application/json")
    assert response.status_code == 400 and "NaN" in response.json()["detail"]


def test_the_schema_still_describes_ids_as_digits():
    parameters = [
        parameter
        for item in api_schema()["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path" and parameter["name"] in ("id", "article_id")
    ]
    by_id = [p for p in parameters if p["name"] == "id"]
    assert by_id and all(p["schema"].get("pattern") == "^[0-9]{1,18}$" for p in by_id)
