"""OPML import and export: round trip with categories, all-or-nothing refusals, duplicates reported."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from articles.models import Category, Feed
from pipeline.feeds.opml import OpmlError, export_opml, import_opml, read_opml

pytestmark = pytest.mark.django_db

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>My subscriptions</title></head><body>
  <outline text="News" title="News">
    <outline type="rss" text="World &amp; Politics" xmlUrl="https://world.example.org/rss.xml" htmlUrl="https://world.example.org/"/>
    <outline text="Local"><outline type="rss" text="Riverside" xmlUrl="https://riverside.example.org/feed"/></outline>
  </outline>
  <outline text="Tech"><outline type="rss" text="Chips" xmlUrl="https://chips.example.org/atom.xml"/></outline>
  <outline type="rss" text="Loose" xmlUrl="https://loose.example.org/rss"/>
</body></opml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;">]>
<opml version="2.0"><body><outline type="rss" text="&c;" xmlUrl="https://a.example.org/rss"/></body></opml>"""


def test_folders_become_categories_and_export_gives_them_back() -> None:
    result = import_opml(OPML, max_bytes=1 << 20)

    assert [f.url for f in result.created] == [
        "https://world.example.org/rss.xml",
        "https://riverside.example.org/feed",
        "https://chips.example.org/atom.xml",
        "https://loose.example.org/rss",
    ]
    assert sorted(result.categories_created) == ["News", "News / Local", "Tech"]
    assert Feed.objects.get(url="https://world.example.org/rss.xml").title == "World & Politics"
    assert Feed.objects.get(url="https://riverside.example.org/feed").category.name == "News / Local"
    assert Feed.objects.get(url="https://loose.example.org/rss").category is None

    exported = export_opml()
    round_trip = {(f.url, f.title, f.category) for f in read_opml(exported, max_bytes=1 << 20)}
    assert round_trip == {
        ("https://world.example.org/rss.xml", "World & Politics", "News"),
        ("https://riverside.example.org/feed", "Riverside", "News / Local"),
        ("https://chips.example.org/atom.xml", "Chips", "Tech"),
        ("https://loose.example.org/rss", "Loose", ""),
    }

    # Imported again (into the same store): everything reported as present, nothing duplicated.
    again = import_opml(exported, max_bytes=1 << 20)
    assert again.created == [] and len(again.already_present) == 4
    assert Feed.objects.count() == 4 and Category.objects.count() == 3


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (BILLION_LAUGHS, "refused: the document declares XML entities"),
        (b"<opml><body><outline text='x'>", "malformed XML"),
        (b"<rss><channel/></rss>", "not OPML: the root element is <rss>"),
        (b"", "empty file"),
        (OPML.replace(b"https://loose.example.org/rss", b"javascript:alert(1)"), "invalid feed URLs"),
        (OPML + b" " * 2048, "file larger than 2 KiB"),
    ],
)
def test_refused_files_import_nothing(content: bytes, reason: str) -> None:
    with pytest.raises(OpmlError, match=reason.replace("(", r"\(")):
        import_opml(content, max_bytes=2048)
    assert not Feed.objects.exists() and not Category.objects.exists()


def test_api_import_raw_and_multipart_then_export_and_filter(operator_api, api) -> None:  # type: ignore[no-untyped-def]
    raw = operator_api.generic("POST", "/api/feeds/import-opml/", OPML, content_type="text/x-opml")
    assert raw.status_code == 201, raw.content
    assert len(raw.json()["created"]) == 4

    upload = SimpleUploadedFile("subs.opml", OPML, content_type="text/x-opml")
    again = operator_api.post("/api/feeds/import-opml/", {"file": upload}, format="multipart")
    assert again.status_code == 200 and len(again.json()["already_present"]) == 4

    bad = operator_api.generic("POST", "/api/feeds/import-opml/", BILLION_LAUGHS, content_type="application/xml")
    assert bad.status_code == 400 and "entities" in bad.json()["detail"]

    exported = api.get("/api/feeds/export-opml/")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/x-opml")
    assert b'xmlUrl="https://chips.example.org/atom.xml"' in exported.content

    tech = api.get("/api/feeds/?category__name=Tech").json()
    assert [f["url"] for f in tech["results"]] == ["https://chips.example.org/atom.xml"]
    assert tech["results"][0]["category"] == "Tech"
    assert {c["name"] for c in api.get("/api/categories/").json()["results"]} == {"News", "News / Local", "Tech"}


def test_commands_round_trip(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "subs.opml"
    source.write_bytes(OPML)
    call_command("importopml", str(source))
    exported = tmp_path / "out.opml"
    call_command("exportopml", "--output", str(exported))
    Feed.objects.all().delete()
    Category.objects.all().delete()
    call_command("importopml", str(exported))
    assert Feed.objects.count() == 4 and Category.objects.count() == 3
    bad = tmp_path / "bad.opml"
    bad.write_bytes(BILLION_LAUGHS)
    with pytest.raises(CommandError, match="entities"):
        call_command("importopml", str(bad))
