"""The pyfunc model logged from code: registry round trip, same predictions as the Predictor, 4xx vs 5xx."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from intent_mlops.inference.predictor import Predictor
from intent_mlops.inference.pyfunc import InvalidRequest, log_pyfunc, texts_from
from intent_mlops.inference.validation import InvalidInput
from tests.unit.test_inference_predictor import TEXTS, tiny_classifier  # noqa: F401  (fixture)


def test_logged_pyfunc_predicts_like_the_predictor(
    store: str,
    tiny_classifier: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    model_dir = Path(shutil.copytree(tiny_classifier, tmp_path / "model"))
    with mlflow.start_run():
        info = log_pyfunc(
            model_dir,
            "model",
            input_example=["where is my order", "reset my password"],
            pip_requirements=None,
            registered_model_name="intent-classifier",
        )
    assert info.registered_model_version == 1
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "pyfunc_model.py" in files and "code/intent_mlops/inference/predictor.py" in files
    assert not any(f.endswith((".pkl", ".pickle")) for f in files), "nothing pickled: model from code"
    reqs = (local / "requirements.txt").read_text()
    assert "peft" not in reqs and "transformers==" in reqs and "torch==" in reqs
    assert any(f.startswith("artifacts/") and f.endswith("/model.safetensors") for f in files)
    mlmodel = (local / "MLmodel").read_text()
    assert "signature" in mlmodel and "top_k" in mlmodel

    direct = Predictor.load(model_dir).predict(TEXTS)
    for uri in (info.model_uri, "models:/intent-classifier/1"):
        loaded = mlflow.pyfunc.load_model(uri)
        served = loaded.predict(pd.DataFrame({"text": TEXTS}))
        assert [r["label"] for r in served] == [r["label"] for r in direct]
        for a, b in zip(served, direct, strict=True):
            assert a["score"] == pytest.approx(b["score"], abs=1e-6)
            assert a["model_version"] == b["model_version"]
    assert len(loaded.predict(pd.DataFrame({"text": TEXTS}), params={"top_k": 1})[0]["top_k"]) == 1

    # client errors: an MlflowException with a 400 code that is also an InvalidInput
    for bad in (pd.DataFrame({"text": ["ok", ""]}), pd.DataFrame({"text": ["x" * 5000]})):
        with pytest.raises(MlflowException) as exc:
            loaded.predict(bad)
        assert exc.value.get_http_status_code() == 400
    with pytest.raises(InvalidInput):
        loaded.predict(pd.DataFrame({"text": ["ok", "  "]}))


def test_server_faults_are_500_not_400(store: str, tiny_classifier: Path, tmp_path: Path) -> None:  # noqa: F811
    with mlflow.start_run():
        info = log_pyfunc(Path(shutil.copytree(tiny_classifier, tmp_path / "m")), "model", ["hello there"], None)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    python_model = loaded.unwrap_python_model()

    def broken(texts: list[str], top_k: int = 3) -> list[dict[str, object]]:
        raise RuntimeError("weights corrupted")

    python_model.predictor.predict = broken
    with pytest.raises(MlflowException) as exc:
        loaded.predict(pd.DataFrame({"text": ["hello"]}))
    assert exc.value.get_http_status_code() == 500 and not isinstance(exc.value, InvalidInput)


def test_texts_from_accepts_the_documented_shapes() -> None:
    assert texts_from(pd.DataFrame({"text": ["a", "b"]})) == ["a", "b"]
    assert texts_from(["a"]) == ["a"] and texts_from({"text": "a"}) == ["a"] and texts_from({"text": ["a"]}) == ["a"]
    for bad in (pd.DataFrame({"utterance": ["a"]}), {"query": "a"}, 3):
        with pytest.raises(InvalidInput, match="text|DataFrame"):
            texts_from(bad)
    assert issubclass(InvalidRequest, InvalidInput) and issubclass(InvalidRequest, MlflowException)
    assert InvalidRequest("x").get_http_status_code() == 400


def test_scoring_server_maps_client_errors_to_4xx_and_faults_to_5xx(
    store: str,
    tiny_classifier: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """MLflow's own scoring app (what `mlflow models serve` runs) with serve-model's guard, in process."""
    from fastapi.testclient import TestClient

    from intent_mlops.inference.server import build_app

    with mlflow.start_run():
        info = log_pyfunc(Path(shutil.copytree(tiny_classifier, tmp_path / "m")), "model", ["hello there"], None)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    client = TestClient(build_app(loaded))
    js = {"Content-Type": "application/json"}

    ok = client.post(
        "/invocations", json={"dataframe_records": [{"text": "where is my order"}], "params": {"top_k": 2}}
    )
    assert ok.status_code == 200, ok.text
    pred = ok.json()["predictions"][0]
    assert len(pred["top_k"]) == 2 and isinstance(pred["out_of_scope"], bool) and pred["model_version"]
    assert client.post("/invocations", json={"inputs": {"text": ["a", "b"]}}).status_code == 200

    bad = {
        "empty text": {"dataframe_records": [{"text": ""}]},
        "oversized text": {"dataframe_records": [{"text": "x" * 5000}]},
        "missing field": {"dataframe_records": [{"utterance": "hi"}]},
        "non-string": {"dataframe_records": [{"text": None}]},
        "bad top_k": {"dataframe_records": [{"text": "hi"}], "params": {"top_k": 0}},
        "oversized batch": {"inputs": {"text": ["hi"] * 1025}},
        "no instances": {"dataframe_records": []},
    }
    for case, body in bad.items():
        r = client.post("/invocations", json=body)
        assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert client.post("/invocations", content=b"{not json", headers=js).status_code == 400
    assert client.post("/invocations", content=b"text", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/invocations", content=b'{"inputs": {"text": ["hi"]}}').status_code == 415, "no type"

    def broken(texts: list[str], top_k: int = 3) -> list[dict[str, object]]:
        raise RuntimeError("weights corrupted")

    loaded.unwrap_python_model().predictor.predict = broken
    r = client.post("/invocations", json={"dataframe_records": [{"text": "hello"}]})
    assert r.status_code == 500 and "RuntimeError" in r.text
