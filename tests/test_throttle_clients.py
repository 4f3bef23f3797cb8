"""Anonymous throttles count the real client: a spoofed X-Forwarded-For resets nothing, unless the
settings say a proxy in front writes that header, and then only its entry counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from tests.support.cache import clear_cache_entries

pytestmark = pytest.mark.django_db

SEARCH = "/api/articles/?q=budget"  # a read that searches: the search throttle applies, no model runs


@pytest.fixture
def two_searches() -> Iterator[None]:
    with override_settings(API_THROTTLE_RATES={"writes": "100/minute", "search": "2/minute"}):
        clear_cache_entries()
        yield
    clear_cache_entries()


def _status(api: APIClient, forwarded: str | None = None, remote: str = "203.0.113.7") -> int:
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return api.get(SEARCH, **extra).status_code


def test_without_trusted_proxies_a_spoofed_forwarded_for_resets_nothing(api, two_searches, settings):
    settings.API_TRUSTED_PROXIES = 0
    statuses = [_status(api, forwarded=f"198.51.100.{i}") for i in range(4)]
    assert statuses == [200, 200, 429, 429]
    # Another connection address is another client.
    assert _status(api, remote="203.0.113.8") == 200


def test_with_one_trusted_proxy_the_address_it_saw_counts(api, two_searches, settings):
    settings.API_TRUSTED_PROXIES = 1
    # The client prepends whatever it likes; the proxy appends the address it really saw.
    statuses = [_status(api, forwarded=f"10.9.9.{i}, 192.0.2.50", remote="10.0.0.1") for i in range(3)]
    assert statuses == [200, 200, 429]
    # Another client behind the same proxy has its own count.
    assert _status(api, forwarded="192.0.2.51", remote="10.0.0.1") == 200
    # A request that reached the server without passing the proxy counts by its connection.
    assert _status(api, remote="203.0.113.9") == 200


def test_with_two_trusted_proxies_the_outer_ones_entry_counts(api, two_searches, settings):
    settings.API_TRUSTED_PROXIES = 2
    statuses = [_status(api, forwarded=f"spoof-{i}, 192.0.2.60, 10.0.0.2", remote="10.0.0.3") for i in range(3)]
    assert statuses == [200, 200, 429]
