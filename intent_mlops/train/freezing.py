"""Which weights train: the encoder's blocks, frozen bottom layers, LoRA adapters (peft)."""

from __future__ import annotations

from typing import Any

import torch

from intent_mlops.config.params import TrainConfig


def encoder_of(model: Any) -> Any:
    """The pretrained encoder under the task head (through a peft wrapper too)."""
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).base_model


def encoder_blocks(model: Any) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """The embedding block and the encoder layers, bottom first (BERT, RoBERTa, DistilBERT, ELECTRA)."""
    base = encoder_of(model)
    for stack in ("encoder", "transformer"):
        layers = getattr(getattr(base, stack, None), "layer", None)
        if isinstance(layers, torch.nn.ModuleList):
            return base.embeddings, list(layers)
    raise ValueError(f"train.freeze_layers: cannot find the encoder layers of {type(base).__name__}")


def freeze_bottom(model: Any, n: int) -> None:
    """Fix the embedding block and the bottom ``n`` encoder layers (LoRA adapters in them too).

    Autograd then neither keeps their activations nor runs backward through them.
    """
    embeddings, layers = encoder_blocks(model)
    if not 0 <= n < len(layers):
        raise ValueError(f"train.freeze_layers={n}: the model has {len(layers)} layers; use 0..{len(layers) - 1}")
    for module in [embeddings, *layers[:n]]:
        module.requires_grad_(False)


def add_lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    if cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
    )
    return get_peft_model(model, lora)
