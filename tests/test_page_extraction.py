"""Extraction of an article page's text and metadata (plain functions, no database)."""

from __future__ import annotations

import pytest

from pipeline.feeds.page_extraction import PageRejected, decode_html, extract_page
from tests.support import article_pages as pages


def test_newspaper_layout_gives_the_article_and_its_metadata() -> None:
    page = extract_page(pages.NEWSPAPER, "https://news.example.org/tram", "text/html; charset=utf-8")
    assert "rebuild the old tram line" in page.text
    assert "first passengers within three years" in page.text
    assert "Subscribe to our newsletter" not in page.text  # the footer is not the article
    assert "Politics" not in page.text  # nor the navigation
    assert page.author == "Ada Fenwick"
    assert page.date == "2026-11-03"
    assert page.language == "en-GB"
    assert page.image_url == "https://images.example.org/tram.jpg"


def test_blog_layout_without_an_article_element() -> None:
    page = extract_page(pages.BLOG, "https://blog.example.org/winner", "text/html")
    assert "curled a free kick" in page.text
    assert "Archive" not in page.text


def test_page_in_windows_1252_decodes_by_its_meta_declaration() -> None:
    page = extract_page(pages.LATIN, "https://cafe.example.org/", "text/html")
    assert page.charset == "cp1252"
    assert "Le café de la gare a rouvert" in page.text
    assert "« à l'ancienne »" in page.text
    assert page.language == "fr"


def test_header_charset_wins_and_a_wrong_declaration_yields_to_one_that_decodes() -> None:
    text = "Новости дня: совет одобрил строительство трамвая"
    assert decode_html(text.encode("cp1251"), "text/html; charset=windows-1251") == (text, "cp1251")
    # Declared UTF-8, really latin-1: the bytes are not UTF-8, so the next candidate (sniffing) decides.
    latin = f"<html><body><p>{pages.CAFE_TEXT}</p></body></html>".encode("cp1252")
    decoded, codec = decode_html(latin, "text/html; charset=utf-8")
    assert pages.CAFE_TEXT in decoded and codec != "utf-8"


def test_html_without_content_type_is_sniffed() -> None:
    page = extract_page(pages.NEWSPAPER, "https://news.example.org/tram", None)
    assert "tram line" in page.text


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"", "text/html", "empty page"),
        (b"   \n", "text/html", "empty page"),
        (b"%PDF-1.7 ...", "application/pdf", "not HTML (Content-Type: application/pdf)"),
        (b'{"a": 1}', "application/json", "not HTML"),
        (b"just words, no markup", None, "not HTML (Content-Type: none)"),
        (pages.NO_TEXT, "text/html", "no extractable text"),
    ],
)
def test_pages_with_nothing_to_read_are_rejected_with_a_reason(content: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(PageRejected, match=reason.replace("(", r"\(").replace(")", r"\)")):
        extract_page(content, "https://example.org/x", content_type)
