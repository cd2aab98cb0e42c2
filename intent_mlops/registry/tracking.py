"""MLflow tracking: which store, one run per training, and what each run records.

Embedded default: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
``MLFLOW_TRACKING_URI`` (or ``mlflow.tracking_uri`` in params) points the same code at a tracking
server (PostgreSQL-backed at team scale). Everything goes through ``MlflowClient`` with an
explicit run id, so Prefect tasks in any thread log into the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from intent_mlops.config.params import Config, MlflowConfig
from intent_mlops.config.redact import redact_mapping
from intent_mlops.data.validation import ValidationReport
from intent_mlops.evaluation.metrics import Report, per_label_markdown
from intent_mlops.evaluation.plots import plot_confusion

RESUME_TAG = "intent-mlops.resume_key"


def tracking_uri(cfg: MlflowConfig, root: Path | str) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = Path(root).resolve() / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def default_artifact_location(uri: str, root: Path | str) -> str | None:
    """Artifacts beside the SQLite file for the embedded store; a server decides otherwise."""
    if uri.startswith("sqlite:"):
        return (Path(root).resolve() / "mlruns" / "artifacts").as_uri()
    return None


def connect(cfg: MlflowConfig, root: Path | str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id.

    On the embedded SQLite store the first connection of each process creates or migrates the
    tables and maybe the experiment: processes that start together on a fresh project (a training
    run, a batch, ``make serve``'s MLflow server) raced there ("duplicate column name", a second
    experiment create failing), so that part runs under a lock file beside the database.
    """
    import mlflow

    uri = tracking_uri(cfg, root)
    with _store_lock(uri):
        exported = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        # MLflow also exports the URI to the environment; restore the user's values so that the next
        # project served by this process (a worker, a test session) resolves its own store.
        for key, value in exported.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        exp = mlflow.get_experiment_by_name(cfg.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        # MLflow 3's UI opens an untagged experiment in GenAI mode ("Traces 0"), hiding the runs
        kind = {"mlflow.experimentKind": "finetuning"}
        return str(mlflow.create_experiment(cfg.experiment, default_artifact_location(uri, root), tags=kind))


def _store_lock(uri: str) -> Any:
    """An inter-process lock for a SQLite store's set-up (a no-op for a server or another database)."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(uri.removeprefix("sqlite:///") + ".setup.lock", timeout=300)


def resume_key(params_md5: str, data_md5: str, data_rev: str) -> str:
    """Same params, same data, same ``data_rev`` asked for -> a rerun resumes the unfinished run.

    The code's git commit is not part of it: a fix to the code between crash and rerun should
    still continue from the checkpoint.
    """
    return hashlib.md5(f"{params_md5}|{data_md5}|{data_rev}".encode()).hexdigest()[:16]


STAGE_TAG = "intent-mlops.stage"
COMPLETE, VALIDATION_FAILED = "complete", "validation-failed"
DUPLICATE_OF_RUN = "intent-mlops.duplicate_of_run"
"""On a run that retrains the params + data of an earlier complete run: that run's id (the first one)."""
DUPLICATE_OF_VERSION = "intent-mlops.duplicate_of_version"
"""On a model version registered by such a run: the version the first run registered."""
STOP_REASON = "intent-mlops.stop_reason"
"""On a run stopped before it completed: why (e.g. ``interrupted by Ctrl-C (SIGINT) at step 40``)."""


def open_run(
    cfg: Config, root: Path | str, tags: dict[str, str], key: str, run_name: str | None = None
) -> tuple[str, bool]:
    """Reuse the incomplete run with ``key`` (crash resume) or start a new one; returns (id, resumed).

    "Incomplete" is this project's own stage tag, not MLflow's status: logging the model ends the
    run as FINISHED in MLflow before the flow's last steps, and a kill in that window must still
    resume the same run (and find its registered version) instead of training again.
    """
    import mlflow

    exp_id = connect(cfg.mlflow, root)
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RESUME_TAG}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found and found[0].data.tags.get(STAGE_TAG) not in (COMPLETE, VALIDATION_FAILED):
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        resumed = True
    else:
        first_tags = {RESUME_TAG: key}
        earlier = _complete_run(client, exp_id, key)
        if earlier is not None:  # same params, same data, finished before: this retrains it
            first_tags[DUPLICATE_OF_RUN] = earlier.data.tags.get(DUPLICATE_OF_RUN) or earlier.info.run_id
        run_id = client.create_run(exp_id, run_name=run_name, tags=first_tags).info.run_id
        resumed = False
        client.log_batch(run_id, params=[_param(k, v) for k, v in run_params(cfg).items()])
    set_tags(run_id, tags)
    return run_id, resumed


