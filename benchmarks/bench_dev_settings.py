"""Settings once chosen on the whole BBC set, re-checked on its development half alone.

The zero-shot temperature, the splitting of topic descriptions into one prompt per listed item, and
the topic weight of similar articles were chosen on the same rows docs/quality.md used to report.
This scores each choice and its alternatives on the development half only (the test half is for
reporting), with the functions the pipeline uses.
"""

from __future__ import annotations

import json
import time

import numpy as np

from benchmarks import scale
from benchmarks.bbc_corpus import DESCRIPTIONS, bbc_halves, bbc_vectors, read_bbc

TEMPERATURES = (0.02, 0.025, 0.03, 0.04, 0.05)
TOPIC_WEIGHTS = (0.0, 0.1, 0.25, 0.4)
# Quick: similar articles for the first 100 development rows only (among all of them).
SIMILAR_QUERIES = 100 if scale.QUICK else None


def run() -> dict:
    from pipeline.search.evaluation import expected_calibration_error
    from pipeline.search.neighbours import TOPIC_WEIGHT, find_similar
    from pipeline.understanding.classification import ZERO_SHOT_TEMPERATURE, embed_topics, zero_shot_model
    from pipeline.understanding.embedding import embed_texts

    started = time.monotonic()
    texts, categories = read_bbc()
    dev = bbc_halves()["dev"]
    vectors = bbc_vectors(texts)[dev]
    topics = sorted(set(categories))
    truth = np.array([topics.index(categories[i]) for i in dev])
    descriptions = json.loads(DESCRIPTIONS.read_text())
    topic_vectors = embed_topics([(t, descriptions.get(t, "")) for t in topics])
    classes = list(range(len(topics)))
    table = [["setting", "value", "development half", ""]]
    figures: dict[str, float] = {}

    for temperature in TEMPERATURES:
        probabilities = zero_shot_model(classes, topic_vectors, temperature).predict_proba(vectors)
        correct = probabilities.argmax(axis=1) == truth
        log_loss = float(-np.log(probabilities[np.arange(len(truth)), truth] + 1e-12).mean())
        ece = expected_calibration_error(probabilities.max(axis=1), correct)
        in_use = " (in use)" if temperature == ZERO_SHOT_TEMPERATURE else ""
        table.append(["zero-shot temperature", f"{temperature}{in_use}", f"ECE {ece:.2%}", f"log-loss {log_loss:.4f}"])
        figures[f"ece_temperature_{temperature}"] = round(ece, 4)

    whole = embed_texts([descriptions.get(t, t) for t in topics])
    for name, tv in (("one prompt per listed item (in use)", topic_vectors), ("the whole description", whole)):
        predicted, _ = zero_shot_model(classes, tv).predict(vectors)
        accuracy = float(np.mean(np.array(predicted) == truth))
        table.append(["topic prompts", name, f"zero-shot accuracy {accuracy:.2%}", ""])
        figures[f"accuracy_prompts_{'split' if tv is topic_vectors else 'whole'}"] = round(accuracy, 4)

    model = zero_shot_model(classes, topic_vectors)
    ids = np.arange(len(vectors))
    for weight in TOPIC_WEIGHTS:
        hits = returned = 0
        for i in range(min(SIMILAR_QUERIES or len(vectors), len(vectors))):
            found = find_similar(vectors[i], vectors, ids, 10, exclude_ids={i}, topic_model=model, topic_weight=weight)
            hits += sum(int(truth[n.id] == truth[i]) for n in found)
            returned += len(found)
        in_use = " (in use)" if weight == TOPIC_WEIGHT else ""
        table.append(["similar articles: topic weight", f"{weight}{in_use}", f"precision@10 {hits / returned:.2%}", ""])
        figures[f"precision10_topic_weight_{weight}"] = round(hits / returned, 4)

    figures["seconds"] = round(time.monotonic() - started, 1)
    notes = (
        f"BBC development half only ({len(dev)} rows; pipeline.search.dataset_split). Nothing here reads the test half."
    )
    return {"title": "Settings re-checked on the development half", "figures": figures, "table": table, "notes": notes}
