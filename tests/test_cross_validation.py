"""The supervised model takes over only when it beats zero-shot on the same cross-validation folds."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.understanding.cross_validation import (
    SUPERVISED,
    ZERO_SHOT,
    cross_validate,
    fit_logit_scale,
    stratified_folds,
)
from pipeline.understanding.embedding import EMBEDDING_DIM


def _topics(n_topics: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((n_topics, EMBEDDING_DIM))
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)


def _articles(centres: np.ndarray, per_topic: int, spread: float, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    labels = [t for t in range(len(centres)) for _ in range(per_topic)]
    points = centres[labels] + spread * rng.standard_normal((len(labels), EMBEDDING_DIM)) / np.sqrt(EMBEDDING_DIM)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def test_folds_are_stratified_and_fixed() -> None:
    labels = ["a"] * 8 + ["b"] * 5
    folds = stratified_folds(labels, 4)
    assert sorted(np.bincount(folds[:8], minlength=4)) == [2, 2, 2, 2]
    assert sorted(np.bincount(folds[8:], minlength=4)) == [1, 1, 1, 2]
    assert (stratified_folds(labels, 4) == folds).all()


def test_labels_that_teach_something_zero_shot_cannot_know_take_over() -> None:
    rng = np.random.default_rng(3)
    centres = _topics(4, rng)
    vectors, labels = _articles(centres, 8, 1.0, rng)
    # Descriptions that point nowhere useful: zero-shot is near chance, the labels carry the topics.
    useless = dict(enumerate(_topics(4, rng)))
    result = cross_validate(vectors, labels, useless)
    assert result.decision == SUPERVISED, result.reason
    assert result.supervised_accuracy > result.zero_shot_accuracy + 0.3
    assert result.folds == 5 and result.labels == 32


def test_noisy_labels_on_overlapping_topics_keep_zero_shot() -> None:
    rng = np.random.default_rng(4)
    # Two pairs of overlapping topics (centres close together), good descriptions (the true centres),
    # and a person who labels 8 articles per topic, a quarter of them with the neighbouring topic.
    base = _topics(2, rng)
    offsets = 0.35 * _topics(4, rng)
    centres = np.stack([base[0] + offsets[0], base[0] + offsets[1], base[1] + offsets[2], base[1] + offsets[3]])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors, labels = _articles(centres, 8, 1.2, rng)
    noisy = list(labels)
    for i in rng.choice(len(labels), len(labels) // 4, replace=False):
        noisy[i] = labels[i] ^ 1  # the other topic of its pair
    result = cross_validate(vectors, noisy, dict(enumerate(centres)))
    assert result.decision == ZERO_SHOT, result.reason
    assert "zero-shot stays" in result.reason


def test_a_tie_keeps_zero_shot() -> None:
    rng = np.random.default_rng(5)
    centres = _topics(3, rng)
    vectors, labels = _articles(centres, 6, 0.3, rng)  # so well separated that both are always right
    result = cross_validate(vectors, labels, dict(enumerate(centres)))
    assert result.supervised_accuracy == result.zero_shot_accuracy == 1.0
    assert result.decision == ZERO_SHOT


def test_needs_two_labels_of_every_topic() -> None:
    rng = np.random.default_rng(6)
    centres = _topics(2, rng)
    with pytest.raises(ValueError):
        cross_validate(centres, [0, 1], dict(enumerate(centres)))


def test_calibration_recovers_the_scale_the_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((4000, 4))
    sharp = np.exp(3.0 * logits)
    probabilities = sharp / sharp.sum(axis=1, keepdims=True)
    targets = np.array([rng.choice(4, p=p) for p in probabilities])
    assert fit_logit_scale(logits, targets) == pytest.approx(3.0, rel=0.15)


def test_an_underconfident_supervised_model_is_sharpened() -> None:
    rng = np.random.default_rng(8)
    centres = _topics(3, rng)
    vectors, labels = _articles(centres, 10, 1.0, rng)
    result = cross_validate(vectors, labels, dict(enumerate(_topics(3, rng))))
    # Logistic regression on 30 separable labels is right nearly always but far from sure of it.
    assert result.supervised_accuracy > 0.9 and result.logit_scale > 2
