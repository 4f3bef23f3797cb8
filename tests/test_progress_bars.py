"""Long management commands draw a tqdm bar on stderr when their output is a terminal, and none otherwise."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from articles.models import Article

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_scrape_sync_shows_a_bar_only_on_a_terminal(feed, capsys, fresh_vector_index) -> None:  # type: ignore[no-untyped-def]
    piped = io.StringIO()
    call_command("scrape", "--sync", stdout=piped)
    assert json.loads(piped.getvalue())["new_articles"] == 2  # stdout stays one JSON line per feed
    assert "scraping" not in capsys.readouterr().err

    Article.objects.all().delete()
    terminal = Terminal()
    call_command("scrape", "--sync", stdout=terminal)
    assert json.loads(terminal.getvalue())["new_articles"] == 2
    # How far the bar was redrawn before it closed depends on timing (tqdm redraws at most every 0.1 s).
    err = capsys.readouterr().err
    assert "scraping:" in err and "/1 [" in err and "scraping" not in terminal.getvalue()


def test_process_sync_counts_articles_on_a_terminal(feed, capsys, fresh_vector_index) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        Article.objects.create(feed=feed, guid=f"p{i}", title=f"Pending {i}", summary="Markets rallied on rate news.")
    terminal = Terminal()
    call_command("process", "--sync", stdout=terminal)
    assert json.loads(terminal.getvalue()) == {"processed": 3, "failed": 0}
    err = capsys.readouterr().err
    assert "processing:" in err and "/3 [" in err
