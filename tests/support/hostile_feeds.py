"""The hostile-feed corpus: documents written for these tests, one per class of attack on the parsers.

Each is well under the 15 MiB body cap; parsed naively, each costs minutes of CPU (or more).
"""

from __future__ import annotations

from tests.conftest import rss

DEEP = 300_000  # elements nested in one summary: minutes in nh3 (html5ever), GIL released
ATTRIBUTES = 150_000  # attributes on one element: quadratic in expat


def deep_nesting_raw() -> bytes:
    """HTML nested DEEP levels inside CDATA: the tags are visible in the raw document."""
    summary = "<![CDATA[" + "<div>" * DEEP + "x]]>"
    return rss([("deep-raw", "Deep", summary)])


def deep_nesting_escaped() -> bytes:
    """The same nesting entity-escaped: invisible in the raw bytes, there only once feedparser decodes it."""
    return rss([("deep-escaped", "Deep", "&lt;div&gt;" * DEEP + "x")])


def attribute_flood() -> bytes:
    """One XML element with ATTRIBUTES attributes."""
    attributes = " ".join(f"a{i}='1'" for i in range(ATTRIBUTES))
    return rss([("flood", "Flood", f"<![CDATA[<p {attributes}>x</p>]]>")]).replace(
        b"<item>", f"<item {attributes}>".encode(), 1
    )


def entity_flood(count: int = 2_000_000) -> bytes:
    """A summary of `count` character references: cheap per reference, many of them (~12 MB)."""
    return rss([("entities", "Entities", "&amp;amp;" * (count // 2))])


def ordinary() -> bytes:
    return rss([("calm-1", "Rates held", "The bank held rates."), ("calm-2", "Rain due", "Rain is due.")])
