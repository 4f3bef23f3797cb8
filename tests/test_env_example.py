"""`.env.example` lists every setting newsrec/settings.py reads from the environment, each with a meaning."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = re.compile(r'env_(?:str|bool|int|list)\(\s*"([A-Za-z0-9_]+)"|os\.environ\.get\(\s*"([A-Za-z0-9_]+)"')
LISTED = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def settings_read() -> set[str]:
    source = (ROOT / "newsrec" / "settings.py").read_text()
    return {a or b for a, b in READ.findall(source)}


def test_every_setting_is_in_env_example_with_a_meaning() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(LISTED.findall(example))
    read = settings_read()
    assert len(read) > 50  # the pattern still finds the settings
    missing = sorted(read - listed)
    assert not missing, f"add to .env.example (with a one-line meaning above each): {missing}"
    lines = example.splitlines()
    for i, line in enumerate(lines):
        if LISTED.match(line):
            assert i > 0 and lines[i - 1].startswith("# ") and not LISTED.match(lines[i - 1]), f"no meaning: {line}"
