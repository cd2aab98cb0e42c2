"""ONNX export + fusion + int8 on a tiny random BERT; the Predictor and the pyfunc use the checked variant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from intent_mlops.inference.calibrate import calibrate  # noqa: E402
from intent_mlops.inference.onnx_export import check_variant, export_variants  # noqa: E402
from intent_mlops.inference.predictor import Predictor  # noqa: E402
from tests.conftest import four_intent_splits  # noqa: E402
from tests.unit.test_inference_predictor import INTENTS, TEXTS, tiny_classifier  # noqa: E402,F401  (fixture)


@pytest.fixture(scope="module")
def exported(tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The tiny classifier, calibrated (mahalanobis on mean pooling), exported to fp32 + int8."""
    folder = Path(shutil.copytree(tiny_classifier, tmp_path_factory.mktemp("onnx") / "model"))
    parts = four_intent_splits()
    calibrate(
        folder,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist(),
        parts["dev"]["label"].tolist(),
        score="mahalanobis",
        pooling="mean",
    )
    export_variants(folder, parts["dev"]["text"].tolist(), parts["dev"]["label"].tolist(), max_accuracy_drop=0.05,
                    min_agreement=0.9)  # fmt: skip
    return folder


def test_export_fuses_and_records_checks(exported: Path) -> None:
    report = json.loads((exported / "onnx" / "variants.json").read_text())
    fused = report["fused_operators"]
    assert fused.get("Attention", 0) == 2 and fused.get("SkipLayerNormalization", 0) >= 2, fused
    for name in ("fp32", "int8"):
        v = report["variants"][name]
        assert v["passed"] and v["rows"] > 0 and v["accuracy_delta"] is not None and v["ood_agreement"] is not None
        assert (exported / "onnx" / v["file"]).exists()
    assert report["variants"]["fp32"]["max_prob_diff"] < 1e-4
    assert report["variants"]["int8"]["bytes"] < report["variants"]["fp32"]["bytes"] / 2


def test_predictor_uses_checked_onnx_variant(exported: Path) -> None:
    torch_p = Predictor.load(exported)
    fp32 = Predictor.load(exported, use_onnx=True, onnx_variant="fp32")
    default = Predictor.load(exported, use_onnx=True)
    assert torch_p.backend_name == "torch-fp32" and fp32.backend_name == "onnx-fp32"
    assert default.backend_name == "onnx-int8", "int8 passed its check, so it is the default variant"
    assert default.calibration is not None and default.model_version == torch_p.model_version
    # dynamic batch and sequence axes: mixed lengths, batched and one by one
    a, b = torch_p.forward(TEXTS, pooling="mean"), fp32.forward(TEXTS, pooling="mean")
    assert np.allclose(a.logits, b.logits, atol=1e-4) and a.embeddings is not None and b.embeddings is not None
    assert np.allclose(a.embeddings, b.embeddings, atol=1e-4)
    one = np.concatenate([fp32.forward([t]).logits for t in TEXTS])
    assert np.allclose(one, b.logits, atol=1e-4)
    ta, tb = torch_p.predict(TEXTS), fp32.predict(TEXTS)
    assert [r["label"] for r in ta] == [r["label"] for r in tb]
    assert np.allclose([r["ood_score"] for r in ta], [r["ood_score"] for r in tb], rtol=1e-3, atol=1e-3)


def test_check_variant_flags_disagreement(exported: Path) -> None:
    ref = Predictor.load(exported)
    int8 = Predictor.load(exported, use_onnx=True, onnx_variant="int8")
    ok = check_variant(ref, int8, TEXTS * 3, min_agreement=0.5)
    assert ok.passed and ok.rows == 18 and ok.accuracy is None
    labels = [INTENTS[0]] * len(TEXTS)
    strict = check_variant(ref, int8, TEXTS, labels, min_agreement=1.01)
    assert not strict.passed and strict.accuracy is not None and strict.accuracy_delta is not None


