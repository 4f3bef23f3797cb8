"""Embeddings of benchmark corpora: the same cache `evaluate_classifier` uses (settings.EMBEDDING_CACHE_DIR)."""

from __future__ import annotations

import numpy as np


def cached_embeddings(texts: list[str], name: str = "") -> np.ndarray:
    """Embeddings of `texts` by the configured model, computed once per machine (`name` is only a label)."""
    from pipeline.understanding.embedding_cache import cached_embeddings as cached

    return cached(texts)
