"""Batched argmax prediction over token ids, batches sorted by length so little is padded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from intent_mlops.model.tokens import collate


@torch.no_grad()
def predict(model: Any, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: torch.device) -> np.ndarray:
    """Class ids for token id lists; batches sorted by length so little is padded."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.empty(len(ids), dtype=np.int64)
    use_bf16 = device.type == "cuda"
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([ids[i] for i in idx], pad_id).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(**batch).logits
        out[idx] = logits.argmax(-1).cpu().numpy()
    return out
