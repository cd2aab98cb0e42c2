"""Prefect tasks for the model half of a run: track, fine-tune, evaluate, register.

Training is never retried (a retry would silently double the cost; a rerun resumes from the
checkpoint instead); calls to the tracking store are.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal

from intent_mlops.config.params import Config
from intent_mlops.data import versioning
from intent_mlops.data.split import SplitPaths, load_splits
from intent_mlops.evaluation.evaluate import evaluate_model_dir
from intent_mlops.evaluation.metrics import Report
from intent_mlops.faults import failpoint
from intent_mlops.registry import models as registry
from intent_mlops.registry import tracking
from intent_mlops.train import fit
from intent_mlops.train.checkpoint import remove_work
from intent_mlops.train.loop import TrainResult


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
    logger = get_run_logger()
    logger.info("MLflow run %s (%s)", run_id, "resumed" if resumed else "new")
    earlier_run = None if resumed else tracking.duplicate_of(run_id)
    if earlier_run:
        earlier = tracking.version_of_run(cfg.mlflow.registered_model, earlier_run)
        what = f"version {earlier} (MLflow run {earlier_run})" if earlier else f"MLflow run {earlier_run}"
        tag = f"{tracking.DUPLICATE_OF_VERSION}={earlier}" if earlier else f"{tracking.DUPLICATE_OF_RUN}={earlier_run}"
        logger.warning("this retrains the same data and params as %s; the new version gets the tag %s", what, tag)
    return run_id, tags


@task(name="tag-run", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def tag_run(run_id: str, tags: dict[str, str]) -> None:
    tracking.set_tags(run_id, tags)


def work_dir(root: str, run_id: str) -> Path:
    return Path(root) / ".intent-mlops" / "runs" / run_id


@task(name="fine-tune", retries=0, cache_policy=NO_CACHE)
def fine_tune(cfg: Config, splits: versioning.Splits, run_id: str, root: str) -> TrainResult:
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
def evaluate(cfg: Config, result: TrainResult, splits: versioning.Splits, run_id: str) -> dict[str, float]:
    """Dev and test reports of the best checkpoint, logged with confusion matrices."""
    frames = load_splits(SplitPaths.under(splits.folder))
    sets = {name: (frames[name]["text"].tolist(), frames[name]["label"].tolist()) for name in ("dev", "test")}
    reports: dict[str, Report] = evaluate_model_dir(result.model_dir, sets, cfg.train)
    metrics = tracking.log_evaluation(run_id, reports)
    get_run_logger().info(", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return metrics


@task(name="register-model", retries=0, cache_policy=NO_CACHE)
def register(cfg: Config, result: TrainResult, run_id: str, lineage: dict[str, str]) -> registry.RegisteredVersion:
    """Log the model as the serving pyfunc (calibration and checked ONNX variants included) and
    register it once per run."""
    version, new = registry.register_once(
        result.model_dir, cfg.mlflow.registered_model, run_id, list(cfg.mlflow.input_example), lineage,
        cfg.serving, cfg.train.max_length,
    )  # fmt: skip
    state = "registered" if new else "already registered by this run:"
    get_run_logger().info("%s %s version %s", state, version.name, version.version)
    earlier = tracking.mark_duplicate_version(version.name, version.version, run_id)
    if earlier:
        get_run_logger().info("version %s duplicates version %s (same data and params)", version.version, earlier)
    failpoint("after-register")
    return version


@task(name="read-aliases", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def read_aliases(name: str) -> dict[str, str]:
    return registry.aliases(name)


STOPPED = (KeyboardInterrupt, TerminationSignal)
"""A person or a signal stopped the run (Ctrl-C, SIGTERM, a Prefect cancellation): KILLED, not FAILED."""


def end_status(exc: BaseException) -> tuple[str, str]:
    """MLflow status and ``intent-mlops.stop_reason`` for a run that ``exc`` ended."""
    if isinstance(exc, STOPPED):
        sig = getattr(exc, "signal", None)
        return "KILLED", f"stopped by signal {signal.Signals(sig).name}" if sig else "stopped by Ctrl-C (SIGINT)"
    return "FAILED", f"{type(exc).__name__}: {exc}"


@task(name="close-mlflow-run", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def close_run(run_id: str, status: str | BaseException, root: str | None = None) -> None:
    """End the MLflow run. ``status`` is FINISHED / FAILED / KILLED, or the exception that ended the
    flow (mapped by :func:`end_status`, its reason kept as a tag); checkpoints go once it FINISHED."""
    reason = None
    if isinstance(status, BaseException):
        status, reason = end_status(status)
    tracking.close_run(run_id, status, reason)
    if status == "FINISHED" and root is not None:
        remove_work(work_dir(root, run_id))


def summary_markdown(
    metrics: dict[str, Any], version: registry.RegisteredVersion, aliases: dict[str, str], decision: dict[str, Any]
) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    mine = ", ".join(f"`{a}`" for a, v in sorted(aliases.items()) if v == version.version) or "none"
    others = ", ".join(f"`{a}` -> v{v}" for a, v in sorted(aliases.items()) if v != version.version) or "none"
    return (
        f"# Training run\n\n| metric | value |\n|---|---|\n{rows}\n\n"
        f"Registered `{version.name}` version **{version.version}** (run `{version.run_id}`).\n\n"
        f"Promotion: **{decision['decision']}**: {decision['reason']}\n\n"
        f"Aliases of this version: {mine}; other aliases: {others}\n"
    )
