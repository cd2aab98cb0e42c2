"""The whole training flow under one Prefect test harness, into a temp MLflow store and DVC remote."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import yaml

from flows.training import train_flow
from intent_mlops import versioning
from intent_mlops.data import read_csv, write_csv
from intent_mlops.registry import CHAMPION
from intent_mlops.validation import ValidationError
from tests.conftest import git

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
MODEL = "intent-classifier"


def _client(project: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient(uri, uri)


def _artifacts(client: mlflow.MlflowClient, run_id: str, path: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


def _prefect_artifact_keys() -> set[str]:
    from prefect import get_client

    with get_client(sync_client=True) as c:
        return {a.key for a in c.read_artifacts() if a.key}


def test_flow_trains_registers_and_tags_lineage(project: Path) -> None:
    v1_md5 = versioning.dvc_file_md5(project / "data.dvc")
    out = train_flow(project_dir=str(project))
    assert out["version"] == "1" and out["aliases"] == {CHAMPION: "1"}
    assert 0.0 <= out["metrics"]["test_accuracy"] <= 1.0

    client = _client(project)
    mv = client.get_model_version(MODEL, "1")
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    head = git(project, "rev-parse", "HEAD")
    expected = {
        "data.md5": v1_md5,
        "data.rev": "workspace",
        "splits.md5": lock["stages"]["prepare"]["outs"][0]["md5"],
        "params.md5": mv.tags["params.md5"],
    }
    for key, value in expected.items():
        assert mv.tags[key] == value, key
    assert mv.tags["git.commit"].startswith(head)
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in expected} == expected
    assert run.data.params["train.epochs"] == "2"
    assert [m.step for m in client.get_metric_history(out["run_id"], "dev_macro_f1")] != []
    assert {"dev_confusion_matrix.png", "test_confusion_matrix.png", "test_report.json", "dev_per_intent.md"} <= (
        _artifacts(client, out["run_id"], "evaluation")
    )
    assert {"raw.md", "raw.json", "splits.md", "splits.json"} <= _artifacts(client, out["run_id"], "validation")
    assert {"training-summary", "data-validation-raw", "data-validation-splits"} <= _prefect_artifact_keys()

    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    pred = champion.predict(["where is my parcel", "reset my password"])
    assert len(pred) == 2
    assert list((project / ".intent-mlops" / "runs").glob("*/checkpoint")) == [], "work dir cleaned"

    # New data lands and is committed; training on the *old* revision pulls exactly v1's data.
    rows = read_csv(project / versioning.DATA_FILE)
    extra = rows.head(20).assign(text=lambda d: d["text"] + " (follow-up)")
    extra.to_csv(project.parent / "more.csv", index=False)
    from intent_mlops.commands import data_import

    data_import(project, project.parent / "more.csv", append=True)
    git(project, "commit", "-qam", "data v2")
    out2 = train_flow(data_rev="HEAD~1", project_dir=str(project))
    assert out2["version"] == "2"
    mv2 = client.get_model_version(MODEL, "2")
    assert mv2.tags["data.md5"] == v1_md5 and mv2.tags["data.rev"] == "HEAD~1"
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1", "a later version is not auto-crowned"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (lambda df: df.assign(text=df["text"].where(df.index != 5, "   ")), "blank text"),
        (lambda df: df.drop(columns=["label"]).assign(category_typo=df["label"]), "required column 'label' is missing"),
        (lambda df: df.assign(label=df["label"].where(df.index != 9, "one_off")), "labels with fewer than 5 examples"),
    ],
    ids=["blank-text", "missing-column", "single-example-label"],
)
def test_bad_data_fails_at_validation_and_touches_nothing(project: Path, rows, message: str) -> None:  # type: ignore[no-untyped-def]
    client = _client(project)
    before_versions = len(client.search_model_versions(f"name='{MODEL}'")) if _exists(client) else 0
    write_csv(rows(read_csv(project / versioning.DATA_FILE)), project / versioning.DATA_FILE)
    _track_raw(project)
    with pytest.raises(ValidationError, match=message):
        train_flow(project_dir=str(project))
    after = len(client.search_model_versions(f"name='{MODEL}'")) if _exists(client) else 0
    assert after == before_versions
    failed = client.search_runs([client.get_experiment_by_name(MODEL).experiment_id])
    assert failed[0].info.status == "FAILED"
    assert "raw.md" in _artifacts(client, failed[0].info.run_id, "validation")
    assert not (project / "splits").exists(), "nothing prepared or trained"


def _exists(client: mlflow.MlflowClient) -> bool:
    return bool(client.search_registered_models(f"name='{MODEL}'"))


def _track_raw(project: Path) -> None:
    """Track the file as it is (bypassing `data import`'s gate), as a hand-made `dvc add` would."""
    from dvc.repo import Repo

    Repo(str(project)).add(str(project / "data"))


def test_lora_through_the_flow_serves_without_peft(project: Path) -> None:
    import subprocess
    import sys

    out = train_flow(overrides=["train.lora_r=4", "train.learning_rate=0.01"], project_dir=str(project))
    assert out["version"] == "1"
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    script = (
        "import sys; sys.modules['peft'] = None\n"  # any `import peft` now fails
        "import mlflow\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        "m = mlflow.pyfunc.load_model('models:/intent-classifier@champion')\n"
        "print(list(m.predict(['where is my parcel', 'reset my password'])['label']))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("[")
    client = _client(project)
    assert client.get_run(out["run_id"]).data.params["train.lora_r"] == "4"
