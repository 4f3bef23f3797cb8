"""Embeddings of evaluation corpora (labelled CSVs, benchmark worlds), computed once per machine.

Evaluating the classifier or running a benchmark embeds the same 1,490 BBC texts every time, which
costs minutes on a shared 2-core machine; the vectors depend only on the texts and the model, so
they are kept under `settings.EMBEDDING_CACHE_DIR` (var/, never the repository), keyed by both.
Articles in the database never go through here: their embedding is stored on the row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from django.conf import settings

from pipeline.understanding.embedding import default_model_path, embed_texts, precision_in_force


def cache_path(texts: Sequence[str], cache_dir: Path | None = None) -> Path:
    """Where the embeddings of exactly these texts by the configured model are kept."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    digest.update(default_model_path().encode("utf-8"))
    digest.update(precision_in_force().encode("utf-8"))  # bf16 vectors differ from fp32 ones
    directory = Path(cache_dir or settings.EMBEDDING_CACHE_DIR)
    return directory / f"{digest.hexdigest()[:24]}-{len(texts)}.npy"


def cached_embeddings(texts: Sequence[str], cache_dir: Path | None = None) -> np.ndarray:
    """Embeddings of `texts` (one row each), read from the cache or computed and stored there."""
    path = cache_path(texts, cache_dir)
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = embed_texts(list(texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a run killed half-way never leaves a truncated cache behind.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, vectors)
    os.replace(tmp, path)
    return vectors
