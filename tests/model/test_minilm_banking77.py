"""The packaged pretrained MiniLM fine-tunes on real BANKING77 rows (where pretraining matters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intent_mlops.config.params import DEFAULT_MODEL, TrainConfig
from intent_mlops.data.io import read_csv
from intent_mlops.data.split import stratified_split
from intent_mlops.evaluation.evaluate import evaluate_model_dir
from intent_mlops.model.loading import resolve_model_path
from intent_mlops.train.loop import train
from tests.conftest import banking77

pytestmark = pytest.mark.slow


def test_packaged_minilm_is_local() -> None:
    folder = Path(resolve_model_path(DEFAULT_MODEL))
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()


def test_minilm_fine_tunes_on_banking77(tmp_path: Path) -> None:
    df = read_csv(banking77("train"))
    labels = sorted(df["label"].unique())[:8]
    df = df[df["label"].isin(labels)].groupby("label").head(40)
    parts = stratified_split(df, 0.2, 0.2, seed=0)
    cfg = TrainConfig(epochs=4, batch_size=16, learning_rate=2e-4, progress=False, checkpoint_every_steps=0)
    losses: list[float] = []
    result = train(
        cfg,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist(),
        parts["dev"]["label"].tolist(),
        tmp_path / "run",
        log_metrics=lambda m, s: losses.append(m["train_loss"]) if "train_loss" in m else None,
    )
    assert losses[-1] < losses[0] * 0.75, losses
    test = evaluate_model_dir(
        result.model_dir, {"test": (parts["test"]["text"].tolist(), parts["test"]["label"].tolist())}, cfg
    )
    assert test["test"].accuracy > 0.5, "well above chance (1/8) after ~60 steps"
