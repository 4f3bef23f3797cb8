"""pipeline.feeds.parsing on small hand-written documents in tests/feeds/ (no network, no database)."""

from __future__ import annotations

import codecs
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.feeds.parsing import MAX_GUID_CHARS, MAX_TITLE_CHARS, ParsedFeed, ParseError, parse_feed

FEEDS = Path(__file__).parent / "feeds"
BASE_URL = "https://news.example.com/feeds/main.xml"


def parse(name: str, **kwargs: object) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


def all_text(feed: ParsedFeed) -> str:
    """Every string the parser produced, to search for things that must not be there."""
    parts = [feed.title, feed.link, feed.warning or ""]
    for entry in feed.entries:
        parts += [v for v in dataclasses.asdict(entry).values() if isinstance(v, str)]
    return "\n".join(parts)


def rss_items(items: str, channel_title: str = "Generated") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>{channel_title}</title><link>https://gen.example.com/</link>{items}</channel></rss>"
    ).encode()


# --- formats -------------------------------------------------------------------------


def test_rss2_fields() -> None:
    feed = parse("rss2.xml", content_type="application/rss+xml; charset=utf-8")

    assert feed.title == "Example Gazette"
    assert feed.link == "https://gazette.example.com/"
    assert feed.warning is None
    assert [e.guid for e in feed.entries] == ["gazette-1001", "gazette-1002", "gazette-1003"]
    first = feed.entries[0]
    assert first.url == "https://gazette.example.com/2024/05/bridge-reopens"
    assert first.title == "Harbour bridge reopens after repairs"
    assert first.summary == "<p>The bridge is <b>open</b> again.</p>"
    assert first.content == "<p>The bridge is <b>open</b> again.</p><p>Traffic resumed at noon.</p>"
    assert first.author == "Ada Reporter"
    assert first.published_at == datetime(2024, 5, 14, 6, 30, tzinfo=UTC)  # +0200 normalised to UTC
    assert feed.entries[2].title == "Cats & dogs: a council vote"  # plain text: entity decoded once
    assert feed.entries[2].published_at is None


def test_atom_fields_and_updated_fallback() -> None:
    feed = parse("atom.xml")

    assert feed.title == "Example Atom Wire"
    assert feed.link == "https://news.example.com/wire/"
    rates, updated_only = feed.entries
    assert rates.guid == "tag:wire.example.com,2024:rates"
    assert rates.url == "https://news.example.com/wire/rates"
    assert rates.title == "Rates unchanged"  # type="html" title reduced to text
    assert rates.author == "Bo Analyst"
    assert rates.published_at == datetime(2024, 5, 14, 8, 0, tzinfo=UTC)  # published wins over updated
    assert 'href="https://news.example.com/wire/bank"' in rates.content
    assert updated_only.published_at == datetime(2024, 5, 13, 12, 0, tzinfo=UTC)
    # A type="text" summary is text: its angle brackets are escaped, not parsed as tags.
    assert updated_only.summary == "Plain text with &lt;angle brackets&gt; kept as text."


def test_rss1_rdf() -> None:
    feed = parse("rss1.xml")

    assert feed.title == "RDF Bulletin"
    assert [(e.url, e.title) for e in feed.entries] == [("https://rdf.example.org/a", "First bulletin")]
    assert feed.entries[0].published_at == datetime(2024, 4, 1, 6, 0, tzinfo=UTC)


def test_relative_links_resolve_against_feed_url() -> None:
    feed = parse("relative_links.xml")

    assert feed.link == "https://news.example.com/"
    urls = {e.guid: e.url for e in feed.entries}
    assert urls["rel-1"] == "https://news.example.com/articles/1"
    assert urls["rel-2"] == "https://news.example.com/feeds/2.html"
    assert urls["rel-3"] == ""  # javascript: is not an article URL
    summary = feed.entries[0].summary
    assert 'href="https://news.example.com/articles/1#more"' in summary
    assert 'src="https://news.example.com/feeds/img/photo.jpg"' in summary


def test_overlong_link_is_dropped_not_cut() -> None:
    link = "https://long.example.com/" + "a" * 2100
    feed = parse_feed(
        rss_items(f"<item><title>Long</title><link>{link}</link><guid>l</guid></item>"), base_url=BASE_URL
    )

    assert feed.entries[0].url == ""


# --- dedup keys ------------------------------------------------------------------------


