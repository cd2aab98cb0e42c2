"""The monitor flow on a trained project (issue 21, item 2): the version's reference is recorded when it
is registered; a window of logged answers becomes an MLflow run in the monitoring experiment (signals
as metrics at the window end, the Evidently HTML and a JSON summary), the `monitoring-report`
artifact and, on drift, the `intent-mlops.drift.detected` event; an empty window, a log of another
layout and a champion without a reference are Completed runs that say so in one line."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
import pytest
import yaml

from flows.monitoring import REPORT_KEY, monitor_flow
from flows.training import train_flow
from intent_mlops.config.params import load_config
from intent_mlops.data.io import read_csv
from intent_mlops.demo.corpus import generate
from intent_mlops.inference.registered import load_predictor, resolve
from intent_mlops.monitoring import monitor
from intent_mlops.monitoring.log import PredictionLog, answer_columns, open_store
from intent_mlops.monitoring.reference import REFERENCE_FILE, load_reference
from tests.conftest import FOUR_INTENTS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]
NAME = "intent-classifier"


def _artifact(key: str) -> Any:
    """The newest Prefect artifact with ``key`` (the test harness's server)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    return found[0]


def _log(project: Path, texts: list[str], when: datetime, request: str) -> None:
    """The champion's answers to ``texts`` in the project's prediction log, as serve-model writes them."""
    cfg = load_config(project / "params.yaml")
    predictor = load_predictor(resolve(NAME), project / ".intent-mlops" / "models")
    log = PredictionLog(open_store(project, cfg.monitoring), flush_seconds=0.05)
    for i in range(0, len(texts), 50):
        chunk = texts[i : i + 50]
        log.record(answer_columns(chunk, predictor.predict(chunk), request_id=f"{request}-{i}", latency_ms=4.0,
                                  source="online", when=when))  # fmt: skip
    log.close()


def test_monitor_flow_reports_drift_against_the_champions_reference(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the text and embedding thresholds are measured for MiniLM on BANKING77 (docs/monitoring.md); a random
    # 2-layer BERT's embeddings and 27 dev rows have another scale: their values are logged, their alarms off
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["monitoring"] |= {"text_drift_auc": 0.0, "embedding_drift_threshold": 0.0}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert train_flow(project_dir=str(project))["version"] == "1"  # shorter schedules do not learn reliably
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    client = mlflow.MlflowClient()

    # the reference was recorded with the version: its dev rows and its own answers
    reference = load_reference(NAME, "1")
    dev = read_csv(project / "splits" / "dev.csv")
    assert reference is not None and len(reference.frame) == len(dev)
    assert reference.frame["text"].tolist() == dev["text"].tolist()
    assert (reference.frame["intent"] == reference.frame["label"]).mean() >= 0.8, "the version's own answers"
    assert 0.0 <= reference.expected_oos_rate <= 0.2 and reference.frame["margin"].between(0, 1).all()

    now = datetime.now(UTC)
    fresh = generate(per_intent=60, seed=99, label_noise=0.0, typo_rate=0.0)  # the same intents, other phrasings
    calm_texts = fresh.loc[fresh["label"].isin(FOUR_INTENTS), "text"].tolist()[:160]
    _log(project, calm_texts, now - timedelta(minutes=10), "calm")
    new_intents = fresh.loc[~fresh["label"].isin(FOUR_INTENTS), "text"].tolist()[:160]
    assert len(calm_texts) == len(new_intents) == 160
    _log(project, new_intents, now - timedelta(hours=3, minutes=10), "drifted")

    events: list[dict[str, Any]] = []
    monkeypatch.setattr("prefect.events.emit_event", lambda **kw: events.append(kw))

    # the last hour: the champion's own kind of traffic
    state = monitor_flow(project_dir=str(project), return_state=True)
    calm = state.result()
    assert state.is_completed() and calm["model"] == f"{NAME}/1" and calm["current_rows"] == 160
    assert calm["reference_rows"] == len(dev) and calm["outcome"].startswith("no drift"), calm["outcome"]
    assert not events

    # an earlier window of intents the champion never saw: drift, the event, the report
    drifted = monitor_flow(since="3h20m", until="3h", project_dir=str(project))
    assert drifted["drift"] and drifted["crossed"] and drifted["outcome"].startswith("drift detected")
    assert len(events) == 1 and events[0]["event"] == "intent-mlops.drift.detected"
    payload = events[0]["payload"]
    assert payload["champion_version"] == "1" and payload["current_rows"] == 160
    assert [s["name"] for s in payload["signals"]] == drifted["crossed"]
    assert payload["mlflow_run_id"] == drifted["mlflow_run_id"]

    # both windows are runs of the monitoring experiment, charted over time (step = window end)
    exp = client.get_experiment_by_name("intent-classifier-monitoring")
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {calm["mlflow_run_id"], drifted["mlflow_run_id"]}
    run = runs[drifted["mlflow_run_id"]]
    assert run.data.tags["model.version"] == f"{NAME}/1" and run.data.tags["monitoring.drift"] == "detected"
    assert run.data.metrics["current_rows"] == 160
    assert {"intent_drift", "oos_rate", "text_drift", "embedding_drift", "latency_p95_ms"} <= set(run.data.metrics)
    end = int(datetime.fromisoformat(drifted["window"]["end"]).timestamp())
    first = next(iter(set(run.data.metrics) - {"current_rows", "reference_rows"}))
    assert [m.step for m in client.get_metric_history(run.info.run_id, first)] == [end]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "monitoring")}
    assert {monitor.HTML_ARTIFACT, monitor.SUMMARY_ARTIFACT} <= files
    assert urlparse(drifted["mlflow_url"]).fragment == f"/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
    md = _artifact(REPORT_KEY).data
    assert "drift detected" in md and drifted["mlflow_url"] in md and "**crossed**" in md

    # nothing to compare: one line each, Completed, no MLflow run
    empty = monitor_flow(since="30d", until="29d", project_dir=str(project), return_state=True)
    assert empty.is_completed() and empty.result()["outcome"].startswith("nothing compared: no predictions logged")
    assert _artifact(REPORT_KEY).data.startswith("# Monitoring: nothing compared")
    old_day = open_store(project, load_config(project / "params.yaml").monitoring).day_folder(  # type: ignore[union-attr]
        datetime(2020, 1, 1).date()
    )
    old_day.mkdir(parents=True)
    pd.DataFrame({"time": [datetime(2020, 1, 1, 1, tzinfo=UTC)], "text": ["hi"]}).to_parquet(old_day / "part-0.parquet")
    older = monitor_flow(since="2020-01-01T00:00Z", until="2020-01-01T12:00Z", project_dir=str(project))
    assert "another layout" in older["outcome"] and "\n" not in older["outcome"]

    run_id = client.get_model_version(NAME, "1").run_id
    local = Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / Path(REFERENCE_FILE).parent
    shutil.rmtree(local)  # as for a version registered before references were recorded
    state = monitor_flow(project_dir=str(project), return_state=True)
    assert state.is_completed() and "has no monitoring reference" in state.result()["outcome"]
    assert state.message and "registered before" in state.message
    assert len(client.search_runs([exp.experiment_id])) == 2 and len(events) == 1


def test_monitor_command_on_an_empty_log_is_one_line_and_links(tmp_path: Path) -> None:
    """`intent-mlops monitor` as a user runs it, before anything was served: Completed, one line, exit 0."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--project", str(root), "monitor", "--since", "2h"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("intent-mlops monitor:"), done.stdout
    assert lines[1].startswith("nothing compared: no predictions logged from "), done.stdout
    assert "Prefect:" in lines[-1] and "monitoring-report" in lines[-1], done.stdout
    assert "Traceback" not in done.stderr, done.stderr
