"""How the task admin shows a record's values: status badges and JSON, always escaped."""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import format_html

from pipeline.taskqueue.names import Status

STATUS_COLOURS = {
    Status.SUCCEEDED: "#2e7d32",
    Status.FAILED: "#c62828",
    Status.DEAD_LETTERED: "#6a1b9a",
    Status.SKIPPED: "#795548",
    Status.RUNNING: "#1565c0",
    Status.RETRYING: "#ef6c00",
}


def status_badge(status: str) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px;white-space:nowrap">{}</span>',
        STATUS_COLOURS.get(status, "#607d8b"),
        status,
    )


def pretty_json(value: Any) -> str:
    return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', json.dumps(value, indent=2))
