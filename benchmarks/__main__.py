"""`make bench`: run every benchmarks/bench_*.py, print its figures, and record them.

Each module has `run() -> dict` returning {"title": str, "figures": {name: number}, "table": [[...], ...],
"notes": str}. Figures are written to benchmarks/results.json (one section per module), and each section
that ran replaces its own section of BENCHMARKS.md (by title) with its table, notes and the machine's
CPU; the others are left as they are. Only modules named on the command line run when any are:
`python -m benchmarks tasks search`.
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
        lines += [f"Machine: {section['machine']}.", ""]
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
    ran = []
    for name in names:
        print(f"== {name}", flush=True)
        section = importlib.import_module(f"benchmarks.bench_{name}").run()
        section["machine"] = f"{results['machine']['cpu']}, {results['machine']['cores']} cores"
        for key, value in section.get("figures", {}).items():
            print(f"  {key}: {value}")
        results["sections"][name] = section
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        ran.append(section)
    markdown = ROOT / "BENCHMARKS.md"
    markdown.write_text(update_markdown(markdown.read_text() if markdown.exists() else "", ran))
    print(f"wrote {results_path.relative_to(ROOT)} and the sections of BENCHMARKS.md that ran")


if __name__ == "__main__":
    main(sys.argv[1:])
