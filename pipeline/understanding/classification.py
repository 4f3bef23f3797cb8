"""Topic classification from article embeddings that already exist.

Both classifiers are linear in the embedding, so one `LinearTopicModel` (a softmax over
`vectors @ coef.T + intercept`) serves zero-shot and supervised alike, and the neighbours
re-ranker can use either. Nothing here runs the model on an article: only topic texts are
embedded, once per process.
"""

from __future__ import annotations

import base64
import re
import threading
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from pipeline.understanding.embedding import EMBEDDING_DIM, embed_texts, precision_in_force

# A topic's label: its id in the service, its name or row number in evaluation.
Label = TypeVar("Label", bound=Hashable)

# Softmax temperature over cosine similarities. On news topics 0.03 makes the mean
# confidence match zero-shot accuracy (minimum log-loss on the BBC set lay at 0.025-0.03).
ZERO_SHOT_TEMPERATURE = 0.03

# Weight of the zero-shot prior added to a supervised model. The supervised logits grow
# with the number of labels, so the prior matters at a handful of labels per topic
# (+2 points at 8) and fades by 64 (where a larger weight starts to cost accuracy).
ZERO_SHOT_PRIOR_WEIGHT = 0.1

# Inverse L2 strength of the logistic regression; flat between 1 and 10 on news topics.
SUPERVISED_C = 3.0

MIN_LABELS_PER_TOPIC = 8

_PROMPT_TEMPLATE = "This news article is about {}."
# Descriptions are usually lists ("Sport: football, tennis, results"); embedding each
# listed item as its own prompt and averaging beats the whole sentence alone by 2-4
# points of zero-shot accuracy, whatever the wording of the description.
_DESCRIPTION_ITEMS = re.compile(r"[,;:()/]")

