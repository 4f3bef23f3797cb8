"""A test's HTTP server on 127.0.0.1: a handler class served from a thread, on a free port, for as
long as the `with` block lasts. The one place the tests' feed, page and redirect servers start and stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serve(
    handler: type[BaseHTTPRequestHandler],
    *,
    server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
    poll_interval: float = 0.5,
) -> Iterator[str]:
    """Serve `handler`; yields the base URL, "http://127.0.0.1:PORT".

    Handler threads are daemons: a handler still dripping a slow answer must not hold up the teardown."""
    httpd = server_class(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": poll_interval}, name="test-http", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
