"""Fetch a feed over HTTP the way a careful feed reader does.

Plain functions, no Django: the actor passes settings values in as arguments.

Safety properties, and where each one lives:

* SSRF guard and wall-clock deadline on every connection and every hop: address_guard.py; the
  keep-alive connections fetches share: connection_pool.py.
* Size cap, gzip bombs included, and the body's deadline: bounded_body.py.
* Redirects followed by hand (limited, http/https only, loops named), conditional GETs, and every
  failure as one FetchError with a reason an operator can read: here.
"""

from __future__ import annotations

import contextlib
import functools
import http
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import httpx

from pipeline.feeds.address_guard import FetchContext, GuardError, fetch_context
from pipeline.feeds.bounded_body import BodyError, read_body, shorten
from pipeline.feeds.connection_pool import pooled_transport
from pipeline.feeds.headers import content_type, retry_after_seconds, validator

__all__ = ["FetchError", "FetchResult", "fetch_feed"]

DEFAULT_USER_AGENT = "newsrec/1.0 (+feed fetcher)"

_PERMANENT_REDIRECTS = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES = frozenset({"http", "https"})
# A redirect page up to this size is read to its end so its connection can be reused.
_SMALL_BODY = 16 * 1024
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)
# Only what BoundedDecoder can inflate; httpx would otherwise advertise br/zstd
# when those packages happen to be installed.
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class FetchResult:
    status: int  # 200 (or another 2xx), or 304 when the conditional GET says not modified
    content: bytes  # empty on 304
    url: str  # final URL after redirects
    # URL the caller should store from now on: set only when there was at least one
    # redirect and every hop was permanent (301/308); None otherwise.
    permanent_url: str | None
    # On 304 these fall back to the validators that were sent when the server
    # omits them, so the caller can always store what it gets back.
    etag: str | None
    last_modified: str | None
    content_type: str | None


