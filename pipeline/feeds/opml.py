"""OPML, the subscription list every feed reader imports and exports: reading one (all or nothing) and
writing newsrec's feeds as one, their categories as outline folders.

An uploaded file is hostile input like a feed: it is refused when over OPML_MAX_BYTES, when it declares
XML entities (entity expansion), or when it is not well-formed XML, before listparser reads its
outlines. listparser is always handed bytes, never a string: given a string it fetches URLs itself.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import listparser
from django.core.exceptions import ValidationError
from django.db import transaction

from articles.models import Category, Feed
from articles.services import normalise_feed_url
from pipeline.feeds.bounded_body import format_size
from pipeline.feeds.xml_guard import HostileDocument, without_internal_dtd

__all__ = ["OpmlError", "OpmlImport", "export_opml", "import_opml", "read_opml"]

_ENTITY_DECLARATION = re.compile(rb"<!ENTITY", re.IGNORECASE)


class OpmlError(Exception):
    """The file was refused; nothing was imported. str() says why, for the person who sent it."""


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str
    category: str  # the outline folders it sits in, "News / World"; "" at the top level


@dataclass
class OpmlImport:
    created: list[Feed] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    categories_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "created": [{"id": f.pk, "url": f.url, "title": f.title, "category": _name(f)} for f in self.created],
            "already_present": self.already_present,
            "categories_created": self.categories_created,
        }


def _name(feed: Feed) -> str:
    return feed.category.name if feed.category_id and feed.category else ""


def read_opml(content: bytes, *, max_bytes: int) -> list[OpmlFeed]:
    """The feeds an OPML document lists, in document order; raises OpmlError for anything refused."""
    if len(content) > max_bytes:
        raise OpmlError(f"file larger than {format_size(max_bytes)}")
    if not content.strip():
        raise OpmlError("empty file")
    try:
        guarded = without_internal_dtd(content)
    except HostileDocument as error:
        raise OpmlError(str(error)) from None
    if guarded is not content and _ENTITY_DECLARATION.search(content):
        raise OpmlError("refused: the document declares XML entities (possible entity expansion attack)")
    try:
        root = ET.fromstring(guarded)  # well-formedness only: listparser's own parser recovers from anything
    except ET.ParseError as error:
        raise OpmlError(f"malformed XML: {error}") from None
    if root.tag.lower() != "opml":
        raise OpmlError(f"not OPML: the root element is <{root.tag[:60]}>")
    parsed = listparser.parse(guarded)
    feeds = []
    for item in parsed.feeds:
        paths = item.get("categories") or []
        category = " / ".join(part.strip() for part in paths[0] if part.strip()) if paths else ""
        feeds.append(
            OpmlFeed(url=(item.get("url") or "").strip(), title=(item.get("title") or "").strip(), category=category)
        )
    return feeds


def import_opml(content: bytes, *, max_bytes: int) -> OpmlImport:
    """Add every feed of the file (folders become categories) in one transaction: an invalid feed URL
    refuses the whole file. Feeds already present are reported, not duplicated, and left as they are."""
    feeds = read_opml(content, max_bytes=max_bytes)
    invalid = []
    for feed in feeds:
        try:
            normalise_feed_url(feed.url)
        except ValidationError:
            invalid.append(feed.url or "(empty)")
    if invalid:
        raise OpmlError(f"invalid feed URLs, nothing imported: {', '.join(invalid[:20])}")
    result = OpmlImport()
    with transaction.atomic():
        categories: dict[str, Category] = {}
        for item in feeds:
            url = normalise_feed_url(item.url)
            if Feed.objects.filter(url=url).exists() or url in {f.url for f in result.created}:
                result.already_present.append(url)
                continue
            category = None
            if item.category:
                category = categories.get(item.category)
                if category is None:
                    category, created = Category.objects.get_or_create(name=item.category[:200])
                    categories[item.category] = category
                    if created:
                        result.categories_created.append(category.name)
            result.created.append(Feed.objects.create(url=url, title=item.title[:500], category=category))
    return result


def export_opml(title: str = "newsrec feeds") -> bytes:
    """Every feed as OPML 2.0: feeds with a category inside an outline folder of that name."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(root, "body")
    folders: dict[str, ET.Element] = {}
    for feed in Feed.objects.select_related("category").order_by("category__name", "id"):
        parent = body
        if feed.category is not None:
            parent = folders.get(feed.category.name) or ET.SubElement(
                body, "outline", text=feed.category.name, title=feed.category.name
            )
            folders[feed.category.name] = parent
        name = feed.title or feed.url
        attributes = {"type": "rss", "text": name, "title": name, "xmlUrl": feed.url}
        if feed.site_url:
            attributes["htmlUrl"] = feed.site_url
        ET.SubElement(parent, "outline", attributes)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