def test_missing_guids_fall_back_to_link_then_hash() -> None:
    feed = parse("missing_guids.xml")

    linked, bare, other_bare = feed.entries
    assert linked.guid == "https://noguid.example.net/posts/linked"
    assert bare.guid.startswith("sha256:")
    assert other_bare.guid.startswith("sha256:")
    assert bare.guid != other_bare.guid
    # Stable across fetches: the same document gives the same keys.
    assert [e.guid for e in parse("missing_guids.xml").entries] == [e.guid for e in feed.entries]


def test_repeated_guids_keep_different_items_and_drop_copies() -> None:
    feed = parse("repeated_guids.xml")

    assert [e.title for e in feed.entries] == ["Story one", "Story two", "Story three"]
    one, two, three = feed.entries
    # Two different stories share the homepage as guid: both kept, keyed by content hash.
    assert one.guid.startswith("sha256:") and two.guid.startswith("sha256:")
    assert one.guid != two.guid
    # The story listed twice is kept once, under its own guid.
    assert three.guid == "story-3"


def test_overlong_guid_is_hashed_not_truncated() -> None:
    long_a = "urn:x:" + "a" * 600
    long_b = long_a + "b"
    items = "".join(f"<item><title>T{i}</title><guid>{g}</guid></item>" for i, g in enumerate((long_a, long_b)))
    feed = parse_feed(rss_items(items), base_url=BASE_URL)

    guids = [e.guid for e in feed.entries]
    assert all(len(g) <= MAX_GUID_CHARS for g in guids)
    assert guids[0] != guids[1]


# --- broken and hostile documents --------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"  \r\n\t", codecs.BOM_UTF8 + b"\n"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(ParseError, match="empty response body"):
        parse_feed(body, base_url=BASE_URL)


def test_html_page_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match="not a feed: the document is HTML"):
        parse("html_page.html", content_type="text/html; charset=utf-8")


def test_feed_served_as_html_still_parses() -> None:
    feed = parse("rss2.xml", content_type="text/html; charset=utf-8")

    assert len(feed.entries) == 3
    assert feed.warning is None


def test_other_xml_is_not_a_feed() -> None:
    with pytest.raises(ParseError, match=r"not a feed: the root element is <settings>"):
        parse("not_a_feed.xml")


def test_malformed_without_entries_names_the_line() -> None:
    with pytest.raises(ParseError, match=r"malformed XML: .* at line \d+"):
        parse("truncated.xml")


def test_malformed_with_entries_keeps_them_with_a_warning() -> None:
    feed = parse("malformed_with_entries.xml")

    assert [e.guid for e in feed.entries] == ["sloppy-1", "sloppy-2"]
    assert feed.entries[1].title == "Fish & chips prices rise"
    assert feed.warning is not None
    assert feed.warning.startswith("malformed XML:")
    assert "line 12" in feed.warning  # points into the original document


def test_wrong_declared_encoding_is_detected() -> None:
    # Declared utf-8, but the bytes are latin-1.
    feed = parse("wrong_encoding.xml", content_type="application/rss+xml")

    assert feed.title == "Café Nouvelles"
    assert feed.entries[0].title == "Crème brûlée à la une"
    assert feed.warning is not None and "utf-8" in feed.warning


def test_http_charset_overrides_xml_declaration() -> None:
    doc = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Ż</title><item><title>Łódź</title><guid>1</guid></item></channel></rss>'
    feed = parse_feed(doc.encode("iso-8859-2"), base_url=BASE_URL, content_type="text/xml; charset=iso-8859-2")

    assert feed.entries[0].title == "Łódź"


def test_billion_laughs_is_not_expanded() -> None:
    feed = parse("billion_laughs.xml")

    assert "lollol" not in all_text(feed)
    assert len(all_text(feed)) < 10_000
    assert feed.entries[0].url == "https://laughs.example.com/1"  # the item is kept
    assert feed.warning is not None and feed.warning.startswith("ignored the document's internal DTD")


def test_quadratic_blowup_is_not_expanded() -> None:
    # One flat 50 KB entity used 2,000 times: expat's billion-laughs limit does not apply to
    # the lenient fallback parser, which would build a 100 MB title.
    big = "A" * 50_000
    doc = (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "{big}">\n]>\n'
        f'<rss version="2.0"><channel><title>t</title><item><title>{"&a;" * 2000}</title>'
        "<guid>q</guid></item></channel></rss>"
    ).encode()
    feed = parse_feed(doc, base_url=BASE_URL)

    assert "AAAA" not in all_text(feed)
    assert len(feed.entries[0].title) <= MAX_TITLE_CHARS


