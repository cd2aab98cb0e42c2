"""Confusion-matrix plot (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from intent_mlops.evaluation.metrics import Report


def plot_confusion(rep: Report, path: Path | str, title: str) -> Path:
    """Row-normalised confusion matrix as PNG (Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = rep.confusion.astype(float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(rep.labels)
    size = max(6.0, 0.28 * n + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), rep.labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), rep.labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {rep.accuracy:.3f}, macro-F1 {rep.macro_f1:.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
