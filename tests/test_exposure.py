"""What a deployment exposes: demo mode may fetch its own web server's port on loopback and nothing else
there, and docker-compose does not publish /metrics without a token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.feeds.fetching import FetchError, fetch_feed
from tests.conftest import rss

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_port_scoped_entry_allows_that_port_only(feed_server):
    url = feed_server.serve("/feed.xml", rss([("g", "T", "S")]))
    port = int(feed_server.base_url.rsplit(":", 1)[1])
    for allowed in (f"127.0.0.1:{port}", "127.0.0.1", "127.0.0.0/8"):
        assert fetch_feed(url, allowed_private_hosts=[allowed]).status == 200, allowed
    # A hostname entry matches that name as written in the URL.
    assert fetch_feed(url.replace("127.0.0.1", "localhost"), allowed_private_hosts=[f"localhost:{port}"]).status == 200
    other = _free_port()
    for target, refused in ((url, f"127.0.0.1:{other}"), (url.replace("127.0.0.1", "localhost"), f"localhost:{other}")):
        with pytest.raises(FetchError, match="a loopback address"):
            fetch_feed(target, allowed_private_hosts=[refused])


def _settings_value(name: str, **env: str) -> object:
    code = f"import json, newsrec.settings as s; print(json.dumps(s.{name}))"
    environ = {k: v for k, v in os.environ.items() if k not in ("FEED_ALLOWED_PRIVATE_HOSTS", "NEWSREC_DEMO")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_demo_mode_allows_loopback_on_the_web_servers_port_only():
    hosts = _settings_value("FEED_ALLOWED_PRIVATE_HOSTS", NEWSREC_DEMO="1", DEBUG="1", PORT="8123")
    assert hosts == ["127.0.0.1:8123", "localhost:8123", "[::1]:8123"]
    assert _settings_value("FEED_ALLOWED_PRIVATE_HOSTS", NEWSREC_DEMO="0") == []


def test_compose_requires_a_metrics_token_wherever_metrics_are_published():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        published = any(str(p).endswith(":8000") for p in service.get("ports", []))
        if not published:
            continue
        token = service["environment"]["METRICS_TOKEN"]
        assert token.startswith("${METRICS_TOKEN:?"), (name, token)  # compose refuses to start without it
