"""A registered version's local copy (``fetch_model``) is complete or not used: against a real SQLite
MLflow store with a logged model folder in this project's pyfunc layout."""

from __future__ import annotations

import threading
from pathlib import Path

import mlflow
import pytest

from intent_mlops.registry.champion import IncompleteModel, fetch_model

NAME = "intent-classifier"
WEIGHTS = "artifacts/model_dir"
FILES = {
    "MLmodel": "flavors: {python_function: {artifacts: {}}}\n",
    f"{WEIGHTS}/config.json": "{}",
    f"{WEIGHTS}/model.safetensors": "weights",
    f"{WEIGHTS}/ood.json": '{"score": "mahalanobis"}',
    f"{WEIGHTS}/ood.safetensors": "means",
    f"{WEIGHTS}/onnx/variants.json": "{}",
    f"{WEIGHTS}/onnx/model.int8.onnx": "int8",
}
# what the version's tags promise: an out-of-scope rule with arrays, an int8 endpoint, bf16 batches
TAGS = {"ood.score": "mahalanobis", "serving.backend": "onnx-int8", "serving.batch_backend": "torch-bf16"}


def _register(tmp_path: Path, files: dict[str, str], tags: dict[str, str]) -> str:
    """A version whose logged model folder holds ``files``; returns its number."""
    folder = tmp_path / "logged"
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("fetch", artifact_location=str(tmp_path / "artifacts"))
    # as registered: ood.* on the run only, serving.* on the version too (models.version_tags)
    run = client.create_run(exp, tags=tags)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    client.create_registered_model(NAME)
    on_version = {k: v for k, v in tags.items() if not k.startswith("ood.")}
    mv = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=on_version)
    return str(mv.version)


@pytest.mark.parametrize("lost", ["ood.json", "ood.safetensors", "onnx/model.int8.onnx", "onnx/variants.json"])
def test_cached_copy_missing_a_promised_file_is_fetched_again(store: str, tmp_path: Path, lost: str) -> None:
    """A copy left incomplete (e.g. by two cold fetches sharing a folder) is never served: without
    ``ood.json`` it would answer with no out-of-scope rejection."""
    version = _register(tmp_path, FILES, TAGS)
    cache = tmp_path / "cache"
    folder = fetch_model(NAME, version, cache)
    assert all((folder / rel).is_file() for rel in FILES)
    (folder / WEIGHTS / lost).unlink()
    again = fetch_model(NAME, version, cache)
    assert again == folder and (again / WEIGHTS / lost).is_file(), f"{lost} fetched again"
    assert all((again / rel).is_file() for rel in FILES)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [folder.name]


def test_store_lacking_a_promised_file_is_refused(store: str, tmp_path: Path) -> None:
    files = {k: v for k, v in FILES.items() if not k.endswith("ood.json")}
    version = _register(tmp_path, files, TAGS)
    cache = tmp_path / "cache"
    with pytest.raises(IncompleteModel, match=rf"{NAME} version {version}: .*ood\.json"):
        fetch_model(NAME, version, cache)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [], "nothing left to trust later"


def test_concurrent_cold_fetches_give_one_complete_folder(store: str, tmp_path: Path) -> None:
    version = _register(tmp_path, FILES, TAGS)
    cache = tmp_path / "cache"
    got: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            got.append(fetch_model(NAME, version, cache))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(got)) == 1 and len(got) == 4
    assert all((got[0] / rel).is_file() for rel in FILES)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [got[0].name], "no partial folder left"


def test_version_without_promises_needs_only_the_model(store: str, tmp_path: Path) -> None:
    """An uncalibrated version served by fp32 torch promises no ``ood.json`` and no ONNX file."""
    files = {k: v for k, v in FILES.items() if "ood" not in k and "onnx" not in k}
    version = _register(tmp_path, files, {"ood.score": "none", "serving.backend": "torch-fp32"})
    folder = fetch_model(NAME, version, tmp_path / "cache")
    assert (folder / WEIGHTS / "model.safetensors").is_file() and not (folder / WEIGHTS / "ood.json").exists()
