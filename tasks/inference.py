"""Prefect tasks that make a trained model ready to serve: out-of-scope calibration, ONNX variants.

Both write into the best model folder (``ood.json``, ``onnx/``), which the register task logs as
the pyfunc model; both are deterministic, so a resumed run simply redoes them.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from intent_mlops.config.params import Config
from intent_mlops.data import versioning
from intent_mlops.data.split import SplitPaths, load_splits
from intent_mlops.inference.calibrate import calibrate_for_config
from intent_mlops.inference.onnx_export import export_checked_variants
from intent_mlops.inference.predictor import variant_backend
from intent_mlops.monitoring.reference import log_reference
from intent_mlops.registry import tracking
from intent_mlops.train.fit import texts_labels
from intent_mlops.train.loop import TrainResult


def _sets(splits: versioning.Splits) -> dict[str, tuple[list[str], list[str]]]:
    frames = load_splits(SplitPaths.under(splits.folder))
    return {name: texts_labels(df) for name, df in frames.items()}


def _threads(cfg: Config) -> int | None:
    return cfg.train.num_threads or None


@task(name="calibrate-out-of-scope", retries=0, cache_policy=NO_CACHE)
def calibrate_ood(cfg: Config, result: TrainResult, splits: versioning.Splits, run_id: str) -> dict[str, float]:
    """Fit the out-of-scope score and threshold on train/dev (stored in the model folder); log the
    dev/test out-of-scope metrics and the calibration as run tags, and the version's monitoring
    reference (its dev answers, made here to score it) as artifacts of the run that registers it."""
    i, sets = cfg.serving, _sets(splits)
    calib, metrics = calibrate_for_config(
        result.model_dir, sets, i.ood_in_scope_recall_ratio, i.ood_target_oos_recall, i.ood_score,
        cfg.train.max_length, _threads(cfg),
    )  # fmt: skip
    tracking.log_metrics(run_id, metrics)
    tracking.set_tags(run_id, calib.calibration.tags())
    get_run_logger().info(calib.summary())
    if calib.dev_columns is not None:
        ref = log_reference(run_id, *sets["dev"], calib.dev_columns, calib.backend)
        get_run_logger().info(
            "monitoring reference: %d dev rows, expected out-of-scope rate %.4f", ref["rows"], ref["expected_oos_rate"]
        )
    return metrics


@task(name="export-onnx", retries=0, cache_policy=NO_CACHE)
def export_onnx(cfg: Config, result: TrainResult, splits: versioning.Splits, run_id: str) -> dict[str, Any]:
    """ONNX fp32 (fused) and int8 variants checked against fp32 torch on dev; the ones that pass ship
    with the version. ``serving.onnx: false`` skips it (the version serves fp32 torch)."""
    i = cfg.serving
    if not i.onnx:
        get_run_logger().info("serving.onnx is off: no ONNX variants")
        return {}
    dev_x, dev_y = _sets(splits)["dev"]
    report = export_checked_variants(
        result.model_dir, dev_x, dev_y, min_agreement=i.onnx_min_agreement,
        max_accuracy_drop=i.onnx_max_accuracy_drop, num_threads=_threads(cfg), max_length=cfg.train.max_length,
        int8_weights=i.onnx_int8_weights,
    )  # fmt: skip
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for name, v in report["variants"].items():
        kind = variant_backend(name).split("-", 1)[0]  # onnx, or torch for bf16 (the model cast at load)
        metrics[f"{kind}_{name}_dev_agreement"] = float(v["agreement"])
        if v.get("accuracy_delta") is not None:
            metrics[f"{kind}_{name}_dev_accuracy_delta"] = float(v["accuracy_delta"])
        tags[f"{kind}.{name}"] = "passed" if v["passed"] else "failed"
        get_run_logger().info(
            "%s %s: agreement %.4f, accuracy delta %s: %s", kind, name, v["agreement"], v.get("accuracy_delta"),
            "passed" if v["passed"] else "failed (not shipped)",
        )  # fmt: skip
    tracking.log_metrics(run_id, metrics)
    if "weights" in report["variants"].get("int8", {}):
        tags["onnx.int8_weights"] = report["variants"]["int8"]["weights"]
    tracking.set_tags(run_id, tags)
    return report
