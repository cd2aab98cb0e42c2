"""AdamW with layer-wise learning rates and no weight decay on biases and LayerNorm."""

from __future__ import annotations

from typing import Any

import torch

from intent_mlops.config.params import TrainConfig
from intent_mlops.train.freezing import encoder_blocks, encoder_of


def _lr_scale(model: Any, cfg: TrainConfig) -> dict[int, float]:
    """Per-parameter LR factor: head x ``head_lr_multiplier``, encoder layer i from the top x decay^i,
    embeddings x decay^layers; anything else in the encoder (BERT's pooler) trains at 1."""
    embeddings, layers = encoder_blocks(model)
    in_encoder = {id(p) for p in encoder_of(model).parameters()}
    scale = {id(p): cfg.head_lr_multiplier for p in model.parameters() if id(p) not in in_encoder}
    scale.update(dict.fromkeys(in_encoder, 1.0))
    for depth, block in enumerate([*reversed(layers), embeddings]):
        scale.update({id(p): cfg.layer_lr_decay**depth for p in block.parameters()})
    return scale


def _param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group per (LR factor, decay or not): weight decay skips biases and LayerNorm."""
    scale = _lr_scale(model, cfg)
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            groups.setdefault((scale[id(p)], no_decay), []).append(p)
    return [
        {"params": ps, "lr": cfg.learning_rate * f, "lr_scale": f, "weight_decay": 0.0 if nd else cfg.weight_decay}
        for (f, nd), ps in sorted(groups.items())
    ]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Fused AdamW (one kernel per step) where the device supports it, else foreach."""
    groups = _param_groups(model, cfg)
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)
