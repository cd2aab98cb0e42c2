"""The monitor run around the drift signals: which window, what to embed, where the results go.

``intent-mlops monitor`` and the ``monitor`` deployment compare a window of the prediction log with
the champion's reference (:mod:`.reference`) through :func:`intent_mlops.monitoring.drift.drift_report`.
This module holds the rest, free of Prefect: the window (``--since 2h``, an ISO time), reading it
(an empty window or a log of another layout is an outcome, not an error), the pooled embeddings of a
sample of each side, the MLflow run in ``monitoring.experiment`` (every numeric signal a metric at
step = window end in epoch seconds, so the MLflow UI charts them over time; the Evidently HTML and
a JSON summary as artifacts), the markdown and the one-line outcome.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from intent_mlops.config.params import Config
    from intent_mlops.inference.predictor import Predictor
    from intent_mlops.monitoring.drift import DriftReport
    from intent_mlops.monitoring.log import Store

KIND = "monitoring"
"""``intent-mlops.kind`` tag of a monitor run."""
HTML_ARTIFACT, SUMMARY_ARTIFACT = "monitoring/report.html", "monitoring/summary.json"
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow-ui` over the embedded store
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


class WindowError(ValueError):
    """A ``--since`` / ``--until`` that is neither an ISO time nor a duration, or an empty span."""


def parse_time(text: str, now: datetime, option: str = "--since") -> datetime:
    """``2h``, ``30m``, ``1d``, ``1h30m`` (that long before ``now``) or an ISO time (without a zone:
    this machine's local time), as an aware UTC datetime."""
    raw = text.strip()
    compact = raw.replace(" ", "").lower()
    if compact and _DURATION.sub("", compact) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(
            f"{option} {text!r}: expected an ISO time (2025-01-31T09:00, 2025-01-31T09:00Z) or a duration "
            "before now (30m, 2h, 1d, 1h30m)"
        ) from None
    return (when if when.tzinfo else when.astimezone()).astimezone(UTC)


def monitoring_window(
    since: str | None, until: str | None, window_hours: float, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """``[start, end)`` of a monitor run: by default the last ``window_hours`` up to now."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    end = parse_time(until, now, "--until") if until else now
    start = parse_time(since, now) if since else end - timedelta(hours=window_hours)
    if start >= end:
        raise WindowError(f"the window is empty: --since {_iso(start)} is not before --until {_iso(end)}")
    return start, end


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def window_text(start: datetime, end: datetime) -> str:
    return f"{_iso(start)} to {_iso(end)}"


def read_window(store: Store, start: datetime, end: datetime) -> tuple[pd.DataFrame | None, str]:
    """The window's log rows, or None and the one-line reason there is nothing to compare (no rows;
    rows of a log layout this version does not read)."""
    from intent_mlops.monitoring.log import LogSchemaError, read_log

    try:
        frame = read_log(store, start, end)
    except LogSchemaError as exc:
        return None, f"nothing compared: the prediction log of {window_text(start, end)} has another layout ({exc})"
    if frame.empty:
        return None, f"nothing compared: no predictions logged from {window_text(start, end)} in {store}"
    return frame, ""


def sample_texts(texts: Sequence[Any], rows: int, seed: int = 0) -> list[str]:
    """At most ``rows`` non-empty texts, drawn without replacement (reproducibly); none when texts are
    not logged (``monitoring.log_text: false``)."""
    import numpy as np

    kept = [str(t) for t in texts if isinstance(t, str) and t.strip()]
    if len(kept) <= rows:
        return kept
    pick = np.sort(np.random.default_rng(seed).choice(len(kept), rows, replace=False))
    return [kept[int(i)] for i in pick]


def embed(predictor: Predictor, texts: Sequence[str]) -> np.ndarray | None:
    """Pooled last-layer embeddings (the pooling the calibration uses, else mean) of ``texts``."""
    from intent_mlops.inference.ood import DEFAULT_POOLING

    if not texts:
        return None
    pooling = getattr(predictor.calibration, "pooling", None) or DEFAULT_POOLING
    return predictor.forward(list(texts), pooling=pooling).embeddings


def monitoring_experiment(cfg: Config, root: Path | str) -> str:
    """The id of ``monitoring.experiment`` (created beside the training experiment when missing)."""
    from intent_mlops.registry.tracking import connect

    return connect(dataclasses.replace(cfg.mlflow, experiment=cfg.monitoring.experiment), root)


def metric_name(name: str) -> str:
    """A signal name as an MLflow metric key (letters, digits and ``_-./ `` only)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def summary_record(report: DriftReport, model: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The JSON summary: the champion, the window, and the report's own summary (signals, sizes,
    version shares, Evidently's numbers)."""
    return {"model": model, "window": {"start": _iso(start), "end": _iso(end)}, "drift": bool(report.crossed),
            **report.summary}  # fmt: skip


def log_monitoring_run(
    experiment_id: str,
    report: DriftReport,
    model: str,
    start: datetime,
    end: datetime,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """One finished MLflow run per window; returns its id."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    crossed = [s.name for s in report.signals if s.crossed]
    run = client.create_run(
        experiment_id,
        run_name=run_name or f"monitor {_iso(end)}",
        tags={
            "intent-mlops.kind": KIND, "model.version": model, "monitoring.window_start": _iso(start),
            "monitoring.window_end": _iso(end), "monitoring.drift": "detected" if crossed else "none",
            "monitoring.crossed": ", ".join(crossed)[:5000], **(tags or {}),
        },
    )  # fmt: skip
    run_id = str(run.info.run_id)
    step, stamp = int(end.timestamp()), int(end.timestamp() * 1000)
    values = {"reference_rows": float(report.reference_rows), "current_rows": float(report.current_rows)}
    for s in report.signals:
        value = _number(s.value)
        if value is not None:
            values[metric_name(s.name)] = value
    client.log_batch(run_id, metrics=[Metric(k, v, stamp, step) for k, v in values.items()])
    client.log_text(run_id, report.html, HTML_ARTIFACT)
    record = summary_record(report, model, start, end)
    client.log_text(run_id, json.dumps(record, indent=2, default=str), SUMMARY_ARTIFACT)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def run_url(experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI: the tracking server's, else the local ``make mlflow-ui``."""
    import mlflow

    uri = str(mlflow.get_tracking_uri())
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_MLFLOW_UI
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def outcome_line(report: DriftReport, model: str, start: datetime, end: datetime) -> str:
    """One line: drift or not, which signals crossed, the window and its size."""
    crossed = [s for s in report.signals if s.crossed]
    window = window_text(start, end)
    size = f"{report.current_rows} predictions of {window} against {report.reference_rows} reference rows"
    if not crossed:
        return f"no drift: {model}, {size}, no signal crossed its threshold"
    names = ", ".join(f"{s.name} {_fmt(s.value)} {_side(s)} {_fmt(s.threshold)}" for s in crossed)
    return f"drift detected: {model}, {size}: {names}"


def _side(signal: Any) -> str:
    """How a crossed signal compares with its threshold: p-values and volume alarm below it."""
    return "<" if signal.statistic in ("p-value", "rows") else ">"


def _fmt(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.4g}"


def report_markdown(report: DriftReport, model: str, start: datetime, end: datetime, link: str) -> str:
    """The ``monitoring-report`` artifact: the outcome, each signal against its threshold, the link."""
    rows = "\n".join(
        f"| {s.name} | {_fmt(s.value)} | {_fmt(s.threshold) if s.threshold else 'off'} | "
        f"{'**crossed**' if s.crossed else 'skipped' if s.skipped else 'no'} | {str(s.detail).replace('|', '/')} |"
        for s in report.signals
    )
    return (
        f"# Monitoring: {'drift detected' if report.crossed else 'no drift'}\n\n"
        f"{outcome_line(report, model, start, end)}\n\n"
        f"Champion **{model}**; window {window_text(start, end)}: {report.current_rows} predictions; "
        f"reference: {report.reference_rows} dev rows.\n\n"
        f"| signal | value | threshold | crossed | detail |\n|---|---|---|---|---|\n{rows}\n\n"
        f"Evidently report and JSON summary: [MLflow run]({link})\n"
    )


def event_payload(report: DriftReport, model: str, version: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The ``intent-mlops.drift.detected`` payload: the signals that crossed, sizes, window, champion."""
    return {
        "signals": [
            {"name": s.name, "value": _number(s.value), "threshold": _number(s.threshold), "detail": str(s.detail)}
            for s in report.signals
            if s.crossed
        ],
        "reference_rows": int(report.reference_rows),
        "current_rows": int(report.current_rows),
        "window": {"start": _iso(start), "end": _iso(end)},
        "model": model,
        "champion_version": version,
    }
