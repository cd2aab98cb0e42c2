"""Issue 11 item 8: a second run with the same params and data is tagged as a duplicate of the first."""

from __future__ import annotations

from pathlib import Path

import mlflow

from intent_mlops.config.params import Config
from intent_mlops.registry import tracking

MODEL = "intent-classifier"


def _open(cfg: Config, root: Path, key: str) -> tuple[str, bool]:
    return tracking.open_run(cfg, root, {"data.md5": "d" * 32 + ".dir", "data.rev": "workspace"}, key)


def _register(client: mlflow.MlflowClient, run_id: str) -> str:
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    return str(client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id).version)


def test_identical_rerun_is_tagged_and_its_version_too(tmp_path: Path) -> None:
    cfg = Config()
    key = tracking.resume_key(cfg.md5(), "d" * 32 + ".dir", "workspace")
    first, resumed = _open(cfg, tmp_path, key)
    assert not resumed and tracking.duplicate_of(first) is None
    client = mlflow.MlflowClient()
    v1 = _register(client, first)
    tracking.close_run(first, "FINISHED")

    second, resumed = _open(cfg, tmp_path, key)
    assert second != first and not resumed, "a complete run is not resumed"
    assert client.get_run(second).data.tags[tracking.DUPLICATE_OF_RUN] == first
    v2 = _register(client, second)
    assert tracking.mark_duplicate_version(MODEL, v2, second) == v1
    assert client.get_model_version(MODEL, v2).tags[tracking.DUPLICATE_OF_VERSION] == v1
    assert tracking.duplicate_version(MODEL, v2) == v1 and tracking.duplicate_version(MODEL, v1) is None
    tracking.close_run(second, "FINISHED")

    third, _ = _open(cfg, tmp_path, key)
    assert tracking.duplicate_of(third) == first, "points at the original, not at the previous duplicate"


def test_other_params_or_an_unfinished_run_are_no_duplicate(tmp_path: Path) -> None:
    cfg = Config()
    key = tracking.resume_key(cfg.md5(), "d" * 32 + ".dir", "workspace")
    first, _ = _open(cfg, tmp_path, key)
    tracking.close_run(first, "KILLED", "interrupted by Ctrl-C (SIGINT) at step 3")
    again, resumed = _open(cfg, tmp_path, key)
    assert again == first and resumed, "a stopped run resumes"
    run = mlflow.MlflowClient().get_run(first)
    assert run.data.tags[tracking.STOP_REASON] == "interrupted by Ctrl-C (SIGINT) at step 3"
    tracking.close_run(first, "FINISHED")

    other = tracking.resume_key(Config(train=type(cfg.train)(epochs=3)).md5(), "d" * 32 + ".dir", "workspace")
    new, _ = _open(cfg, tmp_path, other)
    assert tracking.duplicate_of(new) is None
    assert tracking.mark_duplicate_version(MODEL, "1", new) is None
