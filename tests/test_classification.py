from __future__ import annotations

import json

import numpy as np
import pytest

import pipeline.understanding.classification as classification
from pipeline.understanding.classification import (
    LinearTopicModel,
    classify_zero_shot,
    embed_topics,
    supervised_ready,
    topic_prompts,
    train_supervised,
    zero_shot_model,
)
from pipeline.understanding.embedding import EMBEDDING_DIM


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def clusters(n_per_topic: int, n_topics: int = 3, noise: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around random topic centres, and the centres."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_topics, EMBEDDING_DIM)))
    points = np.repeat(centres, n_per_topic, axis=0)
    points = points + noise * rng.standard_normal(points.shape) / np.sqrt(EMBEDDING_DIM)
    return unit(points), centres


def test_topic_prompts_fall_back_to_the_name() -> None:
    assert topic_prompts("sport", "") == ["sport", "This news article is about sport."]


def test_topic_prompts_add_each_listed_item() -> None:
    prompts = topic_prompts("sport", "Sports news: football, tennis (and golf).")
    assert prompts[0] == "Sports news: football, tennis (and golf)."
    assert "This news article is about football." in prompts
    assert "This news article is about and golf." in prompts
    assert "This news article is about sport." in prompts


def test_classify_zero_shot_picks_the_nearest_topic() -> None:
    points, centres = clusters(4)
    indices, confidences = classify_zero_shot(points, centres)
    assert list(indices) == [0] * 4 + [1] * 4 + [2] * 4
    assert np.all((confidences > 1 / 3) & (confidences <= 1))


def test_zero_shot_confidence_is_lower_between_topics() -> None:
    _, centres = clusters(1)
    between = unit(centres[0] + centres[1])
    _, confidences = classify_zero_shot(np.stack([centres[0], between]), centres)
    assert confidences[0] > 0.9
    assert confidences[1] < 0.6


def test_zero_shot_model_labels_with_the_given_classes() -> None:
    points, centres = clusters(2)
    labels, _ = zero_shot_model(["a", "b", "c"], centres).predict(points)
    assert labels == ["a", "a", "b", "b", "c", "c"]


def test_supervised_model_learns_labelled_clusters() -> None:
    train, _ = clusters(8, seed=1)
    test, _ = clusters(20, seed=1)
    labels = ["business"] * 8 + ["sport"] * 8 + ["tech"] * 8
    model = train_supervised(train, labels)
    predicted, confidences = model.predict(test)
    assert predicted == ["business"] * 20 + ["sport"] * 20 + ["tech"] * 20
    assert np.all(confidences > 0.5)


def test_supervised_model_survives_a_json_round_trip() -> None:
    points, _ = clusters(8)
    model = train_supervised(points, [1] * 8 + [2] * 8 + [3] * 8)  # topic ids as labels
    restored = LinearTopicModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert restored.classes == (1, 2, 3)
    np.testing.assert_array_equal(restored.predict_proba(points), model.predict_proba(points))


def test_from_dict_rejects_an_unknown_format() -> None:
    with pytest.raises(ValueError):
        LinearTopicModel.from_dict({"format": "pickle", "classes": []})


def test_supervised_model_handles_two_topics() -> None:
    points, _ = clusters(8, n_topics=2)
    model = train_supervised(points, ["a"] * 8 + ["b"] * 8)
    predicted, _ = model.predict(points)
    assert predicted == ["a"] * 8 + ["b"] * 8
    assert model.predict_proba(points).shape == (16, 2)


def test_supervised_training_needs_two_topics() -> None:
    points, _ = clusters(4, n_topics=1)
    with pytest.raises(ValueError):
        train_supervised(points, ["a"] * 4)


def test_zero_shot_prior_is_folded_into_the_coefficients() -> None:
    points, centres = clusters(8)
    labels = ["a"] * 8 + ["b"] * 8 + ["c"] * 8
    plain = train_supervised(points, labels)
    with_prior = train_supervised(points, labels, dict(zip("abc", centres)), prior_weight=0.5, temperature=0.05)
    expected_logits = points @ plain.coef.T + plain.intercept + 0.5 * (points @ centres.T) / 0.05
    expected = np.exp(expected_logits - expected_logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(with_prior.predict_proba(points), expected, atol=1e-4)


def test_zero_shot_prior_decides_where_the_labels_say_nothing() -> None:
    # One label per topic, b's and c's indistinguishable: only the prior knows where b lies.
    _, centres = clusters(1)
    train = np.stack([centres[0], centres[2], centres[2] * 0.999 + centres[0] * 0.001])
    model = train_supervised(unit(train), ["a", "b", "c"], dict(zip("abc", centres)), prior_weight=1.0)
    predicted, _ = model.predict(centres[1:2])
    assert predicted == ["b"]


def test_supervised_takes_over_only_when_every_topic_has_enough_labels() -> None:
    assert supervised_ready({"a": 8, "b": 9}, ["a", "b"], min_per_topic=8)
    assert not supervised_ready({"a": 8, "b": 7}, ["a", "b"], min_per_topic=8)
    assert not supervised_ready({"a": 50}, ["a", "b"], min_per_topic=8)
    assert not supervised_ready({"a": 50}, ["a"], min_per_topic=8)


def test_topic_vectors_are_embedded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_embed(texts: list[str], **kwargs: object) -> np.ndarray:
        calls.append(texts)
        return unit(np.random.default_rng(len(texts)).standard_normal((len(texts), EMBEDDING_DIM)))

    monkeypatch.setattr(classification, "embed_texts", fake_embed)
    monkeypatch.setattr(classification, "_topic_vector_cache", {})
    first = embed_topics([("alpha", "first, second"), ("beta", "")])
    again = embed_topics([("beta", ""), ("alpha", "first, second")])
    assert len(calls) == 1
    np.testing.assert_array_equal(again, first[::-1])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    embed_topics([("alpha", "a new description")])
    assert len(calls) == 2


# Real model from here (a few seconds).

TOPICS = [
    ("sport", "Sports news: matches, athletes, teams and competitions such as football and tennis."),
    ("business", "Business news: companies, markets, shares, profits and the economy."),
    ("politics", ""),  # no description: the name alone must do
]


def test_zero_shot_puts_clear_sentences_in_their_topic() -> None:
    from pipeline.understanding.embedding import embed_texts

    topic_vectors = embed_topics(TOPICS)
    articles = embed_texts(
        [
            "Arsenal beat Chelsea 2-1 with a late goal from their striker in the Premier League.",
            "The company's shares jumped 8% after quarterly profits beat analysts' forecasts.",
            "The prime minister faces a vote in parliament on the new election law.",
        ]
    )
    indices, confidences = classify_zero_shot(articles, topic_vectors)
    assert list(indices) == [0, 1, 2]
    assert np.all(confidences > 0.5)
