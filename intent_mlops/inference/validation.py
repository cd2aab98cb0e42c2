"""Request validation shared by every prediction path (no torch import).

Client mistakes raise :class:`InvalidInput` (a ``ValueError``) with a message naming the offending item,
so a server maps them to 4xx while any other exception stays a server fault (5xx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_CHARS = 2000
DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_TOP_K = 20


class InvalidInput(ValueError):
    """The request itself is wrong (client error): the message says what and where."""


@dataclass(frozen=True)
class Limits:
    max_chars: int = DEFAULT_MAX_CHARS  # longest accepted text, in characters
    max_batch: int = DEFAULT_MAX_BATCH  # most texts in one call

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_batch < 1:
            raise ValueError(f"limits must be >= 1 (max_chars={self.max_chars}, max_batch={self.max_batch})")


def validate_texts(texts: Any, limits: Limits = Limits()) -> list[str]:
    """``texts`` as a list of non-empty strings within the limits, or :class:`InvalidInput`."""
    if isinstance(texts, str | bytes):
        raise InvalidInput("expected a list of strings, got a single string: wrap it in a list")
    if not isinstance(texts, list | tuple):
        raise InvalidInput(f"expected a list of strings, got {type(texts).__name__}")
    if not texts:
        raise InvalidInput("expected at least one text, got an empty list")
    if len(texts) > limits.max_batch:
        raise InvalidInput(f"too many texts in one request: {len(texts)} > {limits.max_batch}; split the batch")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInput(f"text {i} is not a string (got {type(t).__name__})")
        if not t.strip():
            raise InvalidInput(f"text {i} is empty or blank")
        if len(t) > limits.max_chars:
            raise InvalidInput(f"text {i} is too long: {len(t)} characters > {limits.max_chars}")
    return list(texts)


def validate_top_k(top_k: Any, num_labels: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise InvalidInput(f"top_k must be an integer, got {type(top_k).__name__}")
    if not 1 <= top_k <= min(num_labels, DEFAULT_MAX_TOP_K):
        raise InvalidInput(f"top_k must be between 1 and {min(num_labels, DEFAULT_MAX_TOP_K)}, got {top_k}")
    return top_k
