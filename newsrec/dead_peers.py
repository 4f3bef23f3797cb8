"""Connection options that make Postgres and newsrec notice a machine that vanished without a word.

A machine that loses power, or whose cable is pulled, sends no FIN. Its Postgres sessions then stay
open on the server, with any lock they held (story assignment's and training's advisory locks, the
rows of an unfinished transaction), until the kernel's default keepalive gives up: more than two
hours. Every other worker waiting for such a lock waits as long. The settings below are per session
(any role may set them), so they work on a managed Postgres too:

- on the server: keepalive probes after `seconds / 3` idle, then every `seconds / 6`, four missed
  ones drop the session; `tcp_user_timeout` bounds the wait for data the client never acknowledged
  (keepalives do not run while some is outstanding: the reply to the last statement, for instance);
- in libpq, the same for this side, so a worker whose database host went silent fails its query and
  reconnects (connection health checks) instead of waiting on a dead socket.

A live client that is merely busy answers probes from its kernel, so long transactions are not cut.
"""

from __future__ import annotations

from typing import Any


def dead_peer_options(options: dict[str, Any], seconds: int) -> dict[str, Any]:
    """`options` (a DATABASES entry's OPTIONS) plus keepalives that drop a silent peer in about `seconds`."""
    idle, interval, count = max(1, seconds // 3), max(1, seconds // 6), 4
    server = (
        f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval}"
        f" -c tcp_keepalives_count={count} -c tcp_user_timeout={seconds * 1000}"
    )
    merged = dict(options)
    # Settings already in DATABASE_URL's `options` come last, so they win.
    merged["options"] = f"{server} {options['options']}" if options.get("options") else server
    client = {
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": seconds * 1000,
    }
    return {**client, **merged}
