"""Task records: one row per message whose state only moves forward, whatever order writes land in."""

from __future__ import annotations

import itertools

import dramatiq
import pytest

from pipeline.models import TaskRecord
from pipeline.records import cap_result, write_transition


def make_message(retries: int = 0) -> dramatiq.Message:
    message = dramatiq.Message(
        queue_name="scraping", actor_name="scrape_feed", args=(7,), kwargs={}, options={"origin": "api"},
        message_id="00000000-0000-0000-0000-000000000001",
    )
    if retries:
        message.options["retries"] = retries
    return message


TRANSITIONS = [
    (0, "enqueued", {}),
    (0, "running", {"worker": "host:1"}),
    (0, "failed", {"error_type": "OSError", "error_message": "boom"}),
    (1, "retrying", {}),
    (1, "running", {"worker": "host:2"}),
    (1, "succeeded", {"result": '{"ok": true}'}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("order", list(itertools.islice(itertools.permutations(range(len(TRANSITIONS))), 0, None, 37)))
def test_final_record_is_right_whatever_the_write_order(order):
    for i in order:
        retries, status, fields = TRANSITIONS[i]
        write_transition(make_message(retries), status, **fields)
    record = TaskRecord.objects.get()
    assert (record.status, record.attempt, record.result) == ("succeeded", 2, {"ok": True})
    assert record.args == [7] and record.origin == "api"


@pytest.mark.django_db
def test_late_enqueue_write_does_not_undo_a_finish():
    write_transition(make_message(), "succeeded", result="1")
    write_transition(make_message(), "enqueued")
    write_transition(make_message(), "running")
    assert TaskRecord.objects.get().status == "succeeded"


def test_results_are_capped_and_marked():
    assert cap_result({"a": 1}) == '{"a": 1}'
    assert '"truncated": true' in cap_result("x" * 100_000)
    assert '"truncated": true' in cap_result({1, 2})  # a set is not JSON
    assert cap_result(None) is None
