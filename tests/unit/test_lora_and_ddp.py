"""LoRA (merged at export) and data-parallel training (2 CPU ranks, gloo) on a tiny random BERT."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from intent_mlops.config.params import Config, TrainConfig
from intent_mlops.data.io import read_csv, write_csv
from intent_mlops.model.loading import load_model
from intent_mlops.train.fit import fit, launch
from intent_mlops.train.loop import TrainResult
from tests.conftest import FOUR_INTENTS, REPO, four_intent_splits, tiny_train_config

INTENTS = FOUR_INTENTS


def _splits(tmp: Path) -> Path:
    for name, part in four_intent_splits().items():
        write_csv(part, tmp / "splits" / f"{name}.csv")
    return tmp / "splits"


def _cfg(model: Path, **kw: object) -> TrainConfig:
    return tiny_train_config(model, **{"epochs": 3, "num_threads": 1, **kw})


def _train(cfg: TrainConfig, splits_dir: Path, out: Path) -> TrainResult:
    """One process through the fit entry point, as the flow's fine-tune step calls it."""
    return fit(Config(train=cfg), splits_dir, out, None, None)


def test_lora_trains_few_weights_and_exports_merged_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model_dir, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    result = _train(cfg, _splits(tmp_path), tmp_path / "run")
    files = {p.name for p in result.model_dir.iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    _, merged = load_model(str(result.model_dir))
    assert not any("lora" in name for name in merged.state_dict()), "LoRA folded into the base weights"
    _, base = load_model(str(tiny_model_dir))
    q = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(merged.state_dict()[q], base.state_dict()[q]), "merged delta is non-zero"
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(merged.state_dict()[emb], base.state_dict()[emb]), "non-target weights frozen"


def test_lora_with_frozen_layers_leaves_them_untouched(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model_dir, lora_r=4, freeze_layers=1, epochs=1, learning_rate=1e-2)
    result = _train(cfg, _splits(tmp_path), tmp_path / "run")
    merged = load_model(str(result.model_dir))[1].state_dict()
    base = load_model(str(tiny_model_dir))[1].state_dict()
    q = "bert.encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(merged[q.format(0)], base[q.format(0)]), "adapters in a frozen layer stay at zero"
    assert not torch.allclose(merged[q.format(1)], base[q.format(1)])


def test_merged_lora_model_serves_without_peft(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _train(_cfg(tiny_model_dir, lora_r=4, epochs=1), _splits(tmp_path), tmp_path / "run")
    script = (
        "import sys; sys.modules['peft'] = None\n"  # any `import peft` now fails
        "from transformers import pipeline\n"
        f"p = pipeline('text-classification', model={str(result.model_dir)!r}, device='cpu')\n"
        "print(p(['where is my parcel'])[0]['label'])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] in INTENTS


def _digest(model_dir: Path) -> str:
    return hashlib.md5((model_dir / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_ranks_gloo_agree(tiny_model_dir: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes: DDP keeps both ranks' weights identical, each sees half the batches.

    Every batch is cut wherever its lengths differ, so the ranks make different numbers of passes
    per step: gradients must still be averaged once per step, not once per pass (else a hang).
    """
    splits = _splits(tmp_path)
    cfg = Config()
    cfg.train = _cfg(tiny_model_dir, epochs=2)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    worker = (
        "import json, os, sys, hashlib\n"
        "from pathlib import Path\n"
        "from intent_mlops.config.params import config_from_dict\n"
        "from intent_mlops.train.fit import fit\n"
        "import torch\n"
        "import intent_mlops.train.loop\n"
        "intent_mlops.train.loop.CPU_PASS_COST_TOKENS = 1\n"
        "cfg = config_from_dict(json.loads(Path(sys.argv[1]).read_text()))\n"
        "out = Path(sys.argv[3])\n"
        "r = fit(cfg, Path(sys.argv[2]), out, None, None)\n"
        "from intent_mlops.model.loading import load_model\n"
        "_, m = load_model(str(r.model_dir))\n"
        "h = hashlib.md5(b''.join(v.numpy().tobytes() for v in m.state_dict().values())).hexdigest()\n"
        "rank = os.environ['RANK']\n"
        "info = {'hash': h, 'steps': r.global_step, 'world': r.world_size}\n"
        "(out / f'rank{rank}.json').write_text(json.dumps(info))\n"
    )
    (tmp_path / "worker.py").write_text(worker)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(tmp_path / "worker.py"),
            str(tmp_path / "config.json"),
            str(splits),
            str(tmp_path / "ddp"),
        ],
        check=True,
        env=env,
        timeout=300,
    )
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["hash"] == ranks[1]["hash"], "both ranks hold the same weights"
    assert ranks[0]["world"] == 2
    n_train = len(read_csv(splits / "train.csv"))
    per_epoch_single = math.ceil(n_train / cfg.train.batch_size)
    assert ranks[0]["steps"] == cfg.train.epochs * (per_epoch_single // 2), "each rank took half the batches"


@pytest.mark.slow
def test_num_processes_launches_torchrun_ranks(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The path ``train.num_processes`` really takes: ``fit.launch`` -> torchrun -> 2 gloo ranks."""
    splits = _splits(tmp_path)
    cfg = Config()
    cfg.train = _cfg(tiny_model_dir, epochs=2, num_processes=2)
    result = launch(cfg, splits, tmp_path / "run", None, None)
    assert result.world_size == 2
    n_train = len(read_csv(splits / "train.csv"))
    assert result.global_step == cfg.train.epochs * (math.ceil(n_train / cfg.train.batch_size) // 2)
    tokenizer, model = load_model(str(result.model_dir))
    assert model.config.num_labels == len(INTENTS)


def test_result_json_round_trip(tmp_path: Path) -> None:
    r = TrainResult(tmp_path / "best", 2, 0.5, 10, 3, 2, 1.5, 66.0, [{"epoch": 1.0}], "cpu", 2)
    assert TrainResult.from_json(r.to_json()) == r  # the file itself: the torchrun test reads it through launch
