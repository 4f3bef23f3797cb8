from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipeline.feeds.opml import OpmlError, import_opml


class Command(BaseCommand):
    help = "Import the feeds of an OPML file (folders become categories): all of them or, on any error, none."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options) -> None:
        try:
            with file.open("rb") as handle:
                content = handle.read(settings.OPML_MAX_BYTES + 1)
        except OSError as error:
            raise CommandError(f"cannot read {file}: {error}") from None
        try:
            result = import_opml(content, max_bytes=settings.OPML_MAX_BYTES)
        except OpmlError as error:
            raise CommandError(f"{file}: {error}") from None
        self.stdout.write(json.dumps(result.as_dict(), indent=2))
