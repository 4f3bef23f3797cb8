"""Reading a response body within a size cap and a wall-clock deadline.

The body is read raw and decompressed here with a bounded output buffer, so a gzip bomb is cut off
after `max_bytes` of output instead of being inflated a whole network chunk (up to ~64 MiB) at a
time, as httpx's own decoders would.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import httpx

from pipeline.feeds.headers import declared_length


class BodyError(Exception):
    """The body is too large, too slow, or not decodable; the message says which, for operators."""


def read_body(response: httpx.Response, *, max_bytes: int, deadline: float, total_timeout: float) -> bytes:
    coding = _content_coding(response.headers.get("content-encoding"))
    too_large = f"response larger than {format_size(max_bytes)}"
    declared = declared_length(response.headers.get("content-length"))
    if declared is not None and declared > max_bytes:
        raise BodyError(too_large)

    decoder = BoundedDecoder(coding, max_bytes)
    body = bytearray()
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise BodyError(too_large)
        body += decoder.feed(chunk)
        if time.monotonic() > deadline:
            raise BodyError(f"timed out after {total_timeout:g} s")
    body += decoder.finish()
    return bytes(body)


def _content_coding(header: str | None) -> str | None:
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return "deflate" if codings[0] == "deflate" else "gzip"
    raise BodyError(f"unsupported Content-Encoding: {shorten(header or '', 60)}")


class BoundedDecoder:
    """Inflates a gzip/deflate body, refusing before it produces more than ``limit`` bytes.

    zlib's ``max_length`` caps each call's output, so memory stays near the
    limit no matter how far the input would expand.
    """

    def __init__(self, coding: str | None, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._produced = 0
        self._started = False
        self._finished = False  # trailing bytes after the last gzip member are ignored
        self._pending = b""  # a gzip magic number split across two network chunks
        self._inflater = self._new_inflater()

    def _new_inflater(self) -> Any:
        if self._coding == "gzip":
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        return zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if self._coding is None:
            self._count(len(data))
            return data
        out: list[bytes] = []
        while data and not self._finished:
            if self._inflater.eof:
                data = self._pending + data
                self._pending = b""
                if len(data) < 2:
                    self._pending = data
                    break
                # gzip allows several members back to back; anything else is junk some servers append.
                if self._coding == "gzip" and data.startswith(b"\x1f\x8b"):
                    self._inflater = self._new_inflater()
                else:
                    self._finished = True
                    break
            try:
                chunk = self._inflater.decompress(data, self._limit - self._produced + 1)
            except zlib.error as exc:
                if self._coding == "deflate" and not self._started:
                    # "deflate" is ambiguous in practice: some servers send raw deflate without the zlib header.
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise BodyError(f"corrupt {self._coding} response body: {exc}") from None
            self._started = True
            self._count(len(chunk))
            out.append(chunk)
            # Under the limit zlib consumed all input; after a member's end the rest is in unused_data.
            data = self._inflater.unused_data if self._inflater.eof else b""
        return b"".join(out)

    def finish(self) -> bytes:
        if self._coding is None or self._finished or self._inflater.eof:
            return b""
        # A body cut short still yields what was decodable; the parser judges the rest.
        tail: bytes = self._inflater.flush()
        self._count(len(tail))
        return tail

    def _count(self, n: int) -> None:
        self._produced += n
        if self._produced > self._limit:
            raise BodyError(f"response larger than {format_size(self._limit)}")


def format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
