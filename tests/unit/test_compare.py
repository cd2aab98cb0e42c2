"""Champion and challenger are scored on the same rows, each with its own logged settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from intent_mlops.config.params import TrainConfig
from intent_mlops.evaluation.compare import compare
from intent_mlops.evaluation.evaluate import predict_labels
from intent_mlops.inference.pyfunc import log_pyfunc
from intent_mlops.registry.champion import fetch_model
from intent_mlops.train.fit import texts_labels
from intent_mlops.train.loop import train
from tests.conftest import four_intent_splits, tiny_train_config


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A tiny BERT fine-tuned on four intents with max_length 32 (seconds), and its dev split."""
    splits = four_intent_splits()
    cfg = tiny_train_config(tiny_model_dir)
    result = train(cfg, *texts_labels(splits["train"]), *texts_labels(splits["dev"]), tmp_path_factory.mktemp("run"))
    return result.model_dir, splits["dev"]


def test_each_model_predicts_with_its_own_max_length(
    store: str, trained: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """The champion was logged with max_length 32; the challenger's run has ``--set train.max_length=3``."""
    model_dir, dev = trained
    champion_src = Path(shutil.copytree(model_dir, tmp_path / "champion"))
    with mlflow.start_run():
        log_pyfunc(champion_src, "model", ["hello there"], None, registered_model_name="m", max_length=32)
    champion_dir = fetch_model("m", "1", tmp_path / "cache")
    texts = dev["text"].tolist()
    challenger_cfg = TrainConfig(max_length=3, num_threads=1)  # [CLS] one token [SEP]

    own, labels = predict_labels(champion_src, texts, TrainConfig(max_length=32, num_threads=1))
    truncated, _ = predict_labels(champion_src, texts, challenger_cfg)
    assert own != truncated, "the dev texts must tell the two settings apart"

    result = compare(model_dir, champion_dir, dev, None, challenger_cfg)
    assert result.champion == own  # the champion with the max_length it was logged (and is served) with
    assert result.challenger == truncated  # the challenger with its own run's settings
    assert result.champion_labels == result.challenger_labels == labels
