"""The generated RSS feeds `make bench BENCH=scraping` scrapes, served over real HTTP from a process of its own.

    python -m benchmarks.feed_server --feeds 10000 --hosts 127.0.0.2,127.0.0.3

Feed i lives at http://<hosts[i % len(hosts)]>:<port>/feeds/<i>.xml: 20 items (a title, a link, a
description with a little markup, an author, a category, a date) made from a seeded random generator, so
the same feed always has the same body. Each answer carries an ETag and a Last-Modified; a request that
sends either one back (If-None-Match, If-Modified-Since) is answered 304 with no body, as a feed that has
not changed. The port is printed on the first line of stdout once every address listens. GET /stats
returns the answers given so far by status as JSON; GET /stats?reset=1 also zeroes them.

A process of its own so that its work is not counted in the bench process, and several loopback
addresses so that the fetches are spread over hosts as they would be in real life.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEMS_PER_FEED = 20
# Fixed, so a feed's Last-Modified and its items' dates are the same in every run.
EPOCH = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

_SUBJECTS = [
    "The central bank", "Ministers", "The city council", "A regional airline", "Researchers", "The home side",
    "Shareholders", "A tech start-up", "Hospital staff", "The festival jury", "Farmers", "Opposition leaders",
]  # fmt: skip
_VERBS = [
    "warns over", "backs", "delays", "unveils plans for", "rejects", "questions", "celebrates", "cuts",
    "doubles spending on", "reviews", "signs a deal on", "votes against",
]  # fmt: skip
_OBJECTS = [
    "interest rates", "the new stadium", "rail fares", "a chip factory", "the winter budget", "striking workers",
    "coastal flood defences", "the film award", "school meals", "broadband roll-out", "the trade talks",
    "a vaccine trial",
]  # fmt: skip
_SENTENCES = [
    "Officials said the decision would be reviewed before the end of the year.",
    "Critics argue the move comes too late for those most affected.",
    "The announcement follows months of talks between the two sides.",
    "Figures published on Monday showed a sharper change than analysts expected.",
    "A spokesperson declined to comment on the details.",
    "Local businesses say they are still waiting for clear guidance.",
    "It is the third such change in as many years.",
    "Supporters welcomed the plan as a long overdue step.",
]  # fmt: skip
_AUTHORS = ["Amira Khan", "Tom Bell", "Lucía Ortega", "Chen Wei", "Sam O'Neill", "Priya Nair"]
_CATEGORIES = ["Business", "Politics", "Sport", "Technology", "Entertainment", "Health"]


def feed_document(feed: int, host: str, port: int) -> bytes:
    """Feed `feed`'s RSS 2.0 body: the same bytes on every call."""
    rng = random.Random(feed)
    base = f"http://{host}:{port}"
    items = []
    for n in range(ITEMS_PER_FEED):
        title = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
        lead, *rest = rng.sample(_SENTENCES, 3)
        link = f"{base}/articles/{feed}/{n}"
        published = format_datetime(EPOCH - timedelta(minutes=37 * n + feed % 60), usegmt=True)
        items.append(
            f"<item><title>{title}</title><link>{link}</link>"
            f'<guid isPermaLink="false">urn:bench:{feed}:{n}</guid>'
            f"<description><![CDATA[<p><b>{title}.</b> {lead}</p><p>{' '.join(rest)} "
            f'<a href="{link}">Read more</a></p>]]></description>'
            f"<dc:creator>{rng.choice(_AUTHORS)}</dc:creator><category>{rng.choice(_CATEGORIES)}</category>"
            f"<pubDate>{published}</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>Bench feed {feed}</title><link>{base}/</link><description>Generated news, feed {feed}</description>"
        f"<language>en-gb</language><lastBuildDate>{format_datetime(EPOCH, usegmt=True)}</lastBuildDate>"
        + "".join(items)
        + "</channel></rss>\n"
    ).encode()


def etag_of(feed: int) -> str:
    return f'"bench-{feed}-v1"'


def _not_modified(headers, feed: int) -> bool:  # type: ignore[no-untyped-def]
    """RFC 9110: If-None-Match decides when present; otherwise If-Modified-Since against Last-Modified."""
    if (sent := headers.get("If-None-Match")) is not None:
        return etag_of(feed) in [tag.strip() for tag in sent.split(",")] or sent.strip() == "*"
    if (since := headers.get("If-Modified-Since")) is not None:
        try:
            return parsedate_to_datetime(since) >= EPOCH
        except (TypeError, ValueError):
            return False
    return False


def serve(feeds: int, hosts: list[str], port: int) -> None:
    answers: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            if path == "/stats":
                with lock:
                    body = json.dumps(answers).encode()
                    if "reset=1" in query:
                        answers.clear()
                return self._answer(200, body, "application/json", counted=False)
            name = path.removeprefix("/feeds/").removesuffix(".xml")
            host = self.server.server_address[0]
            if not path.startswith("/feeds/") or not name.isdigit() or int(name) >= feeds:
                return self._answer(404, b"no such feed\n", "text/plain")
            feed = int(name)
            if hosts[feed % len(hosts)] != host:
                return self._answer(404, b"this feed lives on another host\n", "text/plain")
            if _not_modified(self.headers, feed):
                return self._answer(304, b"", None, feed)
            return self._answer(200, feed_document(feed, host, port), "application/rss+xml; charset=utf-8", feed)

        def _answer(
            self, status: int, body: bytes, content_type: str | None, feed: int | None = None, counted: bool = True
        ) -> None:
            if counted:
                with lock:
                    answers[str(status)] += 1
            self.send_response(status)
            if feed is not None:
                self.send_header("ETag", etag_of(feed))
                self.send_header("Last-Modified", format_datetime(EPOCH, usegmt=True))
            if content_type:
                self.send_header("Content-Type", content_type)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

    servers = [Server((hosts[0], port), Handler)]
    port = servers[0].server_address[1]
    servers += [Server((host, port), Handler) for host in hosts[1:]]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(port, flush=True)
    servers[0].serve_forever()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, required=True)
    parser.add_argument("--hosts", default="127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    serve(args.feeds, args.hosts.split(","), args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
