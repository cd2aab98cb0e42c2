"""Tokenisation once per (texts, tokenizer, max length), cached as safetensors; padding per batch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode()
    extra = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'do_lower_case', '')}".encode()
    return hashlib.md5(vocab + extra).hexdigest()


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int, cache_dir: Path | None = None) -> list[list[int]]:
    """Token ids without padding; cached as safetensors keyed by texts + tokenizer + max_length."""
    from safetensors.torch import load_file, save_file

    key = hashlib.md5()
    key.update(tokenizer_fingerprint(tokenizer).encode())
    key.update(str(max_length).encode())
    for t in texts:
        key.update(t.encode())
        key.update(b"\0")
    path = cache_dir / f"tokens-{key.hexdigest()}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        blob = load_file(str(path))
        flat, offsets = blob["ids"].tolist(), blob["offsets"].tolist()
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
    ids: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ends = np.cumsum([0] + [len(x) for x in ids])
        tokens = [tok for seq in ids for tok in seq]
        tmp = path.with_suffix(".tmp")
        save_file(
            {"ids": torch.tensor(tokens, dtype=torch.int32), "offsets": torch.tensor(ends, dtype=torch.int64)},
            str(tmp),
        )
        tmp.replace(path)
    return ids


def collate(
    ids: Sequence[Sequence[int] | torch.Tensor], pad_id: int, labels: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of this batch only (dynamic padding)."""
    rows = [x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.long) for x in ids]
    input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(x) for x in rows])
    mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch
