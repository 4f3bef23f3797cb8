"""docker-compose.yml keeps what deployment relies on (`docker compose config` is not available in CI)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_redis_keeps_the_queues_across_a_restart() -> None:
    redis = compose()["services"]["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose()["volumes"]  # a named volume, not the container's disk


def test_services_start_in_order_and_web_is_checked_for_readiness() -> None:
    services = compose()["services"]
    for name in ("web", "worker-scraping", "worker-processing", "scheduler"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert "web" not in depends, f"{name} waiting for web would deadlock: web is ready only once workers run"
        assert services[name]["deploy"]["resources"]["limits"]["memory"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert {"postgres", "redis"} <= {n for n, s in services.items() if "healthcheck" in s}
