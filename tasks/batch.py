"""Prefect tasks of the batch-predict flow: pick the model version, predict a file, record the batch."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from intent_mlops.config.params import Config
from intent_mlops.data.versioning import tracked_file
from intent_mlops.inference import batch
from intent_mlops.inference.registered import ModelRef, load_predictor, resolve
from intent_mlops.registry import tracking
from tasks.retry import retry_on_io_only


@task(name="resolve-model-version", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)  # fmt: skip
def resolve_version(cfg: Config, root: str, alias: str | None, version: str | None) -> ModelRef:
    tracking.connect(cfg.mlflow, root)
    ref = resolve(cfg.mlflow.registered_model, alias, version)
    get_run_logger().info("predicting with %s%s", ref.label, f" (@{ref.alias})" if ref.alias else "")
    return ref


@task(name="fetch-input", retries=1, retry_delay_seconds=3, retry_condition_fn=retry_on_io_only, cache_policy=NO_CACHE)
def fetch_input(root: str, input_path: str, rev: str | None) -> str:
    """The input file: as given, or (with ``rev``) the DVC/git-tracked path as that revision records it."""
    if not rev:
        path = Path(input_path)
        return str(path if path.is_absolute() else Path(root) / path)
    return str(tracked_file(root, input_path, rev))


@task(name="predict-file", retries=0, cache_policy=NO_CACHE)
def predict_file(
    cfg: Config, root: str, ref: ModelRef, input_path: str, output_path: str, chunk_rows: int, progress: bool
) -> batch.BatchResult:
    """Stream the file through the version's predictor into ``output_path`` (atomic: all or nothing);
    every answered row goes to the prediction log under this flow run's id."""
    from prefect.runtime import flow_run

    from intent_mlops.monitoring.log import PredictionLog

    predictor = load_predictor(ref, Path(root) / ".intent-mlops" / "models", num_threads=cfg.train.num_threads or None)
    prediction_log = PredictionLog.open(root, cfg.monitoring)
    try:
        result = batch.predict_file(
            predictor, input_path, output_path, top_k=cfg.serving.top_k, chunk_rows=chunk_rows, progress=progress,
            prediction_log=prediction_log, run_id=str(flow_run.get_id() or ""),
        )  # fmt: skip
    finally:
        if prediction_log is not None:
            prediction_log.close()
    get_run_logger().info(
        "%d rows (%d errors) in %.1f s, %.0f rows/s, out-of-scope %.1f %%",
        result.rows, result.error_rows, result.seconds, result.rows_per_second, 100 * result.out_of_scope_rate,
    )  # fmt: skip
    return result


@task(name="log-batch", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def log_batch(cfg: Config, root: str, result: batch.BatchResult, source: str, run_name: str | None) -> str:
    exp_id = tracking.connect(cfg.mlflow, root)
    return batch.log_batch_run(exp_id, result, source, run_name)
