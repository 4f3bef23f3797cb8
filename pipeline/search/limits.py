"""How many results a ranking (similar, search, recommendations) may return: defined once for the API,
the commands and the functions behind them."""

from __future__ import annotations

DEFAULT_K = 10
MAX_K = 100


def check_k(raw: object, default: int = DEFAULT_K) -> int:
    """`raw` as an integer k in 1..MAX_K; ValueError with a readable reason otherwise.

    ASCII digits only: str.isdigit() and int() also take other scripts' digits ("¹", "٣")."""
    if raw is None or raw == "":
        return default
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, not {str(raw)[:50]!r}")
    k = int(text)
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be from 1 to {MAX_K}, not {k}")
    return k
