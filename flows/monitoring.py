"""The monitor flow: a window of the prediction log against the champion's reference.

Read the window -> the champion and its reference -> embed a sample of both sides -> drift signals
(Evidently and the product's own) -> an MLflow run in ``monitoring.experiment``, the
``monitoring-report`` artifact, and the ``intent-mlops.drift.detected`` event when a threshold is
crossed. Nothing to compare (an empty window, a log of another layout, no champion, a champion
without a reference) is a Completed run whose message says so. Only composition of ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, State

from flows.parameters import ProjectDir
from intent_mlops.config.environment import apply_defaults
from intent_mlops.config.params import load_run_config
from intent_mlops.monitoring import monitor
from tasks.card import flow_run_url
from tasks.monitoring import (
    announce_drift,
    compare,
    embed_samples,
    log_run,
    read_window,
    reference_of,
    resolve_champion,
)

REPORT_KEY = "monitoring-report"


@flow(name="monitor-intents", log_prints=True, validate_parameters=True)
def monitor_flow(since: str | None = None, until: str | None = None, project_dir: ProjectDir = ".") -> State:
    """Compare a window of the prediction log with the champion's reference and report drift.

    Args:
        since: Window start: an ISO time (no zone: this machine's) or a duration before now (30m, 2h, 1d); empty: monitoring.window_hours before the end.
        until: Window end, same forms; empty: now.
        project_dir: Project folder (params.yaml, the MLflow store, the prediction log) on the machine that runs the flow.
    """  # noqa: E501
    root = str(Path(project_dir).resolve())
    apply_defaults(root)
    cfg = load_run_config(root)
    start, end = monitor.monitoring_window(since, until, cfg.monitoring.window_hours)
    base = {"window": {"start": start.isoformat(), "end": end.isoformat()}, "drift": False}
    frame, note = read_window(cfg, root, start, end)
    if frame is None:
        return _nothing(note, base)
    ref, note = resolve_champion(cfg, root)
    if ref is None:
        return _nothing(note, base | {"current_rows": len(frame)})
    reference, note = reference_of(ref)
    if reference is None:
        return _nothing(note, base | {"current_rows": len(frame), "model": ref.label})
    ref_emb, cur_emb = embed_samples(cfg, root, ref, reference.frame["text"].tolist(), frame["text"].tolist())
    report = compare(cfg, reference, frame, ref_emb, cur_emb)
    flow_run_id = str(flow_run.get_id() or "")
    run_id, link = log_run(cfg, root, report, ref, start, end, {"prefect.flow_run_id": flow_run_id})
    line = monitor.outcome_line(report, ref.label, start, end)
    create_markdown_artifact(
        key=REPORT_KEY, markdown=monitor.report_markdown(report, ref.label, start, end, link), description=line[:200]
    )
    if report.crossed:
        announce_drift(report, ref, start, end, run_id)
    print(line)
    result: dict[str, Any] = base | {
        "drift": bool(report.crossed),
        "crossed": [s.name for s in report.signals if s.crossed],
        "model": ref.label,
        "current_rows": int(report.current_rows),
        "reference_rows": int(report.reference_rows),
        "mlflow_run_id": run_id,
        "mlflow_url": link,
        "prefect_url": flow_run_url(flow_run_id),
        "flow_run": str(flow_run.get_name() or ""),
        "outcome": line,
    }
    return Completed(message=line[:500], data=result)


def _nothing(line: str, result: dict[str, Any]) -> State:
    """A Completed run that compared nothing, saying why in one line (result and artifact)."""
    markdown = f"# Monitoring: nothing compared\n\n{line}\n"
    create_markdown_artifact(key=REPORT_KEY, markdown=markdown, description=line[:200])
    print(line)
    flow_run_id = str(flow_run.get_id() or "")
    links = {"prefect_url": flow_run_url(flow_run_id), "flow_run": str(flow_run.get_name() or "")}
    return Completed(message=line[:500], data=result | {"outcome": line} | links)


def run_monitor(root: Path, since: str | None, until: str | None) -> int:
    """``intent-mlops monitor``: run the flow, print the outcome and where to look."""
    state = monitor_flow(since=since, until=until, project_dir=str(root), return_state=True)
    out = state.result()
    print(out["outcome"])
    if out.get("mlflow_url"):
        print(f"  MLflow:  {out['mlflow_url']}   (Evidently report: artifacts/{monitor.HTML_ARTIFACT})")
    if out.get("prefect_url"):
        print(f"  Prefect: {out['prefect_url']}   (artifact {REPORT_KEY})")
    else:
        print(f"  Prefect: make prefect-ui   (flow run {out.get('flow_run', '')}, artifact {REPORT_KEY})")
    return 0
