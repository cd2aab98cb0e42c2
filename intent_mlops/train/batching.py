"""Batches for training: length-grouped order, dynamic padding, and splitting of the few batches
whose padding would cost more than an extra pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_factor: int = 50
) -> list[list[int]]:
    """Shuffle, sort within groups of ``group_factor`` batches by length, shuffle batch order.

    Batches hold similar lengths (little padding) yet the order stays random; the result depends
    only on (seed, epoch), so a resumed run replays exactly the same batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    group = batch_size * group_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group].tolist(), key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = rng.permutation(len(batches))
    return [batches[i] for i in perm]


def split_padding(lengths: Sequence[int], pass_cost_tokens: int) -> list[list[int]]:
    """Cut one batch into length-sorted micro-batches when that computes fewer token slots.

    Length grouping leaves most batches with little padding, but the batch holding the longest
    outliers pads every neighbour to the outlier (one such batch was a quarter of an epoch's
    padding). Each micro-batch costs its padded size ``max_len * rows`` plus ``pass_cost_tokens``
    for the extra pass; the cheapest cut of the sorted lengths is found by dynamic programming.
    Returns positions into ``lengths``, one list per micro-batch; summing their losses (each divided
    by the whole batch size) gives the same gradient, so the optimizer step is unchanged.

    Why it is kept (CPU only): docs/benchmarks.md, Training throughput, "Padding splits": +17 %
    examples/s at the median of three paired rounds, with the pass cost of 256 token slots.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sizes = [lengths[i] for i in order]
    n = len(sizes)
    if n == 0 or sizes[0] * n - sum(sizes) <= pass_cost_tokens:
        return [order]  # not even all the padding pays for a second pass
    best = [0] + [float("inf")] * n  # best[j]: cheapest cost of the j longest sequences
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + sizes[i] * (j - i) + (pass_cost_tokens if i else 0)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = n
    while j:
        chunks.append(order[cut[j] : j])
        j = cut[j]
    return chunks[::-1]