def test_failed_variant_is_not_picked(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from intent_mlops.inference import predictor as predictor_module

    folder = Path(shutil.copytree(exported, tmp_path / "m"))
    report_path = folder / "onnx" / "variants.json"
    report = json.loads(report_path.read_text())
    report["variants"]["bf16"] = {**report["variants"]["fp32"], "file": "", "variant": "bf16"}
    report["variants"]["int8"]["passed"] = False
    report_path.write_text(json.dumps(report))
    monkeypatch.setattr(predictor_module, "bf16_matmul", lambda: True)
    assert Predictor.load(folder, use_onnx=True).backend_name == "torch-bf16", "int8 failed: the next fastest"
    online = Predictor.load(folder, use_onnx=True, prefer="latency")
    assert online.backend_name == "onnx-fp32", "one request at a time: ONNX fp32 answers sooner than bf16 torch"
    monkeypatch.setattr(predictor_module, "bf16_matmul", lambda: False)
    assert Predictor.load(folder, use_onnx=True).backend_name == "onnx-fp32", "no bf16 units: not bf16"
    # unsigned int8 weights run at about fp32 speed: batches prefer bf16 to them, the endpoint does not
    report["variants"]["int8"].update(passed=True, weights="u8")
    report_path.write_text(json.dumps(report))
    monkeypatch.setattr(predictor_module, "bf16_matmul", lambda: True)
    assert Predictor.load(folder, use_onnx=True).backend_name == "torch-bf16"
    assert Predictor.load(folder, use_onnx=True, prefer="latency").backend_name == "onnx-int8"
    for v in report["variants"].values():
        v["passed"] = False
    report_path.write_text(json.dumps(report))
    assert Predictor.load(folder, use_onnx=True).backend_name == "torch-fp32"
    with pytest.raises(ValueError, match="prefer"):
        Predictor.load(folder, use_onnx=True, prefer="fastest")


def test_bf16_is_not_checked_without_bf16_units(
    tiny_classifier: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from intent_mlops.inference import onnx_export

    folder = Path(shutil.copytree(tiny_classifier, tmp_path / "m"))
    monkeypatch.setattr(onnx_export, "bf16_matmul", lambda: False)
    report = onnx_export.export_variants(folder, TEXTS, variants=("fp32", "bf16"), min_agreement=0.5)
    assert set(report["variants"]) == {"fp32"}, "no bf16 units: the bf16 variant is neither checked nor shipped"


def test_bf16_variant_is_checked_against_fp32(exported: Path) -> None:
    """The torch model in bfloat16 (what AMX / AVX512-BF16 CPUs run fast) agrees with fp32 torch."""
    ref = Predictor.load(exported)
    bf16 = Predictor.load(exported, use_onnx=True, onnx_variant="bf16")
    assert bf16.backend_name == "torch-bf16"
    check = check_variant(ref, bf16, TEXTS * 3, min_agreement=0.8)
    assert check.passed and check.max_prob_diff < 0.05, check
    report = json.loads((exported / "onnx" / "variants.json").read_text())
    from intent_mlops.inference.cpu import bf16_matmul

    assert ("bf16" in report["variants"]) == bf16_matmul(), "checked at export exactly where the CPU has bf16 units"


def test_int8_weight_type_follows_the_cpu(tmp_path: Path) -> None:
    from intent_mlops.inference.cpu import cpu_flags, int8_weight_type

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni amx_int8\n")
    assert {"avx2", "avx512_vnni"} <= cpu_flags(str(info))
    assert int8_weight_type("auto", cpu_flags(str(info))) == "s8"
    assert int8_weight_type("auto", frozenset({"avx2", "fma"})) == "u8", "AVX2 only: unsigned weights"
    assert int8_weight_type("auto", frozenset()) == "u8", "unknown CPU: the safe choice"
    assert int8_weight_type("u8", frozenset({"avx_vnni"})) == "u8", "an explicit setting wins"


def test_signed_int8_is_not_served_without_vnni(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intent_mlops.inference import predictor as predictor_module

    report = json.loads((exported / "onnx" / "variants.json").read_text())
    assert report["variants"]["int8"]["weights"] in ("s8", "u8"), "the report records the weight type"
    folder = Path(shutil.copytree(exported, tmp_path / "m"))
    report["variants"]["int8"].update(weights="s8", passed=True)
    (folder / "onnx" / "variants.json").write_text(json.dumps(report))
    monkeypatch.setattr(predictor_module, "bf16_matmul", lambda: False)
    monkeypatch.setattr(predictor_module, "int8_dot_product", lambda: True)
    assert Predictor.load(folder, use_onnx=True).backend_name == "onnx-int8"
    monkeypatch.setattr(predictor_module, "int8_dot_product", lambda: False)
    assert Predictor.load(folder, use_onnx=True).backend_name == "onnx-fp32", "saturating int8 sums: fp32 instead"


def test_pyfunc_serves_the_onnx_variant(exported: Path, tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    from intent_mlops.inference.pyfunc import log_pyfunc

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # its own experiment (not one left active by another test's store), artifacts in tmp (not ./mlruns)
    exp = mlflow.create_experiment("onnx-tests", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment(experiment_id=exp)
    with mlflow.start_run():
        info = log_pyfunc(exported, "model", ["where is my order"], None)
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert loaded.unwrap_python_model().predictor.backend_name == "onnx-int8"
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl")))
    assert "onnxruntime==" in (local / "requirements.txt").read_text()
    served = loaded.predict(pd.DataFrame({"text": TEXTS}))
    direct = Predictor.load(exported, use_onnx=True).predict(TEXTS)
    assert [r["label"] for r in served] == [r["label"] for r in direct]
    assert [r["out_of_scope"] for r in served] == [r["out_of_scope"] for r in direct]


def test_variant_that_moves_the_out_of_scope_decision_does_not_pass(exported: Path) -> None:
    """Same top intent everywhere, but its scores cross the threshold fitted on fp32 scores on more rows
    than the tolerance allows: the out-of-scope decision is part of the answer, so it fails."""
    import dataclasses

    ref = Predictor.load(exported)
    variant = Predictor.load(exported, use_onnx=True, onnx_variant="fp32")
    assert ref.calibration is not None and variant.calibration is not None
    texts = TEXTS * 3
    cols = ref.predict_columns(texts, top_k=1)
    scores, rejected = cols["ood_score"], cols["out_of_scope"]
    # the variant's scores, shifted past the threshold, flip the decision of most rows
    moved = scores.max() + 1.0 if rejected.mean() < 0.5 else scores.min() - 1.0
    variant.calibration = dataclasses.replace(variant.calibration, threshold=float(moved))
    check = check_variant(ref, variant, texts, min_agreement=0.9)
    assert check.agreement == 1.0, "the top intent is unchanged"
    assert check.ood_agreement is not None and check.ood_agreement <= 0.5
    assert not check.passed, check
    assert check_variant(ref, Predictor.load(exported, use_onnx=True, onnx_variant="fp32"), texts,
                         min_agreement=0.9).passed  # fmt: skip
