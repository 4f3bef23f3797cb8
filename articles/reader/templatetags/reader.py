"""Template filters of the reader: a stored HTML summary as one plain line, and an article's age in one unit."""

from __future__ import annotations

import re
from datetime import datetime

from django import template
from django.utils.timesince import timesince

from pipeline.feeds.sanitising import plain_text

register = template.Library()

# Block ends become spaces first, or "…frontier.</p><p>The jury…" would read "frontier.The jury".
_BLOCK_END = re.compile(r"(</(?:p|li|h[1-6]|div|blockquote)>|<br\s*/?>)", re.IGNORECASE)


@register.filter
def plain(value: str, limit: int = 200) -> str:
    """Stored (sanitised) HTML as text: no tags, entities decoded, cut at `limit` characters."""
    return plain_text(_BLOCK_END.sub(r"\1 ", value or ""), int(limit))


@register.filter
def age(value: datetime | None) -> str:
    """ "3 days ago" rather than Django's "3 days, 7 hours": a list is scanned, not read."""
    if value is None:
        return ""
    return f"{timesince(value, depth=1)} ago"
