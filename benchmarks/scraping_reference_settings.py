"""Settings of the reference worker in `make bench BENCH=scraping`: the project's, with one feed per
message, as the due-feed sweep sent them before feed batches (FEED_POLL_BATCH_SIZE), so the bench can show
the difference in one run. Bench-only: nothing else imports this module."""

from __future__ import annotations

from newsrec.settings import *  # noqa: F403

FEED_POLL_BATCH_SIZE = 1
# Each of the worker's 4 threads (-t 4) fetched its own feed.
FEED_POLL_CONCURRENCY = 4
