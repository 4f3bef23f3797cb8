from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from pipeline.understanding.embedding import (
    EMBEDDING_DIM,
    article_text,
    default_model_path,
    embed_texts,
    get_model,
    strip_html,
    vector_from_bytes,
    vector_to_bytes,
)


def test_strip_html_keeps_visible_words_apart_and_decodes_entities() -> None:
    html = "<p>Rates&nbsp;rise</p><p>again</p><script>track()</script><style>p{}</style> &amp; fall"
    assert strip_html(html) == "Rates rise again & fall"


def test_strip_html_leaves_plain_text_with_angle_brackets() -> None:
    assert strip_html("  profits < forecasts  and\n losses > 2bn ") == "profits < forecasts and losses > 2bn"


def test_article_text_joins_title_summary_and_body() -> None:
    text = article_text("Bank raises rates", "<p>The central bank acted.</p>", "<p>Markets fell sharply.</p>")
    assert text == "Bank raises rates. The central bank acted. Markets fell sharply."


def test_article_text_drops_a_summary_that_repeats_the_body_opening() -> None:
    summary = "The central bank raised rates on Thursday."
    text = article_text("Rates up!", summary, f"<p>{summary}</p><p>Economists were surprised.</p>")
    assert text == f"Rates up! {summary} Economists were surprised."


def test_article_text_drops_a_summary_cut_short_with_an_ellipsis() -> None:
    body = "<p>The central bank raised rates on Thursday, surprising markets.</p>"
    assert article_text("Rates", "The central bank raised rates on Thursday, sur…", body) == (
        "Rates. The central bank raised rates on Thursday, surprising markets."
    )


def test_article_text_accepts_missing_parts() -> None:
    assert article_text(None, None, "Body only") == "Body only"
    assert article_text("Title only", "", None) == "Title only."
    assert article_text(None, None, None) == ""


def test_article_text_truncates_long_bodies_at_a_word_boundary() -> None:
    text = article_text("Title", None, "word " * 5000, max_chars=100)
    assert len(text) <= 100
    assert text.endswith("word")


def test_vector_bytes_round_trip() -> None:
    vector = np.random.default_rng(1).standard_normal(EMBEDDING_DIM).astype(np.float32)
    data = vector_to_bytes(vector)
    assert len(data) == EMBEDDING_DIM * 4
    restored = vector_from_bytes(memoryview(data))  # psycopg hands bytea back as memoryview
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, vector)
    restored[0] = 0.0  # writable, not a view of the buffer


def test_vector_from_bytes_rejects_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        vector_from_bytes(b"\x00" * 12)


def test_model_path_comes_from_settings_when_set() -> None:
    with override_settings(EMBEDDING_MODEL_PATH="/models/minilm"):
        assert default_model_path() == "/models/minilm"


def test_embed_texts_of_nothing_needs_no_model() -> None:
    assert embed_texts([]).shape == (0, EMBEDDING_DIM)


# The tests below load the real bundled model once (a few seconds).


def test_model_is_loaded_once_per_process() -> None:
    assert get_model() is get_model()


def test_embeddings_are_normalised_float32_and_deterministic() -> None:
    texts = ["The striker scored twice in the cup final.", "Shares fell after the profit warning."]
    first = embed_texts(texts)
    assert first.shape == (2, EMBEDDING_DIM)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_texts(texts[::-1])[::-1], first, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones() -> None:
    goal, penalty, budget = embed_texts(
        [
            "The striker scored a late goal to win the football match.",
            "A penalty in the final minute decided the football game.",
            "The finance minister presented the annual budget to parliament.",
        ]
    )
    assert goal @ penalty > goal @ budget + 0.1
