"""Quality on a labelled CSV: topic accuracy and calibration (pipeline.understanding) and similar-article
precision (this package), measured together because similar articles are re-ranked with the topic model.

Figures are computed on one half of a fixed split (pipeline.search.dataset_split): `dev` to choose
settings, `test` to report them. Few-shot labels are always drawn from the development half, so a
test-half figure never trains on a test row.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.search.dataset_split import ALL, DEV, SPLIT_SEED, TEST, split_indices
from pipeline.search.neighbours import find_similar
from pipeline.understanding.classification import (
    classify_zero_shot,
    embed_topics,
    train_supervised,
    zero_shot_model,
)
from pipeline.understanding.cross_validation import SUPERVISED, cross_validate
from pipeline.understanding.embedding import article_text, embed_texts
from pipeline.understanding.embedding_cache import cached_embeddings
from pipeline.understanding.recentring import recentre_topic_vectors

DEFAULT_SHOTS = (8, 64)
DEFAULT_DRAWS = 5
# Equal-width confidence bins of the expected calibration error (the usual 15 of Guo et al. 2017).
ECE_BINS = 15


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


def embed_labelled_texts(texts: Sequence[str], *, cache: bool = True) -> np.ndarray:
    """Embeddings through the ingestion path: a CSV text is treated as an article body.

    With `cache` they are computed once per machine (pipeline.understanding.embedding_cache).
    """
    prepared = [article_text(None, None, text) for text in texts]
    return cached_embeddings(prepared) if cache else embed_texts(prepared)


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share.

    0 means a shown confidence of 0.8 is right 80 % of the time; it is what lets the API's
    `topic_confidence` be read as a probability.
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if len(confidences) == 0:
        return 0.0
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins the first.
    which = np.clip(np.ceil(confidences * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidences[members].mean())
    return float(error)


def evaluate_classifier(
    texts: Sequence[str],
    labels: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
    shots: Sequence[int] = DEFAULT_SHOTS,
    draws: int = DEFAULT_DRAWS,
    k: int = 10,
    seed: int = 0,
    split: str = ALL,
    split_seed: int = SPLIT_SEED,
    cache: bool = True,
    recentre_min_articles: int = 0,
) -> dict[str, Any]:
    """Embed `texts` once, then score zero-shot, few-shot and neighbours on `split`; see `evaluate_vectors`."""
    started = time.monotonic()
    vectors = embed_labelled_texts(texts, cache=cache)
    embed_seconds = time.monotonic() - started
    topics = sorted(set(labels))
    descriptions = descriptions or {}
    topic_vectors = embed_topics([(topic, descriptions.get(topic, "")) for topic in topics])
    halves = split_indices(texts, labels, split_seed)
    # Labels for few-shot come from the development half unless everything is asked for.
    train_pool = halves[ALL] if split == ALL else halves[DEV]
    result = evaluate_vectors(
        vectors,
        labels,
        topics,
        topic_vectors,
        shots,
        draws,
        k,
        seed,
        rows=halves[split],
        train_pool=train_pool,
        recentre_min_articles=recentre_min_articles,
    )
    result["split"] = {"name": split, "seed": split_seed, **{name: len(halves[name]) for name in (DEV, TEST)}}
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
    *,
    rows: np.ndarray | None = None,
    train_pool: np.ndarray | None = None,
    recentre_min_articles: int = 0,
) -> dict[str, Any]:
    """Accuracy and calibration of zero-shot and few-shot classification, and precision@k of `find_similar`.

    Everything is scored on `rows` (default: all). Few-shot draws `shots` labelled vectors per topic
    at random from `train_pool` (default: `rows`), `draws` times, and scores on the rows not drawn.
    Precision@k is the share of the k neighbours that have the query's label, every row as the query
    and the other rows as the corpus; the raw figure is plain cosine top-k.

    With `recentre_min_articles` the zero-shot vectors are also re-centred on the scored rows (as the
    pipeline re-centres on its own articles, no label used), reported beside the descriptions alone;
    the re-centred vectors are then what few-shot and neighbours use, as in the pipeline.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    topic_index = {topic: i for i, topic in enumerate(topics)}
    full_labels = np.array([topic_index[label] for label in labels])
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    train_pool = rows if train_pool is None else np.asarray(train_pool)
    label_array = full_labels[rows]
    counts = Counter(topics[i] for i in label_array)
    pool_counts = Counter(topics[i] for i in full_labels[train_pool])

    zero_indices, zero_confidences = classify_zero_shot(vectors[rows], topic_vectors)
    zero_correct = zero_indices == label_array
    result: dict[str, Any] = {
        "rows": len(rows),
        "topics": {str(t): counts[t] for t in topics},
        "zero_shot": {
            "accuracy": _rate(zero_correct.mean()),
            "mean_confidence": _rate(zero_confidences.mean()),
            "ece": _rate(expected_calibration_error(zero_confidences, zero_correct)),
            "per_topic": {str(t): _rate(zero_correct[label_array == i].mean()) for i, t in enumerate(topics)},
        },
        "few_shot": [],
    }
    if recentre_min_articles > 0:
        topic_vectors = recentre_topic_vectors(topic_vectors, vectors[rows], min_articles=recentre_min_articles)
        moved_indices, moved_confidences = classify_zero_shot(vectors[rows], topic_vectors)
        moved_correct = moved_indices == label_array
        result["zero_shot_recentred"] = {
            "min_articles": recentre_min_articles,
            "accuracy": _rate(moved_correct.mean()),
            "mean_confidence": _rate(moved_confidences.mean()),
            "ece": _rate(expected_calibration_error(moved_confidences, moved_correct)),
        }

    topic_vector_map = dict(zip(topics, topic_vectors))
    rng = np.random.default_rng(seed)
    for n_shots in shots:
        if min(pool_counts[t] for t in topics) <= n_shots:
            result["few_shot"].append({"shots": n_shots, "skipped": "a topic has too few rows"})
            continue
        accuracies, errors, adopted = [], [], 0
        for _ in range(draws):
            train = np.concatenate(
                [
                    rng.choice(train_pool[full_labels[train_pool] == i], n_shots, replace=False)
                    for i in range(len(topics))
                ]
            )
            scored = np.setdiff1d(rows, train)
            drawn = [topics[i] for i in full_labels[train]]
            # As production trains it: calibrated on its cross-validation folds, which also decide
            # whether it would take over from zero-shot.
            model = train_supervised(vectors[train], drawn, topic_vector_map)
            if n_shots >= 2:  # cross-validation needs two labels of every topic
                validation = cross_validate(vectors[train], drawn, topic_vector_map)
                model = model.scaled(validation.logit_scale)
                adopted += validation.decision == SUPERVISED
            predicted, confidences = model.predict(vectors[scored])
            correct = np.array([p == topics[i] for p, i in zip(predicted, full_labels[scored])])
            accuracies.append(correct.mean())
            errors.append(expected_calibration_error(confidences, correct))
        result["few_shot"].append(
            {
                "shots": n_shots,
                "draws": draws,
                "accuracy": _rate(np.median(accuracies)),
                "accuracy_min": _rate(np.min(accuracies)),
                "accuracy_max": _rate(np.max(accuracies)),
                "ece": _rate(np.median(errors)),
                "takes_over": adopted,
            }
        )

    result["neighbours"] = {"k": k, **_neighbour_precision(vectors[rows], label_array, topics, topic_vectors, k)}
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
    ids = list(range(len(vectors)))
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
