"""Training loop on a tiny random BERT built in the test (fast, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from intent_mlops.evaluation.evaluate import evaluate_model_dir
from intent_mlops.model.labels import LabelSpace
from intent_mlops.model.loading import load_model
from intent_mlops.model.predict import predict
from intent_mlops.model.tokens import tokenize
from intent_mlops.train.fit import texts_labels
from intent_mlops.train.freezing import freeze_bottom
from intent_mlops.train.loop import TrainingInterrupted, train
from intent_mlops.train.optimizer import make_optimizer
from tests.conftest import four_intent_splits, tiny_train_config


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[list[str], list[str]]]:
    return {k: texts_labels(v) for k, v in four_intent_splits().items()}


_cfg = tiny_train_config


def _assert_same_weights(first: Path, second: Path, atol: float) -> None:
    _, a = load_model(str(first))
    _, b = load_model(str(second))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=atol), name


def test_tokenize_cache_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    tokenizer, _ = load_model(str(tiny_model_dir))
    texts = ["where is my parcel", "cancel my order please", "hi"]
    first = tokenize(texts, tokenizer, 16, tmp_path)
    assert len(list(tmp_path.glob("tokens-*.safetensors"))) == 1
    assert tokenize(texts, tokenizer, 16, tmp_path) == first
    assert tokenize(texts, tokenizer, 16, None) == first
    tokenize(texts, tokenizer, 4, tmp_path)
    assert len(list(tmp_path.glob("tokens-*.safetensors"))) == 2, "max_length is part of the key"


def test_loss_falls_and_best_model_round_trips(tiny_model_dir: Path, tmp_path: Path, splits: dict) -> None:
    logged: list[tuple[dict[str, float], int]] = []
    result = train(
        _cfg(tiny_model_dir),
        *splits["train"],
        *splits["dev"],
        tmp_path / "run",
        log_metrics=lambda m, s: logged.append((m, s)),
    )
    losses = [m["train_loss"] for m, _ in logged if "train_loss" in m]
    assert losses[-1] < losses[0] * 0.85, losses
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert result.best_dev_macro_f1 == max(h["dev_macro_f1"] for h in result.history)
    assert (result.model_dir / "model.safetensors").exists()
    assert not list(result.model_dir.glob("*.bin")), "safetensors only"

    reports = evaluate_model_dir(result.model_dir, {"dev": splits["dev"]}, _cfg(tiny_model_dir))
    assert reports["dev"].macro_f1 == pytest.approx(result.best_dev_macro_f1)

    tokenizer, model = load_model(str(result.model_dir))
    ids = tokenize(splits["test"][0], tokenizer, 32)
    first = predict(model, ids, 0, 64, torch.device("cpu"))
    tokenizer2, model2 = load_model(str(result.model_dir))
    assert (predict(model2, ids, 0, 64, torch.device("cpu")) == first).all()


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_resume_is_exact(tiny_model_dir: Path, tmp_path: Path, splits: dict, ema_decay: float) -> None:
    """Interrupt mid-epoch, resume: the final weights (averaged ones too) equal an uninterrupted run's."""
    cfg = _cfg(tiny_model_dir, epochs=2, checkpoint_every_steps=3, ema_decay=ema_decay)
    straight = train(cfg, *splits["train"], *splits["dev"], tmp_path / "straight")
    with pytest.raises(TrainingInterrupted):
        train(cfg, *splits["train"], *splits["dev"], tmp_path / "resumed", stop_after_steps=7)
    resumed = train(cfg, *splits["train"], *splits["dev"], tmp_path / "resumed")
    assert resumed.resumed_from_step == 7
    assert resumed.global_step == straight.global_step
    _assert_same_weights(straight.model_dir, resumed.model_dir, atol=1e-6)
    exported = evaluate_model_dir(resumed.model_dir, {"dev": splits["dev"]}, cfg)["dev"]
    assert exported.macro_f1 == pytest.approx(resumed.best_dev_macro_f1), "dev selection saw the exported weights"


