"""Cheap structure checks that refuse pathological markup before a parser or sanitiser sees it.

Parsers cost more than linear time on some shapes that no real feed has: html5ever (inside nh3) on
elements nested a few hundred thousand deep, expat on one element carrying 150,000 attributes. A
single linear scan over the text finds those shapes first, so the usual refusal costs milliseconds
instead of a whole CPU budget (pipeline/feeds/budget.py stays the backstop for shapes not checked
here). No Django: this runs inside the budget's child process too.

The scan is deliberately approximate and errs on the side of a *higher* count: it treats every
`<name ...>` that is not self-closing or an HTML void element as an opening, and a closing tag closes
back to the nearest open element of that name (as HTML does); a closing tag with no open match is
ignored, so stray closers cannot hide real depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "MarkupLimits", "RefusedMarkup", "capped_field", "check_markup"]

# Elements HTML never nests inside (no closing tag); a feed writes <br> without a slash.
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Possessive quantifiers: with backtracking, a long name with no ">" after it would cost quadratic time.
_TAG = re.compile(r"<(/?)([A-Za-z_][\w:.-]*+)([^<>]*+)>")
# Each run of whitespace or "=" inside a tag starts at most one attribute (HTML accepts attributes
# with no space between them): an upper bound on the count.
_ATTRIBUTE_GAP = re.compile(r"\s+")


class RefusedMarkup(ValueError):
    """The markup has a shape no feed needs and parsers handle badly; the message says which."""


@dataclass(frozen=True)
class MarkupLimits:
    max_depth: int = 256  # elements open at once
    max_attributes: int = 256  # attributes on one element
    max_field_chars: int = 1_000_000  # one entry's HTML field, cut to this before sanitising


DEFAULT_LIMITS = MarkupLimits()


def check_markup(markup: bytes | str, limits: MarkupLimits, where: str) -> None:
    """Raise RefusedMarkup when `markup` nests deeper or carries more attributes than `limits` allow.

    `where` names the place for the message ("the document", "entry 3's summary"). One pass, linear
    in the length (closing back to an open element pops each element at most once).
    """
    if isinstance(markup, bytes):
        # Latin-1 maps each byte to one character: tags in any ASCII-compatible encoding stay visible
        # (UTF-16/32 documents, rare in feeds, hide their tags from this scan: the CPU budget covers them).
        markup = markup.decode("latin-1")
    stack: list[str] = []
    open_count: dict[str, int] = {}
    for match in _TAG.finditer(markup):
        closing, raw_name, rest = match.groups()
        name = raw_name.lower()
        if closing:
            if open_count.get(name):
                while True:
                    top = stack.pop()
                    open_count[top] -= 1
                    if top == name:
                        break
            continue
        if (
            len(rest) > limits.max_attributes
            and len(_ATTRIBUTE_GAP.findall(rest)) + rest.count("=") > limits.max_attributes
        ):
            raise RefusedMarkup(f"refused: an element in {where} carries more than {limits.max_attributes} attributes")
        if rest.rstrip().endswith("/") or name in _VOID:
            continue
        stack.append(name)
        open_count[name] = open_count.get(name, 0) + 1
        if len(stack) > limits.max_depth:
            raise RefusedMarkup(f"refused: {where} nests elements more than {limits.max_depth} deep")


def capped_field(value: str, limits: MarkupLimits) -> str:
    """`value` cut to the field cap: sanitising repairs a cut tag, and no article needs more."""
    return value if len(value) <= limits.max_field_chars else value[: limits.max_field_chars]
