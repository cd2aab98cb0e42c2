"""Training outside the flow, one process per rank: what torchrun / ``accelerate launch`` start.

``python -m torch.distributed.run --standalone --nproc_per_node N -m intent_mlops.train.fit --config C
--splits S --out O`` trains data-parallel with the same ``training.train`` as a single process;
rank 0 writes ``O/result.json``. The flow's fine-tune step launches this when
``train.num_processes`` > 1, so a multi-GPU run is the same flow with one more param.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from intent_mlops.config.params import Config, config_from_dict
from intent_mlops.data.split import SplitPaths, load_splits
from intent_mlops.train.loop import TrainResult, train

RESULT_FILE = "result.json"


def fit(cfg: Config, splits_dir: Path, out: Path, cache_dir: Path | None, mlflow_run_id: str | None) -> TrainResult:
    frames = load_splits(SplitPaths.under(splits_dir))
    tr, dev = frames["train"], frames["dev"]
    log = None
    if mlflow_run_id and int(os.environ.get("RANK", "0")) == 0:
        from intent_mlops.registry.tracking import metric_logger

        log = metric_logger(mlflow_run_id)
    return train(
        cfg.train,
        tr["text"].tolist(),
        tr["label"].tolist(),
        dev["text"].tolist(),
        dev["label"].tolist(),
        out,
        cache_dir=cache_dir,
        log_metrics=log,
    )


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
