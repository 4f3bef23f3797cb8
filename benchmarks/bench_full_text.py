"""What the whole article is worth to the model: a feed's snippet against the article's body.

Most feeds carry a title and a sentence or two; scrape_article fetches the page for the rest. This
measures, on the BBC set (its `Text` column is the whole article, headline first), what the model
does with each, through the ingestion path (`article_text`, then all-MiniLM-L6-v2, which reads the
first MAX_TEXT_CHARS):

- **snippet**: the headline and the lead sentence (the text up to its first full stop), what a
  BBC feed item carries;
- **summary**: the first three sentences, what a generous feed carries;
- **body**: the whole article, as the model sees it once the page is fetched.

Scored with the pipeline's own functions (pipeline/search/evaluation.py): zero-shot topic accuracy
with the descriptions in docs/bbc-news-topic-descriptions.json, and the share of the 10 similar
articles (neighbours.find_similar, re-ranked with the zero-shot topics) that share the query's
category. Rounds: the set is split at random in halves, a development half on which the default is
chosen (the variant with the better sum of the two figures) and a held-out half on which it is
reported; figures are the median over the rounds with their range. Embeddings are computed once per
machine (the embedding cache under var/).

    make bench BENCH=full_text
"""

from __future__ import annotations

import os
import re
import statistics

import numpy as np

from benchmarks import scale
from benchmarks.bbc_corpus import DESCRIPTIONS, read_bbc_raw
from benchmarks.embedding_cache import cached_embeddings

# Quick: 2 splits of the quick run's third of the set (bbc_corpus), whose bodies the benches before
# this one have embedded already.
ROUNDS = int(os.environ.get("BENCH_FULL_TEXT_ROUNDS", "2" if scale.QUICK else "5"))
SEED = 20261203
K = 10

# A sentence ends at a full stop, question or exclamation mark followed by a space (the set is lower
# case with no line breaks, and the headline runs into the lead sentence).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def first_sentences(text: str, n: int) -> str:
    return " ".join(_SENTENCE_END.split(text.strip(), maxsplit=n)[:n])


VARIANTS = {
    "snippet (headline + lead sentence)": lambda text: first_sentences(text, 1),
    "summary (first 3 sentences)": lambda text: first_sentences(text, 3),
    "body (whole article)": lambda text: text,
}


def _score(vectors: np.ndarray, labels: list[str], topics: list[str], topic_vectors: np.ndarray) -> dict[str, float]:
    from pipeline.search.evaluation import evaluate_vectors

    result = evaluate_vectors(vectors, labels, topics, topic_vectors, shots=(), draws=0, k=K)
    return {
        "accuracy": 100 * result["zero_shot"]["accuracy"],
        "precision": 100 * result["neighbours"]["precision"],
    }


def run() -> dict:
    from pipeline.search.evaluation import read_descriptions
    from pipeline.understanding.classification import embed_topics
    from pipeline.understanding.embedding import MAX_TEXT_CHARS, article_text

    texts, labels = read_bbc_raw()
    topics = sorted(set(labels))
    descriptions = read_descriptions(DESCRIPTIONS)
    topic_vectors = embed_topics([(topic, descriptions.get(topic, "")) for topic in topics])

    vectors: dict[str, np.ndarray] = {}
    lengths: dict[str, float] = {}
    for name, make in VARIANTS.items():
        # Through the ingestion path: the feed's text as the summary, or the page's body as the content.
        if name.startswith("body"):
            model_texts = [article_text(None, None, make(text)) for text in texts]
        else:
            model_texts = [article_text(None, make(text), None) for text in texts]
        lengths[name] = statistics.median(len(t) for t in model_texts)
        vectors[name] = cached_embeddings(model_texts, f"full-text-{name.split()[0]}")

    rng = np.random.default_rng(SEED)
    held_out: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    chosen: list[str] = []
    for _ in range(ROUNDS):
        order = rng.permutation(len(texts))
        dev, test = order[: len(order) // 2], order[len(order) // 2 :]
        dev_scores = {}
        for name in VARIANTS:
            dev_scores[name] = _score(vectors[name][dev], [labels[i] for i in dev], topics, topic_vectors)
            held_out[name].append(_score(vectors[name][test], [labels[i] for i in test], topics, topic_vectors))
        chosen.append(max(dev_scores, key=lambda n: dev_scores[n]["accuracy"] + dev_scores[n]["precision"]))

    def summary(name: str, metric: str) -> tuple[float, float, float]:
        values = [scores[metric] for scores in held_out[name]]
        return statistics.median(values), min(values), max(values)

    reference = "snippet (headline + lead sentence)"
    table = [
        [
            "text the model reads",
            "median length (chars)",
            "zero-shot accuracy % (median, range)",
            "vs snippet",
            "similar-article precision@10 % (median, range)",
            "vs snippet",
        ]
    ]
    figures: dict[str, float] = {}
    for name in VARIANTS:
        acc, acc_lo, acc_hi = summary(name, "accuracy")
        prec, prec_lo, prec_hi = summary(name, "precision")
        ref_acc, ref_prec = summary(reference, "accuracy")[0], summary(reference, "precision")[0]
        table.append(
            [
                name,
                f"{lengths[name]:.0f}",
                f"{acc:.2f} ({acc_lo:.2f}–{acc_hi:.2f})",
                f"{acc - ref_acc:+.2f} pts",
                f"{prec:.2f} ({prec_lo:.2f}–{prec_hi:.2f})",
                f"{prec - ref_prec:+.2f} pts",
            ]
        )
        key = name.split()[0]
        figures[f"{key}_accuracy_pct"] = round(acc, 2)
        figures[f"{key}_precision_pct"] = round(prec, 2)
    winner = max(set(chosen), key=chosen.count)
    return {
        "title": "Full text: snippet vs whole article (BBC, zero-shot topics and similar articles)",
        "figures": figures,
        "table": table,
        "notes": (
            f"{len(texts)} BBC articles, {ROUNDS} rounds of a random half (development) / half (held out) split, "
            f"seed {SEED}; figures on the held-out halves, median and range over the rounds. The model reads at "
            f"most {MAX_TEXT_CHARS} characters. Chosen on the development halves: {winner} "
            f"({chosen.count(winner)} of {ROUNDS} rounds) — hence ARTICLE_BODY_FOR_MODEL's default."
        ),
    }
