"""An article page's main text and metadata, from the bytes the fetcher read.

Plain functions with no Django, so `extract_page` can run under run_with_budget (pipeline/feeds/budget.py)
in a child process: trafilatura parses hostile HTML with lxml, in native code a time limit cannot stop.

A page that is no use (not HTML, empty, no main text) raises PageRejected with a reason an operator
can read; the caller keeps the feed's text and records it.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import charset_normalizer
import trafilatura
from trafilatura.settings import Document

__all__ = ["ExtractedPage", "PageRejected", "decode_html", "extract_page"]

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Servers that send no Content-Type (or a generic one) get their first bytes sniffed, as browsers do.
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "text/plain"})
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL)
# HTML's own declaration: <meta charset="..."> or <meta http-equiv="Content-Type" content="...; charset=...">,
# which the HTML standard looks for in the first 1,024 bytes (a little more here for sloppy pages).
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HTML_LANG = re.compile(rb"""<html[^>]*?\slang\s*=\s*["']?\s*([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)""", re.IGNORECASE)
_SNIFF_BYTES = 4096


class PageRejected(Exception):
    """The page has no text worth reading; str() says why, for operators."""


@dataclass(frozen=True)
class ExtractedPage:
    text: str
    title: str
    author: str
    date: str  # ISO date (YYYY-MM-DD) as trafilatura found it, or ""
    language: str  # BCP 47 tag from the page's markup (e.g. "en-GB"), or ""
    image_url: str
    charset: str  # how the bytes were decoded


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _declared_charset(content_type: str | None) -> str | None:
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def _known_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(content: bytes, content_type: str | None = None) -> tuple[str, str]:
    """The page as text and the charset used: the byte-order mark, then the Content-Type header, then
    the page's <meta> declaration, then UTF-8 if it decodes, then charset_normalizer's guess."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if content.startswith(bom):
            return content.decode(codec, errors="replace").lstrip("\ufeff"), codec
    candidates = [_known_codec(_declared_charset(content_type))]
    meta = _META_CHARSET.search(content[:_SNIFF_BYTES])
    candidates.append(_known_codec(meta.group(1).decode("ascii", "ignore") if meta else None))
    for candidate in candidates:
        if candidate:
            # A wrong declaration is common (latin-1 pages served as UTF-8): a declared charset the bytes
            # do not decode in yields to the next candidate instead of filling the text with U+FFFD.
            try:
                return content.decode(candidate), candidate
            except (UnicodeDecodeError, LookupError):
                continue
    try:
        return content.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    guess = charset_normalizer.from_bytes(content[:200_000]).best()
    codec = _known_codec(guess.encoding if guess else None) or "cp1252"
    return content.decode(codec, errors="replace"), codec


def is_html(content: bytes, content_type: str | None) -> bool:
    media_type = _media_type(content_type)
    if media_type in _HTML_TYPES:
        return True
    return media_type in _GENERIC_TYPES and bool(_HTML_START.match(content[:_SNIFF_BYTES]))


def extract_page(content: bytes, url: str, content_type: str | None = None) -> ExtractedPage:
    """The main text and metadata of an HTML article page; raises PageRejected when there is none."""
    if not content.strip():
        raise PageRejected("empty page")
    if not is_html(content, content_type):
        raise PageRejected(f"not HTML (Content-Type: {_media_type(content_type) or 'none'})")
    html, charset = decode_html(content, content_type)
    document = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,  # readers' comments are not the article
        include_tables=False,
        include_images=False,
    )
    text = (document.text or "").strip() if isinstance(document, Document) else ""
    if not isinstance(document, Document) or not text:
        raise PageRejected("no extractable text on the page")
    lang = _HTML_LANG.search(content[:_SNIFF_BYTES])
    return ExtractedPage(
        text=text,
        title=(document.title or "").strip(),
        author=(document.author or "").strip(),
        date=(document.date or "").strip(),
        language=(lang.group(1).decode("ascii") if lang else (document.language or "")).strip()[:35],
        image_url=(document.image or "").strip(),
        charset=charset,
    )
