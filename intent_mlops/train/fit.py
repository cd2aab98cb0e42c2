"""The fit entry point: training on split files or frames, in one process or one process per rank.

``python -m torch.distributed.run --standalone --nproc_per_node N -m intent_mlops.train.fit --config C
--splits S --out O`` trains data-parallel with the same ``intent_mlops.train.loop.train`` as a single
process; rank 0 writes ``O/result.json``. The flow's fine-tune step launches this when
``train.num_processes`` > 1, so a multi-GPU run is the same flow with one more param.
``train_on_frames`` and ``texts_labels`` are the one way the fit, the benchmarks and the tests turn
``text,label`` frames into a training run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from intent_mlops.config.params import Config, TrainConfig, config_from_dict
from intent_mlops.data.split import SplitPaths, load_splits
from intent_mlops.train.loop import MetricsLogger, TrainResult, train

if TYPE_CHECKING:
    import pandas as pd

RESULT_FILE = "result.json"


def texts_labels(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """A ``text,label`` frame as the two lists ``train`` and ``evaluate_model_dir`` take."""
    return df["text"].tolist(), df["label"].tolist()


def train_on_frames(
    cfg: TrainConfig,
    train_df: pd.DataFrame,
    dev_df: pd.DataFrame,
    out: Path,
    *,
    cache_dir: Path | None = None,
    log_metrics: MetricsLogger | None = None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """``train`` on a train and a dev frame (``text,label``); resumes from ``out`` like ``train``."""
    return train(
        cfg, *texts_labels(train_df), *texts_labels(dev_df), out,
        cache_dir=cache_dir, log_metrics=log_metrics, stop_after_steps=stop_after_steps,
    )  # fmt: skip


def fit(cfg: Config, splits_dir: Path, out: Path, cache_dir: Path | None, mlflow_run_id: str | None) -> TrainResult:
    """Train on ``splits_dir/{train,dev}.csv``; rank 0 logs curves to ``mlflow_run_id`` when given."""
    frames = load_splits(SplitPaths.under(splits_dir))
    log = None
    if mlflow_run_id and int(os.environ.get("RANK", "0")) == 0:
        from intent_mlops.registry.tracking import metric_logger

        log = metric_logger(mlflow_run_id)
    return train_on_frames(cfg.train, frames["train"], frames["dev"], out, cache_dir=cache_dir, log_metrics=log)


def launch(cfg: Config, splits_dir: Path, out: Path, cache_dir: Path | None, mlflow_run_id: str | None) -> TrainResult:
    """Run ``fit`` under torchrun with ``cfg.train.num_processes`` ranks and read rank 0's result."""
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "config.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={cfg.train.num_processes}",
        "-m", "intent_mlops.train.fit", "--config", str(config_file), "--splits", str(splits_dir), "--out", str(out),
    ]  # fmt: skip
    if cache_dir:
        cmd += ["--cache-dir", str(cache_dir)]
    if mlflow_run_id:
        cmd += ["--mlflow-run-id", mlflow_run_id]
    import mlflow

    # the workers log to the store this process resolved (it may not be in their environment)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    subprocess.run(cmd, check=True, env=env)
    return TrainResult.from_json((out / RESULT_FILE).read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m intent_mlops.train.fit", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="JSON written from Config.to_dict()")
    p.add_argument("--splits", type=Path, required=True, help="folder with train.csv and dev.csv")
    p.add_argument("--out", type=Path, required=True, help="checkpoints and the best model go here")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--mlflow-run-id", default=None)
    args = p.parse_args(argv)
    cfg = config_from_dict(json.loads(args.config.read_text()))
    result = fit(cfg, args.splits, args.out, args.cache_dir, args.mlflow_run_id)
    if int(os.environ.get("RANK", "0")) == 0:
        (args.out / RESULT_FILE).write_text(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
