"""Production settings: `check --deploy` is clean, secrets come only from the environment, and
nothing newsrec stores in Redis (messages, results, cache entries, sessions) is pickled."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from newsrec.dead_peers import dead_peer_options
from newsrec.settings import redis_url_with_timeouts
from tests.support.in_process_worker import in_process_worker

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    production = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**production, "DJANGO_SETTINGS_MODULE": "newsrec.settings", "HF_HUB_OFFLINE": "1", **env},
    )


def test_check_deploy_is_clean_with_production_settings():
    done = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="news.example.org",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_production_without_a_secret_key_refuses_to_start():
    done = run_manage("check", DEBUG="0", ALLOWED_HOSTS="news.example.org")
    assert done.returncode != 0 and "SECRET_KEY must be set" in done.stderr


def test_a_demo_admin_with_the_known_password_is_refused_in_production():
    done = run_manage("check", DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), NEWSREC_DEMO="1")
    assert done.returncode != 0 and "DEMO_ADMIN_PASSWORD" in done.stderr


def test_broker_connections_time_out_instead_of_hanging():
    pool = dramatiq.get_broker().client.connection_pool
    assert pool.connection_kwargs["socket_timeout"] == 5 and pool.connection_kwargs["socket_connect_timeout"] == 3
    explicit = redis_url_with_timeouts("redis://r:6379/0?socket_timeout=30")
    assert "socket_timeout=30" in explicit and "socket_connect_timeout=3" in explicit


def test_redelivery_is_tuned_to_within_two_minutes():
    options = settings.DRAMATIQ_BROKER["OPTIONS"]
    broker = dramatiq.get_broker()
    assert broker.heartbeat_timeout == options["heartbeat_timeout"] == 30_000
    # Maintenance on 10 % of commands; an idle consumer polls at least every DRAMATIQ_IDLE_POLL_MS, so
    # even at one look a second the chance that none has run 90 s after the timeout is 0.9**90 < 1e-4.
    assert broker.maintenance_chance == 100_000
    assert broker.idle_poll_ms == settings.DRAMATIQ_IDLE_POLL_MS <= 1000


@pytest.mark.django_db
def test_a_silent_peer_is_dropped_by_both_sides_of_a_database_connection():
    """A vanished machine's sessions must not hold their locks for the kernel's two hours.

    tests/test_cluster.py::test_host_lost shows the db host dropping a lost host's sessions; here, that
    every connection asks for it: the server's keepalives (per session) and libpq's on this socket."""
    with connection.cursor() as cursor:
        values = {}
        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"):
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    assert values == {
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "4",
        "tcp_user_timeout": "30000",
    }
    fd = connection.connection.pgconn.socket
    sock = socket.socket(fileno=os.dup(fd))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
    finally:
        sock.close()


def test_dead_peer_options_keep_the_database_urls_own_options():
    options = dead_peer_options({"options": "-c statement_timeout=5000", "sslmode": "require"}, 60)
    assert options["options"].endswith("-c statement_timeout=5000")  # last, so it wins over ours
    assert "-c tcp_keepalives_idle=20" in options["options"] and options["sslmode"] == "require"
    assert options["keepalives_idle"] == 20 and options["tcp_user_timeout"] == 60_000


# --- Nothing is pickled ---


def test_messages_in_redis_are_json(broker):
    from pipeline.actors import scrape_feed

    assert isinstance(dramatiq.get_encoder(), dramatiq.JSONEncoder)
    message = scrape_feed.send(7)
    raw = broker.client.hget(f"{broker.namespace}:scraping.msgs", message.options["redis_message_id"])
    assert not raw.startswith(b"\x80")  # pickle's protocol marker
    assert json.loads(raw)["args"] == [7]


@pytest.mark.django_db(transaction=True)
def test_stored_results_are_json(broker):
    from pipeline.actors import scrape_feed

    message = scrape_feed.send(999_999)  # no such feed: a small "skipped" result
    with in_process_worker(broker) as worker:
        broker.join(scrape_feed.queue_name, timeout=30_000)
        worker.join()
    backend = next(m for m in broker.middleware if type(m).__name__ == "Results").backend
    raw = backend.client.lindex(backend.build_message_key(message), 0)  # a one-item list, for BLPOP
    assert raw is not None and not raw.startswith(b"\x80")
    assert json.loads(raw)["status"] == "skipped"


def test_cache_entries_are_json():
    cache.set("deploy-test", {"history": [1.5, 2.5]}, 30)
    try:
        raw = cache._cache.get_client().get(cache.make_and_validate_key("deploy-test"))
        assert json.loads(raw) == {"history": [1.5, 2.5]}
        assert cache.get("deploy-test") == {"history": [1.5, 2.5]}
    finally:
        cache.delete("deploy-test")


def test_sessions_are_json():
    assert settings.SESSION_SERIALIZER == "django.contrib.sessions.serializers.JSONSerializer"
