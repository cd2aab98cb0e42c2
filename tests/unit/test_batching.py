"""Batch order, dynamic padding and padding-driven splits (pure functions, no model)."""

from __future__ import annotations

import numpy as np

from intent_mlops.model.tokens import collate
from intent_mlops.train.batching import length_grouped_batches, split_padding


def test_length_grouped_batches_cover_everything_once() -> None:
    lengths = list(np.random.default_rng(0).integers(3, 40, 1000))
    batches = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert batches == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert batches != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    waste = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert waste / sum(lengths) < 0.1, "length grouping leaves little padding"


def test_collate_pads_to_the_longest() -> None:
    batch = collate([[1, 2, 3], [4]], pad_id=0, labels=[1, 0])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def _slots(lengths: list[int], parts: list[list[int]]) -> int:
    return sum(max(lengths[i] for i in p) * len(p) for p in parts)


def test_split_padding_cuts_off_outliers_only_when_it_pays() -> None:
    lengths = [98, 60] + [20] * 62
    parts = split_padding(lengths, pass_cost_tokens=256)
    assert sorted(i for p in parts for i in p) == list(range(64)), "every row exactly once"
    assert len(parts) > 1
    assert _slots(lengths, parts) + 256 * (len(parts) - 1) < _slots(lengths, [list(range(64))])
    assert [lengths[i] for i in parts[0]][0] == 98, "longest first, each part sorted"
    even = [20] * 30 + [19] * 34
    assert split_padding(even, pass_cost_tokens=256) == [sorted(range(64), key=lambda i: -even[i])]
    assert len(split_padding(lengths, pass_cost_tokens=10**6)) == 1, "a costly pass is never worth it"
