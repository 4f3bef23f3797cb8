"""Where `make bench` writes: a quick run never replaces the published figures (benchmarks/__main__.record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from benchmarks import scale
from benchmarks.__main__ import QUICK_NOTE, record, render_section, run_isolated, split_lanes, update_markdown

MACHINE = {"cpu": "test CPU", "cores": 2, "date": "2026-12-03 12:00 UTC"}
PUBLISHED = {
    "title": "Tasks",
    "figures": {"rate": 4000},
    "table": [["a", "b"], [1, 2]],
    "notes": "20,000 messages.",
    "machine": "test CPU, 2 cores",
}


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A checkout whose BENCHMARKS.md and results.json hold a full run's section."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results.json").write_text(json.dumps({"sections": {"tasks": PUBLISHED}}))
    (tmp_path / "BENCHMARKS.md").write_text(update_markdown("", [PUBLISHED]) + "\nWritten by hand.\n")
    return tmp_path


def test_quick_run_leaves_the_published_figures_alone(published: Path) -> None:
    before = {p: p.read_bytes() for p in (published / "BENCHMARKS.md", published / "benchmarks" / "results.json")}
    quick = {**PUBLISHED, "figures": {"rate": 10}, "notes": "2,000 messages.", "wall_seconds": 4.2}

    written = record("tasks", quick, MACHINE, quick=True, root=published)

    assert written == published / "benchmarks" / "results-quick.json"
    assert {p: p.read_bytes() for p in before} == before
    section = json.loads(written.read_text())["sections"]["tasks"]
    assert section["quick"] is True
    assert section["figures"] == {"rate": 10}
    assert section["notes"] == f"{QUICK_NOTE} 2,000 messages."


def test_full_run_replaces_its_section_and_keeps_the_rest(published: Path) -> None:
    other = {**PUBLISHED, "title": "Search", "figures": {"ms": 8}, "notes": "100k articles.", "wall_seconds": 95.0}

    written = record("search_100k", other, MACHINE, quick=False, root=published)

    assert written == published / "benchmarks" / "results.json"
    results = json.loads(written.read_text())
    assert set(results["sections"]) == {"tasks", "search_100k"}
    assert results["machine"] == MACHINE
    markdown = (published / "BENCHMARKS.md").read_text()
    assert "## Tasks" in markdown and "Written by hand." in markdown
    assert "## Search" in markdown and "the bench took 95 s" in markdown
    assert not (published / "benchmarks" / "results-quick.json").exists()


def test_section_without_a_wall_time_renders_as_before() -> None:
    assert render_section(PUBLISHED).endswith("Machine: test CPU, 2 cores.\n")


def test_a_bench_settings_do_not_leak_into_the_next() -> None:
    kind, exact_max = settings.VECTOR_INDEX_KIND, settings.VECTOR_INDEX_EXACT_MAX

    def bench() -> dict:
        settings.VECTOR_INDEX_KIND = "shared"
        settings.VECTOR_INDEX_EXACT_MAX = 5_000
        return {"title": "index", "kind": settings.VECTOR_INDEX_KIND}

    assert run_isolated(bench)["kind"] == "shared"
    assert (settings.VECTOR_INDEX_KIND, settings.VECTOR_INDEX_EXACT_MAX) == (kind, exact_max)


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True)])
def test_size_flags(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("BENCH_QUICK", value)
    assert scale._flag("BENCH_QUICK") is expected


def test_size_flag_refuses_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_QUICK", "yes")
    with pytest.raises(ValueError, match="BENCH_QUICK"):
        scale._flag("BENCH_QUICK")


@pytest.mark.parametrize(
    "quick, full, named, expected",
    [
        (False, False, False, False),  # a default run leaves the long one out...
        (False, False, True, True),  # ...unless it is named
        (True, False, False, True),  # a quick run runs it at its quick size
        (False, True, False, True),  # a full run runs everything
    ],
)
def test_long_benches_only_in_full_quick_or_named_runs(
    monkeypatch: pytest.MonkeyPatch, quick: bool, full: bool, named: bool, expected: bool
) -> None:
    monkeypatch.setattr(scale, "QUICK", quick)
    monkeypatch.setattr(scale, "FULL", full)
    assert "memory" in scale.FULL_ONLY
    assert scale.runs("memory", named=named) is expected
    assert scale.runs("tasks", named=False) is True


def test_a_quick_run_puts_the_private_stack_benches_beside_the_others() -> None:
    names = ["memory", "readiness", "recycling", "tasks"]
    assert split_lanes(names, quick=True, in_lane=False) == (["memory", "tasks"], ["readiness", "recycling"])
    # One process only: a full or default run, the second process itself, or nothing to split.
    assert split_lanes(names, quick=False, in_lane=False) == (names, [])
    assert split_lanes(names, quick=True, in_lane=True) == (names, [])
    assert split_lanes(["recycling"], quick=True, in_lane=False) == (["recycling"], [])
    assert split_lanes(["tasks"], quick=True, in_lane=False) == (["tasks"], [])


def test_two_processes_recording_at_once_lose_no_section(published: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_record_many, args=(published, prefix))
        for prefix in ("a", "b")  # type: ignore[arg-type]
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    sections = json.loads((published / "benchmarks" / "results-quick.json").read_text())["sections"]
    assert set(sections) == {f"{prefix}{i}" for prefix in "ab" for i in range(40)}


def _record_many(root: Path, prefix: str) -> None:
    for i in range(40):
        record(f"{prefix}{i}", {**PUBLISHED, "notes": str(i)}, MACHINE, quick=True, root=root)
