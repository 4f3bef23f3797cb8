"""Settings of the reference worker in `make bench BENCH=scraping`: the project's, with a poll's bookkeeping
(a 304's or failed poll's feed state, the poll log) committed synchronously, as scraping did before
pipeline/feeds/async_commit.py (so the bench can show the difference in one run). Bench-only: nothing
else imports this module.

An earlier reference here was the TLS context built for every fetch; that fix is measured in BENCHMARKS.md's
history (run 2026-12-03 07:17 UTC: first pass 3.73×, 304 pass 6.17× as fast)."""

from __future__ import annotations

from django.db import transaction

from newsrec.settings import *  # noqa: F403
from pipeline.feeds import fetch_log, scraping

# Both modules imported the name; a plain atomic block commits and waits for the flush.
scraping.async_commit = transaction.atomic  # type: ignore[assignment]
fetch_log.async_commit = transaction.atomic  # type: ignore[assignment]
