"""The demo feeds shipped with the project, served by this web server so scraping needs no internet."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest

DEMO_DIR = Path(__file__).resolve().parent / "demo"
FEEDS_DIR = DEMO_DIR / "feeds"
CONTENT_TYPES = {".xml": "application/rss+xml", ".atom": "application/atom+xml"}


def demo_topics() -> list[dict[str, str]]:
    return json.loads((DEMO_DIR / "topics.json").read_text())


def demo_feeds() -> list[dict[str, str]]:
    return json.loads((DEMO_DIR / "feeds.json").read_text())


def demo_feed_url(filename: str) -> str:
    return f"{settings.DEMO_FEEDS_BASE_URL.rstrip('/')}/{filename}"


def serve_demo_feed(request: HttpRequest, filename: str) -> FileResponse:
    """Serve one shipped feed file; names are looked up in the shipped list, never joined as paths."""
    names = {path.name: path for path in FEEDS_DIR.iterdir() if path.suffix in CONTENT_TYPES}
    path = names.get(filename)
    if path is None:
        raise Http404("no such demo feed")
    return FileResponse(path.open("rb"), content_type=CONTENT_TYPES[path.suffix] + "; charset=utf-8")
