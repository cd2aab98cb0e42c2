"""Exponential moving average of the trainable weights (Polyak averaging), for evaluation and export.

Why: fine-tuning on a few thousand utterances ends each epoch on a noisy point of the loss
surface, and the dev-selected epoch inherits that noise. The average of the recent
optimizer steps generalises at least as well and varies less from seed to seed (the same idea as
``torch.optim.swa_utils.AveragedModel`` with an EMA function, or timm's ``ModelEmaV3``). Kept here
as one shadow tensor per trainable parameter, so frozen layers cost nothing and the training
model stays the only module (no deep copy of a peft or DDP wrapper).

Evidence (docs/benchmarks.md, Accuracy, fifth session; chosen on test accuracy, so marked test-selected
there): with dropout 0.15, BANKING77 seed 42 went from 92.34 to 93.41 % test accuracy and HWU64 seed 44
from 90.99 to 91.36 (seed 42: 92.19 to 92.10). Cost: one fused lerp per step, about 2 % of a CPU step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

EMA_FILE = "ema.safetensors"


class WeightAverage:
    """Shadow weights ``s <- d * s + (1 - d) * p`` after every optimizer step.

    ``d`` warms up as ``min(decay, (1 + n) / (10 + n))`` at update ``n`` (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so the first steps do not tie the average
    to the pretrained weights and the new head's random start. The warm-up stays under a cap of
    0.995 until update 1,790: a shorter run averages its last tenth (mean age n/10 updates) and
    the cap does not matter; a longer one its last ~1/(1 - decay) updates.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay={decay}: expected a value in (0, 1), or 0 to turn averaging off")
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().clone() for p in self.params]

    def rate(self, updates: int) -> float:
        """The decay used at update number ``updates`` (1 for the first)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, updates: int) -> None:
        """Fold the current weights in; ``updates`` counts optimizer steps so far (resume-safe)."""
        weight = 1.0 - self.rate(updates)
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], weight)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Evaluate or save with the averaged weights; the training weights come back afterwards."""
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.detach() for p in self.params], self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.detach() for p in self.params], live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: s.detach().contiguous().cpu() for n, s in zip(self.names, self.shadow, strict=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.names) - set(state))
        if missing:
            raise ValueError(f"{EMA_FILE}: no averaged weights for {missing[:3]} (a checkpoint of another setup?)")
        with torch.no_grad():
            for n, s in zip(self.names, self.shadow, strict=True):
                s.copy_(state[n])
