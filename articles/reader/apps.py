from __future__ import annotations

from django.apps import AppConfig


class ReaderConfig(AppConfig):
    # An app of its own only so Django finds its templates/ and static/ folders.
    name = "articles.reader"
    label = "reader"
    verbose_name = "Reader"
