"""`make bench`: run every benchmarks/bench_*.py, print its figures, and record them.

Each module has `run() -> dict` returning {"title": str, "figures": {name: number}, "table": [[...], ...],
"notes": str}, and optionally "key": the name of its results entry when it is not the module's (a run at
other sizes than the published one, which must not replace it). Figures are written to
benchmarks/results.json (one section per key), and each section that ran replaces its own section of
BENCHMARKS.md (by title) with its table, notes, the machine's CPU and how long the bench took; the others
are left as they are. Only modules named on the command line run when any are:
`python -m benchmarks tasks search`. Each bench's wall time is printed as it ends, and all of them at the end.

Sizes come from benchmarks/scale.py. A quick run (`BENCH_QUICK=1`, `make bench-quick`) measures smaller
sizes than the published figures, so it writes benchmarks/results-quick.json and prints its tables, and
never touches results.json or BENCHMARKS.md; its notes say that it was quick. A quick run also runs the
benches on a private stack of their own (BESIDE) in a second process beside the others, its lines marked
`|`: a quick run checks that every bench runs, and its timings then include each other's load. Full runs
run one bench at a time, so that no bench times another's work.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import scale

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICK_NOTE = (
    "Quick run (`BENCH_QUICK=1`): smaller sizes and fewer rounds than the published figures, "
    "a check that the bench runs, not a result."
)


# Benches on a private stack of their own (tests/support/faults.Stack: Postgres, Redis, the processes), so
# they share no database, broker or files with the rest: a quick run runs them in a second process beside the
# others; BENCH_LANE marks that process, so it does not split again. Only these: they spend much of their time
# waiting (for a heartbeat to go stale, for a worker to restart), while more benches beside the others, on
# 2 cores, made the run longer (cold, four CPU-bound ones more: 209 s against 193).
BESIDE = ("readiness", "recycling")
LANE_ENV = "BENCH_LANE"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


HEADER = (
    "# Benchmarks\n\nWritten by `make bench` on this project's machines (2 cores, shared with other work). "
    "Each section says when and with which command it was run, and on which CPU: figures are only comparable "
    "within one section's run; ratios are against a reference measured in the same run.\n"
)


def render_section(section: dict) -> str:
    lines = [f"## {section['title']}", ""]
    table = section.get("table") or []
    if table:
        lines.append("| " + " | ".join(str(c) for c in table[0]) + " |")
        lines.append("|" + "---|" * len(table[0]))
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table[1:]]
        lines.append("")
    if section.get("notes"):
        lines += [section["notes"], ""]
    if section.get("machine"):
        took = f"; the bench took {section['wall_seconds']:.0f} s" if section.get("wall_seconds") else ""
        lines += [f"Machine: {section['machine']}{took}.", ""]
    return "\n".join(lines)


def update_markdown(existing: str, sections: list[dict]) -> str:
    """BENCHMARKS.md with each of `sections` replacing the section of the same title (or appended).

    Only what ran is rewritten: the other sections keep their text, including what was written by hand
    beside a generated table (results.json holds the last run's figures, not that text)."""
    parts = existing.split("\n## ")
    blocks = ["## " + part for part in parts[1:]]
    titles = [block.split("\n", 1)[0].removeprefix("## ").strip() for block in blocks]
    for section in sections:
        rendered = render_section(section)
        if section["title"] in titles:
            blocks[titles.index(section["title"])] = rendered
        else:
            blocks.append(rendered)
            titles.append(section["title"])
    return HEADER + "\n" + "\n".join(block.rstrip("\n") + "\n" for block in blocks)


def use_bench_database() -> None:
    """Benchmarks get their own database and broker namespace: they fill and flush them freely."""
    if "DATABASE_URL" not in os.environ:
        os.environ["DATABASE_URL"] = "postgres://postgres@localhost:5432/newsrec_bench"
    os.environ.setdefault("DRAMATIQ_NAMESPACE", "newsrec-bench")
    import psycopg

    info = psycopg.conninfo.conninfo_to_dict(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1))
    admin = psycopg.conninfo.make_conninfo(**{**info, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [info["dbname"]]).fetchone():
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(info["dbname"])))


def run_isolated(run: Callable[[], dict]) -> dict:
    """A bench's `run()`, with every setting it assigns undone afterwards.

    Benches point the vector index elsewhere, switch its kind and thresholds, or the embedding precision,
    by assigning `settings.X`; in one `make bench` process that leaked into the benches after them
    (index_scale's shared kind and EXACT_MAX of 5,000 made search measure an exact index, not HNSW).
    Inside override_settings every assignment lands on a layer that is dropped at the end."""
    from django.test import override_settings

    with override_settings():
        return run()


