"""How big a benchmark run is: read once from the environment here, for every bench module.

- `BENCH_QUICK=1` (`make bench-quick`): every bench at smaller sizes and fewer rounds, to check in under
  3 minutes that they all still run and roughly where their figures land. Its figures go to
  benchmarks/results-quick.json and the terminal, never to BENCHMARKS.md or results.json (see __main__),
  and the benches on a private stack of their own run in a second process beside the others
  (__main__.BESIDE), so its timings include each other's load.
- neither (`make bench`): the sizes whose figures BENCHMARKS.md publishes, except those that take
  tens of minutes each, so that the run stays under 30 minutes; each section records how long its
  bench took and the run prints them all at the end.
- `BENCH_FULL=1`: adds them: index_scale's 1,000,000 articles and scraping's 10,000 feeds (about 28 and
  3 minutes; their sections have titles and results keys of their own, so a default run never replaces
  what a full run published), and the benches in FULL_ONLY.

FULL_ONLY: benches whose one size is a long one (memory: the processes of `make run` through a
10,000-article run, ~9 minutes). A default run leaves them out unless they are named
(`make bench BENCH=memory` runs it); quick runs run them at their quick size.
"""

from __future__ import annotations

import os


def _flag(name: str) -> bool:
    value = os.environ.get(name, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{name} must be 1, 0 or unset, not {value!r}")
    return value == "1"


QUICK = _flag("BENCH_QUICK")
FULL = _flag("BENCH_FULL")
if QUICK and FULL:
    raise ValueError("BENCH_QUICK=1 and BENCH_FULL=1 ask for opposite runs: set one")


FULL_ONLY = frozenset({"memory"})


def runs(bench: str, named: bool) -> bool:
    """Whether this run runs `bench`: every bench, but a FULL_ONLY one in a default run only when named."""
    return named or QUICK or FULL or bench not in FULL_ONLY


def command(bench: str) -> str:
    """The command that reproduces this run of one bench, for its notes."""
    prefix = "BENCH_QUICK=1 " if QUICK else "BENCH_FULL=1 " if FULL else ""
    return f"{prefix}make bench BENCH={bench}"
