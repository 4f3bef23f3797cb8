"""The API's last line against 500s: database errors that come from the request or from an outage.

Views and serializers validate what they take and answer 400 naming the field; this handler covers
what slips past them. A DataError (Postgres refusing a value: a date or number out of its range) can
only come from the request in a read, so it is the client's 400, with Postgres's one-line reason; it is
logged, because it means a field lacks validation. An OperationalError or InterfaceError means the
database is unreachable (restarting, say): 503 with Retry-After, the same answer as a broker outage.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DataError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    view = type(context.get("view")).__name__
    if isinstance(exc, DataError):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "value out of range"
        logger.warning("%s: request value refused by the database: %s", view, reason)
        return Response({"detail": f"invalid value in the request: {reason}"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("%s: database unavailable: %s", view, exc)
        return Response(
            {"detail": "database unavailable, try again shortly"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "30"},
        )
    return None
