"""What this CPU offers the int8 kernels of onnxruntime (MLAS) and torch's bf16 matmuls, read from
``/proc/cpuinfo`` (x86 flags; elsewhere, or with no flags, the safe choices: unsigned int8 weights
and no bf16).

Signed int8 weights (u8s8 kernels) are fast and exact where the CPU has an 8-bit dot-product
instruction with 32-bit sums (x86 AVX-VNNI, AVX512-VNNI, AMX): on the 2-core CI machine they ran
2.2x the unsigned-weight (u8u8) kernels (docs/benchmarks.md). Without it, onnxruntime's u8s8
kernels use ``VPMADDUBSW``, whose 16-bit intermediate sums can saturate (onnxruntime's quantization
guide advises u8u8 or ``reduce_range`` there); unsigned weights avoid that at about fp32 speed.
"""

from __future__ import annotations

import functools
from pathlib import Path

INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
INT8_WEIGHT_TYPES = ("s8", "u8")  # serving.onnx_int8_weights also takes "auto"


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` does not exist or has none)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_dot_product(flags: frozenset[str] | None = None) -> bool:
    """Whether signed int8 weights run on saturation-free dot-product kernels here."""
    return bool((cpu_flags() if flags is None else flags) & INT8_DOT_FLAGS)


def bf16_matmul(flags: frozenset[str] | None = None) -> bool:
    """Whether bfloat16 matrix multiplies run on hardware units here (AMX-BF16 or AVX512-BF16); without
    them oneDNN emulates bf16 and a bf16 model runs slower than fp32."""
    return bool((cpu_flags() if flags is None else flags) & BF16_FLAGS)


def int8_weight_type(setting: str = "auto", flags: frozenset[str] | None = None) -> str:
    """``s8`` or ``u8`` for ``serving.onnx_int8_weights`` (``auto``: ``s8`` where
    :func:`int8_dot_product`, else ``u8``)."""
    if setting != "auto":
        return setting
    return "s8" if int8_dot_product(flags) else "u8"