_topic_vector_cache: dict[tuple[str, str, str | None, str], np.ndarray] = {}
_topic_vector_lock = threading.Lock()


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare
class LinearTopicModel:
    """Softmax over `vectors @ coef.T + intercept`; `classes[i]` labels row i of `coef`."""

    classes: tuple[Hashable, ...]
    coef: np.ndarray  # (n_classes, EMBEDDING_DIM) float32
    intercept: np.ndarray  # (n_classes,) float32

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        logits = np.atleast_2d(np.asarray(vectors, dtype=np.float32)) @ self.coef.T + self.intercept
        return _softmax(logits)

    def predict(self, vectors: np.ndarray) -> tuple[list[Hashable], np.ndarray]:
        """The most probable class of each vector and its probability."""
        probabilities = self.predict_proba(vectors)
        best = probabilities.argmax(axis=1)
        labels = [self.classes[i] for i in best]
        return labels, probabilities[np.arange(len(best)), best]

    def scaled(self, factor: float) -> LinearTopicModel:
        """The same model with its logits multiplied by `factor`: same predictions, sharper or softer
        confidences (how a calibration temperature is applied)."""
        return LinearTopicModel(
            self.classes, (self.coef * factor).astype(np.float32), (self.intercept * factor).astype(np.float32)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: classes as given, weights as base64 little-endian float32."""
        return {
            "format": "linear-softmax-v1",
            "classes": list(self.classes),
            "dim": int(self.coef.shape[1]),
            "coef": _array_to_base64(self.coef),
            "intercept": _array_to_base64(self.intercept),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearTopicModel:
        if data.get("format") != "linear-softmax-v1":
            raise ValueError(f"unknown topic model format {data.get('format')!r}")
        classes = tuple(data["classes"])
        dim = int(data["dim"])
        coef = _array_from_base64(data["coef"]).reshape(len(classes), dim)
        intercept = _array_from_base64(data["intercept"])
        if intercept.shape != (len(classes),):
            raise ValueError("intercept does not match the number of classes")
        return cls(classes=classes, coef=coef, intercept=intercept)


def topic_prompts(name: str, description: str = "") -> list[str]:
    """Texts whose mean embedding stands for a topic (the name alone if it has no description)."""
    name = name.strip()
    description = (description or "").strip()
    prompts = [description or name, _PROMPT_TEMPLATE.format(name)]
    if description:
        for item in _DESCRIPTION_ITEMS.split(description.rstrip(". ")):
            item = item.strip(" .")
            if len(item) >= 3:
                prompts.append(_PROMPT_TEMPLATE.format(item))
    return prompts


def embed_topics(topics: Iterable[tuple[str, str]], model_path: str | None = None) -> np.ndarray:
    """Unit vectors, one row per (name, description), embedded once per process and cached."""
    topics = [(name, description or "") for name, description in topics]
    # Keyed by precision too: a topic vector is compared with article vectors made at the same precision.
    precision = precision_in_force()
    missing = [t for t in topics if (t[0], t[1], model_path, precision) not in _topic_vector_cache]
    if missing:
        prompt_lists = [topic_prompts(name, description) for name, description in missing]
        flat = [prompt for prompts in prompt_lists for prompt in prompts]
        embedded = embed_texts(flat, model_path=model_path, precision=precision)
        start = 0
        with _topic_vector_lock:
            for topic, prompts in zip(missing, prompt_lists):
                mean = embedded[start : start + len(prompts)].mean(axis=0)
                start += len(prompts)
                _topic_vector_cache[(topic[0], topic[1], model_path, precision)] = _unit(mean)
    if not topics:
        return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    return np.stack([_topic_vector_cache[(name, desc, model_path, precision)] for name, desc in topics])


def zero_shot_model(
    classes: Sequence[Hashable],
    topic_vectors: np.ndarray,
    temperature: float = ZERO_SHOT_TEMPERATURE,
) -> LinearTopicModel:
    """Cosine similarity to each topic vector, as a softmax model."""
    topic_vectors = np.asarray(topic_vectors, dtype=np.float32)
    if len(classes) != len(topic_vectors):
        raise ValueError("one topic vector per class is needed")
    return LinearTopicModel(
        classes=tuple(classes),
        coef=(topic_vectors / temperature).astype(np.float32),
        intercept=np.zeros(len(classes), dtype=np.float32),
    )


def classify_zero_shot(
    article_vectors: np.ndarray,
    topic_vectors: np.ndarray,
    temperature: float = ZERO_SHOT_TEMPERATURE,
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest topic for each article, and its softmax confidence."""
    model = zero_shot_model(range(len(topic_vectors)), topic_vectors, temperature)
    probabilities = model.predict_proba(article_vectors)
    indices = probabilities.argmax(axis=1)
    return indices, probabilities[np.arange(len(indices)), indices]


def train_supervised(
    vectors: np.ndarray,
    labels: Sequence[Label],
    topic_vectors: Mapping[Label, np.ndarray] | None = None,
    *,
    prior_weight: float = ZERO_SHOT_PRIOR_WEIGHT,
    temperature: float = ZERO_SHOT_TEMPERATURE,
    C: float = SUPERVISED_C,
) -> LinearTopicModel:
    """Logistic regression on labelled embeddings, with an optional zero-shot prior.

    The prior multiplies the supervised probabilities by p_zero_shot ** prior_weight.
    Both are linear in the embedding, so it folds exactly into the coefficients and the
    result is a plain `LinearTopicModel`.
    """
    from sklearn.linear_model import LogisticRegression

    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) != len(labels):
        raise ValueError("one label per vector is needed")
    counts = Counter(labels)
    if len(counts) < 2:
        raise ValueError("supervised training needs labels of at least two topics")
    classes = sorted(counts, key=str)
    class_index = {label: i for i, label in enumerate(classes)}
    targets = np.array([class_index[label] for label in labels])

    regression = LogisticRegression(C=C, max_iter=2000)
    regression.fit(vectors, targets)
    coef = regression.coef_.astype(np.float64)
    intercept = regression.intercept_.astype(np.float64)
    if len(classes) == 2:
        # scikit-learn keeps one row for two classes; softmax over (-z/2, z/2) equals sigmoid(z).
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])

    if topic_vectors is not None and prior_weight:
        for label, i in class_index.items():
            topic_vector = topic_vectors.get(label)
            if topic_vector is not None:
                coef[i] += prior_weight * np.asarray(topic_vector, dtype=np.float64) / temperature

    return LinearTopicModel(
        classes=tuple(classes),
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float32),
    )


def supervised_ready(
    label_counts: Mapping[Label, int],
    topics: Iterable[Label],
    min_per_topic: int = MIN_LABELS_PER_TOPIC,
) -> bool:
    """Whether every topic has enough labelled articles for the supervised model to take over.

    A topic without labels could never be predicted by the supervised model, so until
    each has `min_per_topic` the zero-shot model classifies everything.
    """
    topics = list(topics)
    return len(topics) >= 2 and all(label_counts.get(t, 0) >= min_per_topic for t in topics)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _array_to_base64(array: np.ndarray) -> str:
    return base64.b64encode(np.asarray(array, dtype="<f4").tobytes()).decode("ascii")


def _array_from_base64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)
