"""A JSON serializer for Django's Redis cache: its default pickles values, and nothing here is pickled
(a value read back from a shared Redis must never be able to run code)."""

from __future__ import annotations

import json
from typing import Any


class JSONSerializer:
    def dumps(self, obj: Any) -> bytes | int:
        # Plain ints are stored as Redis integers so that cache.incr() keeps working.
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            return json.loads(data)
