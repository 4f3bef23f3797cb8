"""The feeds host's HTTP server: RSS feeds and their article pages, made up on request.

`/b<batch>/f<feed>.xml?items=N` is an RSS feed of N items whose guids depend only on batch, feed and
item number (a feed fetched twice yields the same articles); each item links to its article page
`/a/<batch>/<feed>/<n>.html`. Run inside the feeds host: python -m tests.support.cluster.feeds_server ADDRESS PORT
"""

from __future__ import annotations

import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support.faults import TOPIC_WORDS

FEED_PATH = re.compile(r"^/b(\d+)/f(\d+)\.xml$")
PAGE_PATH = re.compile(r"^/a/(\d+)/(\d+)/(\d+)\.html$")


# Words that make each item's title its own: scenario 1 finds sampled articles by searching for their
# title, and titles differing only in their numbers embed almost alike (one could miss the top k).
_FIRST = "amber brisk cobalt dusty eager frosty golden hollow ivory jagged lucky misty noble olive quiet rustic".split()
_SECOND = "harbour orchard glacier canyon meadow lantern village citadel harvest bridge market island tower valley forest desert".split()
_THIRD = "violin falcon compass tractor kettle glacier anchor saddle beacon mirror ribbon candle barrel ladder parcel whistle".split()


def item_title(batch: int, feed: int, n: int) -> str:
    i = batch * 1000 + feed * 100 + n  # distinct for every item of a run (feeds < 10, items < 100)
    words = f"{_FIRST[i % 16]} {_SECOND[(i // 16) % 16]} {_THIRD[(i // 256) % 16]}"
    return f"The {words} affair: story {n} of feed {feed} about {TOPIC_WORDS[n % 5]}"


def feed_document(base: str, batch: int, feed: int, items: int) -> bytes:
    entries = "".join(
        f"<item><guid>b{batch}-f{feed}-{n}</guid>"
        f"<title>{item_title(batch, feed, n)}</title>"
        f"<link>{base}/a/{batch}/{feed}/{n}.html</link>"
        f"<description>Report {n} on {TOPIC_WORDS[n % 5]}.</description>"
        f"<pubDate>Mon, 02 Nov 2026 10:{n % 60:02d}:00 GMT</pubDate></item>"
        for n in range(items)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Batch {batch} feed {feed}</title>'
        f"<link>{base}/</link><description>cluster feed</description>{entries}</channel></rss>"
    ).encode()


def article_page(batch: int, feed: int, n: int) -> bytes:
    words = TOPIC_WORDS[n % 5]
    paragraphs = "".join(
        f"<p>Paragraph {p} of the report number {n} from feed {feed} in batch {batch}, all about {words}. "
        f"Witnesses described {words} at length and officials promised more news on {words} soon.</p>"
        for p in range(6)
    )
    return (
        f"<!doctype html><html><head><title>{item_title(batch, feed, n)}</title></head><body><article>"
        f"<h1>{item_title(batch, feed, n)}</h1>{paragraphs}</article></body></html>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if match := FEED_PATH.match(url.path):
            items = int(parse_qs(url.query).get("items", ["50"])[0])
            self._send(feed_document(base, int(match[1]), int(match[2]), items), "application/rss+xml")
        elif match := PAGE_PATH.match(url.path):
            self._send(article_page(*(int(g) for g in match.groups())), "text/html; charset=utf-8")
        else:
            self.send_error(404)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    address, port = sys.argv[1], int(sys.argv[2])
    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    print(f"feeds: serving on {address}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
