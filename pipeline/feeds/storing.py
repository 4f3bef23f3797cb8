"""Storing a feed's parsed entries as articles, and a batch's poll outcomes on its feeds: one statement per
batch, nothing stored twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.feeds import json_rows
from pipeline.feeds.parsing import ParsedEntry

# The entries are one JSON parameter (pipeline/feeds/json_rows.py), read as text as the columns were
# before: a value too long for its column fails here as it did (the parser bounds every field).
_INSERT_ENTRIES = """
INSERT INTO {table} (
    feed_id, guid, url, title, summary, content, author, published_at, fetched_at,
    status, processing_error, classified_by
)
SELECT %s, e.guid, e.url, e.title, e.summary, e.content, e.author, e.published_at, %s, %s, '', ''
FROM jsonb_to_recordset(%s::jsonb)
    AS e(guid text, url text, title text, summary text, content text, author text, published_at timestamptz)
ON CONFLICT (feed_id, guid) DO NOTHING
RETURNING id
"""


def upsert_entries(feed: Feed, entries: Sequence[ParsedEntry], *, now: datetime | None = None) -> list[int]:
    """Store entries not seen before in this feed; returns the ids of the new articles.

    One INSERT … ON CONFLICT DO NOTHING: a feed served twice, or a scrape message delivered twice,
    stores nothing twice, even when two scrapes of the same feed race.
    """
    if not entries:
        return []
    now = now or timezone.now()
    rows = json_rows.rows_json(
        {
            "guid": e.guid,
            "url": e.url,
            "title": e.title,
            "summary": e.summary,
            "content": e.content,
            "author": e.author,
            "published_at": e.published_at,
        }
        for e in entries
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_ENTRIES.format(table=Article._meta.db_table), [feed.pk, now, Article.Status.PENDING, rows]
        )
        return sorted(row[0] for row in cursor.fetchall())


def save_poll_states(feeds: Sequence[Feed]) -> None:
    """Write the poll state (Feed.FETCH_STATE_FIELDS) of many feeds in one UPDATE … FROM jsonb_to_recordset.

    Django's bulk_update builds a CASE per field and row: for a batch of 20 feeds it cost ~5× the CPU of
    20 single saves. Like save(update_fields=…), it leaves every other field (an operator's edits) alone.
    """
    if not feeds:
        return
    names = ["id", *Feed.FETCH_STATE_FIELDS]
    sql = "UPDATE {table} AS f SET {assignments} FROM jsonb_to_recordset(%s::jsonb) AS s({columns}) WHERE f.id = s.id"
    sql = sql.format(
        table=Feed._meta.db_table,
        assignments=", ".join(f"{name} = {json_rows.column(Feed, name)}" for name in Feed.FETCH_STATE_FIELDS),
        columns=json_rows.record_columns(Feed, names),
    )
    rows = json_rows.rows_json({name: getattr(feed, name) for name in names} for feed in feeds)
    with connection.cursor() as cursor:
        cursor.execute(sql, [rows])
