"""The OpenAPI schema behind /api/docs/: every operation described, with its errors and an example."""

from __future__ import annotations

import pytest
import yaml

from newsrec.api_docs import OPERATIONS

pytestmark = pytest.mark.django_db


def test_every_operation_has_a_description_errors_and_an_example(client) -> None:  # type: ignore[no-untyped-def]
    schema = yaml.safe_load(client.get("/api/schema/").content)
    seen = set()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            seen.add((method, path))
            where = f"{method.upper()} {path}"
            assert (method, path) in OPERATIONS, f"{where} is not described in newsrec/api_docs.py"
            assert operation["description"], where
            responses = operation["responses"]
            assert any(code.startswith(("4", "5")) for code in responses), f"{where} lists no error response"
            for code, response in responses.items():
                examples = response.get("content", {}).get("application/json", {}).get("examples")
                assert code == "204" or examples, f"{where} {code} has no example"
    assert seen == set(OPERATIONS), f"described but gone from the API: {set(OPERATIONS) - seen}"


def test_error_examples_are_what_the_api_answers(client) -> None:  # type: ignore[no-untyped-def]
    schema = yaml.safe_load(client.get("/api/schema/").content)
    similar = schema["paths"]["/api/articles/{id}/similar/"]["get"]["responses"]
    answered = client.get("/api/articles/999999/similar/")
    assert answered.status_code == 404 and set(answered.json()) == set(
        similar["404"]["content"]["application/json"]["examples"]["example"]["value"]
    )
    bad_k = client.get("/api/search/?q=x&k=500")
    assert bad_k.status_code == 400 and "k must be from 1 to 100" in str(bad_k.json())
