"""API throttles: writes and searches are limited per user (per client address when anonymous).

Reads stay unthrottled: they are cheap, paginated queries. Writes queue work or change state, and a
search runs the embedding model on the query, so those two are what a client can abuse. Rates come
from settings.API_THROTTLE_RATES at request time. Counters live in the Django cache (Redis, shared
by every web process); if the cache is unreachable the request is let through rather than failed:
a Redis outage must not turn every write into a 500.

Anonymous clients are counted by address, and the address is the connection's unless
settings.API_TRUSTED_PROXIES says how many proxies in front append to X-Forwarded-For: trusting the
header with none in front would let any client reset its own count by sending a new value each time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:  # imported by DRF's settings while rest_framework.views is still loading
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

# Query parameters that make a request a search (`/api/search/?q=`, list filters named search).
SEARCH_PARAMETERS = ("q", "search")


class _SettingsRateThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        # Every subclass names its scope; read from settings so tests can change the rates.
        return settings.API_THROTTLE_RATES.get(self.scope or "")

    def get_cache_key(self, request: Request, view: APIView) -> str:
        user = getattr(request, "user", None)
        ident = f"user:{user.pk}" if user is not None and user.is_authenticated else f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def applies(self, request: Request, view: APIView) -> bool:
        raise NotImplementedError

    def get_ident(self, request: Request) -> str:
        return client_address(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not self.applies(request, view):
            return True
        # SimpleRateThrottle reads the rate in __init__; read it again so settings changes apply.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - the cache backend's errors (Redis down or hung): fail open
            logger.warning("throttle %s: cache unavailable, request let through", self.scope, exc_info=True)
            return True


def client_address(request: Request) -> str:
    """The client's address: REMOTE_ADDR, or with N trusted proxies in front, the address the outermost
    of them saw (the Nth entry of X-Forwarded-For from the right; entries left of it are the client's
    own claims). The same rule as DRF's NUM_PROXIES, read from settings on every request."""
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = int(getattr(settings, "API_TRUSTED_PROXIES", 0))
    if proxies <= 0:
        return remote
    forwarded = [entry.strip() for entry in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    forwarded = [entry for entry in forwarded if entry]
    if not forwarded:
        return remote
    return forwarded[-min(proxies, len(forwarded))][:100]


class WriteRateThrottle(_SettingsRateThrottle):
    """Every request that is not a read (POST, PUT, PATCH, DELETE)."""

    scope = "writes"

    def applies(self, request: Request, view: APIView) -> bool:
        return request.method not in SAFE_METHODS


class SearchRateThrottle(_SettingsRateThrottle):
    """Reads that search: a non-empty `q` or `search` parameter, or a view with throttle_scope "search"."""

    scope = "search"

    def applies(self, request: Request, view: APIView) -> bool:
        if getattr(view, "throttle_scope", None) == "search":
            return True
        return request.method in SAFE_METHODS and any(request.query_params.get(p) for p in SEARCH_PARAMETERS)
