"""Text fingerprints: which utterances a model trained on, without storing the utterances.

A training run logs the hashes of its train split's normalised texts; the champion/challenger
comparison drops dev rows whose hash the champion trained on (splits of older data versions
may differ), so neither model is scored on text it has seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def text_key(text: str) -> str:
    """Case- and space-insensitive form (the same key as the split and the leakage check)."""
    return " ".join(str(text).lower().split())


def text_hash(text: str) -> str:
    return hashlib.sha256(text_key(text).encode()).hexdigest()[:32]


def text_hashes(texts: Iterable[str]) -> list[str]:
    return [text_hash(t) for t in texts]
