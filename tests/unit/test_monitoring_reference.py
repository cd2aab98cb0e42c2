"""The champion's monitoring reference (written with the version, read by the monitor flow) and the
monitor run's window, reads and records, without a model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from intent_mlops.monitoring import monitor
from intent_mlops.monitoring.drift import DriftReport, Signal
from intent_mlops.monitoring.log import FileStore, PredictionLog, answer_columns
from intent_mlops.monitoring.reference import (
    COLUMNS,
    EXPECTED_OOS_TAG,
    build_reference,
    expected_oos_rate,
    load_reference,
    log_reference,
    no_reference_reason,
)

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def _columns() -> dict[str, np.ndarray]:
    """predict_columns-shaped answers for 4 rows: row 1 rejected (in scope), row 3 rejected (oos row)."""
    return {
        "label": np.array(["a", "out_of_scope", "b", "out_of_scope"], dtype=object),
        "score": np.array([0.9, 0.4, 0.7, 0.3]),
        "top_labels": np.array([["a", "b"], ["b", "a"], ["b", "a"], ["a", "b"]], dtype=object),
        "top_probs": np.array([[0.9, 0.05], [0.4, 0.35], [0.7, 0.2], [0.3, 0.29]]),
        "out_of_scope": np.array([False, True, False, True]),
        "ood_score": np.array([-1.0, -9.0, -2.0, -12.0]),
    }


def test_reference_frame_has_the_answers_margin_and_expected_rejection_rate() -> None:
    frame = build_reference(["w", "x", "y", "z"], ["a", "b", "b", "oos"], _columns())
    assert list(frame.columns) == list(COLUMNS)
    assert frame["margin"].round(2).tolist() == [0.85, 0.05, 0.5, 0.01]
    assert frame["intent"].tolist() == ["a", "out_of_scope", "b", "out_of_scope"]
    # the dev rows' oos answers, the oos row included: traffic like dev carries its oos requests too
    assert expected_oos_rate(frame) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="3 texts, 4 labels"):
        build_reference(["w", "x", "y"], ["a", "b", "b", "oos"], _columns())


def _register(run_id: str, name: str = "intent-classifier") -> str:
    import mlflow

    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    return str(client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)


def test_reference_round_trips_through_the_version_run(store: str) -> None:
    import mlflow

    run_id = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name("tests").experiment_id).info.run_id
    meta = log_reference(run_id, ["w", "x", "y", "z"], ["a", "b", "b", "oos"], _columns(), "torch-fp32")
    assert meta["rows"] == 4 and meta["backend"] == "torch-fp32"
    version = _register(run_id)
    ref = load_reference("intent-classifier", version)
    assert ref is not None and ref.run_id == run_id
    assert ref.expected_oos_rate == pytest.approx(0.5) and ref.meta["in_scope_rows"] == 3
    pd.testing.assert_frame_equal(ref.frame, build_reference(["w", "x", "y", "z"], ["a", "b", "b", "oos"], _columns()))
    assert mlflow.MlflowClient().get_run(run_id).data.tags[EXPECTED_OOS_TAG] == "0.5"

    # a version registered before references were recorded: None, and the reason in one line
    older = mlflow.MlflowClient().create_run(mlflow.get_experiment_by_name("tests").experiment_id).info.run_id
    old_version = _register(older)
    assert load_reference("intent-classifier", old_version) is None
    reason = no_reference_reason("intent-classifier", old_version)
    assert "registered before" in reason and "\n" not in reason


@pytest.mark.parametrize(
    ("since", "until", "start", "end"),
    [
        (None, None, NOW - timedelta(hours=1), NOW),
        ("2h", None, NOW - timedelta(hours=2), NOW),
        ("1h30m", "30m", NOW - timedelta(minutes=90), NOW - timedelta(minutes=30)),
        ("1d", None, NOW - timedelta(days=1), NOW),
        ("2025-03-04T09:00Z", "2025-03-04T10:00:00+00:00", NOW - timedelta(hours=3), NOW - timedelta(hours=2)),
    ],
)
def test_window_forms(since: str | None, until: str | None, start: datetime, end: datetime) -> None:
    assert monitor.monitoring_window(since, until, 1.0, NOW) == (start, end)


def test_bad_windows_are_one_line_errors() -> None:
    with pytest.raises(monitor.WindowError, match="--since 'yesterday': expected an ISO time"):
        monitor.monitoring_window("yesterday", None, 1.0, NOW)
    with pytest.raises(monitor.WindowError, match="the window is empty"):
        monitor.monitoring_window("1h", "2h", 1.0, NOW)
    naive = monitor.monitoring_window("2025-03-04T09:00", None, 1.0, NOW)[0]
    assert naive.tzinfo is not None, "a time without a zone is this machine's local time"


def _answers(n: int, label: str = "a") -> list[dict[str, Any]]:
    top = [{"label": label, "probability": 0.8}, {"label": "b", "probability": 0.1}]
    return [{"label": label, "score": 0.8, "top_k": top, "out_of_scope": False, "ood_score": -1.0,
             "model_version": "intent-classifier/1"}] * n  # fmt: skip


def test_read_window_says_why_there_is_nothing_to_compare(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "predictions")
    start, end = NOW - timedelta(hours=1), NOW
    frame, note = monitor.read_window(store, start, end)
    assert frame is None and note.startswith("nothing compared: no predictions logged from 2025-03-04T11:00:00Z")

    log = PredictionLog(store, flush_seconds=0.05)
    log.record(answer_columns(["hi", "yo"], _answers(2), request_id="r1", latency_ms=3.0, source="online",
                              when=NOW - timedelta(minutes=5)))  # fmt: skip
    log.close()
    frame, note = monitor.read_window(store, start, end)
    assert frame is not None and len(frame) == 2 and note == ""

    # a file of an older layout in the window: an outcome, not a traceback
    pd.DataFrame({"time": [NOW - timedelta(minutes=1)], "text": ["x"]}).to_parquet(
        store.day_folder(NOW.date()) / "part-old.parquet"
    )
    frame, note = monitor.read_window(store, start, end)
    assert frame is None and "has another layout" in note and "\n" not in note


def _report(crossed: bool) -> DriftReport:
    signals = [
        Signal("intent_drift", 0.001 if crossed else 0.4, 0.01, crossed, "chi-square on intents", "p-value"),
        Signal("latency_p95_ms", 12.5, 0.0, False, "info", "ms"),
        Signal("text_drift", float("nan"), 0.6, False, "no texts logged", "roc-auc", skipped=True),
    ]
    summary = {"signals": [s.to_dict() for s in signals], "crossed": [s.name for s in signals if s.crossed]}
    return DriftReport(signals, "<html>report</html>", summary, 40, 200)


def test_monitor_run_records_signals_as_metrics_at_the_window_end(store: str) -> None:
    import mlflow

    exp = mlflow.get_experiment_by_name("tests").experiment_id
    start, end = NOW - timedelta(hours=1), NOW
    run_id = monitor.log_monitoring_run(exp, _report(True), "intent-classifier/3", start, end)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics == {"intent_drift": 0.001, "latency_p95_ms": 12.5, "reference_rows": 40.0,
                                "current_rows": 200.0}, "a skipped signal (NaN) is no metric"  # fmt: skip
    assert client.get_metric_history(run_id, "intent_drift")[0].step == int(end.timestamp())
    assert run.data.tags["monitoring.drift"] == "detected" and run.data.tags["monitoring.crossed"] == "intent_drift"
    assert run.data.tags["model.version"] == "intent-classifier/3" and run.info.status == "FINISHED"
    summary = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{monitor.SUMMARY_ARTIFACT}"))
    assert summary["crossed"] == ["intent_drift"] and summary["window"]["end"] == "2025-03-04T12:00:00Z"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/{monitor.HTML_ARTIFACT}") == "<html>report</html>"
    assert monitor.run_url(exp, run_id).endswith(f"/#/experiments/{exp}/runs/{run_id}")


def test_outcome_markdown_and_event_name_what_crossed() -> None:
    start, end = NOW - timedelta(hours=1), NOW
    line = monitor.outcome_line(_report(True), "intent-classifier/3", start, end)
    assert (
        line.startswith("drift detected: intent-classifier/3, 200 predictions") and "intent_drift 0.001 < 0.01" in line
    )
    calm = monitor.outcome_line(_report(False), "intent-classifier/3", start, end)
    assert calm.startswith("no drift") and "\n" not in calm
    md = monitor.report_markdown(_report(True), "intent-classifier/3", start, end, "http://mlflow/#/x")
    assert "| intent_drift | 0.001 | 0.01 | **crossed** |" in md and "(http://mlflow/#/x)" in md
    assert "| text_drift | n/a | 0.6 | skipped |" in md and "| latency_p95_ms | 12.5 | off | no |" in md
    payload = monitor.event_payload(_report(True), "intent-classifier/3", "3", start, end)
    assert [s["name"] for s in payload["signals"]] == ["intent_drift"] and payload["champion_version"] == "3"
    assert payload["current_rows"] == 200 and payload["window"]["start"] == "2025-03-04T11:00:00Z"
    json.dumps(payload, allow_nan=False)
