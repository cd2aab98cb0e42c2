"""Crash-safe checkpoints and the best model: folders written under a temp name and swapped in.

Weights are safetensors; optimizer, scheduler and RNG state load with ``weights_only=True``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from intent_mlops.faults import failpoint
from intent_mlops.train.averaging import EMA_FILE, WeightAverage

CHECKPOINT, BEST = "checkpoint", "best"


STATE_FILE = "trainer_state.pt"


LORA_STATE = "lora_state.safetensors"


@dataclass
class TrainState:
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_dev_macro_f1: float = -1.0
    best_epoch: int = -1
    epochs_without_gain: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False
    train_seconds: float = 0.0
    examples_seen: int = 0


def atomic_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temp name, then swap it in with renames (a crash leaves a valid one)."""
    tmp, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    failpoint(f"{target.name}-written")  # the new copy complete under its temp name, the old one in place
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        failpoint(f"{target.name}-swapped-out")  # the riskiest instant: only `.old` holds a checkpoint
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(
    out: Path, model: Any, opt: Any, sched: Any, state: TrainState, ema: WeightAverage | None = None
) -> None:
    from safetensors.torch import save_file, save_model

    def write(folder: Path) -> None:
        save_model(model, str(folder / "model.safetensors"))
        if ema is not None:
            save_file(ema.state_dict(), str(folder / EMA_FILE))
        blob = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "state": asdict(state),
        }
        torch.save(blob, folder / STATE_FILE)

    atomic_dir(out / CHECKPOINT, write)


def load_checkpoint(out: Path, model: Any, opt: Any, sched: Any, ema: WeightAverage | None = None) -> TrainState | None:
    from safetensors.torch import load_file, load_model

    folder = out / CHECKPOINT
    if not (folder / STATE_FILE).exists():
        old = out / (CHECKPOINT + ".old")
        if not (old / STATE_FILE).exists():
            return None
        folder = old
    load_model(model, str(folder / "model.safetensors"))
    if ema is not None:
        if not (folder / EMA_FILE).exists():
            raise ValueError(f"{folder}: checkpoint has no {EMA_FILE}; it was written with train.ema_decay=0")
        ema.load_state_dict(load_file(str(folder / EMA_FILE)))
    blob = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState(**blob["state"])


def save_best(out: Path, model: Any, tokenizer: Any, lora: bool) -> None:
    """Best epoch so far: a ``save_pretrained`` folder, or (LoRA) the adapter-wrapped state to merge later."""
    from safetensors.torch import save_model

    def write(folder: Path) -> None:
        if lora:
            save_model(model, str(folder / LORA_STATE))
        else:
            model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    atomic_dir(out / BEST, write)


def merge_lora_best(out: Path, model: Any, tokenizer: Any) -> None:
    """Fold the best LoRA weights into the base weights: the exported model needs no peft."""
    from safetensors.torch import load_model

    state = out / BEST / LORA_STATE
    if not state.exists():
        return  # already merged (a rerun after a finished training)
    load_model(model, str(state))
    merged = model.merge_and_unload()

    def write(folder: Path) -> None:
        merged.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    atomic_dir(out / BEST, write)


def remove_work(folder: Path | str) -> None:
    """Drop a finished run's checkpoints (the model lives in MLflow now)."""
    shutil.rmtree(folder, ignore_errors=True)
