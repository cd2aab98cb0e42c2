"""Prefect tasks of the monitor flow: read the window, find the champion and its reference, embed,
compare, record, announce. Reads of the stores are retried; the comparison is not (deterministic)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from intent_mlops.config.params import Config
from intent_mlops.inference.registered import ModelRef, load_predictor, resolve
from intent_mlops.monitoring import monitor
from intent_mlops.monitoring.log import open_store
from intent_mlops.monitoring.reference import Reference, load_reference, no_reference_reason
from intent_mlops.registry import tracking
from intent_mlops.registry.models import ModelNotFound
from tasks.retry import retry_on_io_only

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from intent_mlops.monitoring.drift import DriftReport


@task(name="read-prediction-log", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)  # fmt: skip
def read_window(cfg: Config, root: str, start: datetime, end: datetime) -> tuple[pd.DataFrame | None, str]:
    """The window's rows, or None and why there is nothing to compare."""
    frame, note = monitor.read_window(open_store(root, cfg.monitoring), start, end)
    get_run_logger().info(note or f"{len(frame) if frame is not None else 0} predictions in the window")
    return frame, note


@task(name="resolve-champion", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)  # fmt: skip
def resolve_champion(cfg: Config, root: str) -> tuple[ModelRef | None, str]:
    """The champion version, or None and why there is none."""
    tracking.connect(cfg.mlflow, root)
    try:
        return resolve(cfg.mlflow.registered_model), ""
    except ModelNotFound as exc:
        return None, f"nothing compared: no champion to compare with ({exc})"


@task(name="load-reference", retries=2, retry_delay_seconds=3, retry_condition_fn=retry_on_io_only,
      cache_policy=NO_CACHE)  # fmt: skip
def reference_of(ref: ModelRef) -> tuple[Reference | None, str]:
    """The champion's reference rows, or None and why there are none."""
    found = load_reference(ref.name, ref.version)
    if found is None:
        return None, f"nothing compared: {no_reference_reason(ref.name, ref.version)}"
    return found, ""


@task(name="embed-samples", retries=0, cache_policy=NO_CACHE)
def embed_samples(
    cfg: Config, root: str, ref: ModelRef, reference_texts: list[Any], current_texts: list[Any]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The champion's pooled embeddings of at most ``monitoring.embedding_sample`` texts of each side
    (0: all); none when the window's texts are not logged (``monitoring.log_text: false``)."""
    rows = cfg.monitoring.embedding_sample or max(len(reference_texts), len(current_texts))
    current = monitor.sample_texts(current_texts, rows)
    if not current:
        get_run_logger().info("no embedding drift: the window's texts are not logged")
        return None, None
    predictor = load_predictor(ref, Path(root) / ".intent-mlops" / "models", num_threads=cfg.train.num_threads or None)
    reference = monitor.sample_texts(reference_texts, rows)
    return monitor.embed(predictor, reference), monitor.embed(predictor, current)


@task(name="compare-with-reference", retries=0, cache_policy=NO_CACHE)
def compare(
    cfg: Config,
    reference: Reference,
    current: pd.DataFrame,
    reference_embeddings: np.ndarray | None,
    current_embeddings: np.ndarray | None,
) -> DriftReport:
    from intent_mlops.monitoring.drift import drift_report

    report = drift_report(
        reference.frame, current, cfg.monitoring, reference_embeddings=reference_embeddings,
        current_embeddings=current_embeddings, expected_oos_rate=reference.expected_oos_rate,
    )  # fmt: skip
    for s in report.signals:
        get_run_logger().info("%s = %s (threshold %s)%s", s.name, s.value, s.threshold, " CROSSED" if s.crossed else "")
    return report


@task(name="log-monitoring-run", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def log_run(
    cfg: Config, root: str, report: DriftReport, ref: ModelRef, start: datetime, end: datetime, tags: dict[str, str]
) -> tuple[str, str]:
    """The window's MLflow run in ``monitoring.experiment``; returns (run id, its UI link)."""
    exp = monitor.monitoring_experiment(cfg, root)
    run_id = monitor.log_monitoring_run(exp, report, ref.label, start, end, tags=tags)
    return run_id, monitor.run_url(exp, run_id)


@task(name="announce-drift", retries=0, cache_policy=NO_CACHE)
def announce_drift(report: DriftReport, ref: ModelRef, start: datetime, end: datetime, run_id: str) -> None:
    """The ``intent-mlops.drift.detected`` Prefect event for automations. Best effort, like the
    promotion events: the MLflow run, written before, is the record."""
    from prefect.events import emit_event

    emit_event(
        event="intent-mlops.drift.detected",
        resource={
            "prefect.resource.id": f"mlflow.model-version.{ref.name}.{ref.version}",
            "prefect.resource.name": f"{ref.name} v{ref.version}",
            "mlflow.run_id": run_id,
        },
        payload=monitor.event_payload(report, ref.label, ref.version, start, end) | {"mlflow_run_id": run_id},
    )
