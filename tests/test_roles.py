"""Roles: every write endpoint for every role, allowed and refused; the groups the migration made; the
admin checking the same permissions as the API.

The write list is checked against the OpenAPI schema, so a write endpoint added later fails here until
it is given a row (and a permission: RolePermission refuses writes a view does not list).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import RequestFactory
from rest_framework.test import APIClient

from articles.models import Article, Category, Feed, Interaction, Topic
from articles.roles import ADMINS, OPERATORS, READERS
from tests.conftest import with_role
from tests.support.task_records import record
from tests.test_api_hardening import operations

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "signed in, no role", "reader", "operator", "admin"]
EVERYONE_SIGNED_IN_WITH_A_ROLE = {"reader", "operator", "admin"}
OPERATORS_AND_ADMINS = {"operator", "admin"}
_serial = itertools.count()


@dataclass(frozen=True)
class Write:
    method: str
    path: str  # as the schema names it
    allowed: frozenset[str]

    def call(self, client: APIClient, rows: dict[str, int]) -> int:
        n = next(_serial)
        bodies = {
            ("post", "/api/feeds/"): {"url": f"https://example.org/feed-{n}.xml"},
            ("patch", "/api/articles/{id}/"): {"topic": "sport"},
            ("post", "/api/topics/"): {"name": f"topic {n}"},
            ("put", "/api/topics/{id}/"): {"name": f"renamed {n}", "description": "d"},
            ("patch", "/api/topics/{id}/"): {"description": f"described {n}"},
            ("post", "/api/articles/{article_id}/interactions/"): {"kind": "read"},
            ("patch", "/api/feeds/{id}/"): {"full_text": "never"},
            ("post", "/api/categories/"): {"name": f"category {n}"},
            ("put", "/api/categories/{id}/"): {"name": f"recategorised {n}"},
            ("patch", "/api/categories/{id}/"): {"name": f"renamed category {n}"},
        }
        url = self.path
        for name in ("{id}", "{article_id}", "{task_id}"):
            if name in url:
                url = url.replace(name, str(self._row(name, rows)))
        if self.path == "/api/feeds/import-opml/":
            opml = f'<opml version="2.0"><body><outline type="rss" xmlUrl="https://example.org/opml-{n}.xml"/></body></opml>'
            return client.post(url, opml.encode(), content_type="text/x-opml").status_code
        response = getattr(client, self.method)(url, bodies.get((self.method, self.path), {}), format="json")
        return response.status_code

    def _row(self, name: str, rows: dict[str, int]) -> object:
        if name == "{task_id}":
            return record("failed").message_id  # a finished task: retryable
        collection = self.path.split("/")[2]
        if self.method == "delete" and collection == "categories":
            return Category.objects.create(name=f"doomed {next(_serial)}").pk
        if self.method == "delete":
            return Topic.objects.create(name=f"doomed {next(_serial)}").pk  # one to delete per call
        return rows[collection]


WRITES = [
    Write("post", "/api/feeds/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/feeds/{id}/scrape/", frozenset(OPERATORS_AND_ADMINS)),
    Write("patch", "/api/articles/{id}/", frozenset(OPERATORS_AND_ADMINS)),  # a label
    Write("post", "/api/articles/{article_id}/interactions/", frozenset(EVERYONE_SIGNED_IN_WITH_A_ROLE)),
    Write("post", "/api/topics/", frozenset(OPERATORS_AND_ADMINS)),
    Write("put", "/api/topics/{id}/", frozenset(OPERATORS_AND_ADMINS)),
    Write("patch", "/api/topics/{id}/", frozenset(OPERATORS_AND_ADMINS)),
    Write("delete", "/api/topics/{id}/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/process-articles/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/tasks/{task_id}/retry/", frozenset(OPERATORS_AND_ADMINS)),
    Write("patch", "/api/feeds/{id}/", frozenset(OPERATORS_AND_ADMINS)),  # full_text, user agent
    Write("post", "/api/feeds/import-opml/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/articles/{id}/scrape/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/articles/{id}/process/", frozenset(OPERATORS_AND_ADMINS)),
    Write("post", "/api/categories/", frozenset(OPERATORS_AND_ADMINS)),
    Write("put", "/api/categories/{id}/", frozenset(OPERATORS_AND_ADMINS)),
    Write("patch", "/api/categories/{id}/", frozenset(OPERATORS_AND_ADMINS)),
    Write("delete", "/api/categories/{id}/", frozenset(OPERATORS_AND_ADMINS)),
]


def test_every_write_endpoint_of_the_schema_has_a_row_here():
    in_schema = {(method, path) for path, method, _ in operations({"post", "put", "patch", "delete"})}
    assert in_schema == {(w.method, w.path) for w in WRITES}


@pytest.fixture
def rows(db, broker):  # type: ignore[no-untyped-def]
    feed = Feed.objects.create(url="https://example.org/rss", title="feed")
    Topic.objects.create(name="sport")
    topic = Topic.objects.create(name="politics")
    article = Article.objects.create(feed=feed, guid="g1", title="t", topic=topic, url="https://example.org/a")
    category = Category.objects.create(name="world")
    return {"feeds": feed.pk, "articles": article.pk, "topics": topic.pk, "categories": category.pk}


def client_for(role: str) -> APIClient:
    client = APIClient()
    if role == "anonymous":
        return client
    user = get_user_model().objects.create_user(f"user {next(_serial)}", password="a-password-1")
    group = {"reader": READERS, "operator": OPERATORS, "admin": ADMINS}.get(role)
    if group:
        with_role(user, group)
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w.method} {w.path}")
def test_each_write_is_allowed_to_its_roles_and_refused_to_the_others(rows, write, role):
    status = write.call(client_for(role), rows)
    if role in write.allowed:
        assert 200 <= status < 300, (role, write, status)
    else:
        # Anonymous: 403 with session authentication first (it sends no WWW-Authenticate challenge).
        assert status in ((401, 403) if role == "anonymous" else (403,)), (role, write, status)


def test_refused_writes_change_nothing(rows):
    before = (Feed.objects.count(), Topic.objects.count(), Interaction.objects.count())
    reader = client_for("reader")
    assert reader.post("/api/topics/", {"name": "mine now"}, format="json").status_code == 403
    assert reader.delete(f"/api/topics/{rows['topics']}/").status_code == 403
    assert reader.post("/api/feeds/", {"url": "https://example.org/x.xml"}, format="json").status_code == 403
    assert (Feed.objects.count(), Topic.objects.count(), Interaction.objects.count()) == before
    assert Article.objects.get(pk=rows["articles"]).classified_by == ""


def test_reads_stay_open_to_every_role(rows):
    for role in ROLES:
        client = client_for(role)
        for path in ("/api/feeds/", "/api/articles/", "/api/topics/", "/api/tasks/"):
            assert client.get(path).status_code == 200, (role, path)


def test_the_migration_made_the_groups():
    # No ensure_roles() here: in a non-transactional test the groups are those the migrations made.
    granted = {
        group.name: set(group.permissions.values_list("content_type__app_label", "codename"))
        for group in Group.objects.filter(name__in=[READERS, OPERATORS, ADMINS])
    }
    assert ("articles", "add_interaction") in granted[READERS]
    assert not {codename for _, codename in granted[READERS]} & {"add_topic", "scrape_feed", "retry_taskrecord"}
    assert {("articles", "scrape_feed"), ("articles", "change_topic"), ("pipeline", "retry_taskrecord")} <= granted[
        OPERATORS
    ]
    assert ("auth", "change_user") in granted[ADMINS] and ("auth", "change_user") not in granted[OPERATORS]


def test_the_admin_offers_scrape_now_only_with_the_permission_the_api_needs(rows):
    feed_admin = admin.site._registry[Feed]
    for role, offered in (("reader", False), ("operator", True)):
        user = get_user_model().objects.create_user(f"staff {role}", password="a-password-1", is_staff=True)
        with_role(user, READERS if role == "reader" else OPERATORS)
        request = RequestFactory().get("/admin/articles/feed/")
        request.user = get_user_model().objects.get(pk=user.pk)  # a fresh permission cache
        assert ("scrape_now" in feed_admin.get_actions(request)) is offered
