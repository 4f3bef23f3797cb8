"""Does the cross-validation rule keep zero-shot when a few labels would make topics worse?

People label a few articles per topic of the BBC development half; the supervised model is trained on
them (as production trains it) and the rule of pipeline.understanding.cross_validation decides whether
it takes over. Every model is then scored on the untouched test half with the true categories.

Two kinds of labellers: careful (every label right) and careless (a share of the labels is given
another topic at random). Each row is `ROUNDS` random label draws. `BENCH_LABEL_RULE_SCORE=dev` scores
on the development rows not drawn instead (for choosing the rule's margin; the test half is for the
report), and `BENCH_LABEL_RULE_MARGIN_SE` tries another margin than the rule's.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter

import numpy as np

from benchmarks import scale
from benchmarks.bbc_corpus import DESCRIPTIONS, bbc_halves, bbc_vectors, read_bbc

# Quick: 3 label draws per row, enough to see the rule run, too few for its error rates.
ROUNDS = int(os.environ.get("BENCH_LABEL_RULE_ROUNDS", "3" if scale.QUICK else "20"))
# Quick: a development half of every fifth BBC row has ~26 articles of its rarest topic, too few for 32.
SHOTS = (4, 8, 16) if scale.QUICK else (4, 8, 16, 32)
CONFUSED_SHARE = (0.0, 0.3)
SEED = 20261203
SCORE_ON = os.environ.get("BENCH_LABEL_RULE_SCORE", "test")
MARGIN_SE = os.environ.get("BENCH_LABEL_RULE_MARGIN_SE")


def _accuracy(model, vectors: np.ndarray, truth: list[str]) -> float:
    predicted, _ = model.predict(vectors)
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


def run() -> dict:
    from django.conf import settings

    from pipeline.understanding.classification import embed_topics, train_supervised, zero_shot_model
    from pipeline.understanding.cross_validation import MIN_ADVANTAGE_SE, SUPERVISED, cross_validate
    from pipeline.understanding.recentring import recentre_topic_vectors

    margin = float(MARGIN_SE) if MARGIN_SE else MIN_ADVANTAGE_SE

    started = time.monotonic()
    texts, categories = read_bbc()
    vectors = bbc_vectors(texts)
    halves = bbc_halves()
    dev, test = halves["dev"], halves["test"]
    topics = sorted(set(categories))
    descriptions = json.loads(DESCRIPTIONS.read_text())
    # The zero-shot model in force: re-centred on the unlabelled articles it is scored on, as the
    # pipeline re-centres on its own stream (pipeline.understanding.recentring; no label used).
    scored_rows = test if SCORE_ON == "test" else dev
    described = embed_topics([(t, descriptions.get(t, "")) for t in topics])
    moved = recentre_topic_vectors(described, vectors[scored_rows], min_articles=settings.TOPIC_RECENTRE_MIN_ARTICLES)
    topic_vectors = dict(zip(topics, moved))
    zero_shot = zero_shot_model(topics, np.stack([topic_vectors[t] for t in topics]))

    rng = np.random.default_rng(SEED)
    table = [
        [
            "labels per topic",
            "labels given a wrong topic",
            "supervised takes over (of rounds)",
            "test accuracy: zero-shot",
            "supervised always (median, min-max)",
            "the rule's choice (median, min-max)",
            "rounds the rule chose the worse model",
        ]
    ]
    figures: dict[str, float] = {}
    for confused in CONFUSED_SHARE:
        for shots in SHOTS:
            adopted, always, chosen, zeros, wrong = 0, [], [], [], 0
            for _ in range(ROUNDS):
                rows = np.concatenate(
                    [rng.choice(dev[[categories[i] == t for i in dev]], shots, replace=False) for t in topics]
                )
                labels = [categories[i] for i in rows]
                for j in rng.choice(len(rows), int(round(confused * len(rows))), replace=False):
                    labels[j] = str(rng.choice([t for t in topics if t != labels[j]]))
                scored = test if SCORE_ON == "test" else np.setdiff1d(dev, rows)
                truth = [categories[i] for i in scored]
                zero_test = _accuracy(zero_shot, vectors[scored], truth)
                # Below two labels of a topic the floor keeps zero-shot (as TOPIC_MIN_LABELS does).
                floor_met = min(Counter(labels)[t] for t in topics) >= 2
                if floor_met:
                    validation = cross_validate(vectors[rows], labels, topic_vectors, min_advantage_se=margin)
                supervised = train_supervised(vectors[rows], labels, topic_vectors)
                supervised_test = _accuracy(supervised, vectors[scored], truth)
                takes_over = floor_met and validation.decision == SUPERVISED
                adopted += takes_over
                always.append(supervised_test)
                chosen.append(supervised_test if takes_over else zero_test)
                zeros.append(zero_test)
                wrong += (supervised_test > zero_test) != takes_over and supervised_test != zero_test
            table.append(
                [
                    shots,
                    f"{confused:.0%}",
                    f"{adopted}/{ROUNDS}",
                    f"{statistics.median(zeros):.2%}",
                    f"{statistics.median(always):.2%} ({min(always):.2%}-{max(always):.2%})",
                    f"{statistics.median(chosen):.2%} ({min(chosen):.2%}-{max(chosen):.2%})",
                    f"{wrong}/{ROUNDS}",
                ]
            )
            key = f"{shots}_shots_{round(confused * 100)}pct_confused"
            figures[f"adopted_{key}"] = adopted / ROUNDS
            figures[f"supervised_always_median_{key}"] = round(statistics.median(always), 4)
            figures[f"rule_median_{key}"] = round(statistics.median(chosen), 4)
            figures[f"rule_min_{key}"] = round(min(chosen), 4)
            figures[f"supervised_always_min_{key}"] = round(min(always), 4)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["zero_shot_accuracy"] = round(statistics.median(zeros), 4)
    where = f"the test half ({len(test)} rows" if SCORE_ON == "test" else "the development rows not drawn ("
    notes = (
        f"Labels drawn from the BBC development half ({len(dev)} rows), every accuracy on {where}, true "
        f"categories). {ROUNDS} rounds per row, seed {SEED}. A wrong label is another topic at random. The "
        f"rule: pipeline.understanding.cross_validation (5-fold, supervised must lead zero-shot by more than "
        f"{margin:g} standard error of the paired difference). A round where the rule 'chose the worse model' "
        "is one where the model it kept scored lower than the one it rejected."
    )
    return {"title": "Topic labels: the cross-validation rule", "figures": figures, "table": table, "notes": notes}
