"""The moving average of the weights: its arithmetic, the swap in and out, and its checkpoint form."""

from __future__ import annotations

import pytest
import torch

from intent_mlops.train.averaging import WeightAverage


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)  # frozen layers get no shadow copy
    return model


def test_update_follows_the_warmed_up_decay() -> None:
    model = _model()
    ema = WeightAverage(model, 0.5)
    assert ema.names == ["1.weight", "1.bias"]
    expected = [p.detach().clone() for p in ema.params]
    for step in range(1, 6):
        with torch.no_grad():
            for p in ema.params:
                p.add_(1.0)
        d = min(0.5, (1 + step) / (10 + step))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, ema.params, strict=True)]
        ema.update(step)
    assert ema.rate(1) == pytest.approx(2 / 11) and ema.rate(100) == 0.5
    for e, s in zip(expected, ema.shadow, strict=True):
        assert torch.allclose(e, s, atol=1e-6)


def test_the_cap_only_binds_after_the_warm_up() -> None:
    """Runs under ~1,800 updates (10 epochs of either benchmark set: ~1,400) average alike for any cap >= 0.995."""
    ema = WeightAverage(_model(), 0.995)
    assert ema.rate(1789) < 0.995 and ema.rate(1790) == 0.995
    assert WeightAverage(_model(), 0.998).rate(1500) == ema.rate(1500)


def test_applied_swaps_in_the_average_and_restores_the_training_weights() -> None:
    model = _model()
    ema = WeightAverage(model, 0.9)
    live = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for s in ema.shadow:
            s.fill_(7.0)
    x = torch.ones(1, 4)
    with ema.applied():
        assert torch.equal(model[1].weight, torch.full_like(model[1].weight, 7.0))
        assert torch.equal(model[0].weight, live[0]), "frozen weights are left alone"
        model(x).sum().backward()  # the swap keeps parameters usable
    for p, q in zip(model.parameters(), live, strict=True):
        assert torch.equal(p, q)


def test_state_round_trip_and_a_mismatched_checkpoint_is_named() -> None:
    a, b = WeightAverage(_model(), 0.9), WeightAverage(_model(), 0.9)
    with torch.no_grad():
        a.shadow[0].fill_(3.0)
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.shadow[0], a.shadow[0])
    with pytest.raises(ValueError, match=r"ema.safetensors: no averaged weights for \['1.bias'\]"):
        b.load_state_dict({"1.weight": a.shadow[0]})
    with pytest.raises(ValueError, match="train.ema_decay=1.0"):
        WeightAverage(_model(), 1.0)
