"""Settings of the reference worker in `make bench BENCH=scraping`: the project's, with a TLS context built
for every fetch, as fetching did before address_guard.shared_tls_context (so the bench can show the
difference in one run). Bench-only: nothing else imports this module."""

from __future__ import annotations

import httpx

from newsrec.settings import *  # noqa: F403
from pipeline.feeds import address_guard

address_guard.shared_tls_context = httpx.create_ssl_context  # type: ignore[assignment]
