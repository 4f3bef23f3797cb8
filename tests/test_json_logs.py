"""LOG_FORMAT=json: a real worker's lines are JSON objects, and those written while a task runs name it."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from newsrec.json_logs import JsonFormatter
from tests.support import log_actors
from tests.support.faults import free_port, wait_until
from tests.test_records import ROOT, stop_worker, worker_env


def test_a_plain_line_becomes_one_json_object() -> None:
    record = logging.LogRecord("newsrec.x", logging.WARNING, __file__, 1, "feed %s: %s", (7, "gone"), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "feed 7: gone" and entry["level"] == "WARNING" and entry["logger"] == "newsrec.x"
    assert "task_id" not in entry


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_worker_lines_carry_the_task_id_and_actor(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broker.declare_queue(log_actors.QUEUE)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "dramatiq", "tests.support.log_actors", "-p", "1", "-t", "1", "-Q", log_actors.QUEUE],
        cwd=ROOT,
        env=worker_env(LOG_FORMAT="json"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        message = log_actors.says_hello.send("reader")
        lines = lambda: (tmp_path / "worker.log").read_text().splitlines()  # noqa: E731
        wait_until(lambda: any("hello reader" in line for line in lines()), timeout=60, what="the actor's line")
    finally:
        stop_worker(worker)
        log.close()
    # Dramatiq's main process writes its own start/stop notices before Django's logging is set up.
    entries = [json.loads(line) for line in lines() if line.startswith("{")]
    [hello] = [e for e in entries if e["message"] == "hello reader"]
    assert hello["task_id"] == message.message_id and hello["actor"] == "says_hello" and hello["queue"] == "logs-test"
    assert any(e["logger"].startswith("dramatiq") and "task_id" not in e for e in entries)  # lines outside a task


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_gunicorn_lines_are_json_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log_path = tmp_path / "web.log"
    log = log_path.open("wb")
    web = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "newsrec.wsgi:application",
            "--bind",
            f"127.0.0.1:{free_port()}",
        ],
        cwd=ROOT,  # where gunicorn.conf.py is read from
        env=worker_env(LOG_FORMAT="json"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: "Booting worker" in log_path.read_text(), timeout=60, what="gunicorn's boot line")
    finally:
        stop_worker(web)
        log.close()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, gunicorn's included
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)
