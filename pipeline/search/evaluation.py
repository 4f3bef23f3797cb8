"""Quality on a labelled CSV: topic accuracy (pipeline.understanding) and similar-article precision
(this package), measured together because similar articles are re-ranked with the topic model."""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.search.neighbours import find_similar
from pipeline.understanding.classification import (
    classify_zero_shot,
    embed_topics,
    train_supervised,
    zero_shot_model,
)
from pipeline.understanding.embedding import article_text, embed_texts

DEFAULT_SHOTS = (8, 64)
DEFAULT_DRAWS = 5


def read_labelled_csv(path: str | Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """Texts and labels of the rows that have both."""
    # News bodies overflow the csv module's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    texts: list[str] = []
    labels: list[str] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {text_column, label_column} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column {', '.join(sorted(missing))}; has {reader.fieldnames}")
        for row in reader:
            text, label = (row[text_column] or "").strip(), (row[label_column] or "").strip()
            if text and label:
                texts.append(text)
                labels.append(label)
    return texts, labels


def read_descriptions(path: str | Path) -> dict[str, str]:
    """A JSON object mapping label to description."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of label -> description")
    return data


# Texts embedded per call when a caller follows progress.
PROGRESS_CHUNK = 256


def embed_labelled_texts(texts: Sequence[str], progress: Callable[[int], object] | None = None) -> np.ndarray:
    """Embeddings through the ingestion path: a CSV text is treated as an article body.

    `progress`, when given, is called with the number of texts embedded after each chunk."""
    bodies = [article_text(None, None, text) for text in texts]
    if progress is None:
        return embed_texts(bodies)
    chunks = []
    for start in range(0, len(bodies), PROGRESS_CHUNK):
        chunks.append(embed_texts(bodies[start : start + PROGRESS_CHUNK]))
        progress(len(chunks[-1]))
    return np.concatenate(chunks) if chunks else embed_texts([])


def evaluate_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = DEFAULT_DRAWS,
    k: int = 10,
    seed: int = 0,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    """Embed `texts` once, then score zero-shot, few-shot and neighbours; see `evaluate_vectors`."""
    started = time.monotonic()
    vectors = embed_labelled_texts(texts, progress)
    embed_seconds = time.monotonic() - started
    topics = sorted(set(labels))
    descriptions = descriptions or {}
    topic_vectors = embed_topics([(topic, descriptions.get(topic, "")) for topic in topics])
    result = evaluate_vectors(vectors, labels, topics, topic_vectors, shots, draws, k, seed)
    result["descriptions"] = {topic: descriptions.get(topic, "") for topic in topics}
    result["embedding_seconds"] = round(embed_seconds, 1)
    return result


def evaluate_vectors(
    vectors: np.ndarray,
    labels: Sequence[Hashable],
    topics: Sequence[Hashable],
    topic_vectors: np.ndarray,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = DEFAULT_DRAWS,
    k: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy of zero-shot and few-shot classification and precision@k of `find_similar`.

    Few-shot draws `shots` labelled vectors per topic at random (`draws` times) and scores
    on all the others. Precision@k is the share of the k neighbours that have the query's
    label, over every vector as the query; the raw figure is plain cosine top-k.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    topic_index = {topic: i for i, topic in enumerate(topics)}
    label_array = np.array([topic_index[label] for label in labels])
    counts = Counter(labels)

    zero_indices, zero_confidences = classify_zero_shot(vectors, topic_vectors)
    zero_correct = zero_indices == label_array
    result: dict[str, Any] = {
        "rows": len(labels),
        "topics": {str(t): counts[t] for t in topics},
        "zero_shot": {
            "accuracy": _rate(zero_correct.mean()),
            "mean_confidence": _rate(zero_confidences.mean()),
            "per_topic": {str(t): _rate(zero_correct[label_array == i].mean()) for i, t in enumerate(topics)},
        },
        "few_shot": [],
    }

    topic_vector_map = dict(zip(topics, topic_vectors))
    rng = np.random.default_rng(seed)
    for n_shots in shots:
        if min(counts[t] for t in topics) <= n_shots:
            result["few_shot"].append({"shots": n_shots, "skipped": "a topic has too few rows"})
            continue
        accuracies = []
        for _ in range(draws):
            train = np.concatenate(
                [rng.choice(np.flatnonzero(label_array == i), n_shots, replace=False) for i in range(len(topics))]
            )
            test = np.setdiff1d(np.arange(len(labels)), train)
            model = train_supervised(vectors[train], [topics[i] for i in label_array[train]], topic_vector_map)
            predicted, _ = model.predict(vectors[test])
            accuracies.append(np.mean([p == topics[i] for p, i in zip(predicted, label_array[test])]))
        result["few_shot"].append(
            {
                "shots": n_shots,
                "draws": draws,
                "accuracy": _rate(np.mean(accuracies)),
                "accuracy_min": _rate(np.min(accuracies)),
                "accuracy_max": _rate(np.max(accuracies)),
            }
        )

    result["neighbours"] = {"k": k, **_neighbour_precision(vectors, label_array, topics, topic_vectors, k)}
    return result


def _neighbour_precision(
    vectors: np.ndarray,
    label_array: np.ndarray,
    topics: Sequence[Hashable],
    topic_vectors: np.ndarray,
    k: int,
) -> dict[str, float]:
    # Zero-shot topics: what the pipeline has before any label exists, and no label of
    # this set leaks into the score.
    topic_model = zero_shot_model(list(topics), topic_vectors)
    ids = np.arange(len(vectors))
    hits = {"precision": 0, "precision_without_topics": 0}
    returned = {"precision": 0, "precision_without_topics": 0}
    for i in range(len(vectors)):
        for key, model in (("precision", topic_model), ("precision_without_topics", None)):
            found = find_similar(vectors[i], vectors, ids, k, exclude_ids={i}, topic_model=model)
            hits[key] += sum(int(label_array[n.id] == label_array[i]) for n in found)
            returned[key] += len(found)

    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    raw = np.argpartition(-similarities, min(k, len(vectors) - 1) - 1, axis=1)[:, :k]
    return {
        "precision": _rate(hits["precision"] / max(returned["precision"], 1)),
        "precision_without_topics": _rate(
            hits["precision_without_topics"] / max(returned["precision_without_topics"], 1)
        ),
        "precision_raw": _rate((label_array[raw] == label_array[:, None]).mean()),
    }


def _rate(value: float) -> float:
    return round(float(value), 4)
