from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from pipeline.search.dataset_split import SPLIT_SEED, split_indices
from pipeline.search.evaluation import (
    evaluate_vectors,
    expected_calibration_error,
    read_descriptions,
    read_labelled_csv,
)
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
    assert result["few_shot"][0] == {
        "shots": 4, "draws": 2, "accuracy": 1.0, "accuracy_min": 1.0, "accuracy_max": 1.0,
        "ece": result["few_shot"][0]["ece"], "takes_over": 0,
    }  # fmt: skip
    # Zero-shot is already perfect here, so the labels never take over.
    # Right every time, so the calibration error is how far the confidence falls short of 1.
    assert 0 <= result["few_shot"][0]["ece"] < 0.1  # calibrated: near-certain when always right
    assert "skipped" in result["few_shot"][1]  # 12 per topic leaves none to score
    assert result["neighbours"] == {"k": 5, "precision": 1.0, "precision_without_topics": 1.0, "precision_raw": 1.0}


def test_evaluate_vectors_notices_wrong_topic_vectors() -> None:
    points, centres = clusters(10, 2)
    labels = ["a"] * 10 + ["b"] * 10
    result = evaluate_vectors(points, labels, ["a", "b"], centres[::-1], shots=(), draws=1, k=3)
    assert result["zero_shot"]["accuracy"] == 0.0


def test_evaluate_vectors_scores_only_the_rows_asked_and_trains_only_on_the_pool() -> None:
    points, centres = clusters(10, 2)
    labels = ["a"] * 10 + ["b"] * 10
    rows = np.array([0, 1, 2, 10, 11, 12])
    pool = np.setdiff1d(np.arange(20), rows)
    result = evaluate_vectors(points, labels, ["a", "b"], centres, shots=(3,), draws=2, k=2, rows=rows, train_pool=pool)
    assert result["rows"] == 6 and result["topics"] == {"a": 3, "b": 3}
    # Few-shot drew its 3 labels per topic from the pool and scored all 6 rows (none of them drawn).
    assert result["few_shot"][0]["accuracy"] == 1.0


def test_split_is_fixed_stratified_disjoint_and_independent_of_row_order() -> None:
    texts = [f"article number {i}" for i in range(101)]
    labels = ["a" if i % 3 else "b" for i in range(101)]
    halves = split_indices(texts, labels)
    dev, test = set(halves["dev"]), set(halves["test"])
    assert not dev & test and dev | test == set(range(101))
    for label in ("a", "b"):
        members = [i for i in range(101) if labels[i] == label]
        in_dev = sum(i in dev for i in members)
        assert in_dev - (len(members) - in_dev) in (0, 1)  # halved, dev gets the odd one
    # Shuffling the file moves no text across halves.
    order = np.random.default_rng(1).permutation(101)
    shuffled = split_indices([texts[i] for i in order], [labels[i] for i in order])
    assert {texts[order[i]] for i in shuffled["test"]} == {texts[i] for i in test}
    # Another seed is another split: the seed really decides it.
    assert set(split_indices(texts, labels, SPLIT_SEED + 1)["test"]) != test


def test_expected_calibration_error() -> None:
    # Confidence 0.75 and right three times in four: perfectly calibrated.
    assert expected_calibration_error(np.full(8, 0.75), np.array([1, 1, 1, 0] * 2)) == pytest.approx(0.0)
    # Confidence 0.9 but right half the time: off by 0.4.
    assert expected_calibration_error(np.full(10, 0.9), np.array([1, 0] * 5)) == pytest.approx(0.4)
    # Two bins, each weighted by its share: 0.5 * |1 - 0.95| + 0.5 * |0 - 0.55|.
    confidences = np.array([0.95, 0.95, 0.55, 0.55])
    assert expected_calibration_error(confidences, np.array([1, 1, 0, 0])) == pytest.approx(0.3)


def test_command_prints_json_for_a_small_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str], settings) -> None:
    settings.EMBEDDING_CACHE_DIR = tmp_path / "cache"
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
    assert result["split"]["name"] == "all" and "ece" in result["zero_shot"]
    # Four articles a topic are far below TOPIC_RECENTRE_MIN_ARTICLES: re-centring changes nothing.
    assert result["zero_shot_recentred"]["accuracy"] == result["zero_shot"]["accuracy"]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1  # embedded once, kept for the next run

    # The test half: only its rows are scored, few-shot labels come from the development half.
    call_command(
        "evaluate_classifier", str(path), "--text-column", "text", "--label-column", "label",
        "--split", "test", "--shots", "1", "--draws", "2", "--k", "1", "--json",
    )  # fmt: skip
    test_half = json.loads(capsys.readouterr().out)
    assert test_half["rows"] == 4 and test_half["topics"] == {"business": 2, "sport": 2}
    assert test_half["split"] == {"name": "test", "seed": SPLIT_SEED, "dev": 4, "test": 4}
    assert test_half["few_shot"][0]["shots"] == 1 and "accuracy" in test_half["few_shot"][0]
