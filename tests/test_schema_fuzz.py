"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis + hypothesis),
plus the hostile classes the schema itself never generates (Unicode digits, JSON nested past the limit).

Every operation in /api/schema/ — whatever endpoints exist when this runs — gets generated valid and
invalid requests (paths, query strings, bodies), as an anonymous client and as a logged-in one.
No request may cause a 5xx, and a 400 must be a JSON object, never an HTML error page. Bounded:
a fixed number of examples per operation, derandomised so a run is repeatable.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

# Per operation and per client (anonymous, logged in): ~20 operations × 2 × this stays within a minute.
EXAMPLES = 25

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seeded(transactional_db):  # type: ignore[no-untyped-def]
    """A few rows, so that generated ids sometimes hit something; and a user with a token."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from articles.models import Article, Feed, Topic

    feed = Feed.objects.create(url="https://example.org/rss", title="<b>feed</b>")
    topic = Topic.objects.create(name="politics", description="governments and elections")
    for i in range(3):
        Article.objects.create(feed=feed, guid=f"g{i}", title=f"<script>alert({i})</script>", topic=topic)
    user = get_user_model().objects.create_superuser("fuzzer", password="fuzzer-password-1")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def bad_request_is_json(ctx, response, case) -> bool | None:  # type: ignore[no-untyped-def]
    """A 400 explains itself in JSON (an object naming the field, or `detail`)."""
    if response.status_code != 400:
        return None
    body = json.loads(response.content)
    assert isinstance(body, dict) and body, f"400 without a JSON object body: {response.content[:200]!r}"
    return True


def load_schema() -> schemathesis.BaseSchema:
    """The schema as the running app serves it (Django is set up before test modules are collected)."""
    from newsrec.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


schema = load_schema()


FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@schema.parametrize()
@FUZZ
def test_no_anonymous_request_causes_a_server_error(case, seeded, broker):  # type: ignore[no-untyped-def]
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, bad_request_is_json])


@schema.parametrize()
@FUZZ
def test_no_logged_in_request_causes_a_server_error(case, seeded, broker):  # type: ignore[no-untyped-def]
    response = case.call(headers=seeded)
    case.validate_response(response, checks=[not_a_server_error, bad_request_is_json])


# --- classes the schema does not generate (issue: hostile input, second round) ---------------------
# Digits of every script ("¹", "٣", "１"): str.isdigit() is true for them, int() refuses or misreads them.
OTHER_DIGITS = st.text(alphabet=st.characters(categories=["Nd", "No"], exclude_characters="0123456789"), min_size=1)
# JSON nested past the parser's limit (32), but not so deep that the client cannot encode it.
DEPTH = st.integers(min_value=33, max_value=600)


def nested(depth: int) -> list:
    body: list = []
    for _ in range(depth - 1):
        body = [body]
    return body


@schema.parametrize()
@schema.given(digits=OTHER_DIGITS, depth=DEPTH)
# Generated cases only: the schema's own examples (docs) give just `case`, not the extra strategies.
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate, Phase.shrink],
)
def test_unicode_digits_and_deep_json_never_cause_a_server_error(case, digits, depth, seeded, broker):  # type: ignore[no-untyped-def]
    for name in case.path_parameters or {}:
        case.path_parameters[name] = digits
    for parameter in case.operation.query:
        case.query = {**(case.query or {}), parameter.name: digits}
    if case.media_type == "application/json":
        case.body = nested(depth)
    response = case.call(headers=seeded)
    case.validate_response(response, checks=[not_a_server_error, bad_request_is_json])
    if case.path_parameters:
        assert response.status_code == 404, (case.method, case.formatted_path, response.status_code)
    elif case.media_type == "application/json" and case.method in ("POST", "PUT", "PATCH"):
        assert response.status_code == 400, (case.method, case.formatted_path, response.status_code)
        assert json.loads(response.content) == {"detail": "JSON nested deeper than 32 levels"}
