"""Calibrate out-of-scope rejection for a trained model folder and store it there (``ood.json``).

Call after training, on the best model folder, with the same train and dev rows the model was
trained and selected on::

    result = calibrate(best_dir, train_texts, train_labels, dev_texts, dev_labels,
                       target_in_scope_recall_ratio=0.98)   # writes best_dir/ood.json (+ ood.safetensors)

Data labels ``oos`` are out-of-scope rows: when the model has an ``oos`` class they also pick the score
(best dev AUROC) and, with ``target_oos_recall``, the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from intent_mlops.inference.ood import (
    DEFAULT_POOLING,
    SCORES,
    Candidate,
    OodCalibration,
    OodMetrics,
    calibrate_arrays,
    ood_metrics,
)
from intent_mlops.model.labels import OOS_DATA, OOS_PREDICTED

if TYPE_CHECKING:
    from intent_mlops.inference.predictor import Predictor


@dataclass
class CalibrationResult:
    calibration: OodCalibration
    candidates: dict[str, Candidate]
    path: Path | None  # where ood.json was written (None with save=False)
    # the calibrated model's dev predictions (Predictor.predict_columns, top 2) that scored it: the
    # monitoring reference reuses them instead of predicting dev again (set by calibrate_for_config)
    dev_columns: dict[str, np.ndarray] | None = None
    backend: str = ""

    def summary(self) -> str:
        c = self.calibration
        lines = [
            f"out-of-scope score: {c.score} (chosen by {c.dev.get('chosen_by')}), threshold {c.threshold:.4g}, "
            f"target {c.target['kind']}={c.target['value']}, temperature {c.temperature:.3g}"
        ]
        for name, cand in self.candidates.items():
            d = cand.dev
            lines.append(
                f"  dev {name}: in-scope accuracy {d.in_scope_accuracy:.4f} "
                f"(unthresholded {d.in_scope_accuracy_unthresholded:.4f}), oos recall {d.oos_recall:.4f}, "
                f"AUROC {d.auroc:.4f}"
            )
        return "\n".join(lines)


def _class_ids(labels: Sequence[str], names: list[str]) -> np.ndarray:
    """Model class id per data label; -1 for out-of-scope rows the model has no class for.

    A data label unknown to the model that is not ``oos`` is an error (the model cannot have been
    trained on these rows)."""
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int64)
    unknown: set[str] = set()
    for i, lab in enumerate(labels):
        key = OOS_PREDICTED if lab == OOS_DATA else lab
        if key in index:
            out[i] = index[key]
        elif lab == OOS_DATA:
            out[i] = -1
        else:
            unknown.add(lab)
    if unknown:
        raise ValueError(f"labels unknown to the model: {sorted(unknown)[:10]}")
    return out


def calibrate(
    model_dir: Path | str,
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    dev_texts: Sequence[str],
    dev_labels: Sequence[str],
    *,
    score: str = "auto",
    pooling: str = DEFAULT_POOLING,
    target_in_scope_recall_ratio: float = 0.98,
    target_oos_recall: float | None = None,
    shrinkage: float | None = None,
    max_train_rows: int = 20000,
    max_length: int = 128,
    batch_size: int = 64,
    num_threads: int | None = None,
    save: bool = True,
    seed: int = 0,
) -> CalibrationResult:
    """Fit every out-of-scope score on ``model_dir``'s train/dev outputs, choose one, save it.

    Train rows give the Mahalanobis class means and covariance (at most ``max_train_rows``, a
    stratified-enough random sample beyond that); dev rows give the temperature, the threshold and,
    when dev has ``oos`` rows, the choice of score. ``score`` forces one of
    :data:`~intent_mlops.inference.ood.SCORES`. (Just over 60 lines: most are the keyword arguments
    passed through to :func:`~intent_mlops.inference.ood.calibrate_arrays`.)
    """
    from intent_mlops.inference.predictor import Predictor

    if score != "auto" and score not in SCORES:
        raise ValueError(f"unknown score {score!r}; expected 'auto' or one of {SCORES}")
    pred = Predictor.load(
        model_dir, calibration=False, num_threads=num_threads, max_length=max_length, batch_size=batch_size
    )
    names = pred.labels
    oos_index = names.index(OOS_PREDICTED) if OOS_PREDICTED in names else None
    train_y = _class_ids(train_labels, names)
    dev_y = _class_ids(dev_labels, names)
    need_emb = score in ("auto", "mahalanobis")
    train_emb = None
    if need_emb:
        rows = np.flatnonzero(train_y >= 0)
        if len(rows) > max_train_rows:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_train_rows, replace=False))
        train_emb = pred.forward([train_texts[int(i)] for i in rows], pooling=pooling).embeddings
        train_y = train_y[rows]
    dev_out = pred.forward(list(dev_texts), pooling=pooling if need_emb else None)
    calib, candidates = calibrate_arrays(
        train_emb,
        train_y,
        dev_out.logits,
        dev_out.embeddings,
        dev_y,
        oos_index=oos_index,
        oos_label=OOS_DATA if oos_index is not None else None,
        score=score,
        pooling=pooling,
        target_in_scope_recall_ratio=target_in_scope_recall_ratio,
        target_oos_recall=target_oos_recall,
        shrinkage=shrinkage,
        scores=SCORES if need_emb else tuple(s for s in SCORES if s != "mahalanobis"),
    )
    path = calib.save(model_dir) if save else None
    return CalibrationResult(calib, candidates, path)


def predict_all(predictor: Predictor, texts: Sequence[str], top_k: int = 1) -> dict[str, np.ndarray]:
    """:meth:`Predictor.predict_columns` over any number of texts (in chunks of the request limit)."""
    parts = [
        predictor.predict_columns(list(texts[i : i + predictor.limits.max_batch]), top_k=top_k)
        for i in range(0, len(texts), predictor.limits.max_batch)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate_ood(
    predictor: Predictor, texts: Sequence[str], labels: Sequence[str], cols: dict[str, np.ndarray] | None = None
) -> OodMetrics:
    """In-scope accuracy, out-of-scope recall / precision and AUROC of ``predictor`` (with its stored
    calibration) on labelled rows; rows labelled ``oos`` or with an intent the model does not know
    are out of scope. Meaningful recall / precision / AUROC need such rows (else they are nan).
    ``cols``: the predictions of these texts when already made (:func:`predict_all`)."""
    known = set(predictor.labels)
    cols = cols if cols is not None else predict_all(predictor, texts)
    truth = np.asarray([OOS_PREDICTED if y == OOS_DATA else y for y in labels], dtype=object)
    true_oos = np.asarray([y == OOS_PREDICTED or y not in known for y in truth], dtype=bool)
    top = cols["top_labels"][:, 0]
    return ood_metrics(true_oos, cols["out_of_scope"], top == truth, cols["ood_score"], top == OOS_PREDICTED)


def calibrate_for_config(
    model_dir: Path | str,
    splits: dict[str, tuple[list[str], list[str]]],
    target_in_scope_recall_ratio: float,
    target_oos_recall: float,
    score: str = "auto",
    max_length: int = 128,
    num_threads: int | None = None,
) -> tuple[CalibrationResult, dict[str, float]]:
    """Calibrate ``model_dir`` on its ``train``/``dev`` rows (``ood.json`` written into it), then score
    out-of-scope rejection on ``dev`` and ``test``; returns the calibration (with the calibrated model's
    dev answers, ``dev_columns``, for the monitoring reference) and ``<split>_ood_*`` metrics.

    ``target_oos_recall`` > 0 is used only when dev has ``oos`` rows (otherwise nothing could
    measure it); the in-scope ratio is the target everywhere else.
    """
    from intent_mlops.inference.predictor import Predictor

    (train_x, train_y), (dev_x, dev_y) = splits["train"], splits["dev"]
    result = calibrate(
        model_dir, train_x, train_y, dev_x, dev_y,
        score=score,
        target_in_scope_recall_ratio=target_in_scope_recall_ratio,
        target_oos_recall=target_oos_recall if target_oos_recall > 0 and OOS_DATA in set(dev_y) else None,
        max_length=max_length,
        num_threads=num_threads,
    )  # fmt: skip
    predictor = Predictor.load(model_dir, num_threads=num_threads, max_length=max_length)
    metrics: dict[str, float] = {}
    result.dev_columns = predict_all(predictor, dev_x, top_k=min(2, len(predictor.labels)))
    result.backend = predictor.backend_name
    for name in ("dev", "test"):
        if name not in splits:
            continue
        m = evaluate_ood(predictor, *splits[name], result.dev_columns if name == "dev" else None)
        metrics[f"{name}_ood_in_scope_accuracy"] = m.in_scope_accuracy
        metrics[f"{name}_ood_in_scope_rejected"] = m.in_scope_rejected
        if m.n_oos:
            metrics |= {
                f"{name}_oos_recall": m.oos_recall,
                f"{name}_oos_precision": m.oos_precision,
                f"{name}_ood_auroc": m.auroc,
            }
    return result, {k: v for k, v in metrics.items() if v == v}  # nan (nothing to measure) left out
