"""The hostile-input guard in front of feedparser: no document may declare XML entities.

Expat neither reads external entities nor allows billion-laughs nesting, but feedparser re-declares
"safe" (flat) entities for its lenient fallback parser, which expands them without any limit.
"""

from __future__ import annotations

import codecs
import re


class HostileDocument(Exception):
    """The document was refused or is malformed in its declarations; the message says why."""


_PROLOG_SKIP = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_SUBSET_TOKEN = re.compile(rb"[\"']|<!--|<\?|\]")
_DECL_TOKEN = re.compile(rb"[\"'\[>]")
# Prefixes of encodings in which "<!ENTITY" is not those ASCII bytes, checked in this
# order (the UTF-32 LE BOM begins with the UTF-16 LE one).
_NON_ASCII_COMPATIBLE = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),  # "<?xm" in EBCDIC
)


def without_internal_dtd(content: bytes) -> bytes:
    """Drop the DOCTYPE's internal subset, where entity declarations live.

    Expat neither reads external entities nor allows billion-laughs nesting, but
    feedparser re-declares "safe" (flat) entities for its lenient fallback parser,
    which expands them without any limit: a 100 KB document with one 50 KB entity
    referenced 2,000 times becomes a 100 MB title.  Feeds have no business
    declaring entities, so they all go; references to them are left undefined,
    which the parser reports as a warning.  Newlines are kept so that error line
    numbers still point into the original document.
    """
    for prefix, encoding in _NON_ASCII_COMPATIBLE:
        if content.startswith(prefix):
            # The byte patterns below assume an ASCII-compatible encoding; for these
            # (vanishingly rare in feeds) refuse declarations instead of editing them.
            if "<!entity" in content.decode(encoding, "replace").lower():
                raise HostileDocument("refused: the document declares XML entities (possible entity expansion attack)")
            return content

    pos = len(codecs.BOM_UTF8) if content.startswith(codecs.BOM_UTF8) else 0
    while match := _PROLOG_SKIP.match(content, pos):
        pos = match.end()
    if not _DOCTYPE.match(content, pos):
        return _refuse_stray_entities(content)

    start = pos
    pos += len(b"<!DOCTYPE")
    while True:  # through the name and external id, honouring quotes, to "[" or ">"
        token = _DECL_TOKEN.search(content, pos)
        if token is None:
            raise HostileDocument("malformed XML: unterminated DOCTYPE declaration")
        char = token.group()
        if char in (b'"', b"'"):
            pos = _after(content, token.end(), char)
        elif char == b">":
            return _refuse_stray_entities(content)  # no internal subset: nothing to remove
        else:
            pos = token.end()
            break
    while True:  # through the internal subset, honouring quotes, comments and PIs, to "]"
        token = _SUBSET_TOKEN.search(content, pos)
        if token is None:
            raise HostileDocument("malformed XML: unterminated DOCTYPE internal subset")
        char = token.group()
        if char in (b'"', b"'"):
            pos = _after(content, token.end(), char)
        elif char == b"<!--":
            pos = _after(content, token.end(), b"-->")
        elif char == b"<?":
            pos = _after(content, token.end(), b"?>")
        else:
            pos = token.end()
            break
    end = _after(content, pos, b">")
    stripped = content[:start] + b"\n" * content.count(b"\n", start, end) + content[end:]
    return _refuse_stray_entities(stripped)


def _after(content: bytes, pos: int, terminator: bytes) -> int:
    found = content.find(terminator, pos)
    if found < 0:
        raise HostileDocument("malformed XML: unterminated DOCTYPE declaration")
    return found + len(terminator)


def _refuse_stray_entities(content: bytes) -> bytes:
    # feedparser's fallback collects <!ENTITY declarations anywhere before the first
    # element, even outside a DOCTYPE; anything still there is an attack.
    first_element = re.search(rb"<\w", content)
    head = content[: first_element.start()] if first_element else content
    if re.search(rb"<!ENTITY", head, re.IGNORECASE):
        raise HostileDocument("refused: the document declares XML entities outside a DOCTYPE")
    return content
