from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from pipeline.search.evaluation import evaluate_vectors, read_descriptions, read_labelled_csv
from pipeline.understanding.embedding import EMBEDDING_DIM


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def clusters(n_per_topic: int, n_topics: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_topics, EMBEDDING_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = np.repeat(centres, n_per_topic, axis=0) + 0.5 * rng.standard_normal(
        (n_per_topic * n_topics, EMBEDDING_DIM)
    ) / np.sqrt(EMBEDDING_DIM)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32), centres.astype(np.float32)


def test_read_labelled_csv_skips_rows_missing_text_or_label(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "news.csv",
        [
            {"id": "1", "body": "Goal!", "topic": "sport"},
            {"id": "2", "body": "", "topic": "sport"},
            {"id": "3", "body": "Shares fell.", "topic": " "},
            {"id": "4", "body": "Rates rose.", "topic": "business"},
        ],
    )
    assert read_labelled_csv(path, "body", "topic") == (["Goal!", "Rates rose."], ["sport", "business"])


def test_read_labelled_csv_names_a_missing_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "news.csv", [{"body": "Goal!", "topic": "sport"}])
    with pytest.raises(ValueError, match="category"):
        read_labelled_csv(path, "body", "category")


def test_read_descriptions_wants_an_object_of_strings(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"sport": "Matches and athletes."}))
    assert read_descriptions(good) == {"sport": "Matches and athletes."}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["sport"]))
    with pytest.raises(ValueError):
        read_descriptions(bad)


def test_evaluate_vectors_scores_separable_topics_perfectly() -> None:
    points, centres = clusters(12, 3)
    labels = ["a"] * 12 + ["b"] * 12 + ["c"] * 12
    result = evaluate_vectors(points, labels, ["a", "b", "c"], centres, shots=(4, 12), draws=2, k=5)
    assert result["rows"] == 36
    assert result["topics"] == {"a": 12, "b": 12, "c": 12}
    assert result["zero_shot"]["accuracy"] == 1.0
    assert result["few_shot"][0] == {"shots": 4, "draws": 2, "accuracy": 1.0, "accuracy_min": 1.0, "accuracy_max": 1.0}
    assert "skipped" in result["few_shot"][1]  # 12 per topic leaves none to score
    assert result["neighbours"] == {"k": 5, "precision": 1.0, "precision_without_topics": 1.0, "precision_raw": 1.0}


def test_evaluate_vectors_notices_wrong_topic_vectors() -> None:
    points, centres = clusters(10, 2)
    labels = ["a"] * 10 + ["b"] * 10
    result = evaluate_vectors(points, labels, ["a", "b"], centres[::-1], shots=(), draws=1, k=3)
    assert result["zero_shot"]["accuracy"] == 0.0


def test_command_prints_json_for_a_small_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Real model, on sentences written for this test; must not touch the database.
    sentences = {
        "sport": [
            "The striker scored twice as United won the cup final.",
            "The tennis champion lost in straight sets at Wimbledon.",
            "The rugby coach named his squad for the world cup.",
            "The sprinter broke the world record in the 100 metres.",
        ],
        "business": [
            "Shares in the bank fell after it reported lower profits.",
            "The retailer cut 500 jobs as sales slumped.",
            "Oil prices rose as markets worried about supply.",
            "The carmaker agreed a merger with its rival.",
        ],
    }
    rows = [{"text": s, "label": label} for label, texts in sentences.items() for s in texts]
    path = write_csv(tmp_path / "tiny.csv", rows)
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps({"sport": "Sport: matches, athletes, teams and competitions."}))
    call_command(
        "evaluate_classifier", str(path), "--text-column", "text", "--label-column", "label",
        "--descriptions", str(descriptions), "--shots", "2", "--draws", "2", "--k", "3", "--json",
    )  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 8
    assert result["zero_shot"]["accuracy"] == 1.0
    assert result["few_shot"][0]["shots"] == 2
    assert result["neighbours"]["precision"] >= 0.5
    assert result["descriptions"]["business"] == ""