class FetchError(Exception):
    """A fetch that produced no usable body; ``reason`` is one readable line for operators."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        status: int | None = None,
    ) -> None:
        reason = " ".join(reason.split())
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after  # seconds, from Retry-After on 429/503
        self.permanent = permanent  # True for 410 Gone: the caller disables the feed
        self.status = status  # HTTP status when the server answered, else None


def fetch_feed(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allowed_private_hosts: Collection[str] = (),
    connect_timeout: float = 10,
    total_timeout: float = 30,
    max_bytes: int = 15 * 1024 * 1024,
    max_redirects: int = 5,
    user_agent: str = DEFAULT_USER_AGENT,
    accept: str = _ACCEPT,
) -> FetchResult:
    """GET ``url`` (conditionally when validators are given), following redirects by hand.

    Raises FetchError for anything but a 2xx body or a 304; no httpx exception
    escapes.  ``allowed_private_hosts`` holds hostnames (matched exactly) and IP
    addresses or CIDR networks that may be non-public, e.g. ``("localhost",
    "127.0.0.1")`` for the demo or ``("10.0.0.0/8",)`` for an internal feed.  ``accept`` lets
    pipeline/feeds/article_pages.py ask for HTML through the same client.
    """
    deadline = time.monotonic() + total_timeout
    current = _parse_start_url(url)

    etag, last_modified = _sendable(etag), _sendable(last_modified)
    headers = {"User-Agent": user_agent, "Accept": accept, "Accept-Encoding": _ACCEPT_ENCODING}
    # Sent on every hop: the validators belong to the resource, wherever it now lives.
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    # Straight to the process's shared transport (its pools), without an httpx.Client: a Client built
    # per fetch (for cookies that must not outlive it) and its per-response cookie and header work were
    # a fifth of a 304 poll's CPU. What the Client did that a feed fetch needs is here: the timeouts
    # ride on each request, and cookies a redirect sets go to the next hop, for this fetch only.
    transport = pooled_transport(allowed_private_hosts)
    # Reads may take the whole budget; DeadlineStream trims each one to what is left.
    timeout = httpx.Timeout(total_timeout, connect=connect_timeout).as_dict()
    cookies = httpx.Cookies()
    errors = _ErrorTranslation(connect_timeout=connect_timeout, total_timeout=total_timeout, deadline=deadline)

    all_permanent = True
    seen = {str(current)}
    looped = False
    redirects = 0
    with fetch_context(deadline) as fetch:
        while True:
            target: httpx.URL | None = None
            with errors.around(current), _get(transport, current, headers, timeout, cookies, fetch) as response:
                status = response.status_code
                if status in _REDIRECTS:
                    target = _redirect_target(current, response)
                    cookies.extract_cookies(response)
                elif status == 304:
                    return FetchResult(
                        status=304,
                        content=b"",
                        url=str(current),
                        permanent_url=str(current) if redirects and all_permanent else None,
                        etag=validator(response.headers.get("etag")) or etag,
                        last_modified=validator(response.headers.get("last-modified")) or last_modified,
                        content_type=content_type(response.headers.get("content-type")),
                    )
                elif 200 <= status < 300:
                    try:
                        content = read_body(
                            response, max_bytes=max_bytes, deadline=deadline, total_timeout=total_timeout
                        )
                    except BodyError as exc:
                        raise FetchError(str(exc), status=status) from None
                    return FetchResult(
                        status=status,
                        content=content,
                        url=str(current),
                        permanent_url=str(current) if redirects and all_permanent else None,
                        etag=validator(response.headers.get("etag")),
                        last_modified=validator(response.headers.get("last-modified")),
                        content_type=content_type(response.headers.get("content-type")),
                    )
                else:
                    raise _http_error(response)

            # The redirect response is closed by now; only then open the next hop.
            assert target is not None  # every other status returned or raised above
            if status not in _PERMANENT_REDIRECTS:
                all_permanent = False
            looped = looped or str(target) in seen
            if redirects >= max_redirects:
                if looped:
                    raise FetchError(f"redirect loop (at {shorten(str(target))})", status=status)
                raise FetchError(f"too many redirects (more than {max_redirects})", status=status)
            seen.add(str(target))
            redirects += 1
            current = target


@contextlib.contextmanager
def _get(
    transport: httpx.BaseTransport,
    url: httpx.URL,
    headers: dict[str, str],
    timeout: dict[str, float | None],
    cookies: httpx.Cookies,
    fetch: FetchContext,
) -> Iterator[httpx.Response]:
    """GET `url`, streamed; sent again once when a pooled connection turns out to be closed.

    A server may close an idle keep-alive connection just as a request goes out on it; the request then
    fails before any answer ("Server disconnected without sending a response", a reset). That is the
    pool's failure, not the server's answer, so the GET goes once more, on a connection opened for it.
    A failure on a connection this fetch opened is the answer, and is not retried."""
    request = httpx.Request("GET", url, headers=headers, extensions={"timeout": timeout})
    if cookies:
        cookies.set_cookie_header(request)
    opened = fetch.connections_opened
    try:
        response = transport.handle_request(request)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        if fetch.connections_opened != opened:
            raise
        response = transport.handle_request(request)
    response.request = request
    try:
        yield response
    finally:
        _finish_small_body(response)
        response.close()


def _finish_small_body(response: httpx.Response) -> None:
    """Read the end of a body nobody reads (a 304's, a short redirect page's), so that its connection
    goes back to the pool: one closed with a response half read is dropped. Any other unread body (an
    error page of any size) goes with its connection rather than cost the fetch time."""
    if response.is_stream_consumed:
        return
    length = response.headers.get("content-length", "")
    small = response.status_code == 304 or (
        response.status_code in _REDIRECTS and length.isdigit() and int(length) <= _SMALL_BODY
    )
    if small:
        with contextlib.suppress(httpx.HTTPError, httpx.StreamError):
            for _ in response.iter_raw():
                pass


def _sendable(validator: str | None) -> str | None:
    # Validators echo what an earlier response sent; one that cannot go back out as an
    # ASCII header is dropped, which only turns this into an unconditional GET.
    if validator and validator.isascii() and validator.isprintable():
        return validator
    return None


# Feeds are polled again and again: their URLs are parsed once per process (httpx.URL is immutable, so
# one may be shared between threads); parsing was an eighth of a 304 poll's CPU (py-spy --gil on the
# scraping bench). A URL that fails to parse raises, and is not cached. Past maxsize the least recently
# polled go, which for a process polling more feeds than that in turn means parsing as before.
@functools.lru_cache(maxsize=16384)
def _parse_start_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"invalid URL {shorten(url)!r}: {exc}") from None
    if parsed.scheme not in _ALLOWED_SCHEMES:
        raise FetchError(f"refused: only http and https URLs can be fetched, not {shorten(url)!r}")
    if not parsed.host:
        raise FetchError(f"invalid URL {shorten(url)!r}: no host")
    return parsed.copy_with(fragment=None)


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    status = response.status_code
    location = response.headers.get("location", "").strip()
    if not location:
        raise FetchError(f"HTTP {status} redirect without a Location header", status=status)
    try:
        target = current.join(location)  # Location may be relative (RFC 9110 allows it)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError(f"redirect to an invalid URL: {shorten(location)!r}", status=status) from None
    if target.scheme not in _ALLOWED_SCHEMES:
        raise FetchError(f"refused redirect to a non-HTTP URL: {shorten(location)!r}", status=status)
    if not target.host:
        raise FetchError(f"redirect to an invalid URL: {shorten(location)!r}", status=status)
    return target.copy_with(fragment=None)


def _http_error(response: httpx.Response) -> FetchError:
    status = response.status_code
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = shorten(response.reason_phrase, 60)
    reason = f"HTTP {status} {phrase}".rstrip()
    retry_after = None
    if status in (429, 503):
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if retry_after is not None:
            reason += f" (retry after {retry_after:.0f} s)"
    return FetchError(reason, retry_after=retry_after, permanent=status == 410, status=status)


class _ErrorTranslation:
    """Turns whatever httpx/httpcore raise during one hop into a FetchError naming that hop's host."""

    def __init__(self, *, connect_timeout: float, total_timeout: float, deadline: float) -> None:
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._deadline = deadline

    @contextlib.contextmanager
    def around(self, url: httpx.URL) -> Iterator[None]:
        host = url.host
        try:
            yield
        except FetchError:
            raise
        except (GuardError, BodyError) as exc:
            raise FetchError(str(exc)) from None
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout) and time.monotonic() < self._deadline:
                raise FetchError(f"connection to {host} timed out after {self._connect_timeout:g} s") from None
            raise FetchError(f"timed out after {self._total_timeout:g} s") from None
        except httpx.ConnectError as exc:
            # GuardedBackend and DeadlineStream word these messages for operators.
            raise FetchError(str(exc) or f"cannot connect to {host}") from None
        except httpx.RemoteProtocolError as exc:
            raise FetchError(f"protocol error from {host}: {exc}") from None
        except httpx.NetworkError as exc:
            raise FetchError(f"network error talking to {host}: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__} from {host}: {exc}") from None
        except (httpx.InvalidURL, httpx.StreamError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise FetchError(f"network error talking to {host}: {exc}") from None
