"""Embedding precision (EMBEDDING_PRECISION): bf16 against the fp32 reference, in one run, on BBC articles.

Speed: full-length BBC articles (../shared/datasets, read, never copied) are stored as pending articles
(as bench_processing stores them) and each batch of PROCESSING_BATCH_SIZE goes pending → indexed through
the real `process_articles` actor function (embed, classify, write, stories, index) once at fp32 and
once at bf16, back to back, the order alternating, so a burst of load from the other sessions on this
shared machine hits both alike. The raw model (`embed_texts` on the same texts) is timed the same way.
bf16 is the shipped model with bfloat16 weights (pipeline/understanding/embedding.py, get_model).
A round's ratio is fp32 time / bf16 time summed over its batches; the figure is the median of the
rounds, with their min–max.

Quality, on the same run's model: every BBC article (a random 60 with BENCH_QUICK=1) embedded at both
precisions: mean and minimum cosine of each bf16 vector to its fp32 vector; zero-shot accuracy against
the one-sentence topic descriptions (docs/bbc-news-topic-descriptions.json); similar-article precision
@10 (share of the 10 nearest with the same topic); and recall@10 of bf16 queries against fp32-stored
vectors (a web process at one precision searching vectors stored at the other), exact search as truth.

A precision becomes the default only if it is ≥ 1.8× end to end, mean cosine ≥ 0.999 and zero-shot
accuracy within 0.3 points of fp32.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import numpy as np

from benchmarks import scale
from benchmarks.bbc_corpus import ROOT, read_bbc
from benchmarks.bench_processing import _pipeline_batch_seconds, _reset, _store_pending

QUICK = scale.QUICK
# Quick: a quarter of a batch and 60 texts. On a CPU without native bf16 (no AVX-512 BF16 or AMX), bf16 runs at
# about a sixth of fp32's rate, and the quick sizes of 32 articles and 120 texts took 117 s of the 3 minutes.
ARTICLES = 8 if QUICK else 192
QUALITY_TEXTS = 60 if QUICK else None  # None: all 1,490
ROUNDS = 2 if QUICK else 3
PRECISIONS = ("fp32", "bf16")
MIN_SPEEDUP, MIN_MEAN_COSINE, MAX_ACCURACY_LOSS_POINTS = 1.8, 0.999, 0.3


def _set_precision(precision: str) -> None:
    from django.conf import settings

    settings.EMBEDDING_PRECISION = precision


def _raw_seconds(texts: list[str], precision: str) -> float:
    from pipeline.understanding.embedding import embed_texts

    started = time.perf_counter()
    embed_texts(texts, precision=precision)
    return time.perf_counter() - started


def _speed(texts: list[str]) -> dict[str, object]:
    from django.conf import settings

    from articles.models import Article
    from pipeline.search import vector_index
    from pipeline.understanding.embedding import article_text
    from pipeline.understanding.topic_models import topic_model_in_force

    ids = _store_pending(texts)
    rows = Article.objects.filter(pk__in=ids).order_by("id")
    embedded_texts = [article_text(a.title, a.summary, a.content) for a in rows]
    settings.VECTOR_INDEX_PATH = ROOT / "var" / "bench-cache" / "bench-precision-index.npz"
    vector_index.reset_index()
    # A worker's steady state: models, topic model (per precision) and index loaded, both paths warmed.
    vector_index.get_index()
    for precision in PRECISIONS:
        _set_precision(precision)
        topic_model_in_force()
        _raw_seconds(embedded_texts[:32], precision)

    size = settings.PROCESSING_BATCH_SIZE
    batches = [list(range(start, min(start + size, len(ids)))) for start in range(0, len(ids), size)]
    pipeline = {p: np.zeros((ROUNDS, len(batches))) for p in PRECISIONS}
    raw = {p: np.zeros((ROUNDS, len(batches))) for p in PRECISIONS}
    for r in range(ROUNDS):
        for b, positions in enumerate(batches):
            batch_ids = [ids[i] for i in positions]
            order = PRECISIONS if (r + b) % 2 == 0 else PRECISIONS[::-1]
            for precision in order:
                _set_precision(precision)
                raw[precision][r, b] = _raw_seconds([embedded_texts[i] for i in positions], precision)
                _reset(batch_ids)
                pipeline[precision][r, b] = _pipeline_batch_seconds(batch_ids)
    pipeline_ratios = pipeline["fp32"].sum(axis=1) / pipeline["bf16"].sum(axis=1)
    raw_ratios = raw["fp32"].sum(axis=1) / raw["bf16"].sum(axis=1)
    rates = {p: len(ids) / pipeline[p].sum(axis=1) for p in PRECISIONS}
    return {
        "articles": len(ids),
        "batch_size": size,
        "pipeline_ratios": pipeline_ratios,
        "raw_ratios": raw_ratios,
        "pipeline_rates": rates,
    }


def _neighbours(queries: np.ndarray, corpus: np.ndarray, k: int = 10) -> np.ndarray:
    """Indices of the k nearest corpus rows of each query, itself excluded (queries are corpus rows)."""
    scores = queries @ corpus.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1)[:, :k]


def _quality(texts: list[str], labels: list[str]) -> dict[str, float]:
    from pipeline.search.evaluation import read_descriptions
    from pipeline.understanding.classification import classify_zero_shot, embed_topics
    from pipeline.understanding.embedding_cache import cached_embeddings

    descriptions = read_descriptions(ROOT / "docs" / "bbc-news-topic-descriptions.json")
    names = list(descriptions)
    truth = np.array([names.index(label) for label in labels])
    vectors, accuracy, precision_at_10 = {}, {}, {}
    for precision in PRECISIONS:
        _set_precision(precision)
        # Cached per machine, keyed by the precision in force: the same texts need not be embedded each run.
        vectors[precision] = cached_embeddings(texts)
        predicted, _ = classify_zero_shot(vectors[precision], embed_topics(list(descriptions.items())))
        accuracy[precision] = float((predicted == truth).mean())
        near = _neighbours(vectors[precision], vectors[precision])
        precision_at_10[precision] = float((truth[near] == truth[:, None]).mean())
    cosines = (vectors["fp32"] * vectors["bf16"]).sum(axis=1)
    exact = _neighbours(vectors["fp32"], vectors["fp32"])
    mixed = _neighbours(vectors["bf16"], vectors["fp32"])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, mixed, strict=True)])
    return {
        "texts": len(texts),
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "accuracy": accuracy,
        "precision_at_10": precision_at_10,
        "mixed_recall_at_10": float(recall),
    }


def run() -> dict:
    from django.conf import settings

    from pipeline.understanding.embedding import NATIVE_BF16_FLAGS, resolve_precision, this_cpu_flags

    configured = settings.EMBEDDING_PRECISION
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]
    texts, labels = read_bbc()
    rng = np.random.default_rng(11)
    try:
        speed = _speed([texts[i] for i in sorted(rng.choice(len(texts), ARTICLES, replace=False).tolist())])
        if QUALITY_TEXTS:
            chosen = sorted(rng.choice(len(texts), QUALITY_TEXTS, replace=False).tolist())
            texts, labels = [texts[i] for i in chosen], [labels[i] for i in chosen]
        quality = _quality(texts, labels)
    finally:
        _set_precision(configured)

    load_after = os.getloadavg()[0]
    ratio = float(np.median(speed["pipeline_ratios"]))
    raw_ratio = float(np.median(speed["raw_ratios"]))
    loss_points = 100 * (quality["accuracy"]["fp32"] - quality["accuracy"]["bf16"])
    passes = (
        ratio >= MIN_SPEEDUP and quality["mean_cosine"] >= MIN_MEAN_COSINE and loss_points <= MAX_ACCURACY_LOSS_POINTS
    )
    flags = sorted(this_cpu_flags() & NATIVE_BF16_FLAGS)
    figures = {
        "quick": QUICK,
        "articles_timed": speed["articles"],
        "rounds": ROUNDS,
        "pipeline_speedup_bf16_median": round(ratio, 3),
        "pipeline_speedup_bf16_per_round": [round(float(x), 3) for x in speed["pipeline_ratios"]],
        "raw_model_speedup_bf16_median": round(raw_ratio, 3),
        "raw_model_speedup_bf16_per_round": [round(float(x), 3) for x in speed["raw_ratios"]],
        "pipeline_fp32_articles_per_s_median": round(float(np.median(speed["pipeline_rates"]["fp32"])), 1),
        "pipeline_bf16_articles_per_s_median": round(float(np.median(speed["pipeline_rates"]["bf16"])), 1),
        "quality_texts": quality["texts"],
        "mean_cosine_bf16_to_fp32": round(quality["mean_cosine"], 6),
        "min_cosine_bf16_to_fp32": round(quality["min_cosine"], 6),
        "zero_shot_accuracy_fp32": round(quality["accuracy"]["fp32"], 4),
        "zero_shot_accuracy_bf16": round(quality["accuracy"]["bf16"], 4),
        "zero_shot_accuracy_loss_points": round(loss_points, 2),
        "similar_precision_at_10_fp32": round(quality["precision_at_10"]["fp32"], 4),
        "similar_precision_at_10_bf16": round(quality["precision_at_10"]["bf16"], 4),
        "recall_at_10_bf16_queries_on_fp32_vectors": round(quality["mixed_recall_at_10"], 4),
        "bf16_meets_the_bar": passes,
        "native_bf16_flags": flags,
        "auto_resolves_to": resolve_precision("auto", this_cpu_flags()),
    }

    def spread(values: np.ndarray) -> str:
        return f"{np.median(values):.2f} ({values.min():.2f}–{values.max():.2f})"

    table = [
        [
            "precision",
            "pending → indexed, articles/s",
            "× fp32 (median, min–max of rounds)",
            "raw model × fp32",
            "mean / min cosine to fp32",
            "zero-shot accuracy",
            "similar p@10",
        ],
        [
            "fp32 (reference)",
            figures["pipeline_fp32_articles_per_s_median"],
            "1.00",
            "1.00",
            "1 / 1",
            f"{quality['accuracy']['fp32']:.1%}",
            f"{quality['precision_at_10']['fp32']:.1%}",
        ],
        [
            "bf16 (bfloat16 weights)",
            figures["pipeline_bf16_articles_per_s_median"],
            spread(speed["pipeline_ratios"]),
            spread(speed["raw_ratios"]),
            f"{quality['mean_cosine']:.6f} / {quality['min_cosine']:.6f}",
            f"{quality['accuracy']['bf16']:.1%}",
            f"{quality['precision_at_10']['bf16']:.1%}",
        ],
    ]
    shortfalls = [
        f"end-to-end speed-up {ratio:.2f}× < {MIN_SPEEDUP}×" if ratio < MIN_SPEEDUP else "",
        f"mean cosine {quality['mean_cosine']:.6f} < {MIN_MEAN_COSINE}"
        if quality["mean_cosine"] < MIN_MEAN_COSINE
        else "",
        f"accuracy {loss_points:.2f} points lower" if loss_points > MAX_ACCURACY_LOSS_POINTS else "",
    ]
    verdict = (
        "bf16 meets the bar (≥ 1.8× end to end, mean cosine ≥ 0.999, accuracy within 0.3 points)"
        if passes
        else "bf16 stays optional (EMBEDDING_PRECISION=bf16 or auto), fp32 the default: "
        + "; ".join(s for s in shortfalls if s)
        + f" (the model alone: {raw_ratio:.2f}×; writing, stories and the index do not get faster)"
    )
    command = scale.command("precision")
    notes = (
        f"Run {started}, `{command}`; native bf16 flags on this CPU: {', '.join(flags) or 'none'} "
        f"(auto → {figures['auto_resolves_to']}). Speed: {speed['articles']} BBC articles in batches of "
        f"{speed['batch_size']}, {ROUNDS} rounds, each batch through both precisions back to back (order "
        f"alternating); per round, pipeline fp32/bf16 time: {figures['pipeline_speedup_bf16_per_round']}, raw "
        f"model: {figures['raw_model_speedup_bf16_per_round']}. Quality on {quality['texts']} BBC articles: "
        f"zero-shot accuracy {loss_points:+.2f} points lost at bf16; bf16 queries against fp32-stored vectors "
        f"find {quality['mixed_recall_at_10']:.1%} of the fp32 queries' 10 nearest. {verdict}. Articles/s are "
        f"absolute rates on a machine shared with other sessions (1-minute load average {load_before:.1f} at the "
        f"start, {load_after:.1f} at the end, on {os.cpu_count()} cores); the ratios are the figures."
    )
    return {"title": "Embedding precision (EMBEDDING_PRECISION)", "figures": figures, "table": table, "notes": notes}
