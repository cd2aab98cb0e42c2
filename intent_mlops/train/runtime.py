"""Process set-up for training: device, seeds, threads and the allocator."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def configure_threads(num_threads: int) -> int:
    n = num_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def keep_freed_memory() -> bool:
    """Stop glibc from returning freed activation buffers to the OS after every step.

    Each step allocates tens of MB of activations whose shapes change with the batch length; by
    default glibc serves them with fresh ``mmap`` pages and unmaps them on free, so every step pays
    page faults again. Raising the mmap and trim thresholds keeps the pages in the heap for reuse.
    No-op off glibc.

    Why it is kept: docs/benchmarks.md, Training throughput, "Earlier changes" and the "Tried and not
    adopted" table: second epoch 96-114 examples/s with it against 100 without, in a stripped loop
    (three runs against one; first epoch within the noise), i.e. up to ~10 %, a weak signal.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
