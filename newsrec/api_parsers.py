"""The API's JSON body parser, with the limits json.loads lacks: body size and nesting depth.

Python's json module recurses once per nested array or object: a 2 KB body of "[[[[…" raised
RecursionError (a 500) from any JSON endpoint, and a deep but parseable body costs every later
walk over it (validation, logging) the same recursion. No endpoint takes more than a few levels or a
few kilobytes, so a body over either limit is refused with 400 before anything reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

__all__ = ["BoundedJSONParser", "json_depth"]

# Used when the settings do not name them (API_JSON_MAX_BYTES, API_JSON_MAX_DEPTH).
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 32
# What json_depth stops at: outside a string, quotes and brackets; inside one, its end or an escape.
_OUTSIDE = re.compile(rb'["\[\]{}]')
_IN_STRING = re.compile(rb'["\\]')


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        max_bytes = int(getattr(settings, "API_JSON_MAX_BYTES", DEFAULT_MAX_BYTES))
        max_depth = int(getattr(settings, "API_JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH))
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read(max_bytes + 1) if stream is not None else b""
        if len(raw) > max_bytes:
            raise ParseError(f"JSON body larger than {max_bytes} bytes")
        # Depth is checked on the text before parsing, so the parser never recurses past it.
        if json_depth(raw) > max_depth:
            raise ParseError(f"JSON nested deeper than {max_depth} levels")
        try:
            return json.loads(raw.decode(encoding), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings not counted).

    Linear: only quotes, backslashes and brackets are visited, found by regex search rather than a
    Python loop over every byte.
    """
    depth = deepest = 0
    in_string = False
    position = 0
    length = len(raw)
    while position < length:
        match = (_IN_STRING if in_string else _OUTSIDE).search(raw, position)
        if match is None:
            break
        char = match.group()
        position = match.end()
        if in_string:
            if char == b"\\":
                position += 1  # whatever follows a backslash is escaped, a quote included
            else:
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Postgres and the serializers have no use for them either.
    raise ValueError(f"{name} is not valid JSON")
