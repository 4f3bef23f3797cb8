"""Many rows as one query parameter: a JSON array that Postgres reads back with jsonb_to_recordset.

The batch writes of a poll (a feed's new entries, the feeds' states, the poll log) send their rows this
way rather than as one array per column: Django's psycopg cursor binds parameters on the client, and
quoting arrays element by element runs in Python, where encoding the rows as JSON runs in C. CPU per
batch, arrays then JSON (/tmp micro-benchmarks on the bench database, DEBUG=0): 20 entries 1.41 -> 0.77
ms, 20 feeds' states 0.63 -> 0.45 ms, 20 polls logged 1.42 -> 0.53 ms (that one an ORM bulk_create).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Model


def rows_json(rows: Iterable[Mapping[str, object]]) -> str:
    """The rows as a JSON array; datetimes in ISO 8601 with their offset and every microsecond (Django's
    JSON encoder would cut them to milliseconds)."""
    return json.dumps(list(rows), default=_iso, ensure_ascii=False, separators=(",", ":"))


def record_columns(model: type[Model], names: Sequence[str]) -> str:
    """The column definition list of jsonb_to_recordset for `names`: each column's type without its
    length (varchar(500) is read as text), so that a value too long for its column is cut by `column()`'s
    cast, as the column arrays' casts did, rather than failing the whole batch."""
    return ", ".join(f"{name} {_unbounded(_db_type(model, name))}" for name in names)


def column(model: type[Model], name: str, alias: str = "s") -> str:
    """`alias.name` cast to its model field's column type (an explicit cast to varchar(n) cuts at n)."""
    return f"{alias}.{name}::{_db_type(model, name)}"


def _db_type(model: type[Model], name: str) -> str:
    db_type = model._meta.get_field(name).db_type(connection)
    assert db_type is not None, f"{model.__name__}.{name} has no column"
    return db_type


def _unbounded(db_type: str) -> str:
    return "text" if db_type.startswith("varchar") else db_type


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
