"""Progress bars for management commands that can run longer than a few seconds (tqdm).

Drawn on stderr, so what a command prints on stdout (often JSON) stays parseable, and only when its
stdout is a terminal: in cron jobs, logs and pipes the bar is silent.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm


def progress_bar(command: BaseCommand, *, total: int | None, unit: str, desc: str) -> tqdm:
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=not command.stdout.isatty(), leave=False)
