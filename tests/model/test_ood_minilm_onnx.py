"""The packaged MiniLM, briefly fine-tuned on 8 BANKING77 intents with 2 held out: calibrated
out-of-scope rejection, then ONNX export with every BERT fusion, int8 within tolerance, same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from intent_mlops.config.params import TrainConfig  # noqa: E402
from intent_mlops.data.io import read_csv  # noqa: E402
from intent_mlops.data.split import stratified_split  # noqa: E402
from intent_mlops.inference.calibrate import calibrate  # noqa: E402
from intent_mlops.inference.onnx_export import export_variants  # noqa: E402
from intent_mlops.inference.predictor import Predictor  # noqa: E402
from intent_mlops.train.loop import train  # noqa: E402
from tests.conftest import banking77  # noqa: E402

pytestmark = pytest.mark.slow


def test_minilm_calibrated_exported_and_quantised(tmp_path: Path) -> None:
    df = read_csv(banking77("train"))
    intents = sorted(df["label"].unique())[:10]
    known, unseen = intents[:8], intents[8:]
    df = df[df["label"].isin(intents)].groupby("label").head(60)
    parts = stratified_split(df[df["label"].isin(known)], 0.2, 0.2, seed=0)
    cfg = TrainConfig(epochs=3, batch_size=16, learning_rate=2e-4, progress=False, checkpoint_every_steps=0)
    result = train(
        cfg,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist(),
        parts["dev"]["label"].tolist(),
        tmp_path / "run",
    )
    model_dir = result.model_dir
    unseen_rows = df[df["label"].isin(unseen)]
    dev_oos, test_oos = unseen_rows.iloc[::2], unseen_rows.iloc[1::2]
    res = calibrate(
        model_dir,
        parts["train"]["text"].tolist(),
        parts["train"]["label"].tolist(),
        parts["dev"]["text"].tolist() + dev_oos["text"].tolist(),
        parts["dev"]["label"].tolist() + ["oos"] * len(dev_oos),
    )
    assert res.calibration.dev["chosen_by"] == "auroc"
    assert res.candidates[res.calibration.score].dev.auroc > 0.7, res.summary()

    report = export_variants(model_dir, parts["dev"]["text"].tolist(), parts["dev"]["label"].tolist(),
                             max_accuracy_drop=0.05, min_agreement=0.95)  # fmt: skip
    fused = report["fused_operators"]
    assert fused.get("Attention") == 6 and fused.get("SkipLayerNormalization", 0) >= 6, fused
    assert fused.get("EmbedLayerNormalization") == 1, fused
    assert report["variants"]["fp32"]["agreement"] == 1.0 and report["variants"]["fp32"]["max_prob_diff"] < 1e-3
    assert report["variants"]["int8"]["passed"], report["variants"]["int8"]

    torch_p = Predictor.load(model_dir)
    int8_p = Predictor.load(model_dir, use_onnx=True)
    assert int8_p.backend_name == "onnx-int8"
    texts = parts["test"]["text"].tolist() + test_oos["text"].tolist()
    a, b = torch_p.predict_columns(texts), int8_p.predict_columns(texts)
    assert np.mean(a["label"] == b["label"]) >= 0.95
    in_scope = torch_p.predict_columns(parts["test"]["text"].tolist())
    assert np.mean(in_scope["label"] == np.array(parts["test"]["label"].tolist(), dtype=object)) > 0.6
    # utterances no banking intent covers are answered out_of_scope, more often than the unseen intents'
    # own banking questions, which are far more often than in-scope ones
    unrelated = ["what is the boiling point of mercury in kelvin", "play some jazz in the kitchen",
                 "who won the football match last night", "how do I bake sourdough bread",
                 "translate good morning into japanese"]  # fmt: skip
    unrelated_rate = np.mean([r["out_of_scope"] for r in torch_p.predict(unrelated)])
    unseen_rate = np.mean(torch_p.predict_columns(test_oos["text"].tolist())["out_of_scope"])
    assert unrelated_rate >= 0.8 and unseen_rate > 2 * np.mean(in_scope["out_of_scope"]), (unrelated_rate, unseen_rate)
