"""Several hosts on one machine: Linux network namespaces joined by a bridge, each running its part of newsrec.

`network` builds the namespaces and links, `hosts` runs processes inside them (own network, own
hostname, own var/), `services` starts Postgres, Redis, web, workers and the scheduler on their
hosts, `feeds_server` and `http_agent` are programs run inside the feeds and web hosts, `topology`
puts a whole cluster together, and `scenarios` injects each fault and counts. Used by
tests/test_cluster.py and scripts/cluster.py (`make cluster`). Needs root and `ip netns`.
"""
