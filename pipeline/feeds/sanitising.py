"""Feed HTML and text made safe to store and show: nh3 with a strict policy, plain text without markup."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urljoin

import nh3

# Feed HTML is untrusted: links in it should not pass on ranking or the opener.
_LINK_REL = "noopener noreferrer nofollow"
_URL_SCHEMES = {"http", "https", "mailto"}
_URL_ATTRIBUTES = frozenset({"href", "src", "cite"})
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def plain_text(value: Any, limit: int) -> str:
    """Markup-free text: tags (and script/style bodies) removed, entities decoded, whitespace collapsed."""
    if not isinstance(value, str):
        return ""
    # Bound the work on absurd input; cutting inside a tag is harmless for a tag stripper.
    text = value[: limit * 20]
    # Feeds often escape titles twice ("&amp;lt;b&amp;gt;"); a second pass strips what that hid.
    for _ in range(2):
        text = html.unescape(nh3.clean(text, tags=set()))
    text = " ".join(CONTROL_CHARS.sub("", text).split())
    return truncate(text, limit)


class HtmlSanitiser:
    """nh3 with this feed's policy: safe tags only, http(s)/mailto URLs, relative URLs made absolute."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url

    def clean(self, value: Any, media_type: str | None) -> str:
        if not isinstance(value, str) or not value.strip():
            return ""
        if media_type == "text/plain":
            value = html.escape(value)  # plain text must stay text, not be read as markup
        cleaned = nh3.clean(
            value.replace("\x00", ""),
            link_rel=_LINK_REL,
            url_schemes=_URL_SCHEMES,
            attribute_filter=self._absolute_urls,
        )
        return cleaned.strip()

    @staticmethod
    def best_content(contents: list[Any]) -> Any:
        """The first HTML rendition of an entry's content, else its first one ({} when there is none)."""
        if not contents:
            return {}
        html_parts = [c for c in contents if c.get("type") in ("text/html", "application/xhtml+xml")]
        return html_parts[0] if html_parts else contents[0]

    def _absolute_urls(self, tag: str, attribute: str, value: str) -> str | None:
        # nh3 has already dropped disallowed schemes when it calls this.
        if attribute not in _URL_ATTRIBUTES or not self._base_url:
            return value
        try:
            return urljoin(self._base_url, value.strip())
        except ValueError:
            return None  # unparseable URL: drop the attribute


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
