"""A fixed development/test split of a labelled set: settings are chosen on the development half and
quality is reported on the test half, so no reported figure comes from the rows it was tuned on.

The split is stratified by label and decided per row by a seeded hash of its text, not by its position
in the file: the same row lands in the same half whatever the file's order, and adding rows to a file
moves no existing row across (within a label the halves are the lower and upper half of hash order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence

import numpy as np

DEV, TEST, ALL = "dev", "test", "all"
SPLITS = (DEV, TEST, ALL)
# Fixed once, before any figure of docs/quality.md was measured on the halves; changing it would let
# a test half be chosen for its result.
SPLIT_SEED = 20261203


def _row_key(text: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()


def split_indices(texts: Sequence[str], labels: Sequence[Hashable], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Row indices of each half (`dev`, `test`) and of `all`, each sorted; each label is halved
    (the development half gets the extra row of an odd count)."""
    if len(texts) != len(labels):
        raise ValueError("one label per text is needed")
    by_label: dict[Hashable, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    dev: list[int] = []
    test: list[int] = []
    for rows in by_label.values():
        ordered = sorted(rows, key=lambda i: (_row_key(texts[i], seed), i))
        half = (len(ordered) + 1) // 2
        dev += ordered[:half]
        test += ordered[half:]
    return {
        DEV: np.array(sorted(dev), dtype=np.int64),
        TEST: np.array(sorted(test), dtype=np.int64),
        ALL: np.arange(len(texts), dtype=np.int64),
    }
