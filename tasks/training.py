"""Prefect tasks for the model half of a run: track, fine-tune, evaluate, register.

Training is never retried (a retry would silently double the cost; a rerun resumes from the
checkpoint instead); calls to the tracking store are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from intent_mlops import data as data_io
from intent_mlops import fit, registry, tracking, training, versioning
from intent_mlops.config import Config
from intent_mlops.evaluation import Report


@task(name="open-mlflow-run", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def open_run(
    cfg: Config, root: str, version: versioning.DataVersion, run_name: str | None
) -> tuple[str, dict[str, str]]:
    """One MLflow run per (params, data version); an unfinished one is resumed, not duplicated.

    Returns the run id and the lineage tags set on it.
    """
    tags = {
        "data.md5": version.data_md5,
        "data.rev": version.rev,
        "git.commit": versioning.git_commit(root),
        "params.md5": cfg.md5(),
    }
    key = tracking.resume_key(cfg.md5(), version.data_md5, version.rev)
    run_id, resumed = tracking.open_run(cfg, root, tags, key, run_name)
    get_run_logger().info("MLflow run %s (%s)", run_id, "resumed" if resumed else "new")
    return run_id, tags


@task(name="tag-run", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def tag_run(run_id: str, tags: dict[str, str]) -> None:
    tracking.set_tags(run_id, tags)


def work_dir(root: str, run_id: str) -> Path:
    return Path(root) / ".intent-mlops" / "runs" / run_id


@task(name="fine-tune", retries=0, cache_policy=NO_CACHE)
def fine_tune(cfg: Config, splits: versioning.Splits, run_id: str, root: str) -> training.TrainResult:
    """Fine-tune on train, select on dev; checkpoints under ``.intent-mlops/runs/<run id>``.

    With ``train.num_processes`` > 1 the same training code runs data-parallel under torchrun.
    """
    work, cache = work_dir(root, run_id), Path(root) / ".intent-mlops" / "cache"
    if cfg.train.num_processes > 1:
        result = fit.launch(cfg, splits.folder, work, cache, run_id)
    else:
        result = fit.fit(cfg, splits.folder, work, cache, run_id)
    get_run_logger().info(
        "trained %d steps (resumed from %d) on %s, %.1f examples/s, best epoch %d dev macro-F1 %.4f",
        result.global_step,
        result.resumed_from_step,
        result.device,
        result.examples_per_second,
        result.best_epoch,
        result.best_dev_macro_f1,
    )
    tracking.log_metrics(
        run_id,
        {
            "train_examples_per_second": result.examples_per_second,
            "train_seconds": result.train_seconds,
            "best_epoch": result.best_epoch,
            "resumed_from_step": result.resumed_from_step,
        },
    )
    return result


@task(name="evaluate", retries=0, cache_policy=NO_CACHE)
def evaluate(cfg: Config, result: training.TrainResult, splits: versioning.Splits, run_id: str) -> dict[str, float]:
    """Dev and test reports of the best checkpoint, logged with confusion matrices."""
    frames = data_io.load_splits(data_io.SplitPaths.under(splits.folder))
    sets = {name: (frames[name]["text"].tolist(), frames[name]["label"].tolist()) for name in ("dev", "test")}
    reports: dict[str, Report] = training.evaluate_model_dir(result.model_dir, sets, cfg.train)
    metrics = tracking.log_evaluation(run_id, reports)
    get_run_logger().info(", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return metrics


@task(name="register-model", retries=0, cache_policy=NO_CACHE)
def register(
    cfg: Config, result: training.TrainResult, splits: versioning.Splits, run_id: str, lineage: dict[str, str]
) -> registry.RegisteredVersion:
    """Log the model in the transformers flavour and register it once per run."""
    import mlflow

    name = cfg.mlflow.registered_model
    existing = registry.find_version_for_run(name, run_id)
    if existing is not None:
        get_run_logger().info("run %s already registered %s version %s", run_id, name, existing)
        mv = mlflow.MlflowClient().get_model_version(name, existing)
        return registry.RegisteredVersion(name, existing, run_id, str(mv.source))
    dev = data_io.read_csv(data_io.SplitPaths.under(splits.folder).dev)
    example = dev["text"].head(3).tolist()
    with mlflow.start_run(run_id=run_id):
        version = registry.log_and_register(result.model_dir, name, example, lineage)
    get_run_logger().info("registered %s version %s", name, version.version)
    return version


@task(name="crown-if-first", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def crown_if_first(version: registry.RegisteredVersion) -> dict[str, str]:
    """``champion`` for the first version; the champion/challenger policy decides later ones."""
    registry.crown_if_first(version.name, version.version)
    return registry.aliases(version.name)


@task(name="close-mlflow-run", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def close_run(run_id: str, status: str, root: str | None = None) -> None:
    tracking.close_run(run_id, status)
    if status == "FINISHED" and root is not None:
        training.remove_work(work_dir(root, run_id))


def summary_markdown(metrics: dict[str, Any], version: registry.RegisteredVersion, aliases: dict[str, str]) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    alias_text = ", ".join(f"`{a}` -> v{v}" for a, v in sorted(aliases.items())) or "none"
    return (
        f"# Training run\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"Registered `{version.name}` version **{version.version}** (run `{version.run_id}`).\n\n"
        f"Aliases: {alias_text}\n"
    )
