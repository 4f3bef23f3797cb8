"""Embeddings of benchmark corpora, computed once per machine and kept under var/bench-cache/."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "var" / "bench-cache"


def cached_embeddings(texts: list[str], name: str) -> np.ndarray:
    """Embeddings of `texts` by the configured model, computed once and kept under var/bench-cache/."""
    from pipeline.understanding.embedding import default_model_path, embed_texts, precision_in_force

    key_text = "\n".join(texts) + "\0" + default_model_path() + "\0" + precision_in_force()
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    path = CACHE_DIR / f"{name}-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = embed_texts(texts)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, vectors)
    os.replace(tmp, path)
    return vectors
