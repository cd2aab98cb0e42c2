"""Classification metrics (accuracy, macro-F1, per-intent P/R/F1) and the confusion-matrix plot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Report:
    accuracy: float
    macro_f1: float
    macro_precision: float
    macro_recall: float
    per_label: dict[str, dict[str, float]]
    confusion: np.ndarray
    labels: list[str]

    def metrics(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_macro_f1": self.macro_f1,
            f"{prefix}_macro_precision": self.macro_precision,
            f"{prefix}_macro_recall": self.macro_recall,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "per_label": self.per_label,
            "labels": self.labels,
            "confusion": self.confusion.tolist(),
        }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Rows: true label, columns: predicted label."""
    cm = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def report(y_true: np.ndarray | list[int], y_pred: np.ndarray | list[int], labels: list[str]) -> Report:
    """Macro averages over labels present in ``y_true`` (as scikit-learn does for F1 with zero_division=0)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(yt, yp, len(labels))
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    per_label = {
        labels[i]: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in range(len(labels))
        if present[i]
    }
    return Report(
        accuracy=float((yt == yp).mean()) if len(yt) else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        macro_precision=float(precision[present].mean()) if present.any() else 0.0,
        macro_recall=float(recall[present].mean()) if present.any() else 0.0,
        per_label=per_label,
        confusion=cm,
        labels=list(labels),
    )


def per_label_markdown(rep: Report) -> str:
    lines = ["| intent | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, m in sorted(rep.per_label.items(), key=lambda kv: kv[1]["f1"]):
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(lines) + "\n"
