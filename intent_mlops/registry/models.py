"""MLflow model registry: log the fine-tuned model, register it, manage aliases.

The model is logged as this project's pyfunc (:mod:`intent_mlops.inference.pyfunc`, "models from
code": safetensors weights, the out-of-scope calibration and the checked ONNX variants, signature,
input example, explicit pip requirements, nothing pickled), so every prediction path (MLflow's
loader, ``mlflow models serve``, the batch flow) applies the same out-of-scope rule. Lineage and
serving tags are copied onto the version (:data:`VERSION_TAGS`); the calibration's stay on the run.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from intent_mlops.config.params import ServingConfig
from intent_mlops.config.redact import redact_mapping

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous-champion"


class ModelNotFound(LookupError):
    """The asked-for alias or version does not exist (a user error, not a registry fault)."""


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str


ROLLBACK_MARKS = (
    "promotion.rolled_back_at", "promotion.rolled_back_by", "promotion.rolled_back_reason",  # moved away from
    "promotion.rolled_back_to_at",  # crowned again by a rollback
)  # fmt: skip
"""A person's rollback, marked on the versions it moved ``champion`` from and to (the skip rules read them)."""

VERSION_TAGS = frozenset({
    "data.md5", "data.rev", "splits.md5", "git.commit", "params.md5",  # lineage (CONVENTIONS.md)
    "serving.backend", "serving.batch_backend",  # what answers requests and batches
    "promotion.decision", "promotion.kind", "promotion.reason", "promotion.champion_version", "promotion.gain",
    "promotion.ci_low",  # the decision's headline; the skip rules read them from versions
    "intent-mlops.duplicate_of_version",  # only on a version that retrains another's data and params
    *ROLLBACK_MARKS,  # only on versions a rollback moved champion from or to
})  # fmt: skip
"""The tags a model version carries: what code reads from a version and what a reviewer scans in MLflow's
versions table, which shows every version tag in its own truncated column (it showed ~25). Everything
else (the ``ood.*`` calibration, the decision's statistics, record-keeping) is on the run only, whose
tags the model card shows with the version's."""


def version_tags(tags: dict[str, str]) -> dict[str, str]:
    """The part of ``tags`` that goes on the model version (see :data:`VERSION_TAGS`)."""
    return {k: v for k, v in tags.items() if k in VERSION_TAGS}


def serving_tags(model_dir: Path | str, backend: str, batch_backend: str) -> dict[str, str]:
    """``ood.*`` (score, threshold, target), ``serving.backend`` (what answers the online endpoint) and
    ``serving.batch_backend`` (what runs batch files): the registry alone says how the version answers
    out of scope and what runs it, on the machine that trained it (a serving CPU without VNNI or
    bf16 units picks the next passing variant)."""
    from intent_mlops.inference.ood import OodCalibration

    calib = OodCalibration.load(model_dir)
    return {
        **(calib.tags() if calib else {"ood.score": "none"}),
        "serving.backend": backend,
        "serving.batch_backend": batch_backend,
    }


def log_and_register(
    model_dir: Path | str,
    registered_model: str,
    input_example: list[str],
    tags: dict[str, str],
    serving: ServingConfig | None = None,
    max_length: int = 128,
) -> RegisteredVersion:
    """Log ``model_dir`` (a ``save_pretrained`` folder, with ``ood.json`` / ``onnx/`` when calibrated and
    exported) to the active run as the pyfunc model and register it.

    Tags (lineage) and the serving tags go on the run; the :data:`VERSION_TAGS` among them on the model
    version too, so the registry alone answers "trained on what, served by what".
    """
    import mlflow

    serving = serving or ServingConfig()
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    said = io.StringIO()
    # MLflow prints "Successfully registered model ..." / "Created version ..." to stderr (eprint):
    # the run's console shows this project's summary instead; the lines go to the log
    try:
        with contextlib.redirect_stderr(said):
            info = _log(model_dir, input_example, registered_model, serving, max_length)
    finally:
        for line in said.getvalue().splitlines():
            if line.strip():
                log.info("%s", line.strip())
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    config = (info.flavors.get("python_function") or {}).get("config") or {}  # MLmodel key of model_config
    backend = str(config.get("backend", "unknown"))
    all_tags = redact_mapping({**tags, **serving_tags(model_dir, backend, str(config.get("batch_backend", backend)))})
    for key, value in all_tags.items():
        client.set_tag(run.info.run_id, key, value)
    for key, value in version_tags(all_tags).items():
        client.set_model_version_tag(registered_model, version, key, value)
    return RegisteredVersion(registered_model, version, run.info.run_id, info.model_uri)


def _log(
    model_dir: Path | str, input_example: list[str], registered_model: str, serving: ServingConfig, max_length: int
) -> Any:
    from intent_mlops.inference.pyfunc import log_pyfunc

    return log_pyfunc(
        model_dir,
        "model",
        input_example=input_example,
        registered_model_name=registered_model,
        use_onnx=None if serving.use_onnx else False,
        top_k=serving.top_k,
        max_length=max_length,
        extra_config={"max_chars": serving.max_chars, "max_batch": serving.max_batch},
    )


def aliases(name: str) -> dict[str, str]:
    """alias -> version for a registered model ({} when it does not exist yet).

    Only "does not exist" means "no aliases": any other registry error (a locked database, a
    server that is down) propagates, so a caller never crowns a version on a transient failure
    and the task's retries see the error.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return {}
        raise
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}


def register_once(
    model_dir: Path | str,
    registered_model: str,
    run_id: str,
    input_example: list[str],
    tags: dict[str, str],
    serving: ServingConfig | None = None,
    max_length: int = 128,
) -> tuple[RegisteredVersion, bool]:
    """Register the run's model unless the run already did (a resumed run); returns (version, new).

    The run is activated only to log the model and is left in whatever status it had: the flow
    closes it when every step is done, so a crash after this point still resumes the same run.
    """
    import mlflow

    existing = find_version_for_run(registered_model, run_id)
    if existing is not None:
        mv = mlflow.MlflowClient().get_model_version(registered_model, existing)
        return RegisteredVersion(registered_model, existing, run_id, str(mv.source)), False
    status = mlflow.MlflowClient().get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id):
        version = log_and_register(model_dir, registered_model, input_example, tags, serving, max_length)
    mlflow.MlflowClient().update_run(run_id, status=status)  # the context ended it as FINISHED
    return version, True


def find_version_for_run(name: str, run_id: str) -> str | None:
    """The version a run already registered (a resumed run must not register twice)."""
    import mlflow

    found = mlflow.MlflowClient().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return str(found[0].version) if found else None


def existing_version(name: str, version: str) -> str:
    """``version`` as the registry spells it (``3``; ``v3``, as ``history`` prints it, also works).

    Every command that takes a version number checks it here, before anything slow: a version that
    is not a number or does not exist is a :class:`ModelNotFound` naming the versions that do, not
    MLflow's traceback or its wording. Other registry errors propagate.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    client = mlflow.MlflowClient()
    number = version.strip().removeprefix("v")
    if number.isdigit():
        try:
            return str(client.get_model_version(name, str(int(number))).version)
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise
    found = sorted(int(mv.version) for mv in client.search_model_versions(f"name='{name}'"))
    if not found:
        raise ModelNotFound(f"{name} has no version {version!r}: no versions yet (`intent-mlops train` registers one)")
    raise ModelNotFound(f"{name} has no version {version!r}; versions: {version_spans(found)}")


def version_spans(numbers: list[int]) -> str:
    """``1-4, 7, 9-12``: sorted version numbers, consecutive runs collapsed (one short line)."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
