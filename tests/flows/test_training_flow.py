"""The whole training flow under one Prefect test harness, into a temp MLflow store and DVC remote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from flows.training import train_flow
from intent_mlops.config.params import load_run_config
from intent_mlops.data import versioning
from intent_mlops.data.io import read_csv, write_csv
from intent_mlops.data.validation import ValidationError
from intent_mlops.evaluation.evaluate import predict_labels
from intent_mlops.inference.predictor import Predictor
from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED
from intent_mlops.registry.models import CHALLENGER, CHAMPION
from tests.conftest import git

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
MODEL = "intent-classifier"
ONNX_ON = ["serving.onnx=true"]  # the conftest project turns the export off (seconds per training)


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


def test_flow_trains_registers_and_tags_lineage(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as in a Prefect worker or `flow.serve` process: none of the CLI's environment defaults
    for var in ("HF_HUB_OFFLINE", "DVC_SITE_CACHE_DIR", "DVC_NO_ANALYTICS"):
        monkeypatch.delenv(var, raising=False)
    bindir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bindir))
    v1_md5 = versioning.dvc_file_md5(project / "data.dvc")
    out = train_flow(project_dir=str(project), overrides=ONNX_ON)
    assert os.environ["HF_HUB_OFFLINE"] == "1", "the flow applied the defaults itself"
    assert out["version"] == "1" and out["aliases"] == {CHALLENGER: "1", CHAMPION: "1"}
    assert out["decision"]["decision"] == "promoted"
    test = read_csv(project / "splits" / "test.csv")
    majority = test["label"].value_counts(normalize=True).max()
    assert out["metrics"]["test_accuracy"] >= majority + 0.3, (out["metrics"], majority)

    client = _client(project)
    mv = client.get_model_version(MODEL, "1")
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    head = git(project, "rev-parse", "HEAD")
    expected = {
        "data.md5": v1_md5,
        "data.rev": "workspace",
        "splits.md5": lock["stages"]["prepare"]["outs"][0]["md5"],
        "params.md5": load_run_config(project, ONNX_ON).md5(),
    }
    for key, value in expected.items():
        assert mv.tags[key] == value, key
    assert mv.tags["git.commit"].startswith(head)
    assert mv.tags["promotion.decision"] == "promoted" and mv.tags["promotion.champion_version"] == "none"
    card = client.get_model_version(MODEL, "1").description
    for text in ("Five weakest intents", v1_md5, expected["splits.md5"], "`train.learning_rate` = `0.002`", "promoted"):
        assert text in card, text
    assert "champion" in client.get_registered_model(MODEL).description
    run = client.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in expected} == expected
    assert run.data.params["train.epochs"] == "10"
    assert [m.step for m in client.get_metric_history(out["run_id"], "epoch_dev_macro_f1")] != [], "learning curve"
    final = client.get_metric_history(out["run_id"], "dev_macro_f1")
    assert len(final) == 1 and final[0].value == pytest.approx(out["metrics"]["dev_macro_f1"]), "one final value"
    assert f"{out['metrics']['dev_macro_f1']:.4f}" in card, "the card shows the registered model's dev macro-F1"
    assert {"dev_confusion_matrix.png", "test_confusion_matrix.png", "test_report.json", "dev_per_intent.md"} <= (
        _artifacts(client, out["run_id"], "evaluation")
    )
    assert {"raw.md", "raw.json", "splits.md", "splits.json"} <= _artifacts(client, out["run_id"], "validation")
    assert {"decision.json", "decision.md", "dev_predictions.csv"} <= _artifacts(client, out["run_id"], "promotion")
    assert {"training-summary", "data-validation-raw", "data-validation-splits", "promotion-decision"} <= (
        _prefect_artifact_keys()
    )

    # out-of-scope calibration and checked ONNX variants ship with the version and are on record
    assert mv.tags["serving.backend"] and not any(k.startswith("ood.") for k in mv.tags), "calibration: run only"
    for key in ("ood.score", "ood.threshold", "ood.target", "serving.backend"):
        assert run.data.tags[key], key
    assert run.data.tags["ood.target"] == "in_scope_recall_ratio=0.98", "no oos rows: the in-scope target"
    assert {"dev_ood_in_scope_accuracy", "test_ood_in_scope_accuracy"} <= set(run.data.metrics)
    assert run.data.metrics["dev_ood_in_scope_rejected"] <= 0.1
    variants = json.loads(next(champion_dir(project).glob("artifacts/*/onnx/variants.json")).read_text())
    assert variants["fused_operators"]["Attention"] >= 1, "eager attention export: the fusion applied"
    assert run.data.tags["onnx.fp32"] == "passed", variants
    assert mv.tags["serving.backend"].startswith("onnx-"), mv.tags["serving.backend"]
    batch_backend = mv.tags["serving.batch_backend"]
    assert batch_backend in {"onnx-int8", "onnx-fp32", "torch-bf16"}, batch_backend
    assert (batch_backend == "torch-bf16") == (
        run.data.tags.get("torch.bf16") == "passed"
        and "int8" not in [n for n, v in variants["variants"].items() if v["passed"]]
    ), "batches run bf16 exactly when it passed and int8 did not"

    # the served model is the project's predictor (same backend, calibration applied), its top intent
    # is the trained model's, and it stores no customer text
    texts = test["text"].tolist()
    champion = mlflow.pyfunc.load_model(f"models:/{MODEL}@{CHAMPION}")
    served = champion.predict(pd.DataFrame({"text": texts}))
    direct = Predictor.load(champion_dir(project), use_onnx=True, max_length=32).predict(texts)
    assert [r["label"] for r in served] == [r["label"] for r in direct]
    assert {r["model_version"] for r in served} == {direct[0]["model_version"]}
    top = [r["top_k"][0]["label"].replace(OOS_PREDICTED, OOS_DATA) for r in served]
    ours, _ = predict_labels(champion_dir(project), texts, load_run_config(project).train)
    assert np.mean([a == b for a, b in zip(top, ours, strict=True)]) >= 0.99, "ONNX agrees with torch"
    stored = _stored_input_example(client, out["run_id"])
    assert stored == load_run_config(project).mlflow.input_example
    assert not set(stored) & set(read_csv(project / "splits" / "dev.csv")["text"]), "no dev utterance stored"
    assert list((project / ".intent-mlops" / "runs").glob("*/checkpoint")) == [], "work dir cleaned"
    # issue 15 item 6: the registered model holds its weights only as safetensors / ONNX, nothing pickled
    from intent_mlops.model.loading import PICKLE_SUFFIXES

    logged = [f for f in champion_dir(project).rglob("*") if f.is_file()]
    assert not [f.name for f in logged if f.suffix in PICKLE_SUFFIXES], "no pickle-format file registered"
    assert any(f.suffix == ".safetensors" for f in logged) and any(f.suffix == ".onnx" for f in logged)
    assert not [f.name for f in logged if f.stat().st_size > 1_000_000 and f.suffix not in (".safetensors", ".onnx")]

    # New data lands and is committed; training on the *old* revision pulls exactly v1's data.
    rows = read_csv(project / versioning.DATA_FILE)
    extra = rows.head(20).assign(text=lambda d: d["text"] + " (follow-up)")
    extra.to_csv(project.parent / "more.csv", index=False)
    from intent_mlops.data.commands import data_import

    data_import(project, project.parent / "more.csv", append=True)
    git(project, "commit", "-qam", "data v2")
    out2 = train_flow(data_rev="HEAD~1", project_dir=str(project))
    assert out2["version"] == "2"
    mv2 = client.get_model_version(MODEL, "2")
    assert mv2.tags["data.md5"] == v1_md5 and mv2.tags["data.rev"] == "HEAD~1"
    assert mv2.tags["promotion.decision"] == "refused", "the same model again is no significant gain"
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == "1"
    assert str(client.get_model_version_by_alias(MODEL, CHALLENGER).version) == "2"


def champion_dir(project: Path) -> Path:
    from intent_mlops.registry.champion import fetch_model

    return fetch_model(MODEL, "1", project / ".intent-mlops" / "models")


def _stored_input_example(client: mlflow.MlflowClient, run_id: str) -> list[str]:
    from mlflow.models import Model

    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model"))
    model = Model.load(str(local / "MLmodel"))
    example = model.load_input_example(str(local))
    return list(example["text"])


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
        "m = mlflow.pyfunc.load_model('models:/intent-classifier/1')\n"
        "import pandas as pd\n"
        "print([r['label'] for r in m.predict(pd.DataFrame({'text': ['where is my parcel', 'reset my password']}))])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().startswith("[")
    client = _client(project)
    assert client.get_run(out["run_id"]).data.params["train.lora_r"] == "4"
