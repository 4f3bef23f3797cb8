"""EMBEDDING_PRECISION: auto picks bf16 only on processors with native bf16, and bf16 vectors agree with fp32."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import override_settings

from pipeline.understanding.embedding import cpu_flags, embed_texts, precision_in_force, resolve_precision

CPUINFO_SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
flags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
CPUINFO_AMX_ONLY = "flags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"
CPUINFO_SKYLAKE = "processor\t: 0\nflags\t\t: fpu vme sse2 avx2 avx512f avx512_vnni\n"

TEXTS = [
    "The central bank raised interest rates by a quarter point to curb inflation.",
    "The striker scored twice as United won the derby in front of a record crowd.",
    "A new smartphone chip promises longer battery life and faster graphics.",
    "Parliament voted on the budget after a long debate about public spending.",
]


def test_cpu_flags_come_from_the_flags_line():
    assert {"avx512_bf16", "amx_bf16"} <= cpu_flags(CPUINFO_SAPPHIRE_RAPIDS)
    assert "avx512_bf16" not in cpu_flags(CPUINFO_SKYLAKE)
    assert cpu_flags("no flags here") == frozenset()


def test_auto_is_bf16_only_where_the_processor_computes_it_natively():
    assert resolve_precision("auto", cpu_flags(CPUINFO_SAPPHIRE_RAPIDS)) == "bf16"
    assert resolve_precision("auto", cpu_flags(CPUINFO_AMX_ONLY)) == "bf16"
    # AVX-512 with VNNI but no BF16: bf16 would be emulated, slower than fp32.
    assert resolve_precision("auto", cpu_flags(CPUINFO_SKYLAKE)) == "fp32"
    assert resolve_precision("auto", frozenset()) == "fp32"


def test_an_explicit_precision_is_kept_and_garbage_is_refused():
    assert resolve_precision("fp32", cpu_flags(CPUINFO_SAPPHIRE_RAPIDS)) == "fp32"
    assert resolve_precision(" BF16 ", frozenset()) == "bf16"
    with pytest.raises(ValueError, match="EMBEDDING_PRECISION"):
        resolve_precision("fp8", frozenset())


def test_the_setting_decides_the_precision_in_force():
    with override_settings(EMBEDDING_PRECISION="bf16"):
        assert precision_in_force() == "bf16"
    with override_settings(EMBEDDING_PRECISION="fp32"):
        assert precision_in_force() == "fp32"
    with override_settings(EMBEDDING_PRECISION="auto"):
        assert precision_in_force() in ("fp32", "bf16")


def test_bf16_vectors_are_unit_float32_and_agree_with_fp32():
    fp32 = embed_texts(TEXTS, precision="fp32")
    bf16 = embed_texts(TEXTS, precision="bf16")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosines = (fp32 * bf16).sum(axis=1)
    assert cosines.min() > 0.999, cosines
    # Not the same computation: bf16 rounding shows in the vectors.
    assert not np.array_equal(fp32, bf16)
    # Each text is still nearest to itself across precisions (a query at one, stored vectors at the other).
    assert list((bf16 @ fp32.T).argmax(axis=1)) == list(range(len(TEXTS)))
