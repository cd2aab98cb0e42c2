"""Version arguments (``rollback --to``, ``predict --version``, ``serve-model --version``): a version
that is not a number or does not exist is one line naming the versions that do, exit 2, checked
against a real registry before anything slow starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from intent_mlops.registry.models import ModelNotFound, existing_version, version_spans
from tests.conftest import REPO
from tests.unit.test_inference_predictor import tiny_classifier  # noqa: F401  (fixture)

NAME = "intent-classifier"


@pytest.fixture
def registered_project(tmp_path: Path, tiny_classifier: Path) -> Iterator[Path]:  # noqa: F811
    """A project folder whose embedded MLflow store has versions 1 and 2 of the tiny classifier
    (this project's pyfunc, as training logs it)."""
    from intent_mlops.config.params import load_run_config
    from intent_mlops.inference.pyfunc import log_pyfunc
    from intent_mlops.registry.tracking import connect

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    exp = connect(load_run_config(root).mlflow, root)
    with mlflow.start_run(experiment_id=exp) as run:
        model = Path(shutil.copytree(tiny_classifier, tmp_path / "model"))
        info = log_pyfunc(model, "model", ["hello there"], None, registered_model_name=NAME)
    mlflow.MlflowClient().create_model_version(NAME, info.model_uri, run.info.run_id)
    yield root


def cli(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_HOME": str(root.parent / "prefect-home")}
    return subprocess.run([sys.executable, "-m", "flows.cli", "--project", str(root), *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_version_spans_collapse_runs() -> None:
    assert version_spans([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


def test_existing_version_accepts_history_spelling_and_names_the_versions(registered_project: Path) -> None:
    assert existing_version(NAME, "2") == "2" and existing_version(NAME, "v1") == "1"
    for wrong in ("abc", "99", "0", "-1", "1.5"):
        with pytest.raises(ModelNotFound, match=r"has no version .*; versions: 1-2$"):
            existing_version(NAME, wrong)
    with pytest.raises(ModelNotFound, match="no versions yet"):
        existing_version("no-such-model", "1")


@pytest.mark.parametrize(
    "argv",
    [
        ["rollback", "--to", "abc"],
        ["rollback", "--to", "99"],
        ["predict", "--version", "abc", "IN", "out.csv"],
        ["serve-model", "--version", "abc"],
        ["serve-model", "--version", "99"],
    ],
)
def test_a_wrong_version_is_one_line_naming_the_versions(registered_project: Path, argv: list[str]) -> None:
    (registered_project / "in.csv").write_text("text\nwhere is my order\n")
    argv = [str(registered_project / "in.csv") if a == "IN" else a for a in argv]
    done = cli(registered_project, *argv)
    wrong = argv[argv.index("--to" if "--to" in argv else "--version") + 1]
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: {NAME} has no version '{wrong}'; versions: 1-2", done.stderr
    assert mlflow.MlflowClient().get_registered_model(NAME).aliases == {}, "nothing moved"
