"""MLflow model registry: log the fine-tuned model, register it, manage aliases.

The model is logged in the transformers flavour from a pipeline object (safetensors weights,
signature, input example, explicit pip requirements); lineage tags are copied onto the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHAMPION, CHALLENGER, PREVIOUS_CHAMPION = "champion", "challenger", "previous-champion"


def pip_requirements() -> list[str]:
    """Pinned to what trained the model: MLflow cannot infer these for a pipeline reliably."""
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg)}" for pkg in ("mlflow", "transformers", "torch", "tokenizers", "safetensors")]


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    model_uri: str


def log_and_register(
    model_dir: Path | str,
    registered_model: str,
    input_example: list[str],
    tags: dict[str, str],
) -> RegisteredVersion:
    """Log ``model_dir`` (a ``save_pretrained`` folder) to the active run and register it.

    Tags (lineage) go on the model version too, so the registry alone answers "trained on what".
    """
    import mlflow
    from mlflow.models import infer_signature
    from transformers import pipeline

    from intent_mlops.training import load_model

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    tokenizer, model = load_model(str(model_dir))
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    output = pipe(input_example)
    signature = infer_signature(input_example, [{"label": o["label"], "score": float(o["score"])} for o in output])
    info = mlflow.transformers.log_model(
        transformers_model=pipe,
        name="model",
        task="text-classification",
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements(),
        registered_model_name=registered_model,
        save_pretrained=True,
    )
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(registered_model, version, key, value)
    return RegisteredVersion(registered_model, version, run.info.run_id, info.model_uri)


def aliases(name: str) -> dict[str, str]:
    """alias -> version for a registered model ({} when it does not exist yet)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.MlflowClient().get_registered_model(name)
    except MlflowException:
        return {}
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}


def crown_if_first(name: str, version: str) -> bool:
    """A new version becomes ``champion`` when there is none (the full policy is the promote step)."""
    import mlflow

    if CHAMPION in aliases(name):
        return False
    mlflow.MlflowClient().set_registered_model_alias(name, CHAMPION, version)
    return True


def find_version_for_run(name: str, run_id: str) -> str | None:
    """The version a run already registered (a resumed run must not register twice)."""
    import mlflow

    found = mlflow.MlflowClient().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return str(found[0].version) if found else None
