"""Ids and whole numbers from request input: ASCII digits only, checked here and nowhere else.

`str.isdigit()` is true for "¹" and "٣", which `int()` then refuses (a 500) or reads as another
number; Postgres refuses integers past bigint (a 500 before api_errors.py caught it). So every id in a
URL goes through the path converter below (URLs whose id is not one do not resolve: 404), the
viewsets' lookups use ID_PATTERN, and bodies and query strings use parse_id.
"""

from __future__ import annotations

import re

__all__ = ["ID_PATTERN", "IdConverter", "parse_id"]

# Up to 18 digits always fits Postgres's bigint (9,223,372,036,854,775,807 has 19).
ID_PATTERN = "[0-9]{1,18}"
_ID = re.compile(ID_PATTERN)


def parse_id(value: object) -> int | None:
    """`value` as a positive id when it is a str of ASCII digits (spaces around allowed), else None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not _ID.fullmatch(text):
        return None
    number = int(text)
    return number if number > 0 else None


class IdConverter:
    """`<id:name>` in a URL pattern: ASCII digits only, handed to the view as an int."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int | str) -> str:
        return str(value)
