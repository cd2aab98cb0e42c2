"""Prefect tasks for the data half of a run: pull, gate, prepare. Logic lives in ``intent_mlops``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from intent_mlops.config.params import ValidationConfig
from intent_mlops.data import io as data_io
from intent_mlops.data import validation, versioning
from intent_mlops.data.split import SplitPaths, load_splits
from intent_mlops.registry import tracking
from tasks.retry import retry_on_io_only


@task(name="pull-data", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_io_only, cache_policy=NO_CACHE)
def pull_data(root: str, data_rev: str | None) -> versioning.DataVersion:
    """DVC pull of exactly the data that ``data_rev`` records (I/O: retried; user errors are not)."""
    version = versioning.pull(root, data_rev)
    get_run_logger().info("data %s at rev %s (%s)", version.data_md5, version.rev, version.raw_csv)
    return version


GATE_CODE = (data_io, validation)
"""Modules whose code decides the gate's verdict: reading the CSV and the GX rules themselves."""


def gate_fingerprint(cfg: ValidationConfig) -> str:
    """The rules' own fingerprint: their code, their params and the GX version that runs them."""
    import great_expectations as gx

    h = hashlib.md5(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(str(gx.__version__).encode())
    for module in GATE_CODE:
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:16]


def _gate_key(ctx: TaskRunContext | None, params: dict[str, Any]) -> str:
    """Same data and same rules -> same verdict; a changed rule or GX upgrade validates again."""
    return f"gx-raw-{params['data_md5']}-{gate_fingerprint(params['cfg'])}"


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
    frames = load_splits(SplitPaths.under(splits.folder))
    return asdict(validation.validate_splits(frames, cfg, str(splits.folder)))


@task(
    name="record-validation",
    retries=2,
    retry_delay_seconds=3,
    retry_condition_fn=retry_on_io_only,  # a failed gate fails once; a store error is retried
    cache_policy=NO_CACHE,
)
def record_validation(report: dict[str, Any], run_id: str) -> None:
    """Save the gate's result on the MLflow run and the flow run; raise when it failed."""
    rep = validation.ValidationReport(**{**report, "failures": [validation.Failure(**f) for f in report["failures"]]})
    tracking.log_validation(run_id, rep)
    create_markdown_artifact(
        key=f"data-validation-{rep.name}", markdown=rep.markdown(), description=rep.summary().splitlines()[0]
    )
    logger = get_run_logger()
    if not rep.success:
        tracking.set_tags(run_id, {tracking.STAGE_TAG: tracking.VALIDATION_FAILED})
        logger.error(rep.summary())
        raise validation.ValidationError(rep)
    logger.info(rep.summary())


@task(name="prepare-splits", cache_policy=NO_CACHE)
def prepare_splits(version: versioning.DataVersion) -> versioning.Splits:
    """``dvc repro prepare`` where the data version lives; ``dvc.lock`` gives the splits' hash."""
    splits = versioning.reproduce_splits(version.workdir)
    get_run_logger().info("splits %s at %s", splits.md5, splits.folder)
    return splits
