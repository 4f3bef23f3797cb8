"""An HTTP client that runs inside a host and takes its requests over stdin, one JSON object a line.

The test process never opens a socket to the cluster's subnet: it writes
{"method": "POST", "path": "/api/feeds/", "json": {...}} to this agent's stdin and reads back
{"status": 201, "seconds": 0.02, "body": ...}: the request is made, and timed, from the host the
agent runs on. Run: python -m tests.support.cluster.http_agent BASE_URL TOKEN
"""

from __future__ import annotations

import json
import sys
import time

import httpx


def main() -> None:
    base_url, token = sys.argv[1], sys.argv[2]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Token {token}"}, timeout=60) as client:
        for line in sys.stdin:
            request = json.loads(line)
            started = time.monotonic()
            try:
                response = client.request(request["method"], request["path"], json=request.get("json"))
                status, text = response.status_code, response.text
            except httpx.HTTPError as error:
                status, text = 0, f"{type(error).__name__}: {error}"
            seconds = time.monotonic() - started
            try:
                body = json.loads(text)
            except ValueError:
                body = text[:2000]
            sys.stdout.write(json.dumps({"status": status, "seconds": seconds, "body": body}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
