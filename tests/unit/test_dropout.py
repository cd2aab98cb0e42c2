"""The CPU dropout mask: rate, scale, gradient, RNG replay, and the module swap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from intent_mlops.train.dropout import FastDropout, dropout_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_mask_drops_at_the_rate_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    mask = dropout_mask(torch.Size([500, 1000]), p)
    assert (mask == 0).float().mean().item() == pytest.approx(p, abs=0.003)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.005)
    assert mask.unique().tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]


def test_masks_replay_from_the_default_generator() -> None:
    torch.manual_seed(3)
    first = dropout_mask(torch.Size([7, 9]), 0.1)
    torch.manual_seed(3)
    assert torch.equal(first, dropout_mask(torch.Size([7, 9]), 0.1))
    assert not torch.equal(first, dropout_mask(torch.Size([7, 9]), 0.1)), "a new draw each call"


def test_fast_dropout_trains_through_the_mask_and_is_identity_in_eval() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5), torch.nn.Dropout(0.0))
    assert use_fast_dropout(model) == 2
    assert isinstance(model[1], FastDropout) and model[1].p == 0.5
    x = torch.randn(64, 8, requires_grad=True)
    y = model[1](x)
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, y == 0), "gradient flows exactly where the value was kept"
    assert 0.3 < (y == 0).float().mean().item() < 0.7
    model.eval()
    assert torch.equal(model[1](x), x)


def test_attention_function_matches_sdpa_and_drops_probabilities_in_training(tiny_model_dir: Path) -> None:
    from intent_mlops.model.labels import LabelSpace
    from intent_mlops.model.loading import load_model
    from intent_mlops.train.dropout import ATTENTION

    _, model = load_model(str(tiny_model_dir), LabelSpace.from_labels(["a", "b"]), dropout=0.3)
    batch = {"input_ids": torch.tensor([[101, 2054, 2003, 102], [101, 7592, 102, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}  # fmt: skip
    model.eval()
    reference = model(**batch).logits
    use_fast_dropout(model)
    assert model.config._attn_implementation == ATTENTION
    assert torch.allclose(model(**batch).logits, reference, atol=1e-5), "eval: same attention, padding masked"
    for name, module in model.named_modules():  # leave only the attention-probability dropout on
        if isinstance(module, FastDropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0
    model.train()
    torch.manual_seed(0)
    first = model(**batch).logits
    first.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    torch.manual_seed(0)
    assert torch.equal(model(**batch).logits, first), "masks replay from the seed"
    assert not torch.equal(model(**batch).logits, first)
