"""The champion's reference: what its traffic looks like when nothing has drifted.

Recorded on the training run of every version (so with the version from its registration on): the
dev split the version was selected and calibrated on, with its texts, labels and the version's own
answers (intent, score, top-1 minus top-2 margin, out-of-scope decision, ``ood_score``), as
``monitoring/reference.parquet``; and ``monitoring/reference.json`` with the out-of-scope rate the
calibration expects on in-scope traffic (the dev rejection rate of in-scope rows), also the run tag
:data:`EXPECTED_OOS_TAG`. The answers are those the calibration step already computed to score the
model on dev: dev is not predicted a second time.

The monitor flow compares a window of the prediction log with it (:func:`load_reference`). A version
registered before this record existed has none: :func:`load_reference` returns None and
:func:`no_reference_reason` says so.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intent_mlops.model.labels import OOS_DATA

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REFERENCE_FILE = "monitoring/reference.parquet"
REFERENCE_META = "monitoring/reference.json"
EXPECTED_OOS_TAG = "monitoring.expected_oos_rate"
COLUMNS = ("text", "label", "intent", "score", "margin", "out_of_scope", "ood_score")
"""Columns of the reference frame; ``intent`` ... ``ood_score`` mean what they mean in the prediction log."""


@dataclass(frozen=True)
class Reference:
    """A version's reference rows and what its calibration expects."""

    frame: pd.DataFrame  # :data:`COLUMNS`, one row per dev example
    expected_oos_rate: float  # share of dev rows the version answers out_of_scope (traffic like dev shows this)
    run_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def build_reference(texts: Sequence[str], labels: Sequence[str], columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The reference frame from dev texts, their labels and the version's predictions of them
    (:meth:`~intent_mlops.inference.predictor.Predictor.predict_columns` output, in the same order)."""
    import numpy as np
    import pandas as pd

    n = len(texts)
    if len(labels) != n or len(columns["label"]) != n:
        raise ValueError(f"reference: {n} texts, {len(labels)} labels, {len(columns['label'])} predictions")
    probs = np.asarray(columns["top_probs"], dtype=np.float64)
    margin = probs[:, 0] - probs[:, 1] if probs.ndim == 2 and probs.shape[1] >= 2 else np.full(n, np.nan)
    return pd.DataFrame(
        {
            "text": pd.Series([str(t) for t in texts], dtype="string"),
            "label": pd.Series([str(x) for x in labels], dtype="string"),
            "intent": pd.Series([str(x) for x in columns["label"]], dtype="string"),
            "score": np.asarray(columns["score"], dtype=np.float64),
            "margin": margin,
            "out_of_scope": np.asarray(columns["out_of_scope"], dtype=bool),
            "ood_score": np.asarray(columns["ood_score"], dtype=np.float64),
        }
    )


def expected_oos_rate(frame: pd.DataFrame) -> float:
    """Share of the dev rows answered out of scope: what traffic like the training data shows, its ``oos``
    rows (answered out of scope) and the calibration's false rejections of in-scope rows together.

    Not the in-scope rows' share alone: on a corpus with an ``oos`` class, ordinary traffic carries
    its oos requests too, and against the false-rejection rate alone it read as ~3x expected, an alarm
    every hour (seen on the demo corpus; BANKING77 has no ``oos`` rows, where the two are equal)."""
    return float(frame["out_of_scope"].astype(bool).mean()) if len(frame) else 0.0


def log_reference(
    run_id: str,
    texts: Sequence[str],
    labels: Sequence[str],
    columns: Mapping[str, np.ndarray],
    backend: str = "",
) -> dict[str, Any]:
    """Write the reference of the version run ``run_id`` trains (Parquet + JSON artifacts, the
    expected out-of-scope rate as a tag); returns the JSON record."""
    import mlflow

    frame = build_reference(texts, labels, columns)
    meta = {
        "rows": len(frame),
        "expected_oos_rate": expected_oos_rate(frame),
        "in_scope_rows": int((frame["label"] != OOS_DATA).sum()),
        "backend": backend,  # the predictor that answered (the fp32 model the exported variants are checked on)
        "split": "dev",
        "columns": list(COLUMNS),
    }
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / posixpath.basename(REFERENCE_FILE)
        frame.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path), posixpath.dirname(REFERENCE_FILE))
    client.log_text(run_id, json.dumps(meta, indent=2), REFERENCE_META)
    client.set_tag(run_id, EXPECTED_OOS_TAG, f"{meta['expected_oos_rate']:.6g}")
    return meta


def no_reference_reason(name: str, version: str) -> str:
    return (
        f"{name} version {version} has no monitoring reference ({REFERENCE_FILE} on its run): it was registered "
        "before references were recorded; the next version trained has one"
    )


def load_reference(name: str, version: str) -> Reference | None:
    """The reference of a registered version; None when its run has none (registered before this record
    existed: :func:`no_reference_reason`). Any other error (a store that does not answer, an unreadable
    file) propagates: that is not "no reference"."""
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient()
    run_id = str(client.get_model_version(name, str(version)).run_id)
    listed = {f.path for f in client.list_artifacts(run_id, posixpath.dirname(REFERENCE_FILE))}
    if REFERENCE_FILE not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_FILE, dst_path=tmp)
        frame = pd.read_parquet(local)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{REFERENCE_FILE} of run {run_id}: no column {', '.join(missing)}")
    meta: dict[str, Any] = {}
    if REFERENCE_META in listed:
        meta = dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{REFERENCE_META}")))
    # from the rows, not the recorded figure: references recorded before 2026-12-08 hold the in-scope rate only
    return Reference(frame=frame, expected_oos_rate=expected_oos_rate(frame), run_id=run_id, meta=meta)
