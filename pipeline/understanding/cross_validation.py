"""Whether people's labels make a better topic model than zero-shot: both scored on the same folds.

A handful of labels can make the supervised model worse than zero-shot (on news whose categories
overlap, 8 labels per topic scored below it), so the number of labels alone cannot decide. The labels
are split into stratified folds; for each fold the supervised model is trained on the other folds
and it and the zero-shot model (which trains on nothing) classify the held-out labels. The supervised
model takes over only when it is right more often, by more than `MIN_ADVANTAGE_SE` standard errors of
the paired per-label difference: a lead that one or two labels could reverse is noise.

The same out-of-fold predictions calibrate the supervised model: logistic regression on a few dozen
labels is far less confident than it is right (its expected calibration error was 33 % at 8 labels per
topic on the BBC development half), so one factor that scales its logits is fitted to them by log-loss.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.understanding.classification import train_supervised, zero_shot_model

FOLDS = 5
# How far ahead (in standard errors of the paired difference) supervised must be to take over.
# One standard error keeps a tie or a one-label lead with zero-shot, and lets a real gain through
# with a few dozen labels (on the BBC development half, 8 labels per topic: see docs/quality.md).
MIN_ADVANTAGE_SE = 1.0
# Fixed, so the same labels always give the same folds and the same decision.
FOLD_SEED = 0
# Logit scale factors tried when calibrating (log-spaced; 1 = as trained).
_SCALES = np.exp(np.linspace(np.log(0.25), np.log(40.0), 61))

SUPERVISED = "supervised"
ZERO_SHOT = "zero_shot"


@dataclass(frozen=True)
class CrossValidation:
    supervised_accuracy: float
    zero_shot_accuracy: float
    advantage_se: float  # standard error of supervised minus zero-shot accuracy
    folds: int
    labels: int
    decision: str  # SUPERVISED or ZERO_SHOT
    reason: str
    logit_scale: float = 1.0  # multiply the supervised model's logits by this to calibrate it


def stratified_folds(labels: Sequence[Hashable], folds: int, seed: int = FOLD_SEED) -> np.ndarray:
    """The fold (0..folds-1) of each label, each topic dealt round-robin in a seeded random order."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=np.int64)
    by_label: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    offset = 0
    for label in sorted(by_label, key=str):
        members = rng.permutation(by_label[label])
        # Rotating the start spreads the remainders of small topics over all folds.
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


def cross_validate(
    vectors: np.ndarray,
    labels: Sequence[Hashable],
    topic_vectors: Mapping[Any, np.ndarray],
    *,
    folds: int = FOLDS,
    min_advantage_se: float = MIN_ADVANTAGE_SE,
) -> CrossValidation:
    """Cross-validated accuracy of the supervised model (trained as `train_supervised` trains it in
    production, zero-shot prior included) and of zero-shot on the same held-out labels, and which wins.

    `topic_vectors` maps every topic the labels use to its zero-shot vector.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    counts = Counter(labels)
    if len(counts) < 2:
        raise ValueError("cross-validation needs labels of at least two topics")
    # Every topic must be in every training part: at most as many folds as the rarest topic has labels.
    folds = min(folds, min(counts.values()))
    if folds < 2:
        raise ValueError("cross-validation needs at least two labels of every topic")
    classes = sorted(counts, key=str)
    zero_shot = zero_shot_model(classes, np.stack([np.asarray(topic_vectors[c]) for c in classes]))
    zero_predicted, _ = zero_shot.predict(vectors)
    label_list = list(labels)
    zero_correct = np.array([p == y for p, y in zip(zero_predicted, label_list)], dtype=np.float64)

    fold_of = stratified_folds(label_list, folds)
    supervised_correct = np.zeros(len(label_list))
    # Out-of-fold logits, columns in `classes` order, for calibration.
    logits = np.zeros((len(label_list), len(classes)))
    for fold in range(folds):
        held_out = np.flatnonzero(fold_of == fold)
        training = np.flatnonzero(fold_of != fold)
        model = train_supervised(vectors[training], [label_list[i] for i in training], topic_vectors)
        predicted, _ = model.predict(vectors[held_out])
        supervised_correct[held_out] = [p == label_list[i] for p, i in zip(predicted, held_out)]
        columns = [model.classes.index(c) for c in classes]
        logits[held_out] = (vectors[held_out] @ model.coef.T + model.intercept)[:, columns]

    difference = supervised_correct - zero_correct
    advantage = float(difference.mean())
    se = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    supervised_accuracy, zero_shot_accuracy = float(supervised_correct.mean()), float(zero_correct.mean())
    scores = (
        f"supervised {supervised_accuracy:.1%}, zero-shot {zero_shot_accuracy:.1%} on the same {len(label_list)} "
        f"labels by {folds}-fold cross-validation (difference {advantage:+.1%} ± {se:.1%})"
    )
    if advantage > 0 and advantage > min_advantage_se * se:
        decision, reason = SUPERVISED, f"{scores}: supervised is ahead, it takes over"
    else:
        decision, reason = (
            ZERO_SHOT,
            f"{scores}: supervised is not ahead by more than {min_advantage_se:g} standard error, zero-shot stays",
        )
    targets = np.array([classes.index(label) for label in label_list])
    return CrossValidation(
        supervised_accuracy,
        zero_shot_accuracy,
        se,
        folds,
        len(label_list),
        decision,
        reason,
        logit_scale=fit_logit_scale(logits, targets),
    )


def fit_logit_scale(logits: np.ndarray, targets: np.ndarray) -> float:
    """The factor on `logits` that minimises the log-loss of `targets` (temperature scaling)."""
    losses = []
    for scale in _SCALES:
        scaled = logits * scale
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_probabilities = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        losses.append(-log_probabilities[np.arange(len(targets)), targets].mean())
    return float(_SCALES[int(np.argmin(losses))])