def test_freeze_layers_keeps_embeddings_and_bottom_layers_fixed(
    tiny_model_dir: Path, tmp_path: Path, splits: dict
) -> None:
    result = train(_cfg(tiny_model_dir, epochs=1, freeze_layers=1), *splits["train"], *splits["dev"], tmp_path / "r")
    base = load_model(str(tiny_model_dir))[1].state_dict()
    tuned = load_model(str(result.model_dir))[1].state_dict()
    fixed = [k for k in base if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    trained = [k for k in base if k.startswith("bert.encoder.layer.1.") and k.endswith("weight")]
    assert fixed and trained
    assert all(torch.equal(base[k], tuned[k]) for k in fixed)
    assert all(not torch.equal(base[k], tuned[k]) for k in trained)


def test_freeze_layers_out_of_range_names_the_field(tiny_model_dir: Path, tmp_path: Path, splits: dict) -> None:
    with pytest.raises(ValueError, match=r"train.freeze_layers=2: the model has 2 layers"):
        train(_cfg(tiny_model_dir, epochs=1, freeze_layers=2), *splits["train"], *splits["dev"], tmp_path / "r")


def test_keep_layers_trains_and_saves_a_smaller_encoder(tiny_model_dir: Path, tmp_path: Path, splits: dict) -> None:
    cfg = _cfg(tiny_model_dir, epochs=1, keep_layers=1, freeze_embeddings=True)
    result = train(cfg, *splits["train"], *splits["dev"], tmp_path / "r")
    base = load_model(str(tiny_model_dir))[1].state_dict()
    _, small = load_model(str(result.model_dir))
    assert small.config.num_hidden_layers == 1, "saved (and served) with one layer"
    names = set(small.state_dict())
    assert not any(k.startswith("bert.encoder.layer.1.") for k in names)
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(small.state_dict()[emb], base[emb]), "the kept part starts from the pretrained weights"
    with pytest.raises(ValueError, match=r"train.keep_layers=3: the model at .* has 2 encoder layers"):
        train(_cfg(tiny_model_dir, epochs=1, keep_layers=3), *splits["train"], *splits["dev"], tmp_path / "x")


def test_oos_is_named_out_of_scope_in_predictions() -> None:
    space = LabelSpace.from_labels(["oos", "track_order", "oos"])
    assert space.labels == ("oos", "track_order")
    assert space.id2label == {0: "out_of_scope", 1: "track_order"}


def test_freeze_embeddings_dropout_and_clipping_options(tiny_model_dir: Path, tmp_path: Path, splits: dict) -> None:
    cfg = _cfg(tiny_model_dir, epochs=1, freeze_embeddings=True, dropout=0.0, max_grad_norm=0.0)
    result = train(cfg, *splits["train"], *splits["dev"], tmp_path / "run")
    _, base = load_model(str(tiny_model_dir))
    _, tuned = load_model(str(result.model_dir))
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(base.state_dict()[emb], tuned.state_dict()[emb])
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(base.state_dict()[q], tuned.state_dict()[q])
    assert tuned.config.hidden_dropout_prob == 0.0 and tuned.config.attention_probs_dropout_prob == 0.0


def test_half_precision_checkpoint_loads_as_fp32(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Hub checkpoints often store fp16/bf16; training must still keep fp32 master weights."""
    tokenizer, model = load_model(str(tiny_model_dir))
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    tokenizer.save_pretrained(tmp_path / "bf16")
    _, reloaded = load_model(str(tmp_path / "bf16"))
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}


def test_layer_lr_decay_and_head_multiplier_set_group_rates(tiny_model_dir: Path) -> None:
    def rates(frozen: int, **overrides: float) -> dict[str, float]:
        _, model = load_model(str(tiny_model_dir), LabelSpace.from_labels(["a", "b"]))
        if frozen:  # freeze_bottom(model, 0) would still fix the embedding block
            freeze_bottom(model, frozen)
        opt = make_optimizer(model, _cfg(tiny_model_dir, learning_rate=1e-3, **overrides), torch.device("cpu"))
        lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        return {name: lr_of[id(p)] for name, p in model.named_parameters() if id(p) in lr_of}

    lrs = rates(1, layer_lr_decay=0.5, head_lr_multiplier=10.0)
    assert lrs["classifier.weight"] == pytest.approx(1e-2)
    assert lrs["bert.pooler.dense.weight"] == pytest.approx(1e-3)
    assert lrs["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(1e-3)  # top layer
    assert "bert.encoder.layer.0.output.dense.weight" not in lrs  # frozen: not optimised
    lrs = rates(0, layer_lr_decay=0.5)
    assert lrs["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(5e-4)
    assert lrs["bert.embeddings.word_embeddings.weight"] == pytest.approx(2.5e-4)


def test_padding_splits_leave_the_optimizer_step_unchanged(
    tiny_model_dir: Path, tmp_path: Path, splits: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cutting batches into micro-batches (here wherever lengths differ) gives the same weights."""
    from intent_mlops.train import loop as training

    cfg = _cfg(tiny_model_dir, epochs=1, dropout=0.0)
    texts, labels = splits["train"]
    texts = [t * (1 + i % 5) for i, t in enumerate(texts)]  # lengths that differ within a batch
    monkeypatch.setattr(training, "CPU_PASS_COST_TOKENS", 0)  # 0: batches stay whole
    whole = train(cfg, texts, labels, *splits["dev"], tmp_path / "whole")
    calls: list[int] = []
    real_split = training.split_padding

    def spy(lengths: list[int], cost: int) -> list[list[int]]:
        parts = real_split(lengths, cost)
        calls.append(len(parts))
        return parts

    monkeypatch.setattr(training, "CPU_PASS_COST_TOKENS", 1)
    monkeypatch.setattr(training, "split_padding", spy)
    split = train(cfg, texts, labels, *splits["dev"], tmp_path / "split")
    assert max(calls) > 1, "batches were split"
    assert split.global_step == whole.global_step
    _assert_same_weights(whole.model_dir, split.model_dir, atol=1e-5)


def test_early_stopping_says_so(
    tiny_model_dir: Path, tmp_path: Path, splits: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """No dev gain (learning rate 0) for `early_stopping_patience` epochs ends the run and one line says why."""
    cfg = _cfg(tiny_model_dir, epochs=6, early_stopping_patience=1, learning_rate=0.0)
    result = train(cfg, *splits["train"], *splits["dev"], tmp_path / "r")
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert result.best_epoch == 1 and "epoch 2: dev accuracy" in text and "epoch 3:" not in text
    assert "early stopping: no dev macro-F1 gain for 1 epochs" in text and "the best epoch, 1, is kept" in text


def test_progress_bar_in_a_log_draws_at_most_one_frame_every_few_seconds(
    tiny_model_dir: Path, tmp_path: Path, splits: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr captured (not a terminal, like a log file): the bar redraws every LOG_INTERVAL_SECONDS at
    most, besides its first and last frame and the one under each epoch line (a log got 487 before)."""
    import time

    from intent_mlops.train.progress import LOG_INTERVAL_SECONDS

    t0 = time.monotonic()
    result = train(_cfg(tiny_model_dir, epochs=3, progress=True), *splits["train"], *splits["dev"], tmp_path / "r")
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    frames = err.count("train:")
    assert "train: 100%" in err and result.global_step >= 20
    assert LOG_INTERVAL_SECONDS >= 5
    assert frames <= 2 + result.epochs_run + elapsed / LOG_INTERVAL_SECONDS, (frames, elapsed, err)
