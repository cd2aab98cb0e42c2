from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics

from intent_mlops.evaluation.metrics import confusion_matrix, per_label_markdown, report
from intent_mlops.evaluation.plots import plot_confusion


def test_metrics_by_hand() -> None:
    # true:  a a a b b c ; pred: a a b b c c
    y_true, y_pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    rep = report(y_true, y_pred, ["a", "b", "c"])
    assert rep.accuracy == pytest.approx(4 / 6)
    assert rep.per_label["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert rep.per_label["b"]["precision"] == pytest.approx(0.5) and rep.per_label["b"]["recall"] == pytest.approx(0.5)
    assert rep.per_label["c"]["f1"] == pytest.approx(2 / 3)
    assert rep.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert confusion_matrix(np.array(y_true), np.array(y_pred), 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    rep = report(y_true, y_pred, [str(i) for i in range(7)])
    assert rep.macro_f1 == pytest.approx(sklearn.metrics.f1_score(y_true, y_pred, average="macro"))
    assert rep.accuracy == pytest.approx(sklearn.metrics.accuracy_score(y_true, y_pred))


def test_confusion_png_and_markdown(tmp_path: Path) -> None:
    rep = report([0, 1, 1], [0, 1, 0], ["x", "y"])
    png = plot_confusion(rep, tmp_path / "cm.png", "dev")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = per_label_markdown(rep)
    assert "| y | 1.000 | 0.500 | 0.667 | 2 |" in md
