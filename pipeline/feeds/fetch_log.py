"""The recent polls of each feed (FeedFetch rows), kept for the admin's feed page."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from articles.models import FeedFetch
from pipeline.feeds.json_rows import column, record_columns, rows_json
from pipeline.feeds.scraping import ScrapeOutcome

# Polls kept per feed: a day of polls at the default 10-minute sweep would be 144; a window of the
# latest is what an operator looks at when a feed misbehaves.
KEEP_PER_FEED = 20
# Outcomes of feeds a batch did not fetch: gone or disabled, or sent on to another batch.
_NOT_POLLED = ("skipped", "deferred")

# The polls of these feeds beyond each one's newest KEEP_PER_FEED, in the admin's order (FeedFetch.Meta).
_PRUNE = """
DELETE FROM {table} WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY feed_id ORDER BY started_at DESC, id DESC) AS newest
        FROM {table} WHERE feed_id = ANY(%(feeds)s)
    ) ranked WHERE newest > %(keep)s
)
"""

# One INSERT for a batch's polls, its rows one JSON parameter (pipeline/feeds/json_rows.py).
_COLUMNS = ["feed_id", "started_at", "status", "bytes", "duration_ms", "entries", "new_articles", "error"]
_INSERT = "INSERT INTO {table} ({names}) SELECT {values} FROM jsonb_to_recordset(%s::jsonb) AS s({columns})"


def record_fetches(outcomes: Sequence[ScrapeOutcome]) -> None:
    """Store polls of existing feeds and drop those feeds' polls beyond the newest KEEP_PER_FEED.

    Two statements for any number of polls (a batch of feeds is one message: see scraping.scrape_feeds).
    """
    polls = [(outcome, outcome.started_at) for outcome in outcomes if outcome.status not in _NOT_POLLED]
    if not polls:
        return  # nothing was fetched (the feeds are gone or disabled)
    rows = rows_json(
        {
            "feed_id": outcome.feed_id,
            "started_at": started_at,
            "status": outcome.status,
            "bytes": outcome.bytes,
            "duration_ms": outcome.duration_ms,
            "entries": outcome.entries,
            "new_articles": len(outcome.new_article_ids),
            "error": outcome.error[:2000],
        }
        for outcome, started_at in polls
        if started_at is not None  # every poll has one; a skipped feed was not polled
    )
    table = connection.ops.quote_name(FeedFetch._meta.db_table)
    insert = _INSERT.format(
        table=table,
        names=", ".join(_COLUMNS),
        values=", ".join(column(FeedFetch, name) for name in _COLUMNS),
        columns=record_columns(FeedFetch, _COLUMNS),
    )
    with connection.cursor() as cursor:
        cursor.execute(insert, [rows])
        cursor.execute(
            _PRUNE.format(table=table),
            {"feeds": sorted({outcome.feed_id for outcome, _ in polls}), "keep": KEEP_PER_FEED},
        )
