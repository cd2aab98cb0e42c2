"""Prefect tasks for the data half of a run: pull, gate, prepare. Logic lives in ``intent_mlops``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from intent_mlops import data as data_io
from intent_mlops import tracking, validation, versioning
from intent_mlops.config import ValidationConfig


@task(name="pull-data", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def pull_data(root: str, data_rev: str | None) -> versioning.DataVersion:
    """DVC pull of exactly the data that ``data_rev`` records (I/O: retried)."""
    version = versioning.pull(root, data_rev)
    get_run_logger().info("data %s at rev %s (%s)", version.data_md5, version.rev, version.raw_csv)
    return version


def _gate_key(ctx: TaskRunContext, params: dict[str, Any]) -> str:
    cfg: ValidationConfig = params["cfg"]
    digest = hashlib.md5(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
    return f"gx-raw-{params['data_md5']}-{digest}"


@task(
    name="gx-gate-raw",
    cache_key_fn=_gate_key,
    persist_result=True,
    result_serializer="json",
)
def gate_raw(raw_csv: str, data_md5: str, cfg: ValidationConfig) -> dict[str, Any]:
    """GX gate on the raw CSV; cached by data hash + gate params (same data, same verdict)."""
    df = data_io.read_csv(raw_csv)
    return asdict(validation.validate_raw(df, cfg, raw_csv))


@task(name="gx-gate-splits", cache_policy=NO_CACHE)
def gate_splits(splits: versioning.Splits, cfg: ValidationConfig) -> dict[str, Any]:
    frames = data_io.load_splits(data_io.SplitPaths.under(splits.folder))
    return asdict(validation.validate_splits(frames, cfg, str(splits.folder)))


@task(name="record-validation", retries=2, retry_delay_seconds=3, cache_policy=NO_CACHE)
def record_validation(report: dict[str, Any], run_id: str) -> None:
    """Save the gate's result on the MLflow run and the flow run; raise when it failed."""
    rep = validation.ValidationReport(**{**report, "failures": [validation.Failure(**f) for f in report["failures"]]})
    tracking.log_validation(run_id, rep)
    create_markdown_artifact(
        key=f"data-validation-{rep.name}", markdown=rep.markdown(), description=rep.summary().splitlines()[0]
    )
    logger = get_run_logger()
    if not rep.success:
        tracking.set_tags(run_id, {"intent-mlops.stage": "validation-failed"})
        logger.error(rep.summary())
        raise validation.ValidationError(rep)
    logger.info(rep.summary())


@task(name="prepare-splits", cache_policy=NO_CACHE)
def prepare_splits(version: versioning.DataVersion) -> versioning.Splits:
    """``dvc repro prepare`` where the data version lives; ``dvc.lock`` gives the splits' hash."""
    splits = versioning.reproduce_splits(version.workdir)
    get_run_logger().info("splits %s at %s", splits.md5, splits.folder)
    return splits
