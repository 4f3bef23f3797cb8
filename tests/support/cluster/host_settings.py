"""Settings of every app process in the cluster: the fault-test settings (delivery log, each process's
vector index under FAULT_STACK_DIR), with the feed fetcher allowed to reach the feeds host.

tests/settings.py pins FEED_ALLOWED_PRIVATE_HOSTS to loopback; the cluster's feeds live on another host.
"""

from newsrec.settings import env_list
from tests.support.fault_settings import *  # noqa: F403

FEED_ALLOWED_PRIVATE_HOSTS = env_list("FEED_ALLOWED_PRIVATE_HOSTS", [])
