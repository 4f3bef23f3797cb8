"""The BBC News set as benchmarks use it: texts as the ingestion path embeds them, categories, cached
embeddings, and the fixed development/test halves (pipeline.search.dataset_split)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks import scale

ROOT = Path(__file__).resolve().parent.parent
# The shared datasets sit beside the main checkout (../shared) and beside the worktrees (../../shared).
_CANDIDATES = [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
BBC_CSV = Path(
    os.environ.get("BBC_NEWS_CSV")
    or next((str(c / "datasets/bbc-news/bbc-news-train.csv") for c in _CANDIDATES if c.exists()), "")
    or ROOT.parent / "shared" / "datasets" / "bbc-news" / "bbc-news-train.csv"
)
DESCRIPTIONS = ROOT / "docs" / "bbc-news-topic-descriptions.json"
QUICK_EVERY = 5


def read_bbc_raw() -> tuple[list[str], list[str]]:
    """(texts as in the file, categories), in file order: what evaluate_classifier reads and splits.

    A quick run reads every QUICK_EVERY-th row only, and every bench reads the same ones: a cold machine
    then embeds about 300 articles once for all of them instead of 1,490 (over a minute of the quick run)."""
    from pipeline.search.evaluation import read_labelled_csv

    texts, categories = read_labelled_csv(BBC_CSV, "Text", "Category")
    if scale.QUICK:
        return texts[::QUICK_EVERY], categories[::QUICK_EVERY]
    return texts, categories


def read_bbc() -> tuple[list[str], list[str]]:
    """(texts as the ingestion path embeds them, categories), in file order."""
    from pipeline.understanding.embedding import article_text

    raw, categories = read_bbc_raw()
    return [article_text(None, None, text) for text in raw], categories


def bbc_vectors(texts: list[str]) -> np.ndarray:
    """Embeddings of the ingestion texts, cached per machine (the cache evaluate_classifier fills too)."""
    from pipeline.understanding.embedding_cache import cached_embeddings

    return cached_embeddings(texts)


def bbc_halves() -> dict[str, np.ndarray]:
    """Row indices of the development and test halves: the same halves evaluate_classifier --split uses."""
    from pipeline.search.dataset_split import split_indices

    raw, categories = read_bbc_raw()
    return split_indices(raw, categories)