def record(key: str, section: dict, machine: dict, *, quick: bool, root: Path = ROOT) -> Path:
    """Store one bench's section under `key`; returns the results file it went to.

    A full run updates benchmarks/results.json and the section's part of BENCHMARKS.md after each bench
    (so a bench that fails later loses nothing); a quick run marks the section quick and writes only
    benchmarks/results-quick.json, so the published figures stay as a full run left them."""
    results_path = root / "benchmarks" / ("results-quick.json" if quick else "results.json")
    if quick:
        section = {**section, "quick": True, "notes": f"{QUICK_NOTE} {section.get('notes', '')}".strip()}
    # Locked: a quick run's two processes read, update and write this file each after its own benches.
    with open(results_path.with_name(results_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(results_path.read_text()) if results_path.exists() else {"sections": {}}
        results["machine"] = machine
        results["sections"][key] = section
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    if not quick:
        markdown = root / "BENCHMARKS.md"
        markdown.write_text(update_markdown(markdown.read_text() if markdown.exists() else "", [section]))
    return results_path


def split_lanes(names: list[str], *, quick: bool, in_lane: bool) -> tuple[list[str], list[str]]:
    """(benches this process runs, benches a second process runs beside them): only a quick run that has
    both kinds splits."""
    beside = [n for n in names if n in BESIDE]
    if not quick or in_lane or not beside or len(beside) == len(names):
        return names, []
    return [n for n in names if n not in beside], beside


def start_lane(names: list[str]) -> tuple[subprocess.Popen[str], threading.Thread]:
    """`python -m benchmarks NAMES` in a process of its own, its output echoed with a `|` margin."""
    lane = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *names],
        cwd=ROOT,
        env={**os.environ, LANE_ENV: "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def echo() -> None:
        assert lane.stdout is not None
        for line in lane.stdout:
            print(f"  | {line}", end="", flush=True)

    reader = threading.Thread(target=echo, daemon=True)
    reader.start()
    return lane, reader


def main(selected: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsrec.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    use_bench_database()
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if selected:
        names = [n for n in names if n in selected]
    run_started = time.monotonic()
    names, beside = split_lanes(names, quick=scale.QUICK, in_lane=os.environ.get(LANE_ENV) == "1")
    lane = start_lane(beside) if beside else None
    if lane:
        print(f"beside this run, in a second process (lines marked |): {', '.join(beside)}", flush=True)
    machine = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    mode = "quick (BENCH_QUICK=1)" if scale.QUICK else "full (BENCH_FULL=1)" if scale.FULL else "default"
    print(f"sizes: {mode}", flush=True)
    wall: dict[str, float] = {}
    written: set[Path] = set()
    try:
        for name in names:
            print(f"== {name}", flush=True)
            if not scale.runs(name, named=name in selected):
                print(
                    "  left out of a default run (benchmarks/scale.py FULL_ONLY): BENCH_FULL=1 or name it", flush=True
                )
                continue
            started = time.monotonic()
            section = run_isolated(importlib.import_module(f"benchmarks.bench_{name}").run)
            wall[name] = time.monotonic() - started
            section["wall_seconds"] = round(wall[name], 1)
            section["machine"] = f"{machine['cpu']}, {machine['cores']} cores"
            for key, value in section.get("figures", {}).items():
                print(f"  {key}: {value}")
            written.add(record(section.pop("key", name), section, machine, quick=scale.QUICK))
            print(render_section(section))
            print(f"  {name} took {wall[name]:.1f} s", flush=True)
    except BaseException:
        if lane:
            # A bench here failed (or ^C): stop the other process too, by SIGINT so that its private stack's
            # `finally` stops the Postgres, Redis and workers it started.
            lane[0].send_signal(signal.SIGINT)
            lane[0].wait(timeout=120)
        raise
    print("wall time per bench, s:")
    for name, seconds in wall.items():
        print(f"  {name:<16} {seconds:7.1f}")
    print(f"  {'total':<16} {sum(wall.values()):7.1f}")
    if lane:
        process, reader = lane
        failed = process.wait()
        reader.join()
        written.add(ROOT / "benchmarks" / "results-quick.json")
        print(f"both processes: {time.monotonic() - run_started:.1f} s of wall time", flush=True)
        if failed:
            raise SystemExit(f"the benches beside this run ({', '.join(beside)}) failed: exit status {failed}")
    done = ", ".join(str(p.relative_to(ROOT)) for p in sorted(written))
    print(f"wrote {done}" + ("" if scale.QUICK else " and the sections of BENCHMARKS.md that ran"))


if __name__ == "__main__":
    main(sys.argv[1:])
