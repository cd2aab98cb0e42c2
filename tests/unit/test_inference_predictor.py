"""The one prediction path on a tiny random BERT: output shape, batching, validation, calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from intent_mlops.inference.calibrate import calibrate
from intent_mlops.inference.ood import OodCalibration
from intent_mlops.inference.predictor import Predictor
from intent_mlops.inference.validation import InvalidInput, Limits
from tests.conftest import four_intent_splits

INTENTS = ["cancel_order", "reset_password", "store_hours", "track_order"]
TEXTS = [
    "where is my parcel",
    "I want to cancel the order I placed yesterday because it is late and I no longer need it",
    "reset my password please",
    "when do you open",
    "hi",
    "what are your opening hours on sunday and on public holidays",
]


def make_classifier(base: Path, out: Path, labels: list[str]) -> Path:
    """A random sequence classifier over ``labels`` saved as safetensors with its tokenizer."""
    import torch

    from intent_mlops.model.labels import LabelSpace
    from intent_mlops.model.loading import load_model

    torch.manual_seed(0)
    tokenizer, model = load_model(str(base), LabelSpace.from_labels(labels))
    with torch.no_grad():  # spread the random head so probabilities are not all ~uniform
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_classifier(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_classifier(tiny_model_dir, tmp_path_factory.mktemp("tiny-clf"), INTENTS)


@pytest.fixture
def classifier_copy(tiny_classifier: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_classifier, tmp_path / "model"))


def test_predict_returns_ranked_top_k_with_version(tiny_classifier: Path) -> None:
    p = Predictor.load(tiny_classifier, model_version="v7")
    assert p.backend_name == "torch-fp32" and p.calibration is None
    out = p.predict(TEXTS, top_k=3)
    assert len(out) == len(TEXTS)
    for row in out:
        assert set(row) == {"label", "score", "top_k", "out_of_scope", "ood_score", "model_version"}
        assert row["model_version"] == "v7" and row["out_of_scope"] is False
        probs = [t["probability"] for t in row["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert row["label"] == row["top_k"][0]["label"] and row["label"] in INTENTS
        assert row["score"] == pytest.approx(probs[0]) and row["ood_score"] == pytest.approx(probs[0])
    json.dumps(out)  # plain JSON types only
    assert Predictor.load(tiny_classifier).model_version.startswith("sha256:")


def test_length_sorted_batches_match_one_by_one(tiny_classifier: Path) -> None:
    p = Predictor.load(tiny_classifier, batch_size=2)
    batched = p.forward(TEXTS).logits
    single = np.concatenate([p.forward([t]).logits for t in TEXTS])
    assert np.allclose(batched, single, atol=1e-4)
    assert [r["label"] for r in p.predict(TEXTS)] == [p.predict([t])[0]["label"] for t in TEXTS]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ("where is my order", "single string"),
        ({"text": "x"}, "list of strings"),
        (None, "list of strings"),
        ([], "empty list"),
        (["ok", ""], "text 1 is empty"),
        (["ok", "   \n"], "text 1 is empty"),
        (["ok", 3], "text 1 is not a string"),
        (["ok", None], "text 1 is not a string"),
        (["x" * 51], "too long"),
        (["a"] * 5, "too many texts"),
    ],
)
def test_invalid_input_is_a_client_error_with_a_clear_message(
    tiny_classifier: Path, texts: object, message: str
) -> None:
    p = Predictor.load(tiny_classifier, limits=Limits(max_chars=50, max_batch=4))
    with pytest.raises(InvalidInput, match=message):
        p.predict(texts)  # type: ignore[arg-type]


def test_invalid_top_k(tiny_classifier: Path) -> None:
    p = Predictor.load(tiny_classifier)
    for bad in (0, 5, "3", True, 2.0):
        with pytest.raises(InvalidInput, match="top_k"):
            p.predict(["hi"], top_k=bad)  # type: ignore[arg-type]
    assert len(p.predict(["hi"], top_k=4)[0]["top_k"]) == 4


def test_calibration_is_stored_and_applied(classifier_copy: Path) -> None:
    parts = four_intent_splits()
    result = calibrate(
        classifier_copy,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist(),
        parts["dev"]["label"].tolist(),
        score="mahalanobis",
        pooling="mean",
    )
    assert (classifier_copy / "ood.json").exists() and (classifier_copy / "ood.safetensors").exists()
    assert set(result.candidates) == {"max_softmax", "temperature", "energy", "mahalanobis"}
    assert "mahalanobis" in result.summary()
    p = Predictor.load(classifier_copy)
    assert p.calibration is not None and p.calibration.score == "mahalanobis"
    cols = p.predict_columns(TEXTS)
    assert np.array_equal(cols["out_of_scope"], cols["ood_score"] < p.calibration.threshold)
    # an impossible threshold rejects everything, with the intent ranking still reported
    strict = OodCalibration.load(classifier_copy)
    assert strict is not None
    strict.threshold = 1e300
    strict.save(classifier_copy)
    out = Predictor.load(classifier_copy).predict(TEXTS)
    assert all(r["label"] == "out_of_scope" and r["out_of_scope"] for r in out)
    assert all(r["top_k"][0]["label"] in INTENTS for r in out)
    assert Predictor.load(classifier_copy, calibration=False).calibration is None


def test_model_with_an_oos_class_answers_out_of_scope(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = make_classifier(tiny_model_dir, tmp_path / "m", ["oos", *INTENTS])
    p = Predictor.load(folder)
    assert "out_of_scope" in p.labels and "oos" not in p.labels
    cols = p.predict_columns(TEXTS * 5, top_k=5)
    argmax_oos = cols["top_labels"][:, 0] == "out_of_scope"
    assert np.array_equal(cols["out_of_scope"], argmax_oos)
    assert (cols["label"][argmax_oos] == "out_of_scope").all()


def test_onnx_requested_without_variant_falls_back_to_torch(tiny_classifier: Path) -> None:
    assert Predictor.load(tiny_classifier, use_onnx=True).backend_name == "torch-fp32"
    with pytest.raises(FileNotFoundError, match="int8"):
        Predictor.load(tiny_classifier, use_onnx=True, onnx_variant="int8")


def test_evaluate_ood_counts_oos_and_unknown_intents_as_out_of_scope(classifier_copy: Path) -> None:
    from intent_mlops.inference.calibrate import evaluate_ood

    parts = four_intent_splits()
    calibrate(
        classifier_copy,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist(),
        parts["dev"]["label"].tolist(),
        score="energy",
    )
    p = Predictor.load(classifier_copy)
    texts = parts["test"]["text"].tolist() + ["what is the capital of peru", "tell me a joke"]
    labels = parts["test"]["label"].tolist() + ["oos", "small_talk"]
    m = evaluate_ood(p, texts, labels)
    assert m.n_oos == 2 and m.n_in_scope == len(parts["test"])
    assert 0.0 <= m.in_scope_accuracy <= m.in_scope_accuracy_unthresholded <= 1.0
    assert 0.0 <= m.auroc <= 1.0
