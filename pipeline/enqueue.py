"""Sending messages after the surrounding transaction commits, with the id known up front."""

from __future__ import annotations

from typing import Any

import dramatiq
from django.db import transaction


def send_on_commit(actor: dramatiq.Actor, *args: Any, origin: str, **kwargs: Any) -> str:
    """Queue `actor(*args, **kwargs)` once the current transaction commits; returns the message id.

    Outside a transaction the message is sent at once, so a broker outage raises here (the API turns
    that into 503). `origin` says who asked (api, scheduler, pipeline, admin, command) for the records.
    """
    message = actor.message_with_options(args=args, kwargs=kwargs, origin=origin)
    transaction.on_commit(lambda: actor.broker.enqueue(message), robust=False)
    return message.message_id