def _complete_run(client: Any, exp_id: str, key: str) -> Any:
    done = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{RESUME_TAG}` = '{key}' and tags.`{STAGE_TAG}` = '{COMPLETE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return done[0] if done else None


def duplicate_of(run_id: str) -> str | None:
    """The earlier complete run that ``run_id`` retrains with the same params and data, if any."""
    import mlflow

    return mlflow.MlflowClient().get_run(run_id).data.tags.get(DUPLICATE_OF_RUN) or None


def version_of_run(registered_model: str, run_id: str) -> str | None:
    """The version of ``registered_model`` that run ``run_id`` registered (the newest if several)."""
    import mlflow

    found = mlflow.MlflowClient().search_model_versions(f"name = '{registered_model}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in found)) if found else None


def mark_duplicate_version(registered_model: str, version: str, run_id: str) -> str | None:
    """Tag ``version`` with the version it duplicates when its run retrains an earlier run's inputs.

    Returns that earlier version (None: not a duplicate, or the earlier run registered nothing).
    """
    import mlflow

    earlier_run = duplicate_of(run_id)
    earlier = version_of_run(registered_model, earlier_run) if earlier_run else None
    if earlier is not None and earlier != str(version):
        mlflow.MlflowClient().set_model_version_tag(registered_model, str(version), DUPLICATE_OF_VERSION, earlier)
        return earlier
    return None


def duplicate_version(registered_model: str, version: str) -> str | None:
    """The earlier version that ``version`` duplicates (its :data:`DUPLICATE_OF_VERSION` tag), if any."""
    import mlflow

    tags = mlflow.MlflowClient().get_model_version(registered_model, str(version)).tags
    return tags.get(DUPLICATE_OF_VERSION) or None


def latest_run(cfg: Config, root: Path | str, key: str) -> Any:
    """The newest run with resume key ``key`` (None when there is none)."""
    import mlflow

    exp_id = connect(cfg.mlflow, root)
    found = mlflow.MlflowClient().search_runs(
        [exp_id],
        filter_string=f"tags.`{RESUME_TAG}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0] if found else None


def mark_stopped(run_id: str, reason: str, status: str = "KILLED") -> None:
    """End an unfinished run as ``status`` (KILLED: stopped by a person or a signal) with ``reason``.

    The run stays resumable: only a complete run (stage tag) makes the next identical run a new one.
    """
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, STOP_REASON, reason)
    client.set_terminated(run_id, status=status)


def run_params(cfg: Config) -> dict[str, str]:
    """The config as MLflow params, credentials masked (params are readable by every UI user)."""
    return redact_mapping(cfg.flat())


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for k, v in redact_mapping(tags).items():
        client.set_tag(run_id, k, v)


def metric_logger(run_id: str) -> Any:
    """Callback for the training loop: per-step / per-epoch curves."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()

    def log(metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    return log


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for k, v in metrics.items():
        client.log_metric(run_id, k, float(v))


def log_text(run_id: str, text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.MlflowClient().log_text(run_id, text, artifact_file)


def log_validation(run_id: str, report: ValidationReport) -> None:
    log_text(run_id, report.markdown(), f"validation/{report.name}.md")
    log_text(run_id, report.to_json(), f"validation/{report.name}.json")


def log_evaluation(run_id: str, reports: dict[str, Report]) -> dict[str, float]:
    """Final metrics, per-intent reports (JSON + markdown) and confusion matrices for each split."""
    import mlflow

    client = mlflow.MlflowClient()
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, rep in reports.items():
            metrics.update(rep.metrics(split))
            (Path(tmp) / f"{split}_report.json").write_text(json.dumps(rep.to_dict(), indent=2))
            (Path(tmp) / f"{split}_per_intent.md").write_text(per_label_markdown(rep))
            plot_confusion(rep, Path(tmp) / f"{split}_confusion_matrix.png", f"{split} confusion matrix")
        client.log_artifacts(run_id, tmp, "evaluation")
    log_metrics(run_id, metrics)
    return metrics


def close_run(run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
    """End the run; a FINISHED close also marks it complete, so the next identical run starts anew.

    ``reason`` (for FAILED / KILLED) is kept as the ``intent-mlops.stop_reason`` tag.
    """
    import mlflow

    client = mlflow.MlflowClient()
    if status == "FINISHED":
        client.set_tag(run_id, STAGE_TAG, COMPLETE)
    elif reason:
        client.set_tag(run_id, STOP_REASON, reason[:5000])
    client.set_terminated(run_id, status=status)
