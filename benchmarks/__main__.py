"""`make bench`: run every benchmarks/bench_*.py, print its figures, and record them.

Each module has `run() -> dict` returning {"title": str, "figures": {name: number}, "table": [[...], ...],
"notes": str}. Figures are written to benchmarks/results.json (one section per module) and tables to
BENCHMARKS.md with the machine's CPU, cores and the date. Only modules named on the command line run
when any are: `python -m benchmarks tasks search`.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render_markdown(results: dict) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {results['machine']['date']}: {results['machine']['cpu']}, "
        f"{results['machine']['cores']} cores. Figures are only comparable within one run; ratios are "
        "against a reference measured in the same run.",
        "",
    ]
    for name, section in results["sections"].items():
        lines += [f"## {section.get('title', name)}", ""]
        table = section.get("table") or []
        if table:
            lines.append("| " + " | ".join(str(c) for c in table[0]) + " |")
            lines.append("|" + "---|" * len(table[0]))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table[1:]]
            lines.append("")
        if section.get("notes"):
            lines += [section["notes"], ""]
    return "\n".join(lines)


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
    results_path = HERE / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"sections": {}}
    results["machine"] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    for name in names:
        print(f"== {name}", flush=True)
        section = importlib.import_module(f"benchmarks.bench_{name}").run()
        for key, value in section.get("figures", {}).items():
            print(f"  {key}: {value}")
        results["sections"][name] = section
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    (ROOT / "BENCHMARKS.md").write_text(render_markdown(results))
    print(f"wrote {results_path.relative_to(ROOT)} and BENCHMARKS.md")


if __name__ == "__main__":
    main(sys.argv[1:])