def test_entities_in_utf16_documents_are_refused() -> None:
    doc = '<?xml version="1.0" encoding="utf-16"?>\n<!DOCTYPE rss [<!ENTITY a "x">]>\n<rss version="2.0"/>'
    with pytest.raises(ParseError, match="declares XML entities"):
        parse_feed(doc.encode("utf-16"), base_url=BASE_URL)


def test_utf16_feed_without_entities_parses() -> None:
    doc = '<?xml version="1.0" encoding="utf-16"?>\n<rss version="2.0"><channel><title>Wide</title><item><title>ß</title><guid>w</guid></item></channel></rss>'
    feed = parse_feed(doc.encode("utf-16"), base_url=BASE_URL)

    assert feed.entries[0].title == "ß"


def test_xxe_does_not_read_local_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-7f3a9c")
    doc = (FEEDS / "xxe.xml").read_bytes().replace(b"@SECRET_URL@", secret.as_uri().encode())

    try:
        text = all_text(parse_feed(doc, base_url=BASE_URL))
    except ParseError as exc:
        text = str(exc)
    assert "TOP-SECRET" not in text


def test_body_naming_a_local_file_is_parsed_not_opened(tmp_path: Path) -> None:
    # feedparser.parse(bytes) would open() a path; parse_feed must treat the body as the document.
    secret = tmp_path / "feed.xml"
    secret.write_bytes(rss_items("<item><title>LEAKED</title><guid>x</guid></item>"))

    with pytest.raises(ParseError):
        parse_feed(str(secret).encode(), base_url=BASE_URL)


def test_script_and_handlers_removed() -> None:
    feed = parse("script_injection.xml")
    evil, double_escaped = feed.entries

    assert feed.title == "Evil Feed"
    assert evil.title == "Headline bold"
    assert double_escaped.title == "Double escaped"
    for field in (evil.summary, evil.title, feed.title, double_escaped.title):
        lowered = field.lower()
        for bad in ("<script", "alert(", "onclick", "onerror", "onmouseover", "javascript:", "<style", "<iframe"):
            assert bad not in lowered, (bad, field)
    assert "Hello" in evil.summary
    assert 'src="https://evil.example.com/x.png"' in evil.summary


def test_entry_cap_and_huge_title() -> None:
    items = "".join(f"<item><title>Item {i}</title><guid>g{i}</guid></item>" for i in range(1200))
    feed = parse_feed(rss_items(items), base_url=BASE_URL)
    assert len(feed.entries) == 1000
    assert feed.entries[0].guid == "g0"  # document order: the newest items come first in feeds

    capped = parse_feed(rss_items(items), base_url=BASE_URL, max_entries=5)
    assert [e.guid for e in capped.entries] == ["g0", "g1", "g2", "g3", "g4"]

    huge = parse_feed(rss_items(f"<item><title>{'word ' * 200_000}</title><guid>h</guid></item>"), base_url=BASE_URL)
    assert len(huge.entries[0].title) == MAX_TITLE_CHARS
    assert huge.entries[0].title.endswith("…")


def test_absurd_dates_become_none() -> None:
    items = (
        "<item><title>Epoch</title><guid>e</guid><pubDate>Thu, 01 Jan 1970 00:00:00 GMT</pubDate></item>"
        "<item><title>Future</title><guid>f</guid><pubDate>Fri, 01 Jan 2300 00:00:00 GMT</pubDate></item>"
        "<item><title>Garbage</title><guid>g</guid><pubDate>not a date</pubDate></item>"
    )
    feed = parse_feed(rss_items(items), base_url=BASE_URL)

    assert [e.published_at for e in feed.entries] == [None, None, None]


def test_valid_feed_without_entries() -> None:
    feed = parse_feed(rss_items(""), base_url=BASE_URL)

    assert feed.title == "Generated"
    assert feed.entries == []
    assert feed.warning is None


def test_nul_and_control_characters_are_dropped() -> None:
    # Postgres text columns reject NUL; feeds occasionally carry stray control characters.
    feed = parse_feed(rss_items("<item><title>Bad&#x1;Title</title><guid>n</guid></item>"), base_url=BASE_URL)

    assert "\x01" not in all_text(feed)


def test_relative_guid_is_not_rewritten_against_the_feed_url() -> None:
    # Keys must survive the feed moving to a new URL, so a bare "12345" guid stays as written.
    doc = rss_items("<item><title>Numbered</title><guid>12345</guid></item>")

    old = parse_feed(doc, base_url="https://old.example.com/rss")
    new = parse_feed(doc, base_url="https://new.example.com/feed.xml")

    assert old.entries[0].guid == new.entries[0].guid == "12345"
