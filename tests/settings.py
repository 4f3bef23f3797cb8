"""Test settings: the real Postgres and Redis, isolated from a running `make run`."""

import tempfile
from pathlib import Path

from newsrec.settings import *  # noqa: F403
from newsrec.settings import DRAMATIQ_BROKER, DRAMATIQ_RESULT_BACKEND, env_str

# Own broker namespace so tests never consume (or flush) the queues of a running newsrec.
TEST_NAMESPACE = env_str("NEWSREC_TEST_NAMESPACE", "newsrec-test")
REDIS_NAMESPACE = TEST_NAMESPACE
DRAMATIQ_BROKER["OPTIONS"]["namespace"] = TEST_NAMESPACE
DRAMATIQ_RESULT_BACKEND["BACKEND_OPTIONS"]["namespace"] = TEST_NAMESPACE + "-results"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
FEED_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1", "localhost"]  # tests serve feeds from local servers

# The vector index cache of test processes (and the workers they start): never the checkout's var/,
# which a running `make run` uses.
VECTOR_INDEX_PATH = Path(tempfile.gettempdir()) / f"newsrec-{TEST_NAMESPACE}" / "vector-index.npz"

# Throttling stays on, with rates no test reaches by accident (tests/test_api_hardening.py lowers them),
# and counters under this run's own cache prefix.
API_THROTTLE_RATES = {"writes": "100000/minute", "search": "100000/minute"}
CACHES["default"]["KEY_PREFIX"] = TEST_NAMESPACE + ":cache"  # noqa: F405
