"""A local web site for article-page tests: routes with any status and headers, a delay per route, and
a count of requests and of requests being answered at once (what politeness limits)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support.local_http import serve


@dataclass
class Page:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering, so requests overlap


@dataclass
class PageServer:
    base_url: str
    pages: dict[str, Page] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    user_agents: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def serve(self, path: str, body: bytes = b"", **kwargs: object) -> str:
        self.pages[path] = Page(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def hits_under(self, prefix: str) -> int:
        return sum(n for path, n in self.hits.items() if path.startswith(prefix))


@contextmanager
def page_server() -> Iterator[PageServer]:
    state: PageServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with state.lock:
                state.hits[self.path] = state.hits.get(self.path, 0) + 1
                state.user_agents.append(self.headers.get("User-Agent", ""))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            answering = True

            def answered() -> None:
                # Counted off before the answer goes out: once a client has it whole, it may start its next
                # request, which could otherwise arrive before this thread gets to count this one off (under
                # load it did, and a limit of 2 read as 3).
                nonlocal answering
                if answering:
                    answering = False
                    with state.lock:
                        state.in_flight -= 1

            try:
                page = state.pages.get(self.path)
                if page is None:
                    answered()
                    self.send_error(404)
                    return
                if page.delay:
                    time.sleep(page.delay)
                answered()
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                self.send_header("Content-Length", str(len(page.body)))
                for name, value in page.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(page.body)
            finally:
                answered()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base_url:
        state = PageServer(base_url=base_url)
        yield state
